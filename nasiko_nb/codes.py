"""The single catalog of cause codes.

Every finding the runbooks produce names one of these codes. Codes are stable identifiers (tests, the
triage notebook and incident indexes depend on them), so adding a cause is one `_entry(...)` call here,
and renaming one is a breaking change. This module depends on nothing else in the package.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

SEVERITIES = ("critical", "warning", "info", "ok")

GUIDE = "kubernetes-troubleshooting.md"


@dataclass(frozen=True)
class CodeEntry:
    """One cause: what it is, how bad, what to tell the user and where to go next."""

    code: str
    severity: str
    title: str
    message: str      # str.format template; its fields are supplied by the detector
    runbook: str      # the runbook that covers the cause
    anchor: str       # markdown anchor of the guide section that describes it
    advice: str       # one or two sentences from the guide
    next: str         # what to do next: a fix name or a runbook id

    @property
    def family(self) -> str:
        return self.code.split("/", 1)[0]

    @property
    def fields(self) -> tuple[str, ...]:
        """Names the message template needs, in order of first use."""
        names: list[str] = []
        for _, name, _, _ in string.Formatter().parse(self.message):
            if name and name not in names:
                names.append(name)
        return tuple(names)

    @property
    def guide_link(self) -> str:
        return f"{GUIDE}#{self.anchor}"


_CATALOG: dict[str, CodeEntry] = {}


def _entry(code: str, severity: str, title: str, message: str, runbook: str, anchor: str, advice: str,
           next: str | None = None) -> None:
    if code in _CATALOG:
        raise ValueError(f"cause code {code!r} is declared twice")
    if severity not in SEVERITIES:
        raise ValueError(f"cause code {code!r} has unknown severity {severity!r}")
    _CATALOG[code] = CodeEntry(code, severity, title, message, runbook, anchor, advice, next or runbook)


# --- registry/* : credentials and registry naming (DigitalOcean, ECR, Harbor) -------------------------
_entry("registry/name-mismatch", "critical", "Registry name mismatch",
       "The platform uses registry '{requested}' but the account's registry is '{actual}'.",
       "01-registry-name-mismatch", "problem-registry-name-mismatch-digitalocean",
       "DigitalOcean allows only ONE registry per account. Use your existing registry name "
       "(`doctl registry get`) in the bootstrap command.")
_entry("registry/secret-missing", "critical", "Registry secret missing",
       "Secret {secret} in namespace {namespace} does not exist.",
       "11-reset-registry-credentials", "pattern-1-reset-registry-credentials",
       "Generate fresh credentials with `doctl registry docker-config --read-write` and create the "
       "secret from them.")
_entry("registry/secret-wrong-registry-host", "critical", "Registry secret is for another host",
       "Secret {secret} has credentials for {hosts}, not for {registry}.",
       "11-reset-registry-credentials", "pattern-1-reset-registry-credentials",
       "Recreate the secret from credentials for the registry the images are pushed to.")
_entry("registry/credentials-inconsistent", "warning", "Registry secrets differ",
       "The platform's registry secrets hold {count} different credentials for {registry}.",
       "06-secret-management", "secret-management",
       "regcred (nasiko, buildkit) and agent-registry-credentials (nasiko-agents) must hold the same fresh "
       "read-write credentials; reset them together (pattern 1).")
_entry("registry/wrong-user", "critical", "Registry credentials belong to another user",
       "Secret {secret} holds credentials of user {user}, not of the registry owner {expected_user}.",
       "02-registry-401-unauthorized", "problem-buildkit-job-fails-with-401-unauthorized",
       "The secret contains credentials for a different user than the one authorized with `doctl`; "
       "regenerate them with the owner's account.")
_entry("registry/read-only-token", "critical", "Registry token is read-only",
       "Secret {secret} holds a read-only token: pushes to {registry} are refused.",
       "02-registry-401-unauthorized", "problem-buildkit-job-fails-with-401-unauthorized",
       "Always use the `--read-write` flag when generating registry tokens for BuildKit push operations.")
_entry("registry/expired-token", "critical", "Registry token expired",
       "The token in secret {secret} expired at {expired_at}.",
       "02-registry-401-unauthorized", "problem-buildkit-job-fails-with-401-unauthorized",
       "Regenerate the credentials with a long expiry (`--expiry-seconds 31536000`); ECR tokens expire "
       "after 12 hours and need the refresher CronJob.",
       next="11-reset-registry-credentials")
_entry("registry/invalid-token", "critical", "Registry token invalid",
       "The registry rejects the token in secret {secret} (revoked or malformed).",
       "02-registry-401-unauthorized", "problem-buildkit-job-fails-with-401-unauthorized",
       "The token was revoked or is malformed: regenerate the credentials and update the secrets.",
       next="11-reset-registry-credentials")
_entry("registry/repository-missing", "critical", "Registry repository missing",
       "Repository {repository} does not exist in registry {registry}.",
       "01-registry-name-mismatch", "problem-registry-name-mismatch-digitalocean",
       "Check which registry and repository the platform pushes to (`doctl registry repository list`, "
       "`aws ecr describe-repositories`).")

# --- image-pull/* : why a pod's container cannot pull its image ----------------------------------------
_PULL_RUNBOOK = "05-image-pull-backoff"
_entry("image-pull/tag-not-found", "critical", "Image tag not found",
       "Container {container} cannot start: image {image} (tag not found in {registry}).",
       _PULL_RUNBOOK, "2-wrong-image-nametag",
       "Verify the image exists in the registry (`doctl registry repository list-tags "
       "nasiko-images/<agent-name>`) and that the build pushed it.")
_entry("image-pull/repo-not-found", "critical", "Image repository not found",
       "Container {container} cannot start: repository of image {image} does not exist in {registry}.",
       _PULL_RUNBOOK, "2-wrong-image-nametag",
       "Verify the image name: the repository must exist in the registry the build pushed to.",
       next="01-registry-name-mismatch")
_entry("image-pull/unauthorized", "critical", "Registry rejected the credentials (401)",
       "Container {container} cannot pull {image}: {registry} rejects the credentials (unauthorized).",
       _PULL_RUNBOOK, "3-registry-credentials-issue",
       "The pull credentials are wrong, expired or revoked: follow the registry authentication steps "
       "and regenerate them.",
       next="02-registry-401-unauthorized")
_entry("image-pull/forbidden", "critical", "Registry denied access (403)",
       "Container {container} cannot pull {image}: {registry} denied access.",
       _PULL_RUNBOOK, "3-registry-credentials-issue",
       "The credentials are valid but may not read this repository (another user's registry or a "
       "token without scope): follow the registry authentication steps.",
       next="02-registry-401-unauthorized")
_entry("image-pull/missing-pull-secret", "critical", "No imagePullSecret",
       "Container {container} pulls {image} from private registry {registry} without an imagePullSecret.",
       _PULL_RUNBOOK, "1-missing-imagepullsecret",
       "Patch the deployment with `imagePullSecrets: [{name: agent-registry-credentials}]`.",
       next="add-image-pull-secret")
_entry("image-pull/pull-secret-not-found", "critical", "imagePullSecret does not exist",
       "Container {container} names imagePullSecret {secret}, which does not exist in {namespace}.",
       _PULL_RUNBOOK, "1-missing-imagepullsecret",
       "Create the secret from fresh registry credentials (`kubectl create secret ... "
       "--type=kubernetes.io/dockerconfigjson`).",
       next="11-reset-registry-credentials")
_entry("image-pull/pull-secret-wrong-registry", "critical", "imagePullSecret is for another registry",
       "Container {container} pulls from {registry} but secret {secret} only has credentials for {hosts}.",
       _PULL_RUNBOOK, "checking-secret-contents",
       "Decode the secret and check its `auths` host; recreate it from credentials for the image's registry.",
       next="06-secret-management")
_entry("image-pull/pull-secret-invalid", "critical", "imagePullSecret cannot be read",
       "Container {container} cannot use its imagePullSecret: {problem}.",
       _PULL_RUNBOOK, "checking-secret-contents",
       "Decode the secret (`.dockerconfigjson` | base64 -d) and recreate it from fresh credentials.",
       next="11-reset-registry-credentials")
_entry("image-pull/dns", "critical", "Registry host does not resolve",
       "Container {container} cannot pull {image}: host {registry} does not resolve.",
       _PULL_RUNBOOK, "2-wrong-image-nametag",
       "Check the registry host in the image name for typos and the cluster DNS resolution.")
_entry("image-pull/timeout", "critical", "Registry unreachable",
       "Container {container} cannot pull {image}: {registry} did not answer in time.",
       _PULL_RUNBOOK, "3-network-issues-during-build",
       "Verify outbound internet connectivity from the nodes and whether registry mirrors are needed.")
_entry("image-pull/rate-limited", "warning", "Registry rate limit",
       "Container {container} cannot pull {image}: {registry} rate-limits the pulls (429).",
       _PULL_RUNBOOK, "3-registry-credentials-issue",
       "Authenticate pulls with an imagePullSecret or use a registry mirror; anonymous Docker Hub pulls "
       "are rate limited.")
_entry("image-pull/invalid-name", "critical", "Invalid image reference",
       "Container {container} has an invalid image reference {image}.",
       _PULL_RUNBOOK, "2-wrong-image-nametag",
       "Image repository names must be lowercase and made of letters, digits, '.', '_', '-' and '/'; "
       "an agent name that breaks this fails the deployment.")
_entry("image-pull/tls-certificate", "critical", "Registry TLS certificate not trusted",
       "Container {container} cannot pull {image}: the certificate of {registry} is not trusted.",
       _PULL_RUNBOOK, "3-registry-credentials-issue",
       "A self-signed registry (Harbor) needs its CA trusted by the nodes' container runtime, or an "
       "insecure-registry entry.")
_entry("image-pull/never-pull", "critical", "Image not present and pull policy Never",
       "Container {container} has imagePullPolicy Never and image {image} is not on the node.",
       _PULL_RUNBOOK, "2-wrong-image-nametag",
       "Set imagePullPolicy to IfNotPresent, or load the image onto the node first.")
_entry("image-pull/unclassified", "warning", "Image pull failing, cause not recorded",
       "Container {container} cannot pull {image} from {registry}; the cause is not in status or events.",
       _PULL_RUNBOOK, "problem-agent-pod-cant-pull-image",
       "Run `kubectl describe pod` while the pull is retried to see the registry's answer.")

# --- buildkit/* and build/* : agent image builds --------------------------------------------------------
_entry("buildkit/daemon-down", "critical", "BuildKit daemon not running",
       "The BuildKit daemon at {address} refuses connections.",
       "08-buildkit-unreachable", "1-buildkit-service-not-running",
       "Check the buildkit pod and deployment (`kubectl get pods -n buildkit`) and redeploy BuildKit "
       "(`setup buildkit deploy`).")
_entry("buildkit/service-missing", "critical", "BuildKit Service missing",
       "Service {service} does not exist in namespace {namespace}.",
       "08-buildkit-unreachable", "1-service-not-exposed",
       "Ensure the buildkit service exists (`kubectl get svc buildkitd -n buildkit`); if missing, "
       "check the buildkit deployment.")
_entry("buildkit/no-endpoints", "critical", "BuildKit Service has no endpoints",
       "Service {service} in {namespace} has no ready endpoints.",
       "08-buildkit-unreachable", "1-buildkit-service-not-running",
       "No buildkitd pod is ready behind the service: check the buildkit pod and its events.")
_entry("buildkit/wrong-address", "critical", "Wrong BuildKit address",
       "Builds use BuildKit address {address}, which does not point at an existing Service.",
       "08-buildkit-unreachable", "2-wrong-service-address",
       "The address should be tcp://buildkitd.buildkit.svc.cluster.local:1234 (setting BUILDKIT_ADDRESS).")
_entry("buildkit/job-pending", "warning", "Build Job pending",
       "Build Job {job} has been pending for {age}.",
       "03-buildkit-job-pending", "problem-buildkit-job-stays-in-pending-state",
       "Check the job's pod status and events (`kubectl describe pod`): BuildKit down, resources, or "
       "an init container that cannot start.")
_entry("build/missing-dockerfile", "critical", "Dockerfile missing",
       "Build Job {job} failed: the agent has no Dockerfile.",
       "04-build-job-failed", "1-missing-dockerfile",
       "Ensure the agent repository has a `Dockerfile` in the root and the init container fetched it.")
_entry("build/copy-source-missing", "critical", "COPY source missing",
       "Build Job {job} failed: COPY/ADD source {source} is not in the build context.",
       "04-build-job-failed", "problem-build-job-fails-during-image-build",
       "Every COPY/ADD source must exist in the uploaded agent files; check `.dockerignore` and the upload.")
_entry("build/context-too-large", "critical", "Build context too large",
       "Build Job {job} failed: the build context is too large.",
       "04-build-job-failed", "2-build-context-too-large",
       "Add a `.dockerignore` file to exclude unnecessary files and check for large files in the repository.")
_entry("build/network-timeout", "critical", "Network failure during build",
       "Build Job {job} failed fetching a dependency over the network.",
       "04-build-job-failed", "3-network-issues-during-build",
       "Check cluster DNS resolution and verify outbound internet connectivity.")
_entry("build/push-unauthorized", "critical", "Image push unauthorized",
       "Build Job {job} could not push to {registry}: 401 Unauthorized.",
       "04-build-job-failed", "problem-buildkit-job-fails-with-401-unauthorized",
       "Regenerate the credentials with `--read-write` and update the secrets BuildKit uses.",
       next="02-registry-401-unauthorized")
_entry("build/init-download-failed", "critical", "Agent files download failed",
       "Init container {container} of build Job {job} could not download the agent files.",
       "04-build-job-failed", "3-imagepullbackoff-on-init-container",
       "Check the init container's logs (`kubectl logs <pod> -c download-agent`); a backend restart "
       "loses uploaded agent files, so re-upload the agent.")

# --- scheduling/* : pods that cannot be placed ----------------------------------------------------------
_SCHED = "09-cluster-out-of-resources"
_entry("scheduling/insufficient-cpu", "critical", "Not enough CPU",
       "Pod {pod} cannot be scheduled: no node has enough free CPU.",
       _SCHED, "problem-cluster-out-of-resources",
       "Scale up the cluster nodes or reduce the resource requests.")
_entry("scheduling/insufficient-memory", "critical", "Not enough memory",
       "Pod {pod} cannot be scheduled: no node has enough free memory.",
       _SCHED, "problem-cluster-out-of-resources",
       "Scale up the cluster nodes or reduce the resource requests.")
_entry("scheduling/untolerated-taint", "critical", "Untolerated node taint",
       "Pod {pod} cannot be scheduled: nodes have taints it does not tolerate ({taint}).",
       _SCHED, "2-resource-constraints",
       "Add nodes without the taint or give the pod a matching toleration.")
_entry("scheduling/too-many-pods", "critical", "Node pod limit reached",
       "Pod {pod} cannot be scheduled: the nodes run their maximum number of pods.",
       _SCHED, "1-scale-up-cluster",
       "Scale up the cluster or clean up finished and evicted pods.")
_entry("scheduling/node-unschedulable", "critical", "Nodes unschedulable",
       "Pod {pod} cannot be scheduled: nodes are cordoned (unschedulable).",
       _SCHED, "2-resource-constraints",
       "Uncordon the nodes (`kubectl uncordon`) or add schedulable nodes.")
_entry("scheduling/node-selector-mismatch", "critical", "No node matches selector or affinity",
       "Pod {pod} cannot be scheduled: no node matches its node selector or affinity.",
       _SCHED, "2-resource-constraints",
       "Fix the pod's nodeSelector/affinity or label a node to match.")
_entry("scheduling/unbound-pvc", "critical", "PersistentVolumeClaim not bound",
       "Pod {pod} cannot be scheduled: PersistentVolumeClaim {claim} is not bound.",
       _SCHED, "2-resource-constraints",
       "Check the claim's storage class and provisioner (`kubectl describe pvc`).")

# --- routing/* : agent chat through Kong -----------------------------------------------------------------
_ROUTE = "07-agent-chat-404"
_entry("routing/no-route", "critical", "No Kong route for the agent",
       "Kong has no route for agent Service {service}.",
       _ROUTE, "step-2-verify-kong-routes",
       "Check the service registry logs (`kubectl logs -n nasiko -l app=k8s-service-registry`) for the "
       "'Discovered agent service' line and trigger a sync.")
_entry("routing/route-path-mismatch", "critical", "Kong route path differs from the frontend's URL",
       "Agent {agent} is routed at {route_path} but the frontend calls {expected_path}.",
       _ROUTE, "problem-agent-chat-returns-404-not-found",
       "Kong routes use the full deployment name while the frontend uses the agent name; route both "
       "paths or update the service registry.")
_entry("routing/missing-agent-name-label", "warning", "Agent Service lacks the agent-name label",
       "Service {service} has no agent-name label.",
       _ROUTE, "step-3-check-service-labels",
       "The service should carry `agent-name: <agent-name>` (the agent name without timestamp).")
_entry("routing/no-endpoints", "critical", "Agent Service has no endpoints",
       "Service {service} has no ready endpoints: the agent pods are not running or not ready.",
       _ROUTE, "step-1-check-agent-deployment-status",
       "Check the agent deployment and its pods (`kubectl get deployments,pods -n nasiko-agents`).")
_entry("routing/skipped-name", "critical", "Agent name skipped by the service registry",
       "Service {service} is never routed: its name contains '{word}', which the registry skips.",
       _ROUTE, "step-2-verify-kong-routes",
       "Rename the agent so its name contains none of postgres, redis, mongodb, mysql, kafka, etcd, headless.")
_entry("routing/stale-deployments", "warning", "Several deployments of one agent",
       "Agent {agent} has {count} Deployments; the newest is {newest}.",
       _ROUTE, "step-2-clean-up-old-agent-deployment",
       "Delete the old agent Deployment and Service (and the agent's MongoDB records), then re-upload the agent.")
_entry("routing/agent-not-deployed", "critical", "No Service for the agent",
       "Agent {agent} has no Service in {namespace}: nothing can be routed to it.",
       _ROUTE, "step-1-check-agent-deployment-status",
       "Check the build and deploy of the agent (`kubectl get jobs,deployments,services -n nasiko-agents`).")
_entry("routing/kong-unreachable", "warning", "Kong admin API unreachable",
       "The Kong admin API at {url} cannot be read: {detail}.",
       _ROUTE, "step-2-verify-kong-routes",
       "Reach it from inside the cluster (http://kong-gateway.nasiko:8001) or through "
       "`kubectl port-forward -n nasiko svc/kong-gateway 8001:8001`.")

# --- resources/* : cluster capacity and leftovers ---------------------------------------------------------
_entry("resources/evicted-pods", "warning", "Evicted pods",
       "{count} evicted pods in {namespace}.",
       _SCHED, "3-clean-up-unused-resources",
       "Delete evicted pods and check node memory/disk pressure.")
_entry("resources/failed-jobs", "warning", "Failed Jobs",
       "{count} failed Jobs in {namespace}.",
       _SCHED, "3-clean-up-unused-resources",
       "Delete failed jobs (`kubectl delete jobs --field-selector status.successful=0`) after reading their logs.")
_entry("resources/finished-jobs-without-ttl", "info", "Finished Jobs kept forever",
       "{count} finished Jobs in {namespace} have no ttlSecondsAfterFinished.",
       _SCHED, "3-clean-up-unused-resources",
       "Delete completed jobs or set ttlSecondsAfterFinished so they are cleaned up.")
_entry("resources/node-pressure", "warning", "Node under pressure",
       "Node {node} reports {condition}.",
       _SCHED, "problem-cluster-out-of-resources",
       "Check node resources (`kubectl describe nodes`) and scale up or reduce requests.")
_entry("resources/capacity-low", "warning", "Cluster nearly full",
       "Pods request {percent}% of the {resource} allocatable on {nodes} schedulable node(s).",
       _SCHED, "problem-cluster-out-of-resources",
       "New pods will wait for room: clean up, lower requests, or add nodes to the node pool.")
_entry("resources/orphaned-configmaps", "info", "Orphaned agent ConfigMaps",
       "{count} agent-files ConfigMaps in {namespace} belong to no running build.",
       _SCHED, "3-clean-up-unused-resources",
       "Finished build Jobs leave ConfigMaps agent-files-<agent>-<ts> behind; delete them.")

_entry("registry/ecr-refresher-missing", "critical", "ECR credential refresher missing",
       "CronJob {cronjob} in {namespace} does not exist: ECR tokens in the registry secrets expire after 12 h.",
       "15-aws-ecr", "aws-ecr",
       "Use the ECR credential refresher CronJob (deployed by the setup script) to refresh tokens before expiry.")
_entry("registry/ecr-refresher-failing", "critical", "ECR credential refresher failing",
       "CronJob {cronjob} in {namespace} is not refreshing: {detail}.",
       "15-aws-ecr", "aws-ecr",
       "Check the refresher's last Job log (`kubectl logs -n default job/<job>`) and its ServiceAccount's AWS access.")
_entry("registry/ecr-secret-stale", "critical", "ECR secret not refreshed",
       "Secret {secret} in {namespace} holds an ECR token from {age} ago; ECR tokens expire after 12 h.",
       "15-aws-ecr", "aws-ecr",
       "The refresher recreates only regcred; extend it to agent-registry-credentials or refresh it now.")

# --- provider/* : the registry provider's own API (DigitalOcean, AWS, a Registry v2 endpoint) -------------
_entry("provider/unauthorized", "critical", "Provider API rejects the credentials",
       "{provider} rejected the API credentials: {detail}.",
       "11-reset-registry-credentials", "provider-specific-notes",
       "Check the API token (`DIGITALOCEAN_TOKEN`, or the AWS credential chain) is valid and not expired.")
_entry("provider/forbidden", "critical", "Provider API refuses the action",
       "{provider} refused {action}: {detail}.",
       "11-reset-registry-credentials", "provider-specific-notes",
       "The API token lacks the scope for this action; use a token with registry read/write scope.")
_entry("provider/not-found", "warning", "Provider object not found",
       "{provider} has no {what}.",
       "14-digitalocean-registry", "provider-specific-notes",
       "Check the registry and repository names (`doctl registry get`, `doctl registry repository list`).")
_entry("provider/rate-limited", "warning", "Provider API rate limit",
       "{provider} answered 429 Too Many Requests: {detail}.",
       "14-digitalocean-registry", "provider-specific-notes",
       "Wait for the rate-limit window to pass and run again.")
_entry("provider/unreachable", "critical", "Provider API unreachable",
       "{provider} at {endpoint} cannot be reached: {detail}.",
       "14-digitalocean-registry", "provider-specific-notes",
       "Check network access to the provider API from where the runbook runs.")
_entry("provider/unavailable", "warning", "Provider API error",
       "{provider} answered a server error: {detail}.",
       "14-digitalocean-registry", "provider-specific-notes",
       "A provider-side problem: retry later or check the provider's status page.")
_entry("provider/error", "warning", "Provider API error",
       "{provider} answered an error: {detail}.",
       "14-digitalocean-registry", "provider-specific-notes",
       "Read the provider's message; run the runbook again once it is resolved.")

# --- cluster/* : reaching the cluster at all -------------------------------------------------------------
_entry("cluster/unreachable", "critical", "Cluster unreachable",
       "Context {context}: {error}.",
       "10-cluster-health", "cluster-health",
       "Check the kubeconfig and context (`kubectl cluster-info`).")
_entry("cluster/unauthorized", "critical", "Cluster credentials refused",
       "Context {context}: {error}.",
       "10-cluster-health", "cluster-health",
       "Refresh the kubeconfig's credentials (`doctl kubernetes cluster kubeconfig save <cluster>` or "
       "`aws eks update-kubeconfig --name <cluster>`) and check `kubectl auth whoami`.")
_entry("cluster/forbidden", "warning", "Missing permission",
       "The runbook needs {verb} on {resource} in {namespace}.",
       "10-cluster-health", "cluster-health",
       "Grant the runbook's identity read access (RBAC) or run it with a kubeconfig that has it.")
_entry("cluster/api-error", "warning", "API error while reading",
       "The API server answered an error to {verb} {resource} in {namespace}; that part of the cluster is unseen.",
       "10-cluster-health", "cluster-health",
       "Check the API server's health (`kubectl get --raw /readyz?verbose`) and re-run the runbook.")
_entry("cluster/namespace-missing", "critical", "Namespace missing",
       "Namespace {namespace} does not exist.",
       "10-cluster-health", "cluster-health",
       "Check all resources the platform needs (`kubectl get all -n nasiko`); re-run the bootstrap.")


def lookup(code: str) -> CodeEntry:
    """The catalog entry of `code`; KeyError naming the family's known codes otherwise."""
    try:
        return _CATALOG[code]
    except KeyError:
        family = code.split("/", 1)[0]
        known = [c for c in _CATALOG if c.startswith(family + "/")] or sorted({c.split("/")[0] for c in _CATALOG})
        raise KeyError(f"unknown cause code {code!r}; known: {', '.join(known)}") from None


def all_codes() -> list[str]:
    return list(_CATALOG)


def make_finding(code: str, resource: str, evidence: str, /, **fields):
    """A Finding for `code` with its message template filled from `fields`.

    `next_step` overrides the catalog's next step (e.g. a more specific fix name).
    """
    from nasiko_nb.findings import Finding

    entry = lookup(code)
    next_step = fields.pop("next_step", None) or entry.next
    missing = [name for name in entry.fields if name not in fields]
    if missing:
        raise ValueError(f"message of {code} needs field(s) {', '.join(missing)}")
    return Finding(code=code, severity=entry.severity, resource=resource,
                   message=entry.message.format(**fields), evidence=evidence, next=next_step)
