"""build/* and buildkit/* detectors: log classification by wording, excerpts, and YAML fixtures.

Fixture files (tests/fixtures/build/*.yaml) hold `family`, `taken_at`, `cases` (params, exact expected
codes, optional resources / message_contains / evidence_contains / next), `objects` and `logs`
(namespace, pod, container, previous, text) as the runbook puts them into the snapshot.
"""
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from nasiko_nb.checks import DETECTORS, run_checks
from nasiko_nb.checks.build import (address_matches, build_jobs_frame, buildkit_clients_frame, classify_build_log,
                                    expected_addresses, log_excerpt, most_specific)
from nasiko_nb.snapshot import Snapshot

from .helpers import FIXTURES, load_fixture


def fixture_snapshot(fixture: dict) -> Snapshot:
    logs = {(item["namespace"], item["pod"], item["container"], bool(item.get("previous"))): item["text"]
            for item in fixture.get("logs") or []}
    return Snapshot.from_objects(fixture["objects"], logs=logs,
                                 taken_at=datetime.fromisoformat(fixture["taken_at"].replace("Z", "+00:00")))


def fixture_cases(folder: str):
    files = sorted((FIXTURES / folder).glob("*.yaml"))
    return [pytest.param(path, index, case, id=f"{path.stem}[{index}]")
            for path in files for index, case in enumerate(load_fixture(path)["cases"])]


def check_case(path: Path, case: dict) -> list:
    fixture = load_fixture(path)
    findings = run_checks(fixture_snapshot(fixture), case["params"], families=[fixture["family"]])
    described = [f.to_dict() for f in findings]
    assert Counter(f.code for f in findings) == Counter(case["expect"]), described
    if "resources" in case:
        assert sorted(f.resource for f in findings) == sorted(case["resources"]), described
    for text in case.get("message_contains", []):
        assert any(text in f.message for f in findings), (text, described)
    for text in case.get("evidence_contains", []):
        assert any(text in f.evidence for f in findings), (text, described)
    for step in case.get("next", []):
        assert all(f.next == step for f in findings), described
    for finding in findings:
        assert finding.evidence and finding.message and finding.next
    return findings


CASES = fixture_cases("build")


def test_every_build_and_buildkit_code_has_a_fixture():
    expected = {code for param in CASES for code in param.values[2]["expect"]}
    assert expected == {"build/missing-dockerfile", "build/copy-source-missing", "build/context-too-large",
                        "build/network-timeout", "build/push-unauthorized", "build/init-download-failed",
                        "buildkit/daemon-down", "buildkit/service-missing", "buildkit/no-endpoints",
                        "buildkit/wrong-address", "buildkit/job-pending"}


@pytest.mark.parametrize("path,index,case", CASES)
def test_fixture_codes(path: Path, index: int, case: dict):
    check_case(path, case)


# --- classification by wording: at least two real wordings per class ---------------------------------------
WORDINGS = {
    "build/missing-dockerfile": [
        "error: failed to solve: failed to read dockerfile: open Dockerfile: no such file or directory",
        'ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref k::x: "/Dockerfile": not found',
        "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat /ws/Dockerfile: no such file or directory",
        "ERROR: failed to load Dockerfile: no such file or directory",
        "#1 ERROR: failed to solve: failed to read dockerfile: open /tmp/buildkit-mount123/Dockerfile: no such file or directory",
    ],
    "build/copy-source-missing": [
        'ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref moby::abc: "/requirements.txt": not found',
        "COPY failed: file not found in build context or excluded by .dockerignore: stat requirements.txt: file does not exist",
        'error: failed to solve: failed to compute cache key: "/app/config.yaml": not found',
        "ADD failed: file not found in build context or excluded by .dockerignore: stat src/: file does not exist",
    ],
    "build/context-too-large": [
        "error: failed to solve: rpc error: code = ResourceExhausted desc = grpc: received message larger than max (6871946 vs. 4194304)",
        "ERROR: context too large",
        "error: rpc error: code = ResourceExhausted desc = grpc: trying to send message larger than max (5242880 vs. 4194304)",
    ],
    "build/network-timeout": [
        "#8 12.31 WARNING: Retrying (Retry(total=0)) after connection broken by 'ConnectTimeoutError(<x>, 'Connection to github.com timed out. (connect timeout=15)')': /a",
        "ERROR: Could not install packages due to an OSError: HTTPSConnectionPool(host='files.example.com', port=443): Read timed out.",
        "#9 61.2 npm ERR! network request to https://npm.example.com/express failed, reason: connect ETIMEDOUT 104.16.0.35:443",
        "#5 0.41   Temporary failure resolving 'apt.example.com'",
        "WARNING: Retrying after connection broken by 'NewConnectionError(<x>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')",
        "ERROR: failed to fetch requests==2.31.0: connection timeout",
        "go: github.com/x/y@v1: Get \"https://proxy.golang.org/github.com/x/y/@v/v1.mod\": dial tcp 142.250.0.1:443: i/o timeout",
    ],
    "build/push-unauthorized": [
        "error: failed to solve: failed to push registry.digitalocean.com/nasiko-images/a:v1: failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://api.digitalocean.com/v2/registry/auth: 401 Unauthorized",
        "ERROR: failed to solve: failed to push docker.io/acme/agent:v2: push access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed",
    ],
    "buildkit/daemon-down": [
        'error: failed to get status: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 10.245.12.7:1234: connect: connection refused"',
        "ERROR: failed to dial gRPC: cannot connect to the BuildKit daemon at tcp://buildkitd.buildkit.svc.cluster.local:1234",
        "Error: failed to connect to buildkitd: connection refused",
    ],
    "buildkit/wrong-address": [
        'error: failed to get status: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp: lookup buildkit.buildkit.svc.cluster.local on 10.245.0.10:53: no such host"',
        'error: listing workers: failed to list workers: Unavailable: connection error: desc = "transport: Error while dialing: dial tcp: lookup buildkitd.buildkit.svc.cluster.lcoal: no such host"',
    ],
}


