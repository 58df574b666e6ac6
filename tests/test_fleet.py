"""Fleet triage: three clusters of one kubeconfig (two emulators and one that nothing answers) in parallel, one
record each in S3 (moto, server mode), an aggregated cluster x code table, notifications for the clusters with
critical findings, and canary credentials planted everywhere appearing in no record and no output."""
import contextlib
import io
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from nasiko_nb import fleet, records, sim
from nasiko_nb.cli import main
from nasiko_nb.cluster import UNAUTHORIZED, ClusterError, connect
from tests.canaries import CANARY_AWS_SECRET, CANARY_DO_TOKEN, bearer_token, canaries_in, plant_canaries
from tests.s3_server import S3Server, s3_with_bucket
from tests.test_archive import closed_port, one_line_error
from tests.webhook_server import WebhookServer

BUCKET = "fleet-incidents"
LOCATION = f"s3://{BUCKET}/fleet"
SCENARIOS = {"prod-a": "healthy", "prod-b": "image-pull-missing-secret"}
DEAD = "staging"
BEARERS = [bearer_token(name) for name in (*SCENARIOS, DEAD)]


def write_fleet_kubeconfig(path, servers: dict[str, str]) -> str:
    """One kubeconfig, one context per cluster, each user a bearer token (a canary)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": next(iter(servers)),
        "clusters": [{"name": name, "cluster": {"server": url}} for name, url in servers.items()],
        "users": [{"name": f"{name}-user", "user": {"token": bearer_token(name)}} for name in servers],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-user"}} for name in servers]}))
    return str(path)


@dataclass
class FleetRun:
    code: int
    out: str
    err: str
    seconds: float
    kubeconfig: str
    webhook: WebhookServer
    s3: S3Server


@pytest.fixture(scope="module")
def s3():
    with s3_with_bucket(BUCKET) as server:
        yield server


@pytest.fixture(scope="module")
def fleet_run(s3, tmp_path_factory) -> FleetRun:
    servers = {context: sim.start(scenario) for context, scenario in SCENARIOS.items()}
    webhook = WebhookServer()
    try:
        for server in servers.values():
            plant_canaries(server)
        urls = {context: server.url for context, server in servers.items()}
        urls[DEAD] = f"https://127.0.0.1:{closed_port()}"
        kubeconfig = write_fleet_kubeconfig(tmp_path_factory.mktemp("kube") / "config", urls)
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as env, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            for name, value in {**s3.environment(secret=CANARY_AWS_SECRET), "DIGITALOCEAN_TOKEN": CANARY_DO_TOKEN,
                                "NASIKO_NOTIFY_URL": webhook.url()}.items():
                env.setenv(name, value)
            started = time.monotonic()
            code = main(["triage", "--kubeconfig", kubeconfig, "--all-contexts", "--workers", "2",
                         "--output", LOCATION])
        yield FleetRun(code, out.getvalue(), err.getvalue(), time.monotonic() - started, kubeconfig, webhook, s3)
    finally:
        webhook.stop()
        for server in servers.values():
            server.stop()


@pytest.fixture
def s3_environment(s3, monkeypatch):
    for name, value in s3.environment().items():
        monkeypatch.setenv(name, value)


def test_fleet_run_succeeds_with_one_cluster_unreachable(fleet_run):
    assert fleet_run.code == 0, fleet_run.err
    assert "00-triage on 3 cluster(s): 1 with findings, 1 unreachable, 0 failed" in fleet_run.out


def test_one_record_per_cluster_in_s3(fleet_run):
    keys = fleet_run.s3.keys(BUCKET, "fleet/")
    assert len(keys) == 9
    for context in (*SCENARIOS, DEAD):
        mine = [key for key in keys if re.fullmatch(rf"fleet/\d{{8}}T\d{{6}}Z-00-triage-{context}\.(ipynb|html|json)", key)]
        assert len(mine) == 3, (context, keys)


def test_aggregated_table_is_cluster_by_code(fleet_run):
    lines = fleet_run.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("severity"))
    assert lines[header].split() == ["severity", "code", "prod-a", "prod-b", "staging"]
    rows = {line.split()[-4]: line.split()[-3:] for line in lines[header + 1:header + 4]}
    assert rows["cluster/unreachable"] == [".", ".", "1"]
    assert rows["image-pull/missing-pull-secret"] == [".", "1", "."]
    assert lines[header + 3].split() == ["outcome", "ok", "critical", "error"]


def test_progress_and_one_line_per_cluster(fleet_run):
    for context, outcome in (("prod-a", "ok"), ("prod-b", "critical"), ("staging", "error")):
        assert re.search(rf"^\[[123]/3\] {context}: outcome {outcome} \(\d+\.\ds\)$", fleet_run.err, re.MULTILINE)
    assert sorted(re.findall(r"^\[(\d)/3\]", fleet_run.err, re.MULTILINE)) == ["1", "2", "3"]
    assert "Traceback" not in fleet_run.err


def test_unreachable_cluster_has_its_record_and_finding(fleet_run, s3_environment, capsys):
    assert main(["incidents", "list", "--output", LOCATION, "--context", DEAD]) == 0
    listing = capsys.readouterr().out
    [record_id] = re.findall(r"^(\S+-00-triage-staging)\s", listing, re.MULTILINE)
    record = json.loads(fleet_run.s3.client().get_object(Bucket=BUCKET, Key=f"fleet/{record_id}.json")["Body"].read())
    [finding] = record["findings"]
    assert finding["code"] == "cluster/unreachable" and finding["resource"] == "cluster staging"
    assert "connection refused" in finding["message"] and record["context"] == DEAD


def test_incidents_list_reads_the_fleet_back_from_s3(fleet_run, s3_environment, capsys):
    assert main(["incidents", "list", "--output", LOCATION]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted((row[3], row[5]) for row in rows) == [("prod-a", "ok"), ("prod-b", "critical"),
                                                        ("staging", "error")]


def test_no_canary_in_any_record_or_output(fleet_run, s3_environment):
    client = fleet_run.s3.client()
    keys = fleet_run.s3.keys(BUCKET, "fleet/")
    for key in keys:
        text = client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        assert canaries_in(text, BEARERS) == [], key
    assert canaries_in(fleet_run.out + fleet_run.err, BEARERS) == []
    assert canaries_in(json.dumps(fleet_run.webhook.payloads), BEARERS) == []


def test_notifications_for_clusters_at_critical_only(fleet_run):
    payloads = {payload["cluster"]: payload for payload in fleet_run.webhook.payloads}
    assert set(payloads) == {"prod-b", "staging"}
    assert payloads["prod-b"]["codes"] == ["image-pull/missing-pull-secret"]
    assert payloads["prod-b"]["outcome"] == "critical" and payloads["prod-b"]["runbook"] == "00-triage"
    assert payloads["prod-b"]["record"].startswith(f"{LOCATION}/") and payloads["prod-b"]["record"].endswith(".html")
    assert payloads["staging"]["codes"] == ["cluster/unreachable"]
    assert payloads["prod-b"]["text"].startswith(
        "00-triage on prod-b: outcome critical; critical or worse: image-pull/missing-pull-secret (1). Record: s3://")
    assert all(path == "/services/T000/B000/webhook-token-in-path" for path, _ in fleet_run.webhook.received)
    assert "webhook-token-in-path" not in fleet_run.out + fleet_run.err
    assert fleet_run.err.count(f"notified {fleet_run.webhook.base}") == 2


# --- bad input: one line, nothing run, nothing stored -----------------------------------------------------
def test_unknown_context_is_refused_before_anything_runs(fleet_run, s3_environment, capsys):
    before = fleet_run.s3.keys(BUCKET)
    code = main(["triage", "--kubeconfig", fleet_run.kubeconfig, "--context", "prod-a", "--context", "prod-z",
                 "--output", LOCATION])
    err = one_line_error(capsys, code)
    assert "'prod-z' is not in" in err and "known contexts: prod-a, prod-b, staging" in err
    assert fleet_run.s3.keys(BUCKET) == before


@pytest.mark.parametrize("extra, message", [
    (["--context", "prod-a", "--all-contexts"], "not both"),
    (["--context", "prod-a", "--context", "prod-a"], "named twice"),
    (["--all-contexts", "--workers", "0"], "--workers must be at least 1"),
    (["--all-contexts", "-p", "namespaces", "nasiko", "--notify", "ftp://127.0.0.1/x"], "http(s) URL"),
])
def test_bad_fleet_options(fleet_run, s3_environment, capsys, extra, message):
    before = fleet_run.s3.keys(BUCKET)
    assert message in one_line_error(capsys, main(["triage", "--kubeconfig", fleet_run.kubeconfig,
                                                   "--output", LOCATION, *extra]))
    assert fleet_run.s3.keys(BUCKET) == before


def test_fleet_applies_no_fix(fleet_run, capsys):
    code = main(["run", "05", "--kubeconfig", fleet_run.kubeconfig, "--all-contexts", "-p", "dry_run", "false",
                 "-p", "confirm", "x"])
    assert "a fleet run applies no fix" in one_line_error(capsys, code)


def test_fleet_needs_a_kubeconfig_not_a_demo(capsys):
    code = main(["triage", "--demo", "healthy", "--context", "a", "--context", "b"])
    assert "serve one cluster" in one_line_error(capsys, code)


# --- the pool ---------------------------------------------------------------------------------------------
def test_workers_bound_the_clusters_run_at_once(monkeypatch, tmp_path):
    """Eight clusters through two workers: never more than two runs at once, results in the order given."""
    running, peak, lock = 0, 0, threading.Lock()

    def execute(info, archive, parameters, *, kubeconfig, context, label):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return records.RunResult({"runbook": info.id, "context": context, "outcome": "ok", "findings": []},
                                 f"id-{label}", "nb", "html", "json")

    monkeypatch.setattr(records, "execute", execute)
    contexts = [f"cluster-{n}" for n in range(8)]
    done = []
    runs = fleet.run_fleet(records.resolve("00"), contexts, None, {}, workers=2, on_done=done.append)
    assert peak == 2 and [run.context for run in runs] == contexts and len(done) == 8
    assert fleet.summary_line("00-triage", runs, 1.0).startswith("00-triage on 8 cluster(s): 0 with findings")


# --- a cluster that refuses the credentials ---------------------------------------------------------------
@pytest.fixture
def refusing_api_server():
    """An API server answering 401 with a Status, as a real one does for an expired token."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "Unauthorized",
                               "reason": "Unauthorized", "code": 401}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_refused_credentials_are_cluster_unauthorized(refusing_api_server, tmp_path):
    kubeconfig = write_fleet_kubeconfig(tmp_path / "config", {"prod-a": refusing_api_server})
    with pytest.raises(ClusterError) as caught:
        connect(kubeconfig, "prod-a")
    assert caught.value.code == UNAUTHORIZED
    finding = caught.value.finding("prod-a")
    assert finding.code == "cluster/unauthorized" and finding.severity == "critical"
    assert finding.message.startswith("Context prod-a: the API server at") and "401 Unauthorized" in finding.message
    assert canaries_in(finding.message + finding.evidence) == []
