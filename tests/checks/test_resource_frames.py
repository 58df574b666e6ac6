"""The resource runbook's tables, chart and clean-up plans, on hand-made snapshots (no API)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from nasiko_nb.charts import capacity_chart
from nasiko_nb.checks.resources import (finished_jobs_frame, jobs_by_status_frame, node_capacity_frame,
                                        orphaned_configmaps_frame)
from nasiko_nb.fixes.cleanup import (cleanup_plans, plan_completed_jobs, plan_evicted_pods, plan_failed_jobs,
                                     plan_orphaned_configmaps)
from nasiko_nb.nodepools import pools_in
from nasiko_nb.snapshot import Snapshot

NOW = datetime(2026, 4, 20, 10, 30, tzinfo=timezone.utc)
NS = "nasiko-agents"


def iso(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str, labels: dict | None = None, cpu: str = "4", memory: str = "8Gi") -> dict:
    return {"kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "status": {"capacity": {"cpu": cpu, "memory": memory}, "allocatable": {"cpu": cpu, "memory": memory},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, node_name: str = "n1", cpu: str = "1", memory: str = "1Gi", namespace: str = NS,
        **status) -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": namespace, "creationTimestamp": iso(timedelta(hours=3))},
            "spec": {"nodeName": node_name,
                     "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
            "status": {"phase": "Running", **status}}


def job(name: str, state: str, finished_ago: timedelta | None = None, namespace: str = NS, cronjob: bool = False,
        ttl: int | None = None) -> dict:
    status: dict = {}
    if state == "Failed":
        status = {"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                               "lastTransitionTime": iso(finished_ago or timedelta(hours=1))}]}
    elif state == "Complete":
        status = {"succeeded": 1, "completionTime": iso(finished_ago or timedelta(hours=1)),
                  "conditions": [{"type": "Complete", "status": "True"}]}
    else:
        status = {"active": 1}
    meta = {"name": name, "namespace": namespace}
    if cronjob:
        meta["ownerReferences"] = [{"kind": "CronJob", "name": "refresher", "controller": True}]
    spec = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    return {"kind": "Job", "metadata": meta, "spec": spec, "status": status}


def snap(*objects) -> Snapshot:
    return Snapshot.from_objects(objects, taken_at=NOW)


def test_capacity_frame_with_and_without_metrics():
    objects = [node("n1"), node("n2"), pod("a", "n1", cpu="3", memory="2Gi"), pod("b", "n2", cpu="500m"),
               pod("gone", "n1", cpu="4", phase="Succeeded")]
    metrics = {"kind": "NodeMetrics", "metadata": {"name": "n1"}, "usage": {"cpu": "1500000000n", "memory": "4194304Ki"}}
    without = node_capacity_frame(snap(*objects)).set_index("node")
    assert without.loc["n1", "cpu_requested"] == 3.0 and without.loc["n1", "cpu_requested_pct"] == 75.0
    assert without.loc["n1", "memory_requested_gib"] == 2.0 and without["cpu_used"].isna().all()
    with_metrics = node_capacity_frame(snap(*objects, metrics)).set_index("node")
    assert with_metrics.loc["n1", "cpu_used"] == 1.5 and with_metrics.loc["n1", "cpu_used_pct"] == 37.5
    assert with_metrics.loc["n1", "memory_used_gib"] == 4.0 and with_metrics.loc["n1", "memory_used_pct"] == 50.0
    assert with_metrics["cpu_used"].isna().sum() == 1     # no metrics for n2 yet: empty, not zero


def test_capacity_chart_is_a_png_sized_by_node_count():
    small = capacity_chart(node_capacity_frame(snap(node("n1"), pod("a", "n1"))))
    big = capacity_chart(node_capacity_frame(snap(*[node(f"n{i}") for i in range(40)], pod("a", "n1", cpu="3900m"))))
    assert small.data[:8] == b"\x89PNG\r\n\x1a\n" and big.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(big.data) > len(small.data)
    assert capacity_chart(node_capacity_frame(snap())) is None


def test_finished_jobs_oldest_first_with_owner_and_ttl():
    frame = finished_jobs_frame(snap(job("job-a-agent-1766140001", "Complete", timedelta(hours=2), ttl=600),
                                     job("job-b-agent-1766140002", "Failed", timedelta(days=3)),
                                     job("refresh-1", "Failed", timedelta(hours=5), cronjob=True),
                                     job("job-c-agent-1766140003", "Active")))
    assert list(frame["job"]) == ["job-b-agent-1766140002", "refresh-1", "job-a-agent-1766140001"]
    assert list(frame["owner"]) == ["", "CronJob", ""] and list(frame["ttl"]) == ["", "", "600s"]
    assert frame.loc[0, "finished"] == "3d ago" and frame.loc[0, "reason"] == "BackoffLimitExceeded"


def test_jobs_by_status_counts_finished_without_ttl():
    frame = jobs_by_status_frame(snap(job("j1", "Failed"), job("j2", "Failed", ttl=60), job("j3", "Active"),
                                      job("j4", "Complete", namespace="nasiko")))
    rows = {(r.namespace, r.status): (r.jobs, r._4) for r in frame.itertuples()}
    assert rows == {("nasiko", "Complete"): (1, 1), (NS, "Active"): (1, 0), (NS, "Failed"): (2, 1)}


def test_orphaned_configmaps_frame_names_what_became_of_the_job():
    objects = [{"kind": "ConfigMap", "metadata": {"name": "agent-files-a-agent-1766140001", "namespace": NS}},
               {"kind": "ConfigMap", "metadata": {"name": "agent-files-b-agent-1766140002", "namespace": NS}},
               {"kind": "ConfigMap", "metadata": {"name": "agent-files-c-agent-1766140003", "namespace": NS}},
               job("job-a-agent-1766140001", "Failed"), job("job-c-agent-1766140003", "Active")]
    frame = orphaned_configmaps_frame(snap(*objects))
    assert dict(zip(frame["configmap"], frame["build job"])) == {
        "agent-files-a-agent-1766140001": "job-a-agent-1766140001 failed", "agent-files-b-agent-1766140002": "no Job"}


def test_failed_jobs_one_delete_collection_when_the_selector_selects_exactly_them():
    plan = plan_failed_jobs(snap(job("job-a-agent-1766140001", "Failed"), job("job-b-agent-1766140002", "Failed"),
                                 job("job-c-agent-1766140003", "Complete")), NS)
    [change] = plan.changes
    assert change.verb == "delete-collection" and change.objects == 2 and plan.objects == 2
    assert change.path == f"/apis/batch/v1/namespaces/{NS}/jobs?fieldSelector=status.successful%3D0"
    assert change.body == {"propagationPolicy": "Background"} and plan.target == f"delete-failed-jobs/{NS}"


@pytest.mark.parametrize("other", [job("job-run-agent-1766140009", "Active"),
                                   job("refresh-1", "Failed", cronjob=True)], ids=["running Job", "CronJob's Job"])
def test_failed_jobs_one_by_one_when_the_selector_would_take_more(other):
    plan = plan_failed_jobs(snap(job("job-a-agent-1766140001", "Failed"), job("job-b-agent-1766140002", "Failed"),
                                 other), NS)
    assert [c.verb for c in plan.changes] == ["delete", "delete"]
    assert [c.path.rsplit("/", 1)[1] for c in plan.changes] == ["job-a-agent-1766140001", "job-b-agent-1766140002"]
    assert any("1 other Job(s) match status.successful=0" in note for note in plan.notes)


def test_completed_jobs_only_old_build_jobs():
    objects = [job("job-a-agent-1766140001", "Complete", timedelta(hours=30)),
               job("job-b-agent-1766140002", "Complete", timedelta(hours=2)),     # too recent
               job("mongodb-install", "Complete", timedelta(days=9)),             # the platform's, kept
               job("refresh-1", "Complete", timedelta(days=2), cronjob=True)]
    plan = plan_completed_jobs(snap(*objects), NS, 24)
    assert [c.resource for c in plan.changes] == [f"Job {NS}/job-a-agent-1766140001"]
    everything_old = plan_completed_jobs(snap(objects[0]), NS, 24)
    assert [c.verb for c in everything_old.changes] == ["delete-collection"]
    assert "status.successful%3D1" in everything_old.changes[0].path
    assert plan_completed_jobs(snap(*objects), NS, 48) is None


def test_evicted_pods_selector_only_when_every_failed_pod_was_evicted():
    evicted = [pod(f"agent-{i}", phase="Failed", reason="Evicted") for i in range(3)]
    assert [c.verb for c in plan_evicted_pods(snap(*evicted), NS).changes] == ["delete-collection"]
    crashed = pod("crashed", phase="Failed", reason="Error")
    plan = plan_evicted_pods(snap(*evicted, crashed), NS)
    assert [c.verb for c in plan.changes] == ["delete"] * 3 and plan.changes[0].body is None


def test_orphaned_configmaps_are_deleted_one_by_one_and_nothing_planned_when_clean():
    cms = [{"kind": "ConfigMap", "metadata": {"name": f"agent-files-a-agent-17661400{i:02d}", "namespace": NS}}
           for i in range(3)]
    assert [c.verb for c in plan_orphaned_configmaps(snap(*cms), NS).changes] == ["delete"] * 3
    assert cleanup_plans(snap(pod("fine")), [NS, "nasiko"], 24) == []


def test_pools_from_node_labels():
    objects = [node("do-1", {"doks.digitalocean.com/node-pool": "pool-a", "doks.digitalocean.com/node-pool-id": "id-a"}),
               node("do-2", {"doks.digitalocean.com/node-pool": "pool-a", "doks.digitalocean.com/node-pool-id": "id-a"}),
               node("eks-1", {"eks.amazonaws.com/nodegroup": "workers", "topology.kubernetes.io/region": "eu-west-1"}),
               node("bare")]
    pools = {p.name: p for p in pools_in(snap(*objects))}
    assert (pools["pool-a"].provider, pools["pool-a"].nodes, pools["pool-a"].selector) == (
        "digitalocean", 2, "doks.digitalocean.com/node-pool-id=id-a")
    assert (pools["workers"].provider, pools["workers"].region, pools["workers"].selector) == (
        "aws", "eu-west-1", "eks.amazonaws.com/nodegroup=workers")
    assert pools["(no pool label)"].provider == ""
