"""AWS ECR (and the EKS node groups behind a Nasiko cluster) through boto3, in the provider shapes.

Credentials come from the standard AWS chain (environment, profile, instance role); the endpoint can be
pointed elsewhere (moto in tests) with ``endpoint_url`` or ``NASIKO_AWS_ENDPOINT_URL``. Every botocore
failure becomes a :class:`ProviderError` with a provider/* code and one line: the AWS error code and
message, never a key, a token or a traceback.
"""
from __future__ import annotations

import base64
import binascii
import os

import boto3
from botocore.config import Config
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, NoCredentialsError, PartialCredentialsError,
                                 ReadTimeoutError)

from nasiko_nb.providers.base import (STATUS_CODES, Account, DockerCredential, NodeGroup, ProviderError, RegistryInfo,
                                      Repository, Tag)
from nasiko_nb.redact import scrub

PROVIDER = "ecr"
ENDPOINT_ENV = "NASIKO_AWS_ENDPOINT_URL"

# AWS error codes whose HTTP status does not say what happened (ECR answers 400 for a missing repository).
_ERROR_CODES = {
    "provider/unauthorized": {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken",
                              "ExpiredTokenException", "InvalidSignatureException", "SignatureDoesNotMatch",
                              "AuthFailure", "IncompleteSignature", "MissingAuthenticationToken"},
    "provider/forbidden": {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                           "UnauthorizedException"},
    "provider/not-found": {"RepositoryNotFoundException", "ImageNotFoundException", "ResourceNotFoundException",
                           "RegistryPolicyNotFoundException", "NoSuchEntity"},
    "provider/rate-limited": {"ThrottlingException", "Throttling", "TooManyRequestsException",
                              "RequestLimitExceeded"},
}
_CODE_OF_ERROR = {error: code for code, errors in _ERROR_CODES.items() for error in errors}
_MAX_DETAIL = 240


