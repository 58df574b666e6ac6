"""Registry credential fixes: reset every platform registry secret in place, clean up failed builds.

The guide's pattern 1 deletes each secret and creates it again, leaving a moment without it. Here new
credentials are obtained first (by the caller, from the provider); each secret is then replaced in place
with a resourceVersion-checked PUT, so it exists at every moment. If any replacement fails, the ones
already replaced are put back, and the error says which state every secret is in. Plans and the journal
show users and fingerprints, never the credentials.
"""
from __future__ import annotations

import base64
import dataclasses
from datetime import datetime, timezone
from typing import Callable

import pandas as pd
from kubernetes.client.rest import ApiException

from nasiko_nb import fixes
from nasiko_nb.checks.build import failed_build_jobs
from nasiko_nb.checks.registry import PLATFORM_SECRETS
from nasiko_nb.cluster import ApiFailure, Cluster, ClusterError
from nasiko_nb.credentials import read_docker_credential, registry_client
from nasiko_nb.fixes import Change, FixFailed, Plan
from nasiko_nb.fixes.workloads import delete_job_change, restart_change
from nasiko_nb.providers.base import DockerCredential, ProviderError
from nasiko_nb.redact import REPLACED_AT, fingerprint
from nasiko_nb.snapshot import Snapshot

RESET = "reset-registry-credentials"
CLEANUP = "delete-failed-jobs"
DOCKERCONFIG = ".dockerconfigjson"
CONFLICT_ATTEMPTS = 3   # reads and PUTs of one secret before a 409 Conflict stands


def plan_reset(snap: Snapshot, new_credentials: str, obtain: Callable[[], DockerCredential], target: str,
               secrets=PLATFORM_SECRETS) -> Plan:
    """Replace each secret in place (create where missing); ``obtain`` is called only when the plan is applied.

    ``new_credentials`` describes where the credentials will come from; ``target`` is what confirm names.
    """
    changes = []
    for namespace, name in secrets:
        summary = snap.secret(namespace, name)
        before = (", ".join(f"{a.host} user {a.username} {a.fingerprint}" for a in summary.docker_auths) or "no auths"
                  if summary else "missing")
        changes.append(Change(
            verb="replace" if summary else "create",
            path=f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if summary else ""),
            resource=f"Secret {namespace}/{name}", description=f"{before} -> {new_credentials}"))
    return Plan(fix=RESET, target=target, changes=changes,
                executor=lambda cluster, plan, _progress: _execute_reset(cluster, plan, obtain),
                notes=["new credentials are obtained first: if that fails, nothing is touched",
                       "each secret is replaced in place (resourceVersion-checked): it exists at every moment",
                       "on any failure the secrets already replaced are put back"])


def _execute_reset(cluster: Cluster, plan: Plan, obtain: Callable[[], DockerCredential]) -> fixes.Outcome:
    """Obtain the credentials, then replace every secret of ``plan``; all or nothing."""
    try:
        credential = obtain()
    except (ProviderError, ValueError, OSError) as exc:
        raise FixFailed(f"new credentials could not be obtained ({exc}); nothing was changed") from None
    replaced: list[tuple[Change, dict | None]] = []
    results = []
    for change in plan.changes:
        namespace, name = change.resource.split(" ", 1)[1].split("/", 1)
        try:
            previous = _replace(cluster, namespace, name, credential)
        except (ApiException, ClusterError) as exc:
            if isinstance(exc, ApiException):
                failure = ApiFailure.from_exception(exc)
                why = f"{failure.status} {failure.reason}"
                state = f"unchanged ({why})"
            else:   # no answer: the PUT may have been applied
                why = str(exc)
                state = "unknown: the API server did not answer; it may hold the new credentials"
            states = {c.resource: "unchanged" for c in plan.changes}
            states.update(_restore(cluster, plan, replaced))
            states[change.resource] = state
            raise FixFailed(f"{change.resource} could not be replaced ({why}); "
                            + "; ".join(f"{r}: {state}" for r, state in states.items())) from None
        replaced.append((change, previous))
        done = dataclasses.replace(change, description=change.description.split(" -> ")[0] + f" -> {credential.summary()}")
        results.append(fixes.record(plan, done))
    return fixes.Outcome(plan, True, f"replaced {len(results)} secret(s) with {credential.summary()}", results)


