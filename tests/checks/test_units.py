"""Unit tests of the catalog, findings, image references, redaction and the snapshot model."""
import base64
import json
import re

import pytest
import yaml

from nasiko_nb import codes
from nasiko_nb.checks import DETECTORS, run_checks
from nasiko_nb.checks.image_pull import classify_pull_error
from nasiko_nb.codes import all_codes, lookup, make_finding
from nasiko_nb.findings import COLUMNS, Finding, Report
from nasiko_nb.images import parse_image
from nasiko_nb.redact import MASK, fingerprint, normalize_host, scrub, scrub_obj, summarize_secret
from nasiko_nb.snapshot import Snapshot
from tests.paths import SHARED

GUIDE = SHARED / "guide/kubernetes-troubleshooting.md"
FAMILIES = {"registry", "image-pull", "buildkit", "build", "scheduling", "routing", "resources", "cluster", "provider"}
RUNBOOKS = {"01-registry-name-mismatch", "02-registry-401-unauthorized", "03-buildkit-job-pending",
            "04-build-job-failed", "05-image-pull-backoff", "06-secret-management", "07-agent-chat-404",
            "08-buildkit-unreachable", "09-cluster-out-of-resources", "10-cluster-health",
            "11-reset-registry-credentials", "12-restart-deployment", "13-clean-slate-reset",
            "14-digitalocean-registry", "15-aws-ecr"}


# --- codes ----------------------------------------------------------------------------------------------
def test_catalog_covers_every_family_and_design_code():
    assert {code.split("/")[0] for code in all_codes()} == FAMILIES
    for code in ["image-pull/tag-not-found", "image-pull/never-pull", "image-pull/tls-certificate",
                 "registry/read-only-token", "buildkit/job-pending", "build/copy-source-missing",
                 "scheduling/unbound-pvc", "routing/skipped-name", "resources/orphaned-configmaps",
                 "cluster/namespace-missing"]:
        assert lookup(code).code == code


@pytest.mark.parametrize("code", all_codes())
def test_every_code_has_runbook_anchor_and_advice(code):
    entry = lookup(code)
    assert entry.runbook in RUNBOOKS
    assert entry.next in RUNBOOKS or re.fullmatch(r"[a-z]+(-[a-z]+)+", entry.next)
    assert entry.advice.endswith(".") and entry.title and entry.anchor
    assert entry.severity in codes.SEVERITIES