class EcrProvider:
    """The AWS account's ECR registry in one region, as a :class:`~nasiko_nb.providers.base.RegistryProvider`."""

    name = PROVIDER

    def __init__(self, region: str, endpoint_url: str | None = None, session=None, timeout: float = 10.0):
        self.region = region
        self.endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        self._session = session or boto3.session.Session()
        self._config = Config(region_name=region, connect_timeout=timeout, read_timeout=timeout,
                              retries={"total_max_attempts": 2, "mode": "standard"})
        self._clients: dict[str, object] = {}

    def __repr__(self) -> str:
        return f"EcrProvider(region={self.region!r}, endpoint_url={self.endpoint_url!r})"

    def _client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self._session.client(service, endpoint_url=self.endpoint_url,
                                                          config=self._config)
        return self._clients[service]

    def _call(self, service: str, operation: str, **kwargs) -> dict:
        try:
            return getattr(self._client(service), operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(operation, exc) from None

    def _pages(self, service: str, operation: str, key: str, **kwargs) -> list[dict]:
        try:
            paginator = self._client(service).get_paginator(operation)
            return [item for page in paginator.paginate(**kwargs) for item in page.get(key, [])]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(operation, exc) from None

    def _known_secrets(self) -> list[str]:
        """The session's secret key and token, masked in error text should AWS ever echo them."""
        try:
            credentials = self._session.get_credentials()
        except BotoCoreError:
            return []
        if credentials is None:
            return []
        frozen = credentials.get_frozen_credentials()
        return [value for value in (frozen.secret_key, frozen.token) if value]

    def _error(self, operation: str, exc: ClientError | BotoCoreError) -> ProviderError:
        """The ProviderError for a failed call: code from the AWS error code, else from the HTTP status."""
        where = f"{PROVIDER} {operation}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error") or {}
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
            aws_code = str(error.get("Code") or "error")
            code = _CODE_OF_ERROR.get(aws_code) or STATUS_CODES.get(status) or (
                "provider/unavailable" if status >= 500 else "provider/error")
            detail = f"{aws_code}: {error.get('Message') or 'no message'}"
            return ProviderError(code, self._one_line(f"{where} answered {status or '?'}: {detail}"), status or None)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ProviderError("provider/unauthorized",
                                 f"{where}: no usable AWS credentials in the credential chain "
                                 "(environment, profile or instance role)")
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
            endpoint = self.endpoint_url or f"the {self.region} endpoint"
            return ProviderError("provider/unreachable",
                                 self._one_line(f"{where}: {endpoint} cannot be reached ({type(exc).__name__})"))
        return ProviderError("provider/error", self._one_line(f"{where} failed: {type(exc).__name__}: {exc}"))

    def _one_line(self, text: str) -> str:
        line = scrub(" ".join(text.split()), self._known_secrets())
        return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"

    # --- account and registry --------------------------------------------------------------------

    def account(self) -> Account:
        identity = self._call("sts", "get_caller_identity")
        return Account(provider=PROVIDER, id=identity["Account"], uuid=identity.get("UserId", ""),
                       status=identity.get("Arn", ""))

    def registry(self) -> RegistryInfo:
        registry_id = self._call("ecr", "describe_registry")["registryId"]
        return RegistryInfo(provider=PROVIDER, name=registry_id, host=self.host(registry_id), region=self.region)

    def host(self, registry_id: str) -> str:
        suffix = ".amazonaws.com.cn" if self.region.startswith("cn-") else ".amazonaws.com"
        return f"{registry_id}.dkr.ecr.{self.region}{suffix}"

    def docker_credentials(self, read_write: bool = True, expiry_seconds: int | None = None) -> DockerCredential:
        """A 12-hour ECR login (user ``AWS``), as ``aws ecr get-login-password`` gives it.

        ECR decides the lifetime (12 h) and IAM decides the access, so ``expiry_seconds`` and
        ``read_write`` cannot be chosen here and the credential's access is reported as unknown.
        """
        data = self._call("ecr", "get_authorization_token")["authorizationData"][0]
        try:
            username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, KeyError):
            raise ProviderError("provider/error", f"{PROVIDER} get_authorization_token: the token is not "
                                                  "base64 of user:password") from None
        host = data.get("proxyEndpoint", "").split("://", 1)[-1].rstrip("/")
        return DockerCredential(host=host, username=username, password=password,
                                expires_at=data.get("expiresAt"), read_write=None)

    # --- repositories and tags ------------------------------------------------------------------

    def repositories(self) -> list[Repository]:
        """Every repository with its tag count, total image size and last push (one listing per repository)."""
        result = []
        for repo in self._pages("ecr", "describe_repositories", "repositories"):
            images = self._images(repo["repositoryName"])
            sizes = [image["imageSizeInBytes"] for image in images if image.get("imageSizeInBytes") is not None]
            pushed = [image["imagePushedAt"] for image in images if image.get("imagePushedAt")]
            result.append(Repository(name=repo["repositoryName"],
                                     tag_count=sum(len(image.get("imageTags") or []) for image in images),
                                     size_bytes=sum(sizes) if sizes else None,
                                     updated=max(pushed) if pushed else repo.get("createdAt")))
        return result

    def _images(self, repository: str) -> list[dict]:
        return self._pages("ecr", "describe_images", "imageDetails", repositoryName=repository)

    def tags(self, repository: str) -> list[Tag]:
        """Tags of `repository`, newest push first."""
        tags = [Tag(repository=repository, tag=tag, digest=image.get("imageDigest", ""),
                    size_bytes=image.get("imageSizeInBytes"), updated=image.get("imagePushedAt"))
                for image in self._images(repository) for tag in image.get("imageTags") or []]
        return sorted(tags, key=lambda t: (t.updated is not None, t.updated or 0), reverse=True)

    def create_repository(self, repository: str) -> Repository:
        """Create the repository an agent's images are pushed to (bootstrap creates only ``nasiko-images``)."""
        repo = self._call("ecr", "create_repository", repositoryName=repository)["repository"]
        return Repository(name=repo["repositoryName"], tag_count=0, size_bytes=0, updated=repo.get("createdAt"))

    def delete_tag(self, repository: str, tag: str) -> None:
        """Remove `tag`; ECR deletes the image too when it was its last tag."""
        answer = self._call("ecr", "batch_delete_image", repositoryName=repository, imageIds=[{"imageTag": tag}])
        failure = next(iter(answer.get("failures") or []), None)
        if failure:
            code = "provider/not-found" if failure.get("failureCode") == "ImageNotFound" else "provider/error"
            raise ProviderError(code, self._one_line(
                f"{PROVIDER} batch_delete_image: {repository}:{tag}: {failure.get('failureCode')}: "
                f"{failure.get('failureReason', '')}"))

    def delete_repository(self, repository: str) -> None:
        """Delete the repository and every image in it."""
        self._call("ecr", "delete_repository", repositoryName=repository, force=True)

    # --- EKS node groups ------------------------------------------------------------------------

    def clusters(self) -> list[str]:
        return self._pages("eks", "list_clusters", "clusters")

    def node_groups(self, cluster: str) -> list[NodeGroup]:
        names = self._pages("eks", "list_nodegroups", "nodegroups", clusterName=cluster)
        return [self.node_group(cluster, name) for name in names]

    def node_group(self, cluster: str, name: str) -> NodeGroup:
        return self._node_group(self._call("eks", "describe_nodegroup", clusterName=cluster,
                                           nodegroupName=name)["nodegroup"])

    def scale_node_group(self, cluster: str, group: str, min_size: int, max_size: int, desired_size: int) -> str:
        """Ask EKS to rescale `group`; returns the id of the update EKS starts."""
        if not 0 <= min_size <= desired_size <= max_size or max_size < 1:
            raise ValueError(f"node group sizes need 0 <= min ({min_size}) <= desired ({desired_size}) "
                             f"<= max ({max_size}) and max >= 1")
        answer = self._call("eks", "update_nodegroup_config", clusterName=cluster, nodegroupName=group,
                            scalingConfig={"minSize": min_size, "maxSize": max_size, "desiredSize": desired_size})
        return answer["update"]["id"]

    @staticmethod
    def _node_group(raw: dict) -> NodeGroup:
        scaling = raw.get("scalingConfig") or {}
        return NodeGroup(provider="aws", cluster=raw.get("clusterName", ""), name=raw["nodegroupName"],
                         status=raw.get("status", ""),
                         min_size=scaling.get("minSize", 0), max_size=scaling.get("maxSize", 0),
                         desired_size=scaling.get("desiredSize", 0),
                         instance_types=tuple(raw.get("instanceTypes") or ()), created=raw.get("createdAt"))
