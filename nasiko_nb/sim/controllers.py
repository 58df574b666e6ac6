"""Minimal Deployment, endpoints and kubelet controllers that keep a Store consistent after API writes.

They run synchronously inside the Store's subscribe callback, so a client that patches a Deployment and
then reads sees the new ReplicaSet and pods already materialized (through the simulated kubelet).
Writes made by the controllers themselves are not fed back into them, which keeps every reaction finite.
"""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

from nasiko_nb.sim.digitalocean import NodePoolChange
from nasiko_nb.sim.kubelet import EventSink, Node, RegistryWorld, iso, nc_probe, nc_target, pull_image, run_pod
from nasiko_nb.sim.platform import (deployment_status, endpoints_for, new_replicaset, pod_from_template, pod_name,
                                    pool_node, pool_node_object, replicaset_status, selector_matches, template_hash)
from nasiko_nb.sim.store import ApiError, Store

PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def nodes_from_objects(node_objects: list[dict]) -> list[Node]:
    """Kubelet nodes for Node objects (replayed snapshots); pod IPs come from each node's podCIDR."""
    found = []
    for index, obj in enumerate(node_objects):
        addresses = obj.get("status", {}).get("addresses", [])
        internal = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), f"10.116.0.{index + 2}")
        cidr = obj.get("spec", {}).get("podCIDR") or f"10.244.{index * 64}.0/18"
        found.append(Node(obj["metadata"]["name"], internal, ".".join(cidr.split(".")[:3]), next_ip=200))
    return found or [Node("sim-node-1", "10.116.0.2", "10.244.0", next_ip=200)]


