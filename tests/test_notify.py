"""Notifications: a short JSON summary (Slack's text field plus the facts) posted to a webhook on 127.0.0.1 when a
run's findings reach the chosen severity; a failure to notify is one line and never fails the run; the webhook's
path (its token) is never shown."""
import pytest

from nasiko_nb import notify
from nasiko_nb.cli import main
from tests.test_archive import closed_port
from tests.webhook_server import WebhookServer

TOKEN_PATH = "/services/T000/B000/webhook-token-in-path"


def finding(code: str, severity: str, resource: str = "pod/x") -> dict:
    return {"code": code, "severity": severity, "resource": resource, "message": "m", "evidence": "e", "next": "n"}


RECORD = {"runbook": "00-triage", "context": "prod-eu-1", "outcome": "critical", "findings": [
    finding("registry/wrong-user", "critical"), finding("image-pull/unauthorized", "critical", "pod/a"),
    finding("image-pull/unauthorized", "critical", "pod/b"), finding("resources/capacity-low", "warning"),
    finding("build/finished-jobs", "info"), finding("cluster/ok", "ok")]}


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.stop()


# --- the summary ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold, codes", [
    ("critical", {"image-pull/unauthorized": 2, "registry/wrong-user": 1}),
    ("warning", {"image-pull/unauthorized": 2, "registry/wrong-user": 1, "resources/capacity-low": 1}),
    ("info", {"image-pull/unauthorized": 2, "registry/wrong-user": 1, "resources/capacity-low": 1,
              "build/finished-jobs": 1}),
])
def test_codes_at_or_above_the_threshold_worst_first(threshold, codes):
    assert notify.codes_at(RECORD, threshold) == codes
    assert list(notify.codes_at(RECORD, threshold)) == list(codes)


def test_what_reaches_a_threshold():
    warnings_only = {"outcome": "warning", "findings": [finding("resources/capacity-low", "warning")]}
    assert not notify.reaches(warnings_only, "critical") and notify.reaches(warnings_only, "warning")
    assert not notify.reaches({"outcome": "ok", "findings": [finding("x/y", "ok")]}, "info")
    assert notify.reaches({"outcome": "error", "findings": [], "error": "RunbookInputError: x"}, "critical")


def test_payload_has_slack_text_and_the_facts():
    body = notify.payload(RECORD, "s3://incidents/prod/r.html", "critical")
    assert body == {
        "text": "00-triage on prod-eu-1: outcome critical; critical or worse: image-pull/unauthorized (2), "
                "registry/wrong-user (1). Record: s3://incidents/prod/r.html",
        "cluster": "prod-eu-1", "runbook": "00-triage", "outcome": "critical",
        "codes": ["image-pull/unauthorized", "registry/wrong-user"], "record": "s3://incidents/prod/r.html"}


def test_payload_text_stays_short_with_many_codes():
    record = {"runbook": "00-triage", "context": "c", "outcome": "critical",
              "findings": [finding(f"image-pull/code-{n:02}", "critical") for n in range(12)]}
    body = notify.payload(record, "r.html", "critical")
    assert len(body["codes"]) == 12 and "image-pull/code-07 (1) and 4 more." in body["text"]
    assert "code-08" not in body["text"]


def test_a_stopped_run_says_why():
    body = notify.payload({"runbook": "05-image-pull-backoff", "context": "", "outcome": "error", "findings": [],
                           "error": "RunbookInputError: namespace 'x' does not exist"}, "r.html", "critical")
    assert body["text"] == ("05-image-pull-backoff on current context: outcome error; stopped: RunbookInputError: "
                            "namespace 'x' does not exist. Record: r.html")


