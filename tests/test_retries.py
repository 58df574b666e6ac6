"""Flaky API servers: 429 and 5xx on reads are retried with bounded backoff, writes only on 429, a dropped
connection is retried on reads only, a slow answer is one clear line and never retried; the emulator's fault
injection (transient, late, dropped) is checked by the request counts it serves."""
import json
import time

import pytest
from kubernetes.client.rest import ApiException

from nasiko_nb import cluster as cluster_module
from nasiko_nb import sim
from nasiko_nb.cli import main
from nasiko_nb.cluster import ClusterError, connect, retry_delay
from nasiko_nb.sim.server import Fault
from nasiko_nb.snapshot import take_snapshot

PODS = r"^/api/v1/namespaces/nasiko-agents/pods$"
BACKEND = "/apis/apps/v1/namespaces/nasiko/deployments/nasiko-backend"
LABEL_PATCH = {"metadata": {"labels": {"checked": "yes"}}}


@pytest.fixture
def server():
    with sim.start("healthy") as running:
        yield running


@pytest.fixture
def cluster(server, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_module, "BACKOFF_S", 0.01)   # the same schedule, in milliseconds
    return connect(str(server.write_kubeconfig(tmp_path / "kubeconfig")), timeout_s=2.0)


def served(server, action) -> int:
    """How many requests the emulator received while ``action`` ran."""
    server.store.reset_request_count()
    action()
    return server.store.request_count


def labels(server) -> dict:
    return server.store.get("apps/v1", "Deployment", "nasiko", "nasiko-backend")["metadata"].get("labels", {})


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_transient_error_on_a_read_is_retried(server, cluster, status):
    server.inject(Fault(status, PODS, times=2, retry_after=0 if status == 429 else None))
    pods = cluster.get_json("/api/v1/namespaces/nasiko-agents/pods")
    assert pods["items"] and cluster.retries == 2


def test_a_lasting_error_is_given_up_after_the_bounded_attempts(server, cluster):
    server.inject(Fault(503, PODS))
    requests = served(server, lambda: pytest.raises(ApiException, cluster.get_json,
                                                          "/api/v1/namespaces/nasiko-agents/pods"))
    assert requests == cluster_module.MAX_ATTEMPTS and cluster.retries == cluster_module.MAX_ATTEMPTS - 1


def test_a_snapshot_through_transient_faults_sees_everything(server, cluster):
    healthy = take_snapshot(cluster)
    server.inject(Fault(429, PODS, times=1, retry_after=0))
    server.inject(Fault(500, r"/jobs$", times=3))
    server.inject(Fault(0, r"/events$", times=1, drop=True))
    snap = take_snapshot(cluster)
    assert snap.problems == [] and len(snap.pods) == len(healthy.pods) and len(snap.jobs) == len(healthy.jobs)
    assert cluster.retries == 1 + 3 + 1


def test_a_lasting_error_becomes_a_finding_not_a_traceback(server, cluster):
    server.inject(Fault(429, PODS, retry_after=0))
    snap = take_snapshot(cluster)
    [problem] = snap.problems
    assert problem.code == "cluster/api-error" and problem.resource == "Pod nasiko-agents"


def test_a_dropped_connection_is_retried_on_a_read(server, cluster):
    server.inject(Fault(0, PODS, times=1, drop=True))
    assert cluster.get_json("/api/v1/namespaces/nasiko-agents/pods")["items"] and cluster.retries == 1


def test_a_write_is_retried_on_429_only(server, cluster):
    server.inject(Fault(429, f"{BACKEND}$", "PATCH", times=1, retry_after=0))
    cluster.send_json("PATCH", BACKEND, LABEL_PATCH, "application/merge-patch+json")
    assert labels(server)["checked"] == "yes" and cluster.retries == 1


@pytest.mark.parametrize("fault", [Fault(500, f"{BACKEND}$", "PATCH", times=1),
                                   Fault(503, f"{BACKEND}$", "PATCH", times=1)])
def test_a_write_answered_5xx_is_not_retried(server, cluster, fault):
    """After a 5xx a write may or may not have been applied: the caller looks before trying again."""
    server.inject(fault)
    requests = served(server, lambda: pytest.raises(ApiException, cluster.send_json, "PATCH", BACKEND,
                                                             LABEL_PATCH, "application/merge-patch+json"))
    assert requests == 1 and cluster.retries == 0 and "checked" not in labels(server)


def test_a_write_whose_connection_drops_is_not_retried(server, cluster):
    server.inject(Fault(0, f"{BACKEND}$", "PATCH", times=1, drop=True))
    with pytest.raises(ClusterError, match="cannot reach the API server"):
        cluster.send_json("PATCH", BACKEND, LABEL_PATCH, "application/merge-patch+json")
    assert cluster.retries == 0


def test_a_slow_answer_is_one_line_and_not_retried(server, cluster):
    server.inject(Fault(0, PODS, delay_s=3.0))
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"did not answer in time \(timed out\)$"):
        cluster.get_json("/api/v1/namespaces/nasiko-agents/pods")
    assert time.monotonic() - started < 3.0 and cluster.retries == 0


def test_a_late_answer_within_the_timeout_is_used(server, cluster):
    server.inject(Fault(0, PODS, delay_s=0.3))
    assert cluster.get_json("/api/v1/namespaces/nasiko-agents/pods")["items"] and cluster.retries == 0


def test_backoff_is_bounded_and_honours_retry_after():
    assert retry_delay(1, "1") == 1.0 and retry_delay(1, "30") == cluster_module.MAX_BACKOFF_S
    for attempt in range(1, 10):
        assert 0 < retry_delay(attempt) <= cluster_module.MAX_BACKOFF_S
    assert retry_delay(1) <= cluster_module.BACKOFF_S


def test_the_cli_timeout_reaches_the_runbook(server, tmp_path, capsys):
    """``--timeout`` bounds the runbook's own API calls: a list answered late stops the run in one line."""
    server.inject(Fault(0, PODS, delay_s=3.0))
    kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
    code = main(["run", "05", "--kubeconfig", kubeconfig, "--timeout", "1", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert err.endswith("ClusterError: the API server at " + server.url + " did not answer in time (timed out)")
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")]
    assert record["outcome"] == "error" and "Traceback" not in json.dumps(record)


def test_a_name_that_cannot_be_looked_up_is_not_called_missing(server, cluster):
    """A forbidden list must not read as "the Deployment does not exist": the run says it could not look."""
    from nasiko_nb.runbook import Run, RunbookInputError

    server.inject(Fault(403, r"/namespaces/nasiko/deployments$", message="deployments.apps is forbidden"))
    run = Run(runbook="12-restart-deployment", params={}, cluster=cluster)
    snap = take_snapshot(cluster)
    with pytest.raises(RunbookInputError, match="the Deployments of 'nasiko' could not be read"):
        run.require_deployment(snap, "nasiko", "nasiko-backend")
    with pytest.raises(RunbookInputError, match="agent 'ghost-agent' cannot be looked for"):
        run.require_agent(snap, "ghost-agent")
    with pytest.raises(RunbookInputError, match="deployment 'nasiko-bakend' not found in namespace 'nasiko-agents'"):
        run.require_deployment(snap, "nasiko-agents", "nasiko-bakend")