def _replace(cluster: Cluster, namespace: str, name: str, credential: DockerCredential) -> dict | None:
    """PUT the new credentials into the secret (POST if absent), marked with when (REPLACED_AT, since its
    creationTimestamp stays); returns the previous data and mark for a rollback.

    The PUT carries the resourceVersion it read: if someone changed the secret meanwhile (409 Conflict), it is
    read again and only the credentials and the mark are put over the other writer's version, so both changes
    stay; after CONFLICT_ATTEMPTS conflicts the 409 stands.
    """
    path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
    data = {DOCKERCONFIG: base64.b64encode(credential.dockerconfigjson().encode()).decode()}
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            current = cluster.get_json(path)
        except ApiException as exc:
            if exc.status != 404:
                raise
            cluster.send_json("POST", f"/api/v1/namespaces/{namespace}/secrets", {
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": name, "namespace": namespace}, "data": data})
            return None
        annotations = current["metadata"].get("annotations") or {}
        previous = {"data": dict(current.get("data") or {}), REPLACED_AT: annotations.get(REPLACED_AT)}
        current["data"] = {**previous["data"], **data}
        current["type"] = current.get("type") or "kubernetes.io/dockerconfigjson"
        current["metadata"]["annotations"] = {
            **annotations, REPLACED_AT: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            cluster.send_json("PUT", path, current)
            return previous
        except ApiException as exc:
            if exc.status != 409 or attempt == CONFLICT_ATTEMPTS:
                raise


def _restore(cluster: Cluster, plan: Plan, replaced: list[tuple[Change, dict | None]]) -> dict[str, str]:
    """Put back what was replaced, newest first; returns each secret's resulting state."""
    states = {}
    for change, previous in reversed(replaced):
        namespace, name = change.resource.split(" ", 1)[1].split("/", 1)
        path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
        try:
            if previous is None:
                states[change.resource] = "created by this run and kept (it did not exist before)"
                continue
            current = cluster.get_json(path)
            current["data"] = previous["data"]
            annotations = {k: v for k, v in (current["metadata"].get("annotations") or {}).items() if k != REPLACED_AT}
            if previous[REPLACED_AT]:
                annotations[REPLACED_AT] = previous[REPLACED_AT]
            current["metadata"]["annotations"] = annotations
            cluster.send_json("PUT", path, current)
            states[change.resource] = "restored to its previous credentials"
            fixes.record(plan, dataclasses.replace(change, description="rollback: previous credentials put back"))
        except ApiException as exc:
            states[change.resource] = f"NEW credentials (restore failed: {exc.status} {exc.reason})"
        except ClusterError as exc:
            states[change.resource] = f"NEW credentials, or the old ones if the restore got through ({exc})"
    return states


def verify_reset(cluster: Cluster, host: str, repository: str, secrets=PLATFORM_SECRETS) -> pd.DataFrame:
    """Read every secret back and log in with what it holds: present, one fingerprint, pull and push granted.

    With no ``repository`` only presence and fingerprints are checked (no login).
    """
    rows = []
    for namespace, name in secrets:
        credential = read_docker_credential(cluster, namespace, name, host)
        granted: set[str] = set()
        detail = "no credentials for the registry in the secret"
        if credential is not None and not repository:
            detail = "present (no login asked)"
        elif credential is not None:
            try:
                check = registry_client(host, credential.username, credential.password).check_access(repository)
                granted, detail = set(check.granted), check.detail
            except ProviderError as exc:
                detail = str(exc)
        rows.append({"secret": f"Secret {namespace}/{name}", "present": credential is not None,
                     "fingerprint": fingerprint(credential.password) if credential else "",
                     "granted": ", ".join(sorted(granted)) or "nothing", "detail": detail,
                     "ok": credential is not None and (not repository or {"pull", "push"} <= granted)})
    frame = pd.DataFrame(rows, columns=["secret", "present", "fingerprint", "granted", "detail", "ok"])
    if frame["fingerprint"].nunique() > 1:
        frame["ok"] = False
    return frame


def plan_delete_failed_jobs(snap: Snapshot, namespace: str) -> Plan:
    """Delete the build Jobs whose condition Failed is True (their pods go with them), so builds can be retried."""
    changes = [delete_job_change(namespace, job["metadata"]["name"], "delete the failed Job and its pods")
               for job in failed_build_jobs(snap, namespace)]
    return Plan(fix=CLEANUP, target=namespace, changes=changes)


def plan_secret_update(snap: Snapshot, secret: str, credentials_file: str, host: str) -> list[Plan]:
    """The update of one secret (``namespace/name``) from a Docker config file; no plan when either is unset."""
    from nasiko_nb.credentials import credential_from_file
    from nasiko_nb.runbook import RunbookInputError

    if not secret or not credentials_file:
        return []
    if secret.count("/") != 1:
        raise RunbookInputError(f"secret must be written namespace/name, got {secret!r}")
    namespace, name = secret.split("/")
    return [plan_reset(snap, f"credentials for {host} from {credentials_file}",
                       lambda: credential_from_file(credentials_file, host), target=name, secrets=[(namespace, name)])]


def plan_restart_mounting(snap: Snapshot, target: str, secrets=PLATFORM_SECRETS) -> Plan:
    """Rolling restarts of the Deployments that mount (not merely pull with) the secrets, e.g. buildkitd."""
    wanted = set(secrets)
    changes = []
    for deployment in snap.deployments:
        meta = deployment["metadata"]
        volumes = deployment["spec"]["template"]["spec"].get("volumes") or []
        mounted = {(meta.get("namespace"), v["secret"].get("secretName")) for v in volumes if v.get("secret")}
        if mounted & wanted:
            changes.append(restart_change(meta["namespace"], meta["name"],
                                          "rolling restart so the new credentials are mounted"))
    return Plan(fix="restart-mounting-workloads", target=target, changes=changes)


def plan_recreate_registry(provider, existing: str, requested: str, repositories: pd.DataFrame) -> Plan:
    """The guide's option 2: delete the account's registry (losing every image) and create ``requested``.

    Confirm must name the registry that is deleted.
    """
    lost = f"{len(repositories)} repositories, {int(repositories['tags'].sum()) if len(repositories) else 0} tags"
    changes = [Change(verb="delete", path="/v2/registry", resource=f"DigitalOcean registry {existing}",
                      description=f"delete the registry and ALL its images ({lost})"),
               Change(verb="create", path="/v2/registry", resource=f"DigitalOcean registry {requested}",
                      description=f"create registry {requested} (names are unique across all DigitalOcean users)")]

    def execute(cluster: Cluster, plan: Plan, _progress: fixes.Progress) -> fixes.Outcome:
        deleted = False
        try:
            provider.delete_registry(existing)
            deleted = True
            fixes.record(plan, changes[0])
            provider.create_registry(requested)
            fixes.record(plan, changes[1])
        except ProviderError as exc:
            state = f"{existing} deleted, {requested} NOT created" if deleted else "nothing changed"
            raise FixFailed(f"registry recreation stopped: {exc} ({state})") from None
        return fixes.Outcome(plan, True, f"registry {existing} deleted, {requested} created; re-push the images")

    blocked = "" if provider is not None else "no DigitalOcean API access (DIGITALOCEAN_TOKEN)"
    return Plan(fix="recreate-registry", target=existing, changes=changes, executor=execute, blocked=blocked,
                notes=[f"WARNING: deleting {existing} deletes {lost}", "DigitalOcean allows ONE registry per account"])


def recreate_plans(facts, requested: str, repositories: pd.DataFrame) -> list[Plan]:
    """Option 2's plan, only when the account really has another registry than ``requested``."""
    if not requested or facts.registry in (None, "unknown", requested):
        return []
    return [plan_recreate_registry(facts.provider, facts.registry, requested, repositories)]


def plan_delete_images(provider, repository: str, tag: str = "") -> list[Plan]:
    """Delete one tag (target ``repository:tag``) or a whole repository (target ``repository``) at the provider."""
    if provider is None or not repository:
        return []
    target = f"{repository}:{tag}" if tag else repository
    change = Change(verb="delete", path=target, resource=f"{provider.name} {'tag' if tag else 'repository'} {target}",
                    description="delete the tag (the image stays while other tags point at it)" if tag
                    else "delete the repository and every tag in it")

    def execute(cluster: Cluster, plan: Plan, _progress: fixes.Progress) -> fixes.Outcome:
        try:
            if tag:
                provider.delete_tag(repository, tag)
            else:
                provider.delete_repository(repository)
        except ProviderError as exc:
            raise FixFailed(f"{change.resource} was not deleted: {exc}") from None
        return fixes.Outcome(plan, True, f"deleted {change.resource}", [fixes.record(plan, change)])

    return [Plan(fix="delete-images", target=target, changes=[change], executor=execute)]


ECR_REFRESH_CAUSES = {"registry/ecr-secret-stale", "registry/ecr-refresher-missing", "registry/ecr-refresher-failing"}


def plan_ecr_refresh(snap: Snapshot, provider, target: str, findings, refresh_now: bool = False,
                     secrets=PLATFORM_SECRETS) -> list[Plan]:
    """A fresh 12-hour ECR login into the platform secrets, in place: offered when a secret is stale or the
    refresher cannot be trusted (or ``refresh_now``); confirm names ``target``, the registry."""
    wanted = refresh_now or any(f.code in ECR_REFRESH_CAUSES for f in findings)
    if getattr(provider, "name", "") != "ecr" or not wanted:
        return []
    return [plan_reset(snap, f"a new 12-hour ECR login from get-authorization-token ({provider.region})",
                       lambda: provider.docker_credentials(), target=target, secrets=secrets)]