@pytest.mark.parametrize("code,line", [(c, line) for c, lines in WORDINGS.items() for line in lines],
                         ids=lambda v: v[:40] if isinstance(v, str) else v)
def test_classify_wordings(code, line):
    errors = classify_build_log(f"#1 [internal] load build definition\n{line}\n")
    assert [(e.code, e.line_no) for e in errors] == [(code, 2)]


def test_each_class_has_two_wordings():
    assert all(len(lines) >= 2 for lines in WORDINGS.values())


@pytest.mark.parametrize("line", [
    "#8 DONE 12.3s", "#12 pushing layers 4.1s done", "Successfully installed requests-2.31.0",
    "#3 [2/5] COPY requirements.txt .", "#1 transferring dockerfile: 312B done",
])
def test_ordinary_lines_are_not_errors(line):
    assert classify_build_log(line) == []


def test_shared_samples(samples_path):
    for sample in yaml.safe_load(samples_path.read_text())["build_logs"]:
        assert most_specific(classify_build_log(sample["log"])).code == sample["code"]


def test_details_copy_source_registry_and_address():
    [copy] = classify_build_log(WORDINGS["build/copy-source-missing"][0])
    assert copy.detail == "/requirements.txt"
    [classic] = classify_build_log(WORDINGS["build/copy-source-missing"][1])
    assert classic.detail == "requirements.txt"
    [push] = classify_build_log(WORDINGS["build/push-unauthorized"][0])
    assert push.detail == "registry.digitalocean.com"
    [down] = classify_build_log(WORDINGS["buildkit/daemon-down"][0])
    assert down.detail == "10.245.12.7:1234"
    [wrong] = classify_build_log(WORDINGS["buildkit/wrong-address"][0])
    assert wrong.detail == "buildkit.buildkit.svc.cluster.local"


def test_log_excerpt_is_the_error_with_context_not_the_whole_log():
    lines = [f"#{i} step {i}" for i in range(1, 101)]
    lines[49] = "error: failed to solve: failed to read dockerfile: open Dockerfile: no such file or directory"
    lines[89] = "ERROR: context too large"
    text = "\n".join(lines)
    errors = classify_build_log(text)
    assert [e.line_no for e in errors] == [50, 90]
    excerpt = log_excerpt(text, errors, context=3)
    numbers = [int(line[:5]) for line in excerpt.splitlines() if line[:5].strip().isdigit()]
    assert numbers == list(range(47, 54)) + list(range(87, 94))
    assert "..." in excerpt and "#10 step 10" not in excerpt
    assert "   50> error: failed to solve" in excerpt
    assert log_excerpt(text, []) == ""


def test_log_excerpt_scrubs_secrets():
    text = "step\nerror: failed to push https://user:hunter2secret@registry.example.com/a:v1: 401 Unauthorized\nend"
    excerpt = log_excerpt(text, classify_build_log(text))
    assert "hunter2secret" not in excerpt