def test_anchors_exist_in_guide():
    if not GUIDE.exists():
        pytest.skip("guide not present on this machine")
    anchors = set()
    for line in GUIDE.read_text().splitlines():
        match = re.match(r"^#{2,4} (.*)", line)
        if match:
            anchors.add(re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-"))
    assert {lookup(code).anchor for code in all_codes()} <= anchors


def test_unknown_code_error_names_known_codes():
    with pytest.raises(KeyError, match="unknown cause code 'image-pull/nope'.*image-pull/tag-not-found"):
        lookup("image-pull/nope")


def test_make_finding_formats_template_and_requires_fields():
    finding = make_finding("image-pull/tag-not-found", "Pod ns/p", "evidence", container="agent", image="x:1",
                           registry="docker.io")
    assert finding.message == "Container agent cannot start: image x:1 (tag not found in docker.io)."
    assert (finding.severity, finding.next) == ("critical", "05-image-pull-backoff")
    assert make_finding("cluster/forbidden", "Secret ns", "e", verb="get", resource="secrets", namespace="n",
                        next_step="grant-rbac").next == "grant-rbac"
    with pytest.raises(ValueError, match="needs field.*registry"):
        make_finding("image-pull/tag-not-found", "Pod ns/p", "e", container="agent", image="x")


def test_declaring_a_code_twice_fails():
    with pytest.raises(ValueError, match="declared twice"):
        codes._entry("image-pull/dns", "critical", "t", "m", "05-image-pull-backoff", "a", "b.")


# --- findings -------------------------------------------------------------------------------------------
def _finding(code, severity):
    return Finding(code=code, severity=severity, resource="Pod ns/p", message="m", evidence="e", next="n")


def test_report_sorts_and_summarizes():
    report = Report([_finding("resources/finished-jobs-without-ttl", "info"), _finding("image-pull/dns", "critical"),
                     _finding("resources/failed-jobs", "warning")])
    assert report.codes() == ["image-pull/dns", "resources/failed-jobs", "resources/finished-jobs-without-ttl"]
    assert (report.worst, report.outcome) == ("critical", "critical")
    frame = report.to_frame()
    assert list(frame.columns) == COLUMNS and len(frame) == 3
    assert frame.iloc[0]["code"] == "image-pull/dns"
    record = json.loads(json.dumps(report.to_record()))
    assert record["counts"] == {"critical": 1, "warning": 1, "info": 1}
    assert Report.from_record(record).findings == report.findings
    assert "#d62728" in report._repr_html_()


def test_report_outcome_ok_without_critical_or_warning():
    assert Report([_finding("resources/orphaned-configmaps", "info")]).outcome == "ok"
    empty = Report()
    assert (empty.outcome, empty.worst, list(empty.to_frame().columns)) == ("ok", "ok", COLUMNS)


def test_finding_round_trip_and_validation():
    finding = _finding("image-pull/dns", "critical")
    assert Finding.from_dict(finding.to_dict()) == finding
    with pytest.raises(ValueError, match="lacks evidence"):
        Finding.from_dict({k: v for k, v in finding.to_dict().items() if k != "evidence"})
    with pytest.raises(ValueError, match="severity"):
        _finding("image-pull/dns", "fatal")


def test_report_html_escapes():
    html = Report([Finding("image-pull/dns", "critical", "Pod a/b", "<script>", "e", "n")])._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


# --- images ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reference,registry,repository,tag,digest", [
    ("nginx", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
    ("acme/agent", "docker.io", "acme/agent", "latest", None),
    ("docker.io/acme/agent:v1", "docker.io", "acme/agent", "v1", None),
    ("index.docker.io/library/redis:7", "docker.io", "library/redis", "7", None),
    ("localhost/agent", "localhost", "agent", "latest", None),
    ("localhost:5000/team/agent:v2", "localhost:5000", "team/agent", "v2", None),
    ("registry.digitalocean.com/nasiko-images/github-agent:v1766140572", "registry.digitalocean.com",
     "nasiko-images/github-agent", "v1766140572", None),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/weather-agent:v1", "123456789012.dkr.ecr.us-east-1.amazonaws.com",
     "weather-agent", "v1", None),
    ("ghcr.io/acme/a@sha256:" + "a" * 64, "ghcr.io", "acme/a", None, "sha256:" + "a" * 64),
    ("quay.io/x/y:v1@sha256:" + "b" * 64, "quay.io", "x/y", "v1", "sha256:" + "b" * 64),
])
def test_parse_image(reference, registry, repository, tag, digest):
    ref = parse_image(reference)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.problem) == (registry, repository, tag, digest, None)


@pytest.mark.parametrize("reference,problem", [
    ("registry.digitalocean.com/nasiko-images/My_Agent:v1", "must be lowercase"),
    ("acme/agent name:v1", "whitespace"),
    ("acme/agent!:v1", "may only contain"),
    ("acme/agent:-bad", "bad tag"),
    ("acme/agent@sha256:xyz", "bad digest"),
    ("", "empty"),
])
def test_invalid_image_references(reference, problem):
    assert problem in parse_image(reference).problem


def test_docker_hub_library_detection():
    assert parse_image("nginx").is_docker_hub_library
    assert not parse_image("acme/nginx").is_docker_hub_library
    assert parse_image("nginx:1.27").canonical == "docker.io/library/nginx:1.27"


# --- redaction ------------------------------------------------------------------------------------------
PASSWORD = "dop_v1_9f8e7d6c5b4a3210fedcba"


def _docker_secret(auths, key=".dockerconfigjson", kind="kubernetes.io/dockerconfigjson"):
    config = {"auths": auths} if key == ".dockerconfigjson" else auths
    return {"kind": "Secret", "type": kind, "metadata": {"name": "creds", "namespace": "nasiko-agents"},
            "data": {key: base64.b64encode(json.dumps(config).encode()).decode()}}


def test_fingerprint_and_host_normalisation():
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", fingerprint(PASSWORD))
    assert fingerprint(PASSWORD) != fingerprint(PASSWORD + "x")
    assert normalize_host("https://index.docker.io/v1/") == "docker.io"
    assert normalize_host("HTTPS://Registry.DigitalOcean.com/nasiko-images") == "registry.digitalocean.com"
    assert normalize_host("harbor.local:8443") == "harbor.local:8443"


