"""A hand-written support bundle (as a user captures it with kubectl) replays and diagnoses correctly.

The bundle in tests/fixtures/snapshots/agents-bundle/ was written by hand, not generated from the
scenarios: a v1 List of Namespaces, a multi-document YAML stream of individual objects, a PodList as the
API returns it (items without apiVersion/kind) and pod logs under logs/<namespace>/<pod>/.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from nasiko_nb import cli, sim
from nasiko_nb.cluster import connect
from nasiko_nb.sim.replay import load_snapshot

from tests.paths import REPO

BUNDLE = REPO / "tests" / "fixtures" / "snapshots" / "agents-bundle"
NAMESPACE = "nasiko-agents"
INVOICE_DEPLOYMENT = "agent-invoice-agent-1766140572"
INVOICE_POD = "agent-invoice-agent-1766140572-7c9d8f6b5d-x4k2p"
GITHUB_POD = "agent-github-agent-1766140572-5b8f9c7d64-m2v8r"
JOB_POD = "job-invoice-agent-1766140572-q7w9z"
EXPECTED_FINDINGS = {
    ("image-pull/missing-pull-secret", f"Pod {NAMESPACE}/{INVOICE_POD}"),
    ("image-pull/tag-not-found", f"Pod {NAMESPACE}/{GITHUB_POD}"),
}

FAKE_TOKEN = "FAKE-TOKEN-not-a-real-registry-secret-0000"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRET_FORMS = {
    "token": FAKE_TOKEN,
    "base64(token)": _b64(FAKE_TOKEN),
    "base64(user:token)": _b64(f"someuser:{FAKE_TOKEN}"),
}


def _record_files(output: Path) -> dict[str, Path]:
    files = {p.suffix: p for p in output.iterdir() if p.suffix in (".ipynb", ".html", ".json")}
    assert set(files) == {".ipynb", ".html", ".json"}, sorted(p.name for p in output.iterdir())
    return files


def _assert_no_secret(files: dict[str, Path]) -> None:
    for path in files.values():
        text = path.read_text(encoding="utf-8")
        for label, form in SECRET_FORMS.items():
            assert form not in text, f"{label} leaked into {path.name}"


# --- the bundle itself -------------------------------------------------------------------------------------

def test_bundle_holds_the_secret_forms_the_record_must_not():
    """Guards the leak test below: the bundle really carries the fake credential (base64 inside base64)."""
    objects, _ = load_snapshot(BUNDLE)
    secret = next(o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "agent-registry-credentials")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    auth = config["auths"]["registry.digitalocean.com"]["auth"]
    assert auth == SECRET_FORMS["base64(user:token)"]
    assert base64.b64decode(auth).decode() == f"someuser:{FAKE_TOKEN}" and len(FAKE_TOKEN) >= 20


def test_bundle_is_consistent():
    """Every ownerReference and every event's involvedObject points at an object of the bundle, by uid."""
    objects, logs = load_snapshot(BUNDLE)
    by_uid = {o["metadata"]["uid"]: o for o in objects if o["metadata"].get("uid")}
    by_key = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
    assert {"nasiko", "nasiko-agents", "buildkit"} <= {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    owned = 0
    for obj in objects:
        for ref in obj["metadata"].get("ownerReferences") or []:
            owner = by_uid.get(ref["uid"])
            assert owner is not None, f"{obj['kind']} {obj['metadata']['name']}: owner {ref['name']} not in the bundle"
            assert (owner["kind"], owner["metadata"]["name"]) == (ref["kind"], ref["name"])
            owned += 1
    assert owned == 5   # 2 ReplicaSets, 2 agent pods, 1 Job pod
    events = [o for o in objects if o["kind"] == "Event"]
    assert {e["reason"] for e in events if e["type"] == "Warning"} == {"Failed"}
    assert any(e["reason"] == "BackOff" for e in events)
    for event in events:
        involved = event["involvedObject"]
        target = by_key[(involved["kind"], involved["namespace"], involved["name"])]
        assert target["metadata"]["uid"] == involved["uid"]
    invoice = by_key[("Pod", NAMESPACE, INVOICE_POD)]
    assert "imagePullSecrets" not in invoice["spec"]
    assert "imagePullSecrets" not in by_key[("Deployment", NAMESPACE, INVOICE_DEPLOYMENT)]["spec"]["template"]["spec"]
    assert "401 Unauthorized" in invoice["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert by_key[("Pod", NAMESPACE, GITHUB_POD)]["apiVersion"] == "v1"   # from the PodList
    assert set(logs) == {(NAMESPACE, JOB_POD, "download-agent", False), (NAMESPACE, JOB_POD, "buildkit-client", False),
                         (NAMESPACE, JOB_POD, "buildkit-client", True)}


# --- headless runs through the CLI ---------------------------------------------------------------------------

def test_replayed_bundle_diagnoses_both_pods(tmp_path, capsys):
    code = cli.main(["run", "image-pull-backoff", "--snapshot", str(BUNDLE), "--output", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    files = _record_files(tmp_path)
    record = json.loads(files[".json"].read_text())
    assert {(f["code"], f["resource"]) for f in record["findings"]} == EXPECTED_FINDINGS
    assert len(record["findings"]) == len(EXPECTED_FINDINGS)
    assert record["changes"] == [] and record["outcome"] == "critical"
    assert record["context"] == "sim-snapshot"
    _assert_no_secret(files)


def test_fix_against_a_replayed_snapshot_changes_nothing(tmp_path, capsys):
    """A replayed snapshot is read-only: the confirmed fix is refused with one clear line and a non-zero exit."""
    code = cli.main(["run", "image-pull-backoff", "--snapshot", str(BUNDLE), "--output", str(tmp_path),
                     "-p", "dry_run", "false", "-p", "confirm", INVOICE_DEPLOYMENT])
    out = capsys.readouterr()
    assert code == cli.EXIT_RUN_FAILED
    error_lines = [line for line in out.err.splitlines() if line.startswith("nasiko-nb:")]
    assert len(error_lines) == 1, out.err
    assert "Traceback" not in out.err and "Traceback" not in out.out
    assert f"patch Deployment {NAMESPACE}/{INVOICE_DEPLOYMENT} was refused" in error_lines[0]
    assert "read-only snapshot" in error_lines[0]
    files = _record_files(tmp_path)
    record = json.loads(files[".json"].read_text())
    assert record["changes"] == []
    assert record["outcome"] == "error" and record["error"].startswith("FixFailed:")
    assert {(f["code"], f["resource"]) for f in record["findings"]} == EXPECTED_FINDINGS  # the diagnosis survives
    assert record["parameters"]["confirm"] == INVOICE_DEPLOYMENT and record["parameters"]["dry_run"] is False
    _assert_no_secret(files)


# --- logs served by the replay ----------------------------------------------------------------------------------

@pytest.fixture
def replay(tmp_path):
    server = sim.start(None, BUNDLE)
    try:
        cluster = connect(str(server.write_kubeconfig(tmp_path / "kubeconfig", context="bundle")))
        yield server, cluster
    finally:
        server.stop()


def test_replay_serves_the_bundle_logs(replay):
    _, cluster = replay
    path = f"/api/v1/namespaces/{NAMESPACE}/pods/{JOB_POD}/log"
    expected = {
        ("download-agent", False): "download-agent.log",
        ("buildkit-client", False): "buildkit-client.log",
        ("buildkit-client", True): "buildkit-client.previous.log",
    }
    for (container, previous), name in expected.items():
        text = cluster.get_text(path, container=container, previous="true" if previous else None)
        assert text == (BUNDLE / "logs" / NAMESPACE / JOB_POD / name).read_text(), (container, previous)
    assert "connection refused" in cluster.get_text(path, container="buildkit-client", previous="true")
    assert "pushing manifest" in cluster.get_text(path, container="buildkit-client")


def test_replay_serves_the_bundle_objects(replay):
    server, cluster = replay
    pods = cluster.get_json(f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]
    assert {p["metadata"]["name"] for p in pods} == {INVOICE_POD, GITHUB_POD, JOB_POD}
    secret = cluster.get_json(f"/api/v1/namespaces/{NAMESPACE}/secrets/agent-registry-credentials")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert server.store.read_only