class Controllers:
    """Reacts to API writes: Deployments roll out, Services get endpoints, pods get started by the kubelet."""

    def __init__(self, store: Store, world: RegistryWorld, nodes: list[Node],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc).replace(microsecond=0)):
        self.store, self.world, self.nodes, self.clock = store, world, nodes, clock
        self._local = threading.local()
        self._lock = threading.RLock()
        self._next_node = 0
        self._cordoned: set[str] = set()
        self.pod_listeners: list[Callable[[dict], None]] = []   # told of each pod the kubelet has started

    def attach(self) -> "Controllers":
        self.store.subscribe(self.on_event)
        return self

    def on_event(self, event_type: str, obj: dict) -> None:
        if getattr(self._local, "active", False):
            return
        with self._lock:
            self._local.active = True
            try:
                self._dispatch(event_type, obj)
            finally:
                self._local.active = False

    def _dispatch(self, event_type: str, obj: dict) -> None:
        kind, ns = obj.get("kind"), obj.get("metadata", {}).get("namespace")
        if kind == "Deployment" and event_type != "DELETED":
            self.reconcile_deployment(ns, obj["metadata"]["name"])
        elif kind == "Pod" and event_type == "ADDED" and not obj.get("spec", {}).get("nodeName"):
            self._start_unscheduled_pod(obj)
        elif kind == "Secret" and event_type != "DELETED":
            self.retry_failed_pulls(ns)
        if kind in ("Deployment", "Service", "ReplicaSet", "Secret") and ns:
            self.sync_endpoints(ns)
        elif kind == "Pod" and ns and self._selected_by_a_service(obj):
            self.sync_endpoints(ns)

    def _selected_by_a_service(self, pod: dict) -> bool:
        """Whether a pod event can change endpoints: Job pods, selected by no Service, cannot (keeps bulk
        deletions of Jobs from re-listing the namespace's pods once per pod)."""
        labels = pod.get("metadata", {}).get("labels") or {}
        return any(svc["spec"].get("selector") and selector_matches(svc["spec"]["selector"], labels)
                   for svc in self.store.list("v1", "Service", pod["metadata"]["namespace"]))

    # ---- Deployment controller -------------------------------------------------------------------

    def reconcile_deployment(self, namespace: str, name: str) -> None:
        try:
            deploy = self.store.get("apps/v1", "Deployment", namespace, name)
        except ApiError:
            return
        if deploy["metadata"].get("deletionTimestamp"):
            return
        now = self.clock()
        owned = [rs for rs in self.store.list("apps/v1", "ReplicaSet", namespace)
                 if any(r.get("uid") == deploy["metadata"]["uid"] for r in rs["metadata"].get("ownerReferences", []))]
        current_name = f"{name}-{template_hash(deploy['spec']['template'])}"
        current = next((rs for rs in owned if rs["metadata"]["name"] == current_name), None)
        revisions = [int(rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", "0"))
                     for rs in owned]
        if current is None:
            current = new_replicaset(deploy, max(revisions, default=0) + 1, now, uid=str(uuid.uuid4()))
            current = self.store.create(current)
            self._event(deploy, "ScalingReplicaSet", f"Scaled up replica set {current_name} from 0 to "
                        f"{deploy['spec']['replicas']}", "deployment-controller")
        else:
            current = self._promote(current, max(revisions, default=0))
        desired = deploy["spec"].get("replicas", 1)
        for old in owned:
            if old["metadata"]["name"] != current_name:
                self._scale_replicaset(old, 0, deploy)
        current_pods = self._scale_replicaset(current, desired, deploy)
        all_pods = [p for rs in owned if rs["metadata"]["name"] != current_name for p in self._pods_of(rs)]
        all_pods += current_pods
        deploy = self.store.get("apps/v1", "Deployment", namespace, name)
        status = deployment_status(deploy, current, all_pods, current_pods, now)
        revision = current["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        annotations = deploy["metadata"].setdefault("annotations", {})
        if deploy.get("status") != status or annotations.get("deployment.kubernetes.io/revision") != revision:
            annotations["deployment.kubernetes.io/revision"] = revision
            deploy["status"] = status
            deploy["metadata"].pop("resourceVersion", None)
            self.store.update(deploy)

    def _promote(self, rs: dict, newest: int) -> dict:
        """A template that returns to an older ReplicaSet's (rollout undo) makes it the newest revision again,
        the old number kept in revision-history, as the Deployment controller does."""
        annotations = rs["metadata"].setdefault("annotations", {})
        revision = int(annotations.get("deployment.kubernetes.io/revision", "0"))
        if revision >= newest:
            return rs
        history = [h for h in annotations.get("deployment.kubernetes.io/revision-history", "").split(",") if h]
        annotations["deployment.kubernetes.io/revision-history"] = ",".join([*history, str(revision)])
        annotations["deployment.kubernetes.io/revision"] = str(newest + 1)
        rs["metadata"].pop("resourceVersion", None)
        return self.store.update(rs)

    def _pods_of(self, rs: dict) -> list[dict]:
        uid = rs["metadata"]["uid"]
        return [p for p in self.store.list("v1", "Pod", rs["metadata"]["namespace"])
                if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences", []))]

    def _scale_replicaset(self, rs: dict, replicas: int, deploy: dict) -> list[dict]:
        """Bring ``rs`` to ``replicas`` pods (creating them through the kubelet); returns its pods."""
        ns = rs["metadata"]["namespace"]
        pods = sorted(self._pods_of(rs), key=lambda p: p["metadata"]["name"])
        before = len(pods)
        for extra in pods[replicas:]:
            self._delete("v1", "Pod", ns, extra["metadata"]["name"])
            self._event(rs, "SuccessfulDelete", f"Deleted pod: {extra['metadata']['name']}", "replicaset-controller")
        pods = pods[:replicas]
        while len(pods) < replicas:
            pods.append(self._create_pod(rs))
        if before != replicas and before > replicas:
            self._event(deploy, "ScalingReplicaSet", f"Scaled down replica set {rs['metadata']['name']} from "
                        f"{before} to {replicas}", "deployment-controller")
        fresh = self.store.get("apps/v1", "ReplicaSet", ns, rs["metadata"]["name"])
        status = replicaset_status(fresh, pods)
        if fresh["spec"].get("replicas") != replicas or fresh.get("status") != status:
            fresh["spec"]["replicas"] = replicas
            fresh["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = \
                str(deploy["spec"].get("replicas", 1))
            fresh["status"] = status
            fresh["metadata"].pop("resourceVersion", None)
            self.store.update(fresh)
        return pods

    def _create_pod(self, rs: dict) -> dict:
        """Create the pod first (the server assigns its uid), then let the kubelet start it."""
        now = self.clock()
        pod = pod_from_template(rs, rs["spec"]["template"], pod_name(rs["metadata"]["name"], str(uuid.uuid4())), now)
        created = self.store.create(pod)
        self._event(rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", "replicaset-controller")
        started, events = self._run(created, now)
        started["metadata"].pop("resourceVersion", None)
        stored = self.store.update(started)
        for event in events:
            event["involvedObject"].pop("resourceVersion", None)
            self._create_quietly(event)
        self._started(stored)
        return stored

    def _started(self, pod: dict) -> None:
        for listener in self.pod_listeners:
            listener(pod)

    # ---- kubelet ---------------------------------------------------------------------------------

    def _node(self, pod: dict) -> Node:
        wanted = pod.get("spec", {}).get("nodeName")
        for node in self.nodes:
            if node.name == wanted:
                return node
        schedulable = [node for node in self.nodes if node.name not in self._cordoned] or self.nodes
        self._next_node = (self._next_node + 1) % len(schedulable)
        return schedulable[self._next_node]

    def add_node(self, node: Node) -> None:
        """A node that joined: new pods may be placed on it."""
        with self._lock:
            self.nodes.append(node)

    def cordon_node(self, name: str) -> None:
        """Place no new pod on ``name``; the pods already there keep running."""
        with self._lock:
            self._cordoned.add(name)

    def remove_node(self, name: str) -> None:
        """A node that left the cluster."""
        with self._lock:
            self.nodes[:] = [node for node in self.nodes if node.name != name]
            self._cordoned.discard(name)

    def _secrets(self, namespace: str) -> dict[str, dict]:
        return {s["metadata"]["name"]: s for s in self.store.list("v1", "Secret", namespace)}

    def _run(self, pod: dict, started: datetime) -> tuple[dict, list[dict]]:
        return run_pod(pod, self._node(pod), self._secrets(pod["metadata"]["namespace"]), self.world, self.clock(),
                       started=started)

    def _start_unscheduled_pod(self, obj: dict) -> None:
        try:
            pod = self.store.get("v1", "Pod", obj["metadata"]["namespace"], obj["metadata"]["name"])
        except ApiError:
            return
        probe = nc_target(pod.get("spec", {}))
        if probe is None:
            pod, events = self._run(pod, self.clock())
        else:
            pod, events = self._run_probe(pod, *probe)
        pod["metadata"].pop("resourceVersion", None)
        self.store.update(pod)
        for event in events:
            self._create_quietly(event)

    def _run_probe(self, pod: dict, container: str, target: tuple[str, int]) -> tuple[dict, list[dict]]:
        """A debug pod running `nc -zv host port`: it runs to completion (exit 0 open, 1 otherwise) and its
        log is what nc prints, decided from the Services and Endpoints the cluster has now."""
        ns = pod["metadata"]["namespace"]
        code, output = nc_probe(*target, ns, self.store.list("v1", "Service"), self.store.list("v1", "Endpoints"),
                                self.store.list("v1", "Pod"), self.world)
        now = self.clock()
        pod, events = run_pod(pod, self._node(pod), self._secrets(ns), self.world, now, started=now,
                              run_to_completion=True, exit_codes={container: code},
                              durations={container: timedelta(seconds=1)})
        statuses = pod["status"]["containerStatuses"]
        if "terminated" in statuses[0]["state"]:
            self.store.set_log(ns, pod["metadata"]["name"], container, output)
        return pod, events

    def retry_failed_pulls(self, namespace: str) -> None:
        """After a Secret changes, pods stuck on image pulls retry; those that now pull start running."""
        secrets = self._secrets(namespace)
        for pod in self.store.list("v1", "Pod", namespace):
            statuses = pod.get("status", {}).get("initContainerStatuses", []) + pod.get("status", {}).get("containerStatuses", [])
            failing = [s for s in statuses if s.get("state", {}).get("waiting", {}).get("reason") in PULL_FAILURES]
            if not failing:
                continue
            pull_secrets = [r["name"] for r in pod["spec"].get("imagePullSecrets") or [] if r.get("name")]
            if not all(pull_image(s["image"], pull_secrets, secrets, self.world).ok for s in failing):
                continue
            owner_uid = pod["metadata"]["uid"]
            pod, events = self._run(pod, self.clock())
            pod["metadata"].pop("resourceVersion", None)
            self._started(self.store.update(pod))
            for event in events:
                if event["reason"] != "Scheduled" and event["involvedObject"]["uid"] == owner_uid:
                    self._create_quietly(event)
            for rs in self.store.list("apps/v1", "ReplicaSet", namespace):
                if any(r.get("uid") == rs["metadata"]["uid"] for r in pod["metadata"].get("ownerReferences", [])):
                    for ref in rs["metadata"].get("ownerReferences", []):
                        if ref.get("kind") == "Deployment":
                            self.reconcile_deployment(namespace, ref["name"])

    # ---- endpoints -------------------------------------------------------------------------------

    def sync_endpoints(self, namespace: str) -> None:
        pods = self.store.list("v1", "Pod", namespace)
        for svc in self.store.list("v1", "Service", namespace):
            if not svc["spec"].get("selector"):
                continue
            for wanted in endpoints_for(svc, pods):
                self._put(wanted)

    def _put(self, wanted: dict) -> None:
        m = wanted["metadata"]
        try:
            existing = self.store.get(wanted["apiVersion"], wanted["kind"], m["namespace"], m["name"])
        except ApiError:
            self._create_quietly(wanted)
            return
        body_keys = ("subsets",) if wanted["kind"] == "Endpoints" else ("endpoints", "ports")
        if all(existing.get(k) == wanted.get(k) for k in body_keys):
            return
        for key in body_keys:
            existing[key] = wanted[key]
        existing["metadata"].pop("resourceVersion", None)
        self.store.update(existing)

    # ---- helpers ---------------------------------------------------------------------------------

    def _event(self, obj: dict, reason: str, message: str, component: str) -> None:
        sink = EventSink(self.clock())
        sink.emit(obj, reason, message, first=self.clock(), component=component)
        for event in sink.events:
            event["involvedObject"].pop("resourceVersion", None)
            event["metadata"]["name"] += uuid.uuid4().hex[:4]
            self._create_quietly(event)

    def _create_quietly(self, obj: dict) -> None:
        try:
            self.store.create(obj)
        except ApiError as exc:
            if exc.reason != "AlreadyExists":
                raise

    def _delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            self.store.delete(api_version, kind, namespace, name)
        except ApiError:
            pass


class NodePoolController:
    """Makes the Nodes follow the DigitalOcean node pool behind them, as DOKS does after a resize.

    Each droplet a resize adds joins at once as a Ready Node of the pool (so a verify step sees it); each one
    removed leaves, unless pods still run on it: then it stays, cordoned (spec.unschedulable), to be drained.
    """

    def __init__(self, store: Store, controllers: Controllers):
        self.store, self.controllers = store, controllers
        self._next_ordinal = len(controllers.nodes)      # addresses are never reused, like a VPC's DHCP
        self._lock = threading.Lock()

    def on_resize(self, change: NodePoolChange) -> None:
        with self._lock:
            now = self.controllers.clock()
            for name in change.added:
                self._join(name, change, now)
            for name in change.removed:
                self._leave(name, now)

    def _join(self, name: str, change: NodePoolChange, now: datetime) -> None:
        node = pool_node(self._next_ordinal, name)
        obj = pool_node_object(node, self._next_ordinal, now, now, pool=change.pool_name, pool_id=change.pool_id,
                               size=change.size)
        self._next_ordinal += 1
        created = self.store.create(obj)
        self.controllers.add_node(node)
        self._events(created, now, ("RegisteredNode", f"Node {name} event: Registered Node {name} in Controller",
                                    "node-controller"),
                     ("NodeReady", f"Node {name} status is now: NodeReady", "kubelet"))

    def _leave(self, name: str, now: datetime) -> None:
        try:
            obj = self.store.get("v1", "Node", None, name)
        except ApiError:
            return
        running = [pod for pod in self.store.list("v1", "Pod", field_selector=f"spec.nodeName={name}")
                   if pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
        if not running:
            self.store.delete("v1", "Node", None, name)
            self.controllers.remove_node(name)
            self._events(obj, now, ("RemovingNode", f"Node {name} event: Removing Node {name} from Controller",
                                    "node-controller"))
            return
        spec = obj.setdefault("spec", {})
        spec["unschedulable"] = True
        spec["taints"] = [taint for taint in spec.get("taints", []) if taint.get("key") != UNSCHEDULABLE_TAINT] + [
            {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": iso(now)}]
        obj["metadata"].pop("resourceVersion", None)
        self.store.update(obj)
        self.controllers.cordon_node(name)
        self._events(obj, now, ("NodeNotSchedulable", f"Node {name} status is now: NodeNotSchedulable", "kubelet"))

    def _events(self, node: dict, now: datetime, *events: tuple[str, str, str]) -> None:
        sink = EventSink(now)
        for reason, message, component in events:
            sink.emit(node, reason, message, first=now, component=component,
                      host=node["metadata"]["name"] if component == "kubelet" else "")
        for event in sink.events:
            event["involvedObject"].pop("resourceVersion", None)
            try:
                self.store.create(event)
            except ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise
