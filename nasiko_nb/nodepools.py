"""Node pools: which cloud pool each node belongs to, what the provider says about it, and scaling it.

Nodes name their pool in labels (DOKS: ``doks.digitalocean.com/node-pool-id``; EKS managed node groups:
``eks.amazonaws.com/nodegroup``), so the pools come from the snapshot; the provider adds the count and
bounds (one pydo list of clusters, or one EKS list + one describe per node group). Scaling is a fix
like any other: planned, confirmed by naming ``scale-node-pool/<pool>``, journaled, then watched until
the provider reports the new size and that many nodes of the pool are Ready, with a progress bar.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pandas as pd
from kubernetes.client.rest import ApiException

from nasiko_nb import fixes
from nasiko_nb.checks.resources import node_capacity_frame, node_ready
from nasiko_nb.cluster import ApiFailure, Cluster
from nasiko_nb.findings import Finding
from nasiko_nb.fixes import Change, Plan
from nasiko_nb.providers.base import NodeGroup, ProviderError
from nasiko_nb.registries import provider_finding
from nasiko_nb.snapshot import Snapshot

DO_POOL, DO_POOL_ID = "doks.digitalocean.com/node-pool", "doks.digitalocean.com/node-pool-id"
EKS_GROUP, REGION = "eks.amazonaws.com/nodegroup", "topology.kubernetes.io/region"
POLL_S = 2.0


@dataclass(frozen=True)
class Pool:
    """A pool as the cluster sees it: its nodes' labels and how many of them are Ready."""

    name: str
    provider: str        # "digitalocean", "aws", or "" for nodes of no known pool
    pool_id: str
    region: str
    nodes: int
    ready: int

    @property
    def selector(self) -> str:
        """The label selector of the pool's nodes."""
        return f"{DO_POOL_ID}={self.pool_id}" if self.provider == "digitalocean" else f"{EKS_GROUP}={self.name}"


@dataclass
class NodePools:
    """The pools, the provider's node groups by pool name, and the problems met asking the provider."""

    pools: list[Pool]
    groups: dict[str, NodeGroup] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)
    providers: dict[str, object] = field(default_factory=dict, repr=False)


def pools_in(snap: Snapshot) -> list[Pool]:
    found: dict[tuple[str, str], dict] = {}
    for node in snap.nodes:
        labels = (node.get("metadata") or {}).get("labels") or {}
        if labels.get(DO_POOL):
            key, provider, pool_id = (labels[DO_POOL], "digitalocean"), "digitalocean", labels.get(DO_POOL_ID, "")
        elif labels.get(EKS_GROUP):
            key, provider, pool_id = (labels[EKS_GROUP], "aws"), "aws", ""
        else:
            key, provider, pool_id = ("(no pool label)", ""), "", ""
        entry = found.setdefault(key, {"provider": provider, "pool_id": pool_id, "region": labels.get(REGION, ""),
                                       "nodes": 0, "ready": 0})
        entry["nodes"] += 1
        entry["ready"] += node_ready(node)
    return [Pool(name=name, **entry) for (name, _), entry in sorted(found.items())]


def _provider(name: str, region: str):
    if name == "digitalocean":
        from nasiko_nb.providers.digitalocean import DigitalOceanProvider

        return DigitalOceanProvider(verify=os.environ.get("NASIKO_CA_BUNDLE") or True)
    from nasiko_nb.providers.ecr import EcrProvider

    return EcrProvider(region=region)


def read_pools(snap: Snapshot, eks_cluster: str = "") -> NodePools:
    """The pools and, where the provider answers, its node groups; provider errors become findings."""
    result = NodePools(pools_in(snap))
    for provider_name, region in sorted({(p.provider, p.region) for p in result.pools if p.provider}):
        try:
            provider = _provider(provider_name, region)
            if provider_name == "digitalocean":
                groups = provider.node_pools()
                wanted = {p.pool_id for p in result.pools if p.provider == "digitalocean"}
                result.groups.update({g.name: g for g in groups if g.id in wanted})
            else:
                clusters = [eks_cluster] if eks_cluster else provider.clusters()
                if len(clusters) != 1:
                    raise ProviderError("provider/not-found", f"aws: {len(clusters)} EKS clusters in {region} "
                                        f"({', '.join(clusters) or 'none'}); name one with eks_cluster")
                result.groups.update({g.name: g for g in provider.node_groups(clusters[0])})
            result.providers[provider_name] = provider
        except ProviderError as error:
            result.problems.append(provider_finding(error, provider_name))
    return result


def node_pools_frame(snap: Snapshot, pools: NodePools) -> pd.DataFrame:
    """Per pool: nodes (Ready), summed allocatable and requests, and the provider's count and bounds."""
    capacity = node_capacity_frame(snap)
    by_pool = capacity.assign(pool=capacity["pool"].replace("", "(no pool label)")).groupby("pool")
    rows = []
    for pool in pools.pools:
        group = pools.groups.get(pool.name)
        nodes = by_pool.get_group(pool.name) if pool.name in by_pool.groups else capacity.iloc[0:0]
        rows.append({"pool": pool.name, "provider": pool.provider or "?", "nodes": pool.nodes, "ready": pool.ready,
                     "cpu_allocatable": round(nodes["cpu_allocatable"].sum(), 2),
                     "cpu_requested": round(nodes["cpu_requested"].sum(), 2),
                     "memory_allocatable_gib": round(nodes["memory_allocatable_gib"].sum(), 2),
                     "memory_requested_gib": round(nodes["memory_requested_gib"].sum(), 2),
                     "provider_count": group.desired_size if group else None,
                     "min": group.min_size if group else None, "max": group.max_size if group else None,
                     "auto_scale": group.auto_scale if group else None,
                     "size": ", ".join(group.instance_types) if group else "",
                     "status": group.status if group else "not found at the provider"})
    return pd.DataFrame(rows)


def scale_plans(pools: NodePools, pool_name: str, count: int, wait_s: float) -> list[Plan]:
    """A plan to set the node count of ``pool_name`` (the only pool when empty); none when count is 0."""
    if count <= 0:
        return []
    known = [p for p in pools.pools if p.provider]
    if not pool_name and len(known) == 1:
        pool_name = known[0].name
    pool = next((p for p in known if p.name == pool_name), None)
    if pool is None:
        return [Plan(fix="scale-node-pool", target=f"scale-node-pool/{pool_name or '?'}", changes=[],
                     blocked=f"no node pool {pool_name!r} among the nodes' pools "
                             f"({', '.join(p.name for p in known) or 'none'}); set node_pool")]
    group = pools.groups.get(pool.name)
    target = f"scale-node-pool/{pool.name}"
    if group is None or pool.provider not in pools.providers:
        return [Plan(fix="scale-node-pool", target=target, changes=[],
                     blocked=f"{pool.provider} does not show node pool {pool.name} (see the findings above)")]
    notes, blocked = [], ""
    if group.auto_scale:
        blocked = (f"the autoscaler owns the count ({group.min_size}-{group.max_size} nodes); "
                   f"change min_nodes/max_nodes instead")
    if pool.provider == "aws":
        low, high = min(group.min_size, count), max(group.max_size, count)
        if (low, high) != (group.min_size, group.max_size):
            notes.append(f"bounds change too: min {group.min_size} -> {low}, max {group.max_size} -> {high}")
        path = f"eks:UpdateNodegroupConfig {group.cluster}/{group.name}"
        what = f"EKS node group {group.cluster}/{group.name}"
    else:
        path = f"digitalocean:PUT /v2/kubernetes/clusters/{group.cluster_id}/node_pools/{group.id}"
        what = f"DigitalOcean node pool {group.cluster}/{group.name}"
    notes.append(f"then wait up to {wait_s:g} s for {count} Ready nodes of the pool (label {pool.selector})")
    change = Change(verb="scale", path=path, resource=what, body={"count": count},
                    description=f"node count {group.desired_size} -> {count}")
    provider = pools.providers[pool.provider]
    return [Plan(fix="scale-node-pool", target=target, changes=[change], notes=notes, blocked=blocked,
                 executor=lambda cluster, plan, progress: _scale(cluster, plan, progress, provider, pool, group,
                                                                  count, wait_s))]


def _scale(cluster: Cluster, plan: Plan, progress: fixes.Progress, provider, pool: Pool, group: NodeGroup,
           count: int, wait_s: float) -> fixes.Outcome:
    try:
        if pool.provider == "aws":
            update = provider.scale_node_group(group.cluster, group.name, min(group.min_size, count),
                                               max(group.max_size, count), count)
        else:
            update = provider.scale_node_pool(group, count).name
    except (ProviderError, ValueError) as error:
        raise fixes.FixFailed(f"scaling {plan.changes[0].resource} was refused: {error}; nothing was changed") from None
    entry = fixes.record(plan, plan.changes[0])
    entry["update"] = update if pool.provider == "aws" else ""
    deadline = time.monotonic() + wait_s
    while True:
        state = _provider_state(provider, pool, group)
        ready = _ready_nodes(cluster, pool)
        progress(max(0, count - abs(ready - count)), count)
        if (ready == count and state.startswith("ok")) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    settled = ready == count and state.startswith("ok")
    message = (f"{plan.changes[0].resource} now at {count} nodes ({state}); {ready} of {count} nodes of the pool "
               f"Ready in Kubernetes")
    if not settled:
        message += (f" after {wait_s:g} s: new nodes usually join in 2-5 minutes; rerun the capacity steps to watch "
                    f"them arrive")
    return fixes.Outcome(plan, True, message, [entry])


def _provider_state(provider, pool: Pool, group: NodeGroup) -> str:
    """"ok: ..." when the provider reports the pool settled at its new size."""
    try:
        if pool.provider == "aws":
            now = provider.node_group(group.cluster, group.name)
            return f"{'ok' if now.status == 'ACTIVE' else 'waiting'}: node group {now.status}, desired {now.desired_size}"
        now = provider.node_pool(group)
        return f"ok: pool count {now.desired_size}"
    except ProviderError as error:
        return f"waiting: {error}"


def _ready_nodes(cluster: Cluster, pool: Pool) -> int:
    try:
        nodes = cluster.get_json("/api/v1/nodes", labelSelector=pool.selector).get("items") or []
    except ApiException as exc:
        raise fixes.FixFailed(f"the scale was requested, but listing the pool's nodes failed: "
                              f"{ApiFailure.from_exception(exc).status}; watch them with kubectl get nodes "
                              f"-l {pool.selector}") from None
    return sum(1 for node in nodes if node_ready(node))