def test_summarize_secret_decodes_auth_and_never_exposes_password():
    auth = base64.b64encode(f"me@example.com:{PASSWORD}".encode()).decode()
    summary = summarize_secret(_docker_secret({"https://registry.digitalocean.com": {"auth": auth},
                                               "https://index.docker.io/v1/": {"username": "bob", "password": "hunter22"}}))
    assert summary.problem is None and summary.keys == (".dockerconfigjson",)
    do = summary.auth_for("registry.digitalocean.com")
    assert (do.username, do.fingerprint) == ("me@example.com", fingerprint(PASSWORD))
    assert summary.auth_for("docker.io").username == "bob"
    assert PASSWORD not in repr(summary) and auth not in repr(summary) and "hunter22" not in repr(summary)


def test_summarize_legacy_dockercfg():
    auth = base64.b64encode(b"legacy:pw-legacy-1").decode()
    summary = summarize_secret(_docker_secret({"https://index.docker.io/v1/": {"auth": auth}}, key=".dockercfg",
                                              kind="kubernetes.io/dockercfg"))
    assert summary.hosts == ["docker.io"] and summary.docker_auths[0].username == "legacy"


@pytest.mark.parametrize("data,problem", [
    ({".dockerconfigjson": "%%%not-base64" + PASSWORD}, "not valid base64"),
    ({".dockerconfigjson": base64.b64encode(b"{not json " + PASSWORD.encode()).decode()}, "not valid JSON"),
    ({".dockerconfigjson": base64.b64encode(b'{"auths": {}}').decode()}, "no auths"),
    ({".dockerconfigjson": base64.b64encode(json.dumps(
        {"auths": {"r.io": {"auth": base64.b64encode(PASSWORD.encode()).decode()}}}).encode()).decode()},
     "not user:password"),
    ({}, "no .dockerconfigjson"),
])
def test_malformed_secret_gives_problem_without_data(data, problem):
    summary = summarize_secret({"kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                                "metadata": {"name": "bad", "namespace": "n"}, "data": data})
    assert problem in summary.problem
    assert PASSWORD not in repr(summary)


def _all_base64_forms(value: str) -> list[str]:
    raw = value.encode()
    forms = [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    return forms + [f.rstrip("=") for f in forms]


def test_scrub_masks_values_and_every_base64_form():
    secret = "s3cr3t/+?pass>>word"
    texts = [f"token is {secret} ok"] + [f"value={form} end" for form in _all_base64_forms(secret)]
    for user in ("bob", "me@example.com"):
        texts += [f"auth {form}" for form in _all_base64_forms(f"{user}:{secret}")]
    for text in texts:
        scrubbed = scrub(text, [secret])
        assert MASK in scrubbed
        assert secret not in scrubbed and not any(form in scrubbed for form in _all_base64_forms(secret))


def test_scrub_masks_credential_shapes_without_being_told_the_value():
    config = json.dumps({"auths": {"r.io": {"auth": base64.b64encode(b"u:p4ssw0rd!").decode()}}})
    blob = base64.b64encode(config.encode()).decode()
    cases = {
        '{"password": "p4ssw0rd!", "user": "u"}': "p4ssw0rd!",
        '{"identitytoken": "idtok-123456"}': "idtok-123456",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig": "eyJhbGciOiJIUzI1NiJ9",
        "Authorization: Basic dTpwNHNzdzByZCE=": "dTpwNHNzdzByZCE=",
        "git clone https://deploy:ghp_abcdef123456@github.com/acme/agent.git": "ghp_abcdef123456",
        f".dockerconfigjson: {blob}": blob,
        f"data was {blob} here": blob,
        config: "dTpwNHNzdzByZCE=",
    }
    for text, secret in cases.items():
        assert secret not in scrub(text), text


def test_scrub_keeps_ordinary_diagnostics():
    message = ("failed to authorize: failed to fetch oauth token: unexpected status from GET request to "
               "https://api.digitalocean.com/v2/registry/auth?scope=repository%3Anasiko-images: 401 Unauthorized")
    assert scrub(message) == message


def test_scrub_obj_masks_nested_and_secret_objects():
    obj = {"kind": "Secret", "data": {"anything": "dmFsdWU="}, "items": [{"password": "pw-123456"},
           {"note": "uses pw-123456"}], "count": 3}
    scrubbed = scrub_obj(obj, ["pw-123456"])
    assert scrubbed["data"] == {"anything": MASK} and scrubbed["count"] == 3
    assert "pw-123456" not in json.dumps(scrubbed)
    assert obj["items"][0]["password"] == "pw-123456"


# --- classifier -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("message,code", [
    ("unauthorized: authentication required", "image-pull/unauthorized"),
    ("no basic auth credentials", "image-pull/unauthorized"),
    ("unexpected status code 401 Unauthorized", "image-pull/unauthorized"),
    ("failed to fetch anonymous token: unexpected status: 403 Forbidden", "image-pull/forbidden"),
    ("denied: requested access to the resource is denied", "image-pull/forbidden"),
    ("insufficient_scope: authorization failed", "image-pull/forbidden"),
    ("manifest unknown: manifest unknown", "image-pull/tag-not-found"),
    ("name unknown: repository name not known to registry", "image-pull/repo-not-found"),
    ("dial tcp: lookup registy.example.com on 10.0.0.10:53: no such host", "image-pull/dns"),
    ("dial tcp 1.2.3.4:443: i/o timeout", "image-pull/timeout"),
    ("net/http: request canceled (Client.Timeout exceeded)", "image-pull/timeout"),
    ("context deadline exceeded", "image-pull/timeout"),
    ("toomanyrequests: You have reached your pull rate limit", "image-pull/rate-limited"),
    ("x509: certificate signed by unknown authority", "image-pull/tls-certificate"),
    ("ErrImageNeverPull: Container image is not present with pull policy of Never", "image-pull/never-pull"),
    ("invalid reference format", "image-pull/invalid-name"),
    ('Back-off pulling image "registry.digitalocean.com/nasiko-images/github-agent:v1"', None),
    ("", None),
])
def test_classify_pull_error(message, code):
    assert classify_pull_error(message) == code


def test_classifier_ignores_words_inside_the_image_name():
    image = "acme/forbidden-agent:401"
    assert classify_pull_error(f'Back-off pulling image "{image}"', image) is None


def test_samples_file_is_classified(samples_path):
    for sample in yaml.safe_load(samples_path.read_text())["image_pull_events"]:
        code = sample.get("code")
        if code in (None, "image-pull/pull-secret-not-found"):
            assert classify_pull_error(sample["message"]) is None, sample["message"]
        else:
            assert classify_pull_error(sample["message"]) == code, sample["message"]


# --- snapshot -------------------------------------------------------------------------------------------
def _objects():
    return [
        {"kind": "Deployment", "metadata": {"name": "agent-weather-1766140572", "namespace": "nasiko-agents",
                                            "uid": "d1"}},
        {"kind": "ReplicaSet", "metadata": {"name": "agent-weather-1766140572-abc", "namespace": "nasiko-agents",
                                            "uid": "r1", "ownerReferences": [{"kind": "Deployment", "uid": "d1",
                                                                              "name": "agent-weather-1766140572",
                                                                              "controller": True}]}},
        {"kind": "Pod", "metadata": {"name": "agent-weather-1766140572-abc-x", "namespace": "nasiko-agents",
                                     "uid": "p1", "ownerReferences": [{"kind": "ReplicaSet", "uid": "r1",
                                                                       "name": "agent-weather-1766140572-abc"}]}},
        {"kind": "Pod", "metadata": {"name": "job-github-agent-rebuild-1766140999-zz", "namespace": "nasiko-agents",
                                     "labels": {"job-name": "job-github-agent-rebuild-1766140999"}}},
        {"kind": "Event", "metadata": {"name": "e1", "namespace": "nasiko-agents"}, "reason": "Old",
         "lastTimestamp": "2026-01-01T00:00:00Z", "involvedObject": {"kind": "Pod", "uid": "p1"}},
        {"kind": "Event", "metadata": {"name": "e2", "namespace": "nasiko-agents"}, "reason": "New",
         "lastTimestamp": "2026-01-02T00:00:00Z",
         "involvedObject": {"kind": "Pod", "namespace": "nasiko-agents", "name": "agent-weather-1766140572-abc-x"}},
        _docker_secret({"registry.digitalocean.com": {"username": "u", "password": PASSWORD}}),
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "buildkit-cache", "namespace": "buildkit"}},
        {"kind": "Namespace", "metadata": {"name": "nasiko"}},
    ]


