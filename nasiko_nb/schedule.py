"""``nasiko-nb schedule``: run a runbook inside the cluster as a CronJob, with least-privilege RBAC.

Runbooks must run where the clusters are. This module writes (or, with ``--apply``, creates) what that
takes: a Namespace, one ServiceAccount per scheduled runbook, its RBAC and the CronJob. The pod reads
the cluster through in-cluster configuration (its ServiceAccount token), so no kubeconfig travels.

Permissions follow what the code sends, so a read-only runbook gets no verb it does not use:

* every runbook: a read ClusterRole with ``list`` on what a snapshot lists by default
  (``snapshot.NAMESPACED_KINDS`` without Secrets, ``snapshot.DEFAULT_CLUSTER_KINDS``) and ``get`` on
  ``pods/log``; ``list`` on Secrets only in a Role of each platform namespace (the triage summarises
  the registry Secrets there);
* a mutating runbook only: its fixes' writes and the objects they read back by name, in a Role of each
  platform namespace, and a ClusterRole with the cluster-wide reads only those runbooks take (node usage).

The archive's credentials come from a Secret the operator creates (the command prints how); nothing
secret is ever written to the manifests or the container's arguments.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from collections import defaultdict
from importlib import metadata
from pathlib import Path

import yaml
from kubernetes.client.rest import ApiException

from nasiko_nb import notify, records
from nasiko_nb.cluster import ApiFailure, Cluster, ClusterError, connect
from nasiko_nb.redact import scrub
from nasiko_nb.snapshot import CLUSTER_KINDS, DEFAULT_CLUSTER_KINDS, NAMESPACED_KINDS, PLATFORM_NAMESPACES

DEFAULT_NAMESPACE = "nasiko-runbooks"
DEFAULT_CREDENTIALS_SECRET = "nasiko-runbooks-archive"
#: Keys of the credentials Secret put in the pod's environment: (key, optional). boto3 reads the AWS ones.
#: Keys of the credentials Secret (name, optional): the archive's, and the webhook a run notifies (a credential too).
ARCHIVE_KEYS = (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False), ("AWS_DEFAULT_REGION", True),
                ("NASIKO_S3_ENDPOINT_URL", True), (notify.URL_VARIABLE, True))
#: The Dockerfile's numeric USER: the kubelet can only verify runAsNonRoot for a numeric user.
RUN_AS_USER = 10001
SCRATCH = "/tmp"                   # the only writable path: HOME, Jupyter's runtime files, the record before upload
STARTING_DEADLINE_S = 300          # a run missed by more than this (controller down) is skipped, not run late
ACTIVE_DEADLINE_S = 1800           # longer than any runbook's own waits (timeout_s, wait_s up to 300 s)
HISTORY_LIMIT = 3
RESOURCES = {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}

SECRET_RULES = ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]},)
#: What the mutating runbooks' fixes send (nasiko_nb.fixes, rollouts), verb by verb, and the objects they read
#: back by name. No pod creation: in a pod, 08's connectivity probe connects directly (probes.running_in_cluster).
WRITE_RULES = (
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "deletecollection"]},   # evicted and failed pods
    {"apiGroups": [""], "resources": ["services"], "verbs": ["delete", "patch"]},          # agent label, stale agents
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "update"]},   # registry credentials reset
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"]},                 # orphaned agent files
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete", "get", "patch"]},  # restart, undo
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},       # buildkitd replicas
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["delete", "deletecollection"]},  # failed and stuck Jobs
)
#: Parameters that name a kubeconfig: meaningless in the pod, which uses its ServiceAccount.
LOCAL_PARAMETERS = ("kubeconfig", "context")

_PLURALS = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
            "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
            "CronJob": "cronjobs"}
_RBAC = "rbac.authorization.k8s.io/v1"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?$")

# --- cron ----------------------------------------------------------------------------------------------------

_MONTHS = {name: number for number, name in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_DAYS = {name: number for number, name in enumerate("SUN MON TUE WED THU FRI SAT".split())}
#: (name, lowest, highest, names) of the five fields, as the CronJob controller's parser (robfig/cron) has them.
_CRON_FIELDS = (("minute", 0, 59, None), ("hour", 0, 23, None), ("day-of-month", 1, 31, None),
                ("month", 1, 12, _MONTHS), ("day-of-week", 0, 6, _DAYS))
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def validate_cron(expression: str) -> str:
    """The schedule with its whitespace normalised; a ValueError naming the first problem otherwise.

    Checked here because the API server accepts a CronJob whose schedule the controller then cannot
    parse: the runbook would silently never run.
    """
    text = " ".join(str(expression).split())

    def invalid(reason: str) -> ValueError:
        return ValueError(f"invalid cron schedule {expression!r}: {reason}")

    if not text:
        raise invalid("it is empty; give five fields like '*/15 * * * *' or a macro like @hourly")
    if re.match(r"^(CRON_)?TZ=", text):
        raise invalid("a time zone cannot be part of the schedule (Kubernetes takes it in spec.timeZone)")
    if text.startswith("@"):
        if text in CRON_MACROS:
            return text
        raise invalid(f"unknown macro; known: {', '.join(CRON_MACROS)}")
    fields = text.split(" ")
    if len(fields) != len(_CRON_FIELDS):
        raise invalid(f"it has {len(fields)} field(s), a schedule has 5 (minute hour day-of-month month day-of-week)")
    for field, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        problem = _cron_field_problem(field, name, low, high, names)
        if problem:
            raise invalid(problem)
    return text


def _cron_field_problem(field: str, name: str, low: int, high: int, names: dict | None) -> str:
    """Why one field is not valid ("" when it is): lists of `*`, values, ranges, each with an optional /step."""
    for item in field.split(","):
        if not item:
            return f"the {name} field {field!r} has an empty list item"
        span, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) > 0):
            return f"the step {step!r} in the {name} field must be a positive number"
        if span in ("*", "?"):
            continue
        first, dash, last = span.partition("-")
        values = []
        for text in (first, last) if dash else (first,):
            value = _cron_value(text, names)
            if value is None:
                hint = f" or a name like {next(iter(names))}" if names else ""
                return f"{text!r} in the {name} field is not a number{hint}"
            if not low <= value <= high:
                return f"{text} in the {name} field is out of range {low}-{high}"
            values.append(value)
        if len(values) == 2 and values[0] > values[1]:
            return f"the range {span!r} in the {name} field runs backwards"
    return ""


def _cron_value(text: str, names: dict | None) -> int | None:
    if text.isdigit():
        return int(text)
    return (names or {}).get(text.upper())


# --- RBAC ----------------------------------------------------------------------------------------------------

def _api_group(path: str) -> str:
    """The API group of a path: '/apis/apps/v1/...' -> 'apps', '/api/v1/...' -> '' (core)."""
    parts = path.strip("/").split("/")
    return parts[1] if parts[0] == "apis" else ""


def _list_rules(paths: list[str]) -> list[dict]:
    """``list`` on each collection path, one rule per API group."""
    by_group: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        by_group[_api_group(path)].add(path.rstrip("/").rsplit("/", 1)[1])
    return [{"apiGroups": [group], "resources": sorted(plurals), "verbs": ["list"]}
            for group, plurals in sorted(by_group.items())]


def read_rules() -> list[dict]:
    """What every runbook reads, derived from the snapshot's defaults: a kind added there is granted here."""
    paths = [f"{prefix}/{plural}" for plural, (prefix, _kind, _version) in NAMESPACED_KINDS.items()
             if plural != "secrets"]
    paths += [CLUSTER_KINDS[name][0] for name in DEFAULT_CLUSTER_KINDS]
    return [*_list_rules(paths), {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]


def mutating_read_rules() -> list[dict]:
    """The cluster-wide lists only mutating runbooks take: the snapshot's optional kinds (node usage in 09)."""
    return _list_rules([path for name, (path, _kind, _version) in CLUSTER_KINDS.items()
                        if name not in DEFAULT_CLUSTER_KINDS])


# --- manifests -----------------------------------------------------------------------------------------------

def default_image() -> str:
    """The image the Dockerfile builds, tagged with this package's version (push it and pass --image)."""
    try:
        return f"nasiko-nb:{metadata.version('nasiko-nb')}"
    except metadata.PackageNotFoundError:
        return "nasiko-nb:latest"


def _labels(runbook: str | None = None) -> dict:
    labels = {"app.kubernetes.io/name": "nasiko-nb", "app.kubernetes.io/managed-by": "nasiko-nb"}
    if runbook:
        labels["nasiko.io/runbook"] = runbook
    return labels


def _meta(name: str, namespace: str | None = None, runbook: str | None = None) -> dict:
    labels = _labels(runbook)
    return {"name": name, **({"namespace": namespace} if namespace else {}), "labels": labels}


def check_parameters(info: records.RunbookInfo, parameters: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ``-p`` pairs, checked like ``nasiko-nb run`` checks them and free of secrets (they are visible args)."""
    for name, value in parameters:
        if name in LOCAL_PARAMETERS:
            raise ValueError(f"parameter {name!r} does not apply in the cluster: the pod uses its ServiceAccount")
        if scrub(value) != value:
            raise ValueError(f"the value of parameter {name!r} looks like a credential: container arguments are "
                             f"readable by anyone who can read the CronJob")
    records.coerce_parameters(info, dict(parameters))
    return [(name, str(value)) for name, value in parameters]


def check_output(output: str) -> str:
    """Only an S3 archive outlives the pod: a local folder would vanish with its emptyDir."""
    if scrub(output) != output:
        raise ValueError("--output must not carry credentials: they come from the credentials Secret")
    if not _S3_URL.match(output):
        raise ValueError(f"--output must be s3://bucket/prefix (got {output!r}): records written inside the pod "
                         f"are lost when it ends")
    return output


def check_name(what: str, name: str, pattern: re.Pattern = _DNS_LABEL) -> str:
    if not pattern.match(name):
        raise ValueError(f"{what} {name!r} is not a valid Kubernetes name (lower-case letters, digits and '-')")
    return name


def container_command(info: records.RunbookInfo, output: str, parameters: list[tuple[str, str]],
                      notify_on: str = "critical") -> list[str]:
    """What the pod runs: the same CLI as on a laptop, with no kubeconfig (in-cluster configuration); it notifies
    when the credentials Secret holds a webhook."""
    command = ["nasiko-nb", "run", info.id, "--output", output, "--notify-on", notify_on]
    for name, value in parameters:
        command += ["-p", name, value]
    return command


def names(info: records.RunbookInfo, namespace: str) -> dict[str, str]:
    """Object names: per runbook where a binding must not leak to another runbook, shared otherwise."""
    return {"service_account": f"runbook-{info.id}", "cronjob": f"runbook-{info.id}",
            "read_role": f"{namespace}-read", "read_binding": f"{namespace}-{info.id}-read",
            "secrets_role": f"{namespace}-secrets-read", "secrets_binding": f"{namespace}-{info.id}-secrets-read",
            "write_role": f"{namespace}-write", "write_binding": f"{namespace}-{info.id}-write",
            "mutating_read_role": f"{namespace}-mutating-read",
            "mutating_read_binding": f"{namespace}-{info.id}-mutating-read"}


def build_manifests(info: records.RunbookInfo, schedule: str, output: str, *, namespace: str = DEFAULT_NAMESPACE,
                    image: str | None = None, parameters: list[tuple[str, str]] = (),
                    credentials_secret: str = DEFAULT_CREDENTIALS_SECRET, notify_on: str = "critical") -> list[dict]:
    """Every object, in the order they must be created; all input is checked before anything is built."""
    schedule = validate_cron(schedule)
    output = check_output(output)
    check_name("namespace", namespace)
    check_name("credentials secret", credentials_secret, _DNS_SUBDOMAIN)
    image = image or default_image()
    if not image.strip() or any(c.isspace() for c in image):
        raise ValueError(f"--image {image!r} is not an image reference")
    parameters = check_parameters(info, list(parameters))
    n = names(info, namespace)
    subject = [{"kind": "ServiceAccount", "name": n["service_account"], "namespace": namespace}]

    def role_ref(kind: str, name: str) -> dict:
        return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}

    def cluster_grant(role: str, binding: str, rules: list[dict]) -> list[dict]:
        return [{"apiVersion": _RBAC, "kind": "ClusterRole", "metadata": _meta(n[role]), "rules": rules},
                {"apiVersion": _RBAC, "kind": "ClusterRoleBinding", "metadata": _meta(n[binding], runbook=info.id),
                 "subjects": copy.deepcopy(subject), "roleRef": role_ref("ClusterRole", n[role])}]

    def platform_grant(role: str, binding: str, rules) -> list[dict]:
        return [obj for platform in PLATFORM_NAMESPACES for obj in (
            {"apiVersion": _RBAC, "kind": "Role", "metadata": _meta(n[role], platform),
             "rules": copy.deepcopy(list(rules))},
            {"apiVersion": _RBAC, "kind": "RoleBinding", "metadata": _meta(n[binding], platform, info.id),
             "subjects": copy.deepcopy(subject), "roleRef": role_ref("Role", n[role])})]

    manifests = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(namespace)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(n["service_account"], namespace, info.id),
         "automountServiceAccountToken": True},
        *cluster_grant("read_role", "read_binding", read_rules()),
        *platform_grant("secrets_role", "secrets_binding", SECRET_RULES),
    ]
    if info.side_effects == "mutating":
        manifests += cluster_grant("mutating_read_role", "mutating_read_binding", mutating_read_rules())
        manifests += platform_grant("write_role", "write_binding", WRITE_RULES)
    if notify_on not in notify.THRESHOLDS:
        raise ValueError(f"--notify-on must be one of {', '.join(notify.THRESHOLDS)}, got {notify_on!r}")
    manifests.append(cronjob(info, schedule, output, namespace=namespace, image=image, parameters=parameters,
                             credentials_secret=credentials_secret, notify_on=notify_on))
    return manifests


def cronjob(info: records.RunbookInfo, schedule: str, output: str, *, namespace: str, image: str,
            parameters: list[tuple[str, str]], credentials_secret: str, notify_on: str = "critical") -> dict:
    """The CronJob: one run at a time, no retry (a retry would archive a second record), locked-down pod."""
    n = names(info, namespace)
    env = [{"name": "HOME", "value": SCRATCH}]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": credentials_secret, "key": key,
                                                          **({"optional": True} if optional else {})}}}
            for key, optional in ARCHIVE_KEYS]
    container = {
        "name": "runbook", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": container_command(info, output, parameters, notify_on), "workingDir": SCRATCH, "env": env,
        "resources": copy.deepcopy(RESOURCES),
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
    }
    pod = {
        "metadata": {"labels": _labels(info.id)},
        "spec": {"serviceAccountName": n["service_account"], "automountServiceAccountToken": True,
                 "restartPolicy": "Never", "enableServiceLinks": False,
                 "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
                                     "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [container],
                 "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "512Mi"}}]},
    }
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _meta(n["cronjob"], namespace, info.id),
            "spec": {"schedule": schedule, "concurrencyPolicy": "Forbid",
                     "startingDeadlineSeconds": STARTING_DEADLINE_S,
                     "successfulJobsHistoryLimit": HISTORY_LIMIT, "failedJobsHistoryLimit": HISTORY_LIMIT,
                     "jobTemplate": {"metadata": {"labels": _labels(info.id)},
                                     "spec": {"backoffLimit": 0, "activeDeadlineSeconds": ACTIVE_DEADLINE_S,
                                              "template": pod}}}}


def credentials_hint(namespace: str, credentials_secret: str, context: str = "") -> str:
    """How to create the credentials Secret: values go in a file, never on a command line or in a manifest."""
    required = ", ".join(key for key, optional in ARCHIVE_KEYS if not optional)
    optional = ", ".join(key for key, optional in ARCHIVE_KEYS if optional)
    where = f"--context {context} " if context else ""
    return (f"create the archive credentials before the first run (a file of KEY=value lines: {required}; "
            f"optional: {optional}):\n"
            f"  kubectl {where}-n {namespace} create secret generic {credentials_secret} --from-env-file=archive.env")


def dump(manifests: list[dict], header: str = "") -> str:
    """One multi-document YAML file, ``kubectl apply -f`` ready; ``header`` becomes leading comments."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True)


# --- applying ------------------------------------------------------------------------------------------------

def collection_path(obj: dict) -> str:
    api_version, plural = obj["apiVersion"], _PLURALS[obj["kind"]]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    namespace = obj["metadata"].get("namespace")
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def describe(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta['namespace'] + '/' if meta.get('namespace') else ''}{meta['name']}"


def require_namespaces(cluster: Cluster, namespaces=PLATFORM_NAMESPACES) -> None:
    """The Roles go in the platform namespaces: refuse before creating anything when one is missing."""
    for namespace in namespaces:
        try:
            cluster.get_json(f"/api/v1/namespaces/{namespace}")
        except ApiException as exc:
            failure = ApiFailure.from_exception(exc)
            if failure.status == 404:
                raise ValueError(f"namespace {namespace!r} does not exist in context {cluster.context!r}: the "
                                 f"platform's Roles go there, is Nasiko installed?") from None
            raise ValueError(f"cannot read namespace {namespace!r}: {failure.status} {failure.reason} "
                             f"{failure.message}".strip()) from None


def apply(cluster: Cluster, manifests: list[dict]) -> list[str]:
    """Create each object, or replace it when it exists, so re-running converges; one line per object."""
    done: list[str] = []
    for obj in manifests:
        path, what = collection_path(obj), describe(obj)
        try:
            try:
                cluster.send_json("POST", path, obj)
                done.append(f"created {what}")
            except ApiException as exc:
                if exc.status != 409:
                    raise
                item = f"{path}/{obj['metadata']['name']}"
                current = cluster.get_json(item)
                body = copy.deepcopy(obj)
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                cluster.send_json("PUT", item, body)
                done.append(f"replaced {what}")
        except ApiException as exc:
            failure = ApiFailure.from_exception(exc)
            raise ValueError(f"could not apply {what} ({failure.status} {failure.reason}: {failure.message}) after "
                             f"{len(done)} object(s); applying again is safe") from None
        except ClusterError as exc:
            raise ValueError(f"could not apply {what} after {len(done)} object(s): {exc}") from None
    return done


# --- command line --------------------------------------------------------------------------------------------

def register(subparsers) -> argparse.ArgumentParser:
    """Add ``schedule`` to the CLI's sub-commands; its handler returns an exit code, bad input raises ValueError."""
    parser = subparsers.add_parser(
        "schedule", help="run a runbook in the cluster on a schedule (CronJob manifests, or --apply)",
        description="Write the manifests that run RUNBOOK as a Kubernetes CronJob (Namespace, ServiceAccount, "
                    "least-privilege RBAC, CronJob) to stdout or --write DIR, or create them with --apply.")
    parser.add_argument("runbook")
    parser.add_argument("--cron", required=True, metavar="SCHEDULE",
                        help='five-field cron schedule such as "*/15 * * * *", or @hourly, @daily, ...')
    parser.add_argument("--output", required=True, metavar="s3://BUCKET/PREFIX", help="where the pod archives records")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="namespace of the CronJob (created)")
    parser.add_argument("--image", default=default_image(), help="image built from the repository's Dockerfile")
    parser.add_argument("--credentials-secret", default=DEFAULT_CREDENTIALS_SECRET,
                        help="Secret holding the archive's credentials (not created: the command says how)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--notify-on", choices=notify.THRESHOLDS, default="critical",
                        help=f"notify the webhook in the credentials Secret's {notify.URL_VARIABLE} (if set) when "
                             f"findings reach this severity (default: %(default)s)")
    parser.add_argument("--kubeconfig", default="", help="for --apply (and to check --context)")
    parser.add_argument("--context", default="")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--write", type=Path, metavar="DIR", help="write <cronjob>.yaml into DIR instead of stdout")
    target.add_argument("--apply", action="store_true", help="create or replace the objects in the cluster")
    parser.set_defaults(handler=cmd_schedule)
    return parser


def cmd_schedule(args) -> int:
    info = records.resolve(args.runbook)
    manifests = build_manifests(info, args.cron, args.output, namespace=args.namespace, image=args.image,
                                parameters=[tuple(p) for p in args.parameter],
                                credentials_secret=args.credentials_secret, notify_on=args.notify_on)
    hint = credentials_hint(args.namespace, args.credentials_secret, args.context)
    cluster = None
    if args.apply or args.context or args.kubeconfig:   # an unknown context fails here, before anything is written
        try:
            cluster = connect(args.kubeconfig or None, args.context or None, check=args.apply)
        except ClusterError as exc:
            raise ValueError(str(exc)) from None
    if args.apply:
        require_namespaces(cluster)
        for line in apply(cluster, manifests):
            print(line)
        print(hint)
        return 0
    schedule = manifests[-1]["spec"]["schedule"]
    text = dump(manifests, header=f"nasiko-nb schedule {info.id} --cron {schedule!r}\n{hint}")
    if args.write is None:
        sys.stdout.write(text)
        return 0
    args.write.mkdir(parents=True, exist_ok=True)
    path = args.write / f"{names(info, args.namespace)['cronjob']}.yaml"
    partial = path.with_name(path.name + ".partial")   # renamed into place: never a half-written file
    partial.write_text(text)
    os.replace(partial, path)
    print(f"wrote {path} ({len(manifests)} objects); apply with: kubectl apply -f {path}")
    print(hint)
    return 0
