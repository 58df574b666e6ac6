"""One read of the cluster, parsed once: the model every check reads.

A Snapshot is plain data plus indexes (pods by namespace, events by involved object, secrets by name,
objects by uid for owner chains), so detectors stay pure and fast whatever the cluster size. Secrets are
summarized on construction; their raw data never enters the snapshot.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from kubernetes.client.rest import ApiException

from nasiko_nb.cluster import ApiFailure, Cluster
from nasiko_nb.codes import make_finding
from nasiko_nb.findings import Finding
from nasiko_nb.redact import SecretSummary, summarize_secret

_KIND_FIELDS = {"Pod": "pods", "Event": "events", "Deployment": "deployments", "ReplicaSet": "replicasets",
                "Job": "jobs", "Service": "services", "Endpoints": "endpoints", "Node": "nodes",
                "ConfigMap": "configmaps"}
_AGENT_DEPLOYMENT = re.compile(r"^agent-(?P<agent>.+)-(?P<ts>\d{9,})$")
_BUILD_JOB = re.compile(r"^job-(?P<agent>.+?)(?:-rebuild)?-(?P<ts>\d{9,})$")


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _ref_key(kind: str | None, namespace: str | None, name: str | None) -> tuple[str, str, str]:
    return (kind or "", namespace or "", name or "")


def _event_target(event: dict) -> dict:
    """The object an event is about: core/v1 `involvedObject` or events.k8s.io/v1 `regarding`."""
    return event.get("involvedObject") or event.get("regarding") or {}


def event_time(event: dict) -> str:
    """Sortable timestamp of the event's latest occurrence ("" when unknown)."""
    series = event.get("series") or {}
    return str(event.get("lastTimestamp") or series.get("lastObservedTime") or event.get("eventTime")
               or event.get("firstTimestamp") or _meta(event).get("creationTimestamp") or "")


def event_message(event: dict) -> str:
    return event.get("message") or event.get("note") or ""


