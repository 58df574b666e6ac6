"""The simulated AWS behind an ECR scenario: moto in server mode on 127.0.0.1, holding the cluster's ECR registry
and the EKS cluster with its managed node group.

moto answers ECR's, EKS's and STS's APIs (repositories, images, authorization tokens, node groups, caller
identity) for its default account 123456789012, which is the account the ECR scenarios' registry host names.
It has no Registry v2 endpoint, so logins cannot be tried against it; the simulated kubelet decides pulls
instead, and it accepts moto's authorization token from the moment the server starts. moto cannot call back
either, so scaling the node group changes no Node of the emulated cluster.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import boto3
import requests
from moto.server import ThreadedMotoServer

from nasiko_nb.sim.kubelet import Registry
from nasiko_nb.sim.platform import (ECR_ACCOUNT, ECR_PLATFORM_REGISTRY, ECR_REGION, EKS_CLUSTER, EKS_INSTANCE_TYPE,
                                    EKS_NODEGROUP, image_size)

FAKE_KEY = "testing"                                  # moto accepts any key; these are not secrets
MOTO_LOGIN_PASSWORD = f"{ECR_ACCOUNT}-auth-token"     # what moto's get_authorization_token hands out
_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
EKS_VERSION = "1.34"
EKS_SUBNETS = ("subnet-0c4f2a9e61b7d3805", "subnet-07e93b5d2a8c1f460")   # private subnets of us-east-1a and 1b


@dataclass
class AwsServer:
    """A running moto server standing for the account's AWS APIs."""

    endpoint_url: str
    _moto: ThreadedMotoServer

    def environment(self) -> dict[str, str]:
        """What a runbook kernel needs to reach it through the standard AWS credential chain."""
        return {"AWS_ACCESS_KEY_ID": FAKE_KEY, "AWS_SECRET_ACCESS_KEY": FAKE_KEY, "AWS_DEFAULT_REGION": ECR_REGION,
                "NASIKO_AWS_ENDPOINT_URL": self.endpoint_url, "NASIKO_PLATFORM_REGISTRY": ECR_PLATFORM_REGISTRY}

    def stop(self) -> None:
        self._moto.stop()


def _manifest(repository: str, tag: str) -> str:
    """A Docker image manifest v2 for ``repository:tag`` (moto reports its config size as the image's size)."""
    size = image_size(f"{repository}:{tag}")

    def digest(part: str) -> str:
        return "sha256:" + hashlib.sha256(f"{repository}:{tag}/{part}".encode()).hexdigest()

    return json.dumps({"schemaVersion": 2, "mediaType": _MANIFEST_TYPE,
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": size,
                                  "digest": digest("config")},
                       "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                   "size": size, "digest": digest("layer")}]})


def start_aws(registry: Registry, node_count: int = 2) -> AwsServer:
    """Start moto on 127.0.0.1 (a free port) with ``registry``'s repositories and tags and the EKS cluster whose
    node group has ``node_count`` nodes, from a clean state.

    moto keeps its state per process, so the previous scenario's repositories are reset first.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)   # no access log line per AWS call
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
        ecr = boto3.client("ecr", region_name=ECR_REGION, endpoint_url=url, aws_access_key_id=FAKE_KEY,
                           aws_secret_access_key=FAKE_KEY)
        for repository, tags in sorted(registry.repositories.items()):
            ecr.create_repository(repositoryName=repository)
            for tag in sorted(tags):
                ecr.put_image(repositoryName=repository, imageTag=tag, imageManifest=_manifest(repository, tag),
                              imageManifestMediaType=_MANIFEST_TYPE)
        _create_eks_cluster(url, node_count)
    except BaseException:
        moto.stop()
        raise
    registry.issued[MOTO_LOGIN_PASSWORD] = datetime.now(timezone.utc)
    return AwsServer(url, moto)


def _create_eks_cluster(url: str, node_count: int) -> None:
    """The EKS cluster "nasiko" and its managed node group of m5.xlarge nodes, as eksctl would leave them
    (moto wants roles and subnets; these stand for the ones eksctl creates)."""
    eks = boto3.client("eks", region_name=ECR_REGION, endpoint_url=url, aws_access_key_id=FAKE_KEY,
                       aws_secret_access_key=FAKE_KEY)
    eks.create_cluster(name=EKS_CLUSTER, version=EKS_VERSION,
                       roleArn=f"arn:aws:iam::{ECR_ACCOUNT}:role/{EKS_CLUSTER}-cluster-role",
                       resourcesVpcConfig={"subnetIds": list(EKS_SUBNETS)})
    eks.create_nodegroup(clusterName=EKS_CLUSTER, nodegroupName=EKS_NODEGROUP, version=EKS_VERSION,
                         scalingConfig={"minSize": 1, "maxSize": max(4, node_count), "desiredSize": node_count},
                         subnets=list(EKS_SUBNETS), instanceTypes=[EKS_INSTANCE_TYPE],
                         amiType="AL2023_x86_64_STANDARD", capacityType="ON_DEMAND",
                         nodeRole=f"arn:aws:iam::{ECR_ACCOUNT}:role/{EKS_CLUSTER}-node-role")
