"""Clean-up fixes applied to the emulator: one delete-collection where the selector allows, safe fall-backs."""
from __future__ import annotations

import pytest

from nasiko_nb import fixes, sim
from nasiko_nb.checks.resources import RESOURCE_SNAPSHOT
from nasiko_nb.cluster import connect
from nasiko_nb.fixes.cleanup import plan_completed_jobs, plan_evicted_pods, plan_failed_jobs
from nasiko_nb.sim.server import Fault
from nasiko_nb.snapshot import take_snapshot

NS = "nasiko-agents"


@pytest.fixture
def failed_jobs(tmp_path):
    server = sim.start("cluster-failed-jobs")
    cluster = connect(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    fixes.JOURNAL.clear()
    yield server, cluster, take_snapshot(cluster, **RESOURCE_SNAPSHOT)
    server.stop()


def jobs(server, state: str) -> list[dict]:
    items = server.store.list("batch/v1", "Job", NS)
    return [j for j in items if any(c["type"] == state and c["status"] == "True"
                                    for c in j.get("status", {}).get("conditions", []))]


def test_300_failed_jobs_go_with_one_delete_collection(failed_jobs):
    server, cluster, snap = failed_jobs
    plan = plan_failed_jobs(snap, NS)
    failed = {j["metadata"]["name"] for j in jobs(server, "Failed")}
    job_pods = {p["metadata"]["name"] for p in server.store.list("v1", "Pod", NS)
                if p["metadata"].get("labels", {}).get("job-name") in failed}
    assert len(jobs(server, "Failed")) == 300 and len(job_pods) == 600
    reports = []
    calls = cluster.calls
    outcome = fixes.apply_plan(cluster, plan, dry_run=False, confirm=f"delete-failed-jobs/{NS}",
                               progress=lambda done, total: reports.append((done, total)))
    assert cluster.calls - calls == 2            # the check list and the delete-collection
    assert outcome.applied and outcome.message.startswith("deleted 300 Job(s) in nasiko-agents with one delete-collection")
    assert jobs(server, "Failed") == [] and len(jobs(server, "Complete")) == 14
    left = {p["metadata"]["name"] for p in server.store.list("v1", "Pod", NS)}
    assert not job_pods & left                  # background propagation took the pods
    assert reports[0] == (0, 300) and reports[-1] == (300, 300)
    [entry] = fixes.journal_records()
    assert entry["verb"] == "delete-collection" and entry["deleted"] == 300
    assert plan.verify(cluster) == "verify: 0 of the 300 planned failed Jobs still in nasiko-agents"


def test_a_job_started_after_the_plan_is_not_swept_away(failed_jobs):
    server, cluster, snap = failed_jobs
    plan = plan_failed_jobs(snap, NS)
    assert [c.verb for c in plan.changes] == ["delete-collection"]
    server.store.create({"apiVersion": "batch/v1", "kind": "Job",
                         "metadata": {"name": "job-new-agent-1799999999", "namespace": NS},
                         "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                        "containers": [{"name": "c", "image": "busybox"}]}}}})
    calls = cluster.calls
    outcome = fixes.apply_plan(cluster, plan, dry_run=False, confirm=f"delete-failed-jobs/{NS}")
    assert cluster.calls - calls == 1 + 300      # the check list found it, so one delete per planned Job
    assert outcome.message == "deleted 300 Job(s) in nasiko-agents one by one"
    assert server.store.get("batch/v1", "Job", NS, "job-new-agent-1799999999")
    assert jobs(server, "Failed") == []
    assert "status.successful=0 now also matches job-new-agent-1799999999" in fixes.journal_records()[0]["change"]


def test_dry_run_and_a_wrong_confirmation_change_nothing(failed_jobs):
    server, cluster, snap = failed_jobs
    plan = plan_failed_jobs(snap, NS)
    assert not fixes.apply_plan(cluster, plan, dry_run=True, confirm=plan.target).applied
    with pytest.raises(fixes.ConfirmationError):
        fixes.apply_plan(cluster, plan, dry_run=False, confirm="delete-failed-jobs/nasiko")
    assert len(jobs(server, "Failed")) == 300 and fixes.journal_records() == []


def test_one_by_one_counts_jobs_already_gone_and_stops_at_a_refusal(failed_jobs):
    server, cluster, snap = failed_jobs
    plan = plan_completed_jobs(snap, NS, 24)
    names = [c.path.rsplit("/", 1)[1] for c in plan.changes]
    assert len(names) == 12 and {c.verb for c in plan.changes} == {"delete"}
    server.store.delete("batch/v1", "Job", NS, names[0])
    server.inject(Fault(403, f"/jobs/{names[5]}$", "DELETE", "jobs.batch is forbidden"))
    with pytest.raises(fixes.FixFailed) as refused:
        fixes.apply_plan(cluster, plan, dry_run=False, confirm=plan.target)
    assert f"delete Job {NS}/{names[5]} was refused: 403" in str(refused.value)
    assert "5 of 12 were deleted before it, the rest are untouched" in str(refused.value)
    remaining = {j["metadata"]["name"] for j in server.store.list("batch/v1", "Job", NS)}
    assert not set(names[:5]) & remaining and set(names[5:]) <= remaining
    assert len(fixes.journal_records()) == 4     # names[0] was gone already: nothing to record


def test_evicted_pods_with_the_phase_selector(tmp_path):
    server = sim.start("cluster-evicted-pods")
    try:
        cluster = connect(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        snap = take_snapshot(cluster, **RESOURCE_SNAPSHOT)
        plan = plan_evicted_pods(snap, NS)
        evicted = [p for p in server.store.list("v1", "Pod", NS) if p["status"].get("reason") == "Evicted"]
        assert [c.verb for c in plan.changes] == ["delete-collection"] and plan.objects == len(evicted) > 0
        fixes.apply_plan(cluster, plan, dry_run=False, confirm=plan.target)
        assert not [p for p in server.store.list("v1", "Pod", NS) if p["status"].get("phase") == "Failed"]
        assert [p for p in server.store.list("v1", "Pod", NS) if p["status"].get("phase") == "Running"]
    finally:
        server.stop()