@dataclass
class Snapshot:
    context: str
    taken_at: datetime
    namespaces: set[str] = field(default_factory=set)
    pods: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    deployments: list[dict] = field(default_factory=list)
    replicasets: list[dict] = field(default_factory=list)
    jobs: list[dict] = field(default_factory=list)
    services: list[dict] = field(default_factory=list)
    endpoints: list[dict] = field(default_factory=list)
    nodes: list[dict] = field(default_factory=list)
    configmaps: list[dict] = field(default_factory=list)
    secrets: list[SecretSummary] = field(default_factory=list)
    logs: dict[tuple[str, str, str, bool], str] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)
    others: dict[str, list[dict]] = field(default_factory=dict)    # kinds without a field of their own, by kind
    unreadable: set[tuple[str, str]] = field(default_factory=set)  # (kind, namespace) the collector may not list

    def __post_init__(self):
        self.secrets = [s if isinstance(s, SecretSummary) else summarize_secret(s) for s in self.secrets]
        self._index()

    @classmethod
    def from_objects(cls, objects: Iterable[dict], logs: dict | None = None, context: str = "fixture",
                     taken_at: datetime | None = None) -> "Snapshot":
        """A snapshot from plain Kubernetes objects (List objects are expanded), routed by kind."""
        lists: dict[str, list] = defaultdict(list)
        others: dict[str, list[dict]] = defaultdict(list)
        namespaces: set[str] = set()
        for obj in _expand(objects):
            kind = obj.get("kind", "")
            if kind == "Namespace":
                namespaces.add(_meta(obj).get("name", ""))
            elif kind == "Secret":
                lists["secrets"].append(summarize_secret(obj))
            elif kind in _KIND_FIELDS:
                lists[_KIND_FIELDS[kind]].append(obj)
            else:
                others[kind].append(obj)
        return cls(context=context, taken_at=taken_at or datetime.now(timezone.utc), namespaces=namespaces,
                   logs=dict(logs or {}), others=dict(others), **lists)

    def _index(self) -> None:
        self._pods_by_ns: dict[str, list[dict]] = defaultdict(list)
        self._pods_by_job: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for pod in self.pods:
            self._pods_by_ns[_meta(pod).get("namespace", "")].append(pod)
            job = self.job_name_of(pod)
            if job:
                self._pods_by_job[(_meta(pod).get("namespace", ""), job)].append(pod)
        for pods in self._pods_by_job.values():
            pods.sort(key=lambda p: _meta(p).get("creationTimestamp") or "")
        self._by_uid: dict[str, dict] = {}
        self._by_name: dict[tuple[str, str, str], dict] = {}
        # items of API list calls carry no `kind`: stamp it from the field they were put in
        kinds = {kind: getattr(self, name) for kind, name in _KIND_FIELDS.items()}
        for kind, items in {**kinds, **self.others}.items():
            for obj in items:
                obj.setdefault("kind", kind)
                meta = _meta(obj)
                if meta.get("uid"):
                    self._by_uid[meta["uid"]] = obj
                self._by_name[_ref_key(kind, meta.get("namespace"), meta.get("name"))] = obj
                if meta.get("namespace"):
                    self.namespaces.add(meta["namespace"])
        self._events_by_ref: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
        self._events_by_uid: dict[str, list[dict]] = defaultdict(list)
        for event in self.events:
            target = _event_target(event)
            self._events_by_ref[_ref_key(target.get("kind"), target.get("namespace")
                                         or _meta(event).get("namespace"), target.get("name"))].append(event)
            if target.get("uid"):
                self._events_by_uid[target["uid"]].append(event)
        self._secrets = {(s.namespace, s.name): s for s in self.secrets}

    def pods_in(self, namespace: str | None = None) -> list[dict]:
        """Pods of one namespace, or of all when namespace is None."""
        return list(self.pods) if namespace is None else list(self._pods_by_ns.get(namespace, []))

    def pods_of_job(self, namespace: str, job: str) -> list[dict]:
        """The Job's pods, oldest first (an index: no scan of every pod per Job)."""
        return list(self._pods_by_job.get((namespace, job), []))

    def events_for(self, obj: dict) -> list[dict]:
        """Events about `obj` (matched by uid or by kind/namespace/name), newest first."""
        meta = _meta(obj)
        found = {id(e): e for e in self._events_by_ref.get(
            _ref_key(obj.get("kind"), meta.get("namespace"), meta.get("name")), [])}
        for event in self._events_by_uid.get(meta.get("uid") or "", []):
            found[id(event)] = event
        return sorted(found.values(), key=event_time, reverse=True)

    def secret(self, namespace: str, name: str) -> SecretSummary | None:
        return self._secrets.get((namespace, name))

    def can_read(self, kind: str, namespace: str) -> bool:
        """False when the collector was forbidden to list `kind` there, so absence proves nothing."""
        return (kind, namespace) not in self.unreadable and (kind, "") not in self.unreadable

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        return self._by_name.get(_ref_key(kind, namespace, name))

    def owner(self, obj: dict) -> dict | None:
        """The controlling owner of `obj` (or its first owner) when it is in the snapshot."""
        refs = _meta(obj).get("ownerReferences") or []
        ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
        if ref is None:
            return None
        return self._by_uid.get(ref.get("uid") or "") or self.get(ref.get("kind"), _meta(obj).get("namespace"),
                                                                   ref.get("name"))

    def owner_chain(self, obj: dict) -> list[dict]:
        """Owners from the immediate one upwards (Pod -> ReplicaSet -> Deployment)."""
        chain, seen = [], {id(obj)}
        current = self.owner(obj)
        while current is not None and id(current) not in seen:
            chain.append(current)
            seen.add(id(current))
            current = self.owner(current)
        return chain

    def deployment_of(self, pod: dict) -> dict | None:
        return next((o for o in self.owner_chain(pod) if o.get("kind") == "Deployment"), None)

    def deployment_name_of(self, pod: dict) -> str | None:
        """The owning Deployment's name, even when the Deployment or ReplicaSet is not in the snapshot."""
        deployment = self.deployment_of(pod)
        if deployment is not None:
            return _meta(deployment).get("name")
        replicaset = next((o for o in self.owner_chain(pod) if o.get("kind") == "ReplicaSet"), None)
        if replicaset is not None:
            ref = next((r for r in _meta(replicaset).get("ownerReferences") or [] if r.get("kind") == "Deployment"),
                       None)
            return ref.get("name") if ref else None
        ref = next((r for r in _meta(pod).get("ownerReferences") or [] if r.get("kind") == "ReplicaSet"), None)
        pod_hash = (_meta(pod).get("labels") or {}).get("pod-template-hash")
        if ref and pod_hash and ref.get("name", "").endswith("-" + pod_hash):
            return ref["name"][: -len(pod_hash) - 1]
        return None

    def job_name_of(self, pod: dict) -> str | None:
        labels = _meta(pod).get("labels") or {}
        if labels.get("job-name"):
            return labels["job-name"]
        ref = next((r for r in _meta(pod).get("ownerReferences") or [] if r.get("kind") == "Job"), None)
        return ref.get("name") if ref else None

    def agent_of(self, obj: dict) -> str | None:
        """The Nasiko agent an object belongs to: env AGENT_NAME, label agent-name, or the platform's naming."""
        meta = _meta(obj)
        spec = obj.get("spec") or {}
        pod_spec = (spec.get("template") or {}).get("spec") or spec
        for container in pod_spec.get("containers") or []:
            for env in container.get("env") or []:
                if env.get("name") == "AGENT_NAME" and env.get("value"):
                    return env["value"]
        labels = meta.get("labels") or {}
        if labels.get("agent-name"):
            return labels["agent-name"]
        names = [meta.get("name") or ""]
        if obj.get("kind") == "Pod":
            names = [self.deployment_name_of(obj) or "", self.job_name_of(obj) or "", labels.get("app") or ""]
        for name in names:
            match = _AGENT_DEPLOYMENT.match(name) or _BUILD_JOB.match(name)
            if match:
                return match["agent"]
        return None

    def agents(self) -> set[str]:
        """Every agent seen in Deployments, Jobs or Pods (for pickers and for validating an agent parameter)."""
        return {a for obj in (*self.deployments, *self.jobs, *self.pods) if (a := self.agent_of(obj))}

    def log(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        return self.logs.get((namespace, pod, container, previous))

    def of_kind(self, kind: str) -> list[dict]:
        """Objects of any kind, including those kept in `others` (e.g. PersistentVolumeClaim, CronJob)."""
        if kind in _KIND_FIELDS:
            return list(getattr(self, _KIND_FIELDS[kind]))
        return list(self.others.get(kind, []))


def _expand(objects: Iterable[dict]) -> Iterable[dict]:
    """Objects with `kind: List` (kubectl get -o yaml dumps) replaced by their items."""
    for obj in objects:
        if not obj:
            continue
        if obj.get("kind", "").endswith("List") and "items" in obj:
            item_kind = obj["kind"][: -len("List")]
            for item in _expand(obj["items"] or []):
                if item_kind and "kind" not in item:
                    item = {**item, "kind": item_kind}
                yield item
        else:
            yield obj


# --- live collection -------------------------------------------------------------------------------

#: plural -> (API path prefix, kind, apiVersion) of the namespaced kinds a snapshot may list.
NAMESPACED_KINDS = {
    "pods": ("/api/v1", "Pod", "v1"),
    "events": ("/api/v1", "Event", "v1"),
    "secrets": ("/api/v1", "Secret", "v1"),
    "services": ("/api/v1", "Service", "v1"),
    "endpoints": ("/api/v1", "Endpoints", "v1"),
    "configmaps": ("/api/v1", "ConfigMap", "v1"),
    "deployments": ("/apis/apps/v1", "Deployment", "apps/v1"),
    "replicasets": ("/apis/apps/v1", "ReplicaSet", "apps/v1"),
    "jobs": ("/apis/batch/v1", "Job", "batch/v1"),
    "cronjobs": ("/apis/batch/v1", "CronJob", "batch/v1"),
}
#: name -> (collection path, kind, apiVersion) of the cluster-scoped lists a snapshot may take.
CLUSTER_KINDS = {
    "namespaces": ("/api/v1/namespaces", "Namespace", "v1"),
    "nodes": ("/api/v1/nodes", "Node", "v1"),
    # metrics-server's view of node usage; absent (404) on clusters without metrics-server
    "nodemetrics": ("/apis/metrics.k8s.io/v1beta1/nodes", "NodeMetrics", "metrics.k8s.io/v1beta1"),
}
DEFAULT_CLUSTER_KINDS = ("namespaces", "nodes")
#: Kinds a cluster may not serve (metrics-server not installed): their 404 means "none". For every other kind
#: a 404 means the API is not what it should be (a wrong server URL, a proxy) and is a finding.
OPTIONAL_KINDS = frozenset({"NodeMetrics"})
PLATFORM_NAMESPACES = ("nasiko", "nasiko-agents", "buildkit")
ALL_NAMESPACES = None


def take_snapshot(cluster: Cluster, namespaces=PLATFORM_NAMESPACES, kinds=tuple(NAMESPACED_KINDS),
                  cluster_kinds=DEFAULT_CLUSTER_KINDS) -> "Snapshot":
    """Read the cluster with one list call per (kind, namespace): the count never depends on object counts.

    ``namespaces=ALL_NAMESPACES`` lists each kind once across the cluster (what a node's requests need).
    A 403 becomes a ``cluster/forbidden`` finding naming the verb and resource needed, another error a
    ``cluster/api-error`` finding, and the snapshot goes on with what it can see.
    """
    objects, problems, unreadable = [], [], set()

    def list_into(path, kind, api_version, plural, namespace):
        try:
            body = cluster.get_json(path)
        except ApiException as exc:
            failure = ApiFailure.from_exception(exc)
            where = namespace or "the whole cluster"
            if failure.status == 404 and kind in OPTIONAL_KINDS:
                return
            unreadable.add((kind, namespace or ""))
            code = "cluster/forbidden" if failure.status == 403 else "cluster/api-error"
            problems.append(make_finding(code, f"{kind} {namespace or '*'}",
                                         f"{failure.status} {failure.reason}: {failure.message}",
                                         verb="list", resource=plural, namespace=where))
            return
        for item in body.get("items") or []:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            objects.append(item)

    for name in cluster_kinds:
        path, kind, api_version = CLUSTER_KINDS[name]
        plural = path.rsplit("/", 1)[1]
        group = path.split("/")[2] if path.startswith("/apis/") else ""
        list_into(path, kind, api_version, f"{plural}.{group}" if group else plural, None)
    if namespaces is ALL_NAMESPACES:
        for plural in kinds:
            prefix, kind, api_version = NAMESPACED_KINDS[plural]
            list_into(f"{prefix}/{plural}", kind, api_version, plural, None)
    for namespace in namespaces or ():
        for plural in kinds:
            prefix, kind, api_version = NAMESPACED_KINDS[plural]
            list_into(f"{prefix}/namespaces/{namespace}/{plural}", kind, api_version, plural, namespace)
    snapshot = Snapshot.from_objects(objects, context=cluster.context)
    snapshot.problems.extend(problems)
    snapshot.unreadable |= unreadable
    return snapshot