# --- the webhook URL --------------------------------------------------------------------------------------
def test_webhook_url_from_option_or_environment(monkeypatch):
    monkeypatch.delenv(notify.URL_VARIABLE, raising=False)
    assert notify.webhook_url("") == ""
    monkeypatch.setenv(notify.URL_VARIABLE, "https://hooks.example.test/services/T/B/x")
    assert notify.webhook_url("") == "https://hooks.example.test/services/T/B/x"
    assert notify.webhook_url("http://127.0.0.1:9/h") == "http://127.0.0.1:9/h"
    for bad, said in (("ftp://host/x", "got a ftp: URL"), ("hooks.example.test/x", "got no scheme"),
                      ("https:///token", "with a host, got https: without one")):
        with pytest.raises(notify.NotifyError, match=said) as caught:
            notify.webhook_url(bad)
        assert bad.rsplit("/", 1)[-1] not in str(caught.value)


def test_only_scheme_and_host_are_ever_shown():
    assert notify.where("https://user:pw@hooks.example.test:8443/services/T/B/token?x=1") == \
        "https://hooks.example.test:8443"


# --- posting ----------------------------------------------------------------------------------------------
def test_post_delivers_json(webhook):
    assert notify.post(webhook.url(TOKEN_PATH), {"text": "hello"}) == ""
    assert webhook.received == [(TOKEN_PATH, {"text": "hello"})]


@pytest.mark.parametrize("status, expected", [(500, "answered HTTP 500 Internal Server Error"),
                                              (404, "answered HTTP 404 Not Found")])
def test_post_reports_an_error_status_in_one_line(status, expected):
    server = WebhookServer(status=status)
    try:
        problem = notify.post(server.url(TOKEN_PATH), {"text": "x"})
    finally:
        server.stop()
    assert problem == f"{server.base} {expected}"


def test_post_reports_an_unreachable_or_slow_webhook():
    dead = f"http://127.0.0.1:{closed_port()}{TOKEN_PATH}"
    assert "could not be reached" in notify.post(dead, {"text": "x"})
    slow = WebhookServer(delay_s=2.0)
    try:
        problem = notify.post(slow.url(TOKEN_PATH), {"text": "x"}, timeout_s=0.3)
    finally:
        slow.stop()
    assert problem.startswith(f"{slow.base} could not be reached") and TOKEN_PATH not in problem


# --- the CLI ----------------------------------------------------------------------------------------------
def test_triage_with_critical_findings_notifies(webhook, tmp_path, capsys):
    assert main(["triage", "--demo", "image-pull-missing-secret", "--output", str(tmp_path),
                 "--notify", webhook.url(TOKEN_PATH)]) == 0
    out = capsys.readouterr().out
    assert f"notified {webhook.base} (critical or worse)" in out and "webhook-token" not in out
    [(path, body)] = webhook.received
    assert path == TOKEN_PATH
    assert body["cluster"] == "sim-image-pull-missing-secret" and body["codes"] == ["image-pull/missing-pull-secret"]
    assert body["record"].startswith(str(tmp_path)) and body["record"].endswith(".html")
    for record_file in tmp_path.iterdir():
        assert "webhook-token" not in record_file.read_text(), record_file.name


def test_healthy_run_sends_nothing(webhook, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(notify.URL_VARIABLE, webhook.url(TOKEN_PATH))
    assert main(["triage", "--demo", "healthy", "--output", str(tmp_path), "--notify-on", "info"]) == 0
    assert webhook.received == [] and "notif" not in capsys.readouterr().out


def test_a_failing_webhook_never_fails_the_run(tmp_path, capsys):
    server = WebhookServer(status=500)
    try:
        code = main(["triage", "--demo", "image-pull-missing-secret", "--output", str(tmp_path),
                     "--notify", server.url(TOKEN_PATH)])
    finally:
        server.stop()
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"nasiko-nb: notification not sent: {server.base} answered HTTP 500 Internal "
                                    f"Server Error; the run's result stands")
    assert "webhook-token" not in captured.out + captured.err
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_a_malformed_webhook_in_the_environment_costs_only_the_notification(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(notify.URL_VARIABLE, "hooks.example.test/services/T/B/webhook-token")
    assert main(["triage", "--demo", "image-pull-missing-secret", "--output", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "nasiko-nb: $NASIKO_NOTIFY_URL ignored: --notify needs an http(s) URL, got no scheme"
    assert len(list(tmp_path.glob("*.json"))) == 1