def test_snapshot_routes_indexes_and_drops_secret_data():
    snapshot = Snapshot.from_objects(_objects())
    pod = snapshot.pods[0]
    assert [o["kind"] for o in snapshot.owner_chain(pod)] == ["ReplicaSet", "Deployment"]
    assert snapshot.deployment_name_of(pod) == "agent-weather-1766140572"
    assert [e["reason"] for e in snapshot.events_for(pod)] == ["New", "Old"]
    assert snapshot.agent_of(pod) == "weather"
    assert snapshot.agent_of(snapshot.pods[1]) == "github-agent"
    assert snapshot.secret("nasiko-agents", "creds").auth_for("registry.digitalocean.com").username == "u"
    assert PASSWORD not in repr(snapshot.secrets) and "data" not in vars(snapshot.secrets[0])
    assert snapshot.of_kind("PersistentVolumeClaim")[0]["metadata"]["name"] == "buildkit-cache"
    assert {"nasiko", "nasiko-agents", "buildkit"} <= snapshot.namespaces
    assert len(snapshot.pods_in("nasiko-agents")) == 2 and snapshot.pods_in("nasiko") == []


def test_agent_from_env_and_label():
    snapshot = Snapshot.from_objects([])
    assert snapshot.agent_of({"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {"spec": {
        "containers": [{"env": [{"name": "AGENT_NAME", "value": "env-agent"}]}]}}}}) == "env-agent"
    assert snapshot.agent_of({"kind": "Service", "metadata": {"name": "x", "labels": {"agent-name": "lbl"}}}) == "lbl"
    assert snapshot.agent_of({"kind": "Service", "metadata": {"name": "nasiko-backend"}}) is None