@pytest.mark.parametrize("address,ok", [
    ("tcp://buildkitd.buildkit.svc.cluster.local:1234", True), ("tcp://buildkitd.buildkit.svc:1234", True),
    ("tcp://buildkitd.buildkit:1234", True), ("tcp://10.245.12.7:1234", True),
    ("tcp://buildkit.buildkit.svc.cluster.local:1234", False), ("tcp://buildkitd.buildkit.svc.cluster.local:1235", False),
    ("buildkitd.buildkit.svc.cluster.local:1234", False), ("tcp://buildkitd:1234", False), ("", False),
    ("unix:///run/buildkit/buildkitd.sock", False),
])
def test_address_forms(address, ok):
    snapshot = fixture_snapshot(load_fixture(FIXTURES / "build" / "buildkit-healthy.yaml"))
    hosts, ports, canonical = expected_addresses(snapshot)
    assert canonical == "tcp://buildkitd.buildkit.svc.cluster.local:1234"
    assert address_matches(address, hosts, ports) is ok


def test_build_jobs_frame():
    snapshot = fixture_snapshot(load_fixture(FIXTURES / "build" / "nothing-to-say.yaml"))
    frame = build_jobs_frame(snapshot, "nasiko-agents")
    assert list(frame["job"]) == ["job-news-agent-1766140200", "job-quiet-agent-1766140300",
                                  "job-weather-agent-1766140100"]
    assert list(frame["status"]) == ["Active", "Failed", "Complete"]
    assert list(frame["age"]) == ["30m"] * 3
    assert frame.loc[1, "reason"] == "BackoffLimitExceeded"
    assert frame.loc[1, "pods"] == "job-quiet-agent-1766140300-x1: Failed (Error(exit 1))"


def test_buildkit_clients_frame():
    snapshot = fixture_snapshot(load_fixture(FIXTURES / "build" / "buildkit-wrong-address.yaml"))
    frame = buildkit_clients_frame(snapshot)
    rows = {(r.object, r.variable): (r.address, r.matches) for r in frame.itertuples()}
    assert rows == {
        ("Deployment nasiko/nasiko-backend", "BUILDKIT_ADDRESS"): ("tcp://buildkit.buildkit.svc.cluster.local:1234", False),
        ("Job nasiko-agents/job-a-agent-1766140001", "BUILDKIT_HOST"): ("tcp://buildkitd.buildkit.svc.cluster.local:1234", True),
        ("Job nasiko-agents/job-b-agent-1766140002", "BUILDKIT_HOST"): ("tcp://buildkitd.buildkit.svc.cluster.local:1235", False),
        ("Pod nasiko-agents/job-c-agent-1766140003-x1", "BUILDKIT_HOST"): ("buildkitd.buildkit.svc.cluster.local:1234", False),
    }


def test_detectors_are_registered_and_quiet_on_an_empty_snapshot():
    snapshot = Snapshot.from_objects([])
    assert run_checks(snapshot, {}, families=["build", "buildkit"]) == []
    assert {"build", "buildkit"} <= set(DETECTORS)


def test_wrong_address_seen_in_log_and_env_is_reported_once():
    snapshot = fixture_snapshot(load_fixture(FIXTURES / "build" / "buildkit-from-logs.yaml"))
    findings = run_checks(snapshot, {}, families=["build", "buildkit"])
    wrong = sorted(f.resource for f in findings if f.code == "buildkit/wrong-address")
    assert wrong == ["Job nasiko-agents/job-beta-agent-1766140042", "Job nasiko-agents/job-delta-agent-1766140044"]
    assert all("line 1:" in f.evidence for f in findings if f.code == "buildkit/wrong-address")


@pytest.mark.parametrize("params,jobs", [
    ({"job": "job-beta-agent-1766140012"}, ["Job nasiko-agents/job-beta-agent-1766140012"]),
    ({"agent": "alpha-agent"}, ["Job nasiko-agents/job-alpha-agent-1766140011"]),
    ({"job": "job-unknown-agent-1766149999"}, []),
])
def test_build_detector_narrows_to_the_chosen_job(params, jobs):
    snapshot = fixture_snapshot(load_fixture(FIXTURES / "build" / "copy-source-missing.yaml"))
    assert [f.resource for f in run_checks(snapshot, params, families=["build"])] == jobs


def test_right_name_that_does_not_resolve_means_the_service_is_missing():
    fixture = load_fixture(FIXTURES / "build" / "buildkit-from-logs.yaml")
    for obj in fixture["objects"]:
        if obj["metadata"]["name"].startswith("job-beta-agent"):
            spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
            spec["containers"][0]["env"][0]["value"] = "tcp://buildkitd.buildkit.svc.cluster.local:1234"
    findings = run_checks(fixture_snapshot(fixture), {"job": "job-beta-agent-1766140042"}, families=["build"])
    assert [(f.code, f.resource) for f in findings] == [("buildkit/service-missing",
                                                         "Job nasiko-agents/job-beta-agent-1766140042")]