def test_unreadable_secrets_are_not_reported_missing():
    image = "registry.digitalocean.com/nasiko-images/a:v1"
    pod = {"kind": "Pod", "metadata": {"name": "p", "namespace": "nasiko-agents"},
           "spec": {"containers": [{"name": "agent", "image": image}],
                    "imagePullSecrets": [{"name": "agent-registry-credentials"}]},
           "status": {"phase": "Pending", "containerStatuses": [{"name": "agent", "state": {"waiting": {
               "reason": "ErrImagePull", "message": "failed to authorize: 401 Unauthorized"}}}]}}
    snapshot = Snapshot.from_objects([pod])
    assert [f.code for f in run_checks(snapshot, {}, families=["image-pull"])] == ["image-pull/pull-secret-not-found"]
    snapshot.unreadable.add(("Secret", "nasiko-agents"))
    snapshot.problems.append(make_finding("cluster/forbidden", "Secret nasiko-agents", "403", verb="list",
                                          resource="secrets", namespace="nasiko-agents"))
    assert sorted(f.code for f in run_checks(snapshot, {}, families=["image-pull", "registry-secrets"])) == [
        "cluster/forbidden", "image-pull/unauthorized"]


def test_run_checks_rejects_unknown_family():
    with pytest.raises(ValueError, match="unknown check family nope; known: .*image-pull"):
        run_checks(Snapshot.from_objects([]), {}, families=["nope"])
    assert "image-pull" in DETECTORS


def test_snapshot_built_from_kindless_list_items():
    objects = _objects()
    by_kind = {kind: [dict(o) for o in objects if o["kind"] == kind] for kind in ("Pod", "ReplicaSet", "Deployment", "Event")}
    for items in by_kind.values():
        for item in items:
            del item["kind"]
    snapshot = Snapshot(context="live", taken_at=Snapshot.from_objects([]).taken_at, pods=by_kind["Pod"],
                        replicasets=by_kind["ReplicaSet"], deployments=by_kind["Deployment"], events=by_kind["Event"],
                        secrets=[_docker_secret({"r.io": {"username": "u", "password": PASSWORD}})])
    pod = snapshot.pods[0]
    assert snapshot.deployment_name_of(pod) == "agent-weather-1766140572"
    assert [e["reason"] for e in snapshot.events_for(pod)] == ["New", "Old"]
    assert snapshot.secret("nasiko-agents", "creds").hosts == ["r.io"]
