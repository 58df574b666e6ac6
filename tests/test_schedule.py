"""``nasiko-nb schedule``: cron validation, the manifests and their least-privilege RBAC, applying them to the
emulator (kubectl, the official client, ``--apply``), the Dockerfile, and the CronJob's command run with
in-cluster configuration against the emulator served over HTTPS as the pod's ServiceAccount sees it.
"""
import argparse
import ast
import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import threading
from fnmatch import fnmatch
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import utils as k8s_utils
from kubernetes.client.rest import ApiException
from kubernetes.config import incluster_config

import nasiko_nb.cluster
from nasiko_nb import records, schedule, sim, snapshot
from nasiko_nb.redact import scrub
from nasiko_nb.runbook import SECRET_PARAMETER_WORDS
from nasiko_nb.sim.apiserver import KubeApiHandler
from nasiko_nb.sim.store import ApiError
from nasiko_nb.sim.tls import make_certificate
from tests.paths import REPO

KUBECTL = "/usr/bin/kubectl"
OUTPUT = "s3://nasiko-records/prod"
RBAC = "rbac.authorization.k8s.io/v1"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
POD_TOKEN = "pod-service-account-token"


def nasiko_nb_schedule(*argv) -> int:
    """``nasiko-nb schedule ...`` as the CLI runs a sub-command: a ValueError is one line on stderr, exit 2."""
    parser = argparse.ArgumentParser(prog="nasiko-nb")
    schedule.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["schedule", *argv])
    try:
        return args.handler(args)
    except ValueError as exc:
        print(f"nasiko-nb: {exc}", file=sys.stderr)
        return 2


def manifests_for(runbook: str, parameters=()) -> list[dict]:
    return schedule.build_manifests(records.resolve(runbook), "*/15 * * * *", OUTPUT, parameters=parameters)


def of_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def the_cronjob(manifests: list[dict]) -> dict:
    (cronjob,) = of_kind(manifests, "CronJob")
    return cronjob


def api_group(path: str) -> str:
    parts = path.strip("/").split("/")
    return parts[1] if parts[0] == "apis" else ""


def grants(manifests: list[dict]) -> set[tuple[str, str, str, str]]:
    """(verb, group, resource, where) the manifests bind to their ServiceAccount; where is '*' cluster-wide."""
    roles = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]): m
             for m in manifests if m["kind"] in ("ClusterRole", "Role")}
    found = set()
    for binding in of_kind(manifests, "ClusterRoleBinding") + of_kind(manifests, "RoleBinding"):
        ref, namespace = binding["roleRef"], binding["metadata"].get("namespace")
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        for rule in role["rules"]:
            found |= {(verb, group, resource, namespace or "*") for verb in rule["verbs"]
                      for group in rule["apiGroups"] for resource in rule["resources"]}
    return found


def read_only_runbooks() -> list[records.RunbookInfo]:
    return [info for info in records.runbooks() if info.side_effects == "read-only"]


def reads_of_read_only_runbooks() -> set[tuple[str, str, str]]:
    """(verb, group, resource) the read-only runbooks send, derived from the code they run.

    Each takes one ``run.snapshot`` with the snapshot's default kinds (checked in their source, so a runbook
    that starts reading something new breaks this) and may read pods' previous logs (health.py).
    """
    for info in read_only_runbooks():
        source = "\n".join(cell.source for cell in nbformat.read(info.path, as_version=4).cells
                           if cell.cell_type == "code")
        calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
        snapshots = [call for call in calls if ast.unparse(call.func) == "run.snapshot"]
        assert snapshots and all({k.arg for k in call.keywords} <= {"namespaces"} and not call.args
                                 for call in snapshots), info.id
        called = {ast.unparse(call.func).rsplit(".", 1)[-1] for call in calls}
        assert not called & {"send_json", "get_json", "get_text", "probe", "fix_panels"}, info.id
    needed = {("list", api_group(prefix), plural) for plural, (prefix, _, _) in snapshot.NAMESPACED_KINDS.items()}
    needed |= {("list", api_group(path), path.rsplit("/", 1)[1])
               for path, _, _ in (snapshot.CLUSTER_KINDS[name] for name in snapshot.DEFAULT_CLUSTER_KINDS)}
    return needed | {("get", "", "pods/log")}


# --- cron ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("expression", [
    "*/15 * * * *", "0 3 * * MON-FRI", "0 0 1 JAN,jul *", "5/10 1-5/2 ? * sun", "0 0 * * 0-6", "59 23 31 12 6",
    "0,15,30,45 * * * *", "  0   6 * * *  ", "@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly",
    "@annually", "0 */2 1-15/3 feb-dec/2 mon,wed,fri",
])
def test_valid_cron_schedules_are_accepted(expression):
    assert schedule.validate_cron(expression) == " ".join(expression.split())


@pytest.mark.parametrize("expression, message", [
    ("", "it is empty"),
    ("* * * *", "it has 4 field(s), a schedule has 5"),
    ("* * * * * *", "it has 6 field(s)"),
    ("60 * * * *", "60 in the minute field is out of range 0-59"),
    ("* 24 * * *", "24 in the hour field is out of range 0-23"),
    ("* * 0 * *", "0 in the day-of-month field is out of range 1-31"),
    ("* * * 13 *", "13 in the month field is out of range 1-12"),
    ("* * * * 7", "7 in the day-of-week field is out of range 0-6"),
    ("*/0 * * * *", "the step '0' in the minute field must be a positive number"),
    ("*/x * * * *", "the step 'x' in the minute field must be a positive number"),
    ("30-10 * * * *", "the range '30-10' in the minute field runs backwards"),
    ("* * * FOO *", "'FOO' in the month field is not a number or a name like JAN"),
    ("* * * * MON-XYZ", "'XYZ' in the day-of-week field is not a number or a name like SUN"),
    ("MON * * * *", "'MON' in the minute field is not a number"),
    ("1,,2 * * * *", "the minute field '1,,2' has an empty list item"),
    ("-5 * * * *", "'' in the minute field is not a number"),
    ("@often", "unknown macro; known: @yearly"),
    ("@every 1h", "unknown macro"),
    ("TZ=UTC 0 * * * *", "a time zone cannot be part of the schedule"),
])
def test_invalid_cron_schedules_are_one_clear_error(expression, message):
    with pytest.raises(ValueError) as raised:
        schedule.validate_cron(expression)
    assert str(raised.value) == f"invalid cron schedule {expression!r}: " + str(raised.value).split(": ", 1)[1]
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


# --- RBAC ----------------------------------------------------------------------------------------------------

def test_a_read_only_runbook_gets_exactly_the_reads_the_read_only_runbooks_send():
    assert {info.id for info in read_only_runbooks()} == {"00-triage", "10-cluster-health"}
    needed = reads_of_read_only_runbooks()
    for info in read_only_runbooks():
        granted = grants(manifests_for(info.id))
        assert {(verb, group, resource) for verb, group, resource, _ in granted} == needed
        assert not {verb for verb, *_ in granted} & WRITE_VERBS
        # Secrets are listed only in the platform namespaces, through Roles, never cluster-wide
        secrets = {where for verb, group, resource, where in granted if resource == "secrets"}
        assert secrets == set(snapshot.PLATFORM_NAMESPACES)
        assert all(where == "*" for _, _, resource, where in granted if resource != "secrets")


def test_the_read_role_follows_the_snapshot_kinds(monkeypatch):
    monkeypatch.setitem(snapshot.NAMESPACED_KINDS, "statefulsets", ("/apis/apps/v1", "StatefulSet", "apps/v1"))
    rules = schedule.read_rules()
    assert {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets"],
            "verbs": ["list"]} in rules


@pytest.mark.parametrize("info", records.runbooks(), ids=lambda info: info.id)
def test_write_role_is_bound_only_for_a_mutating_runbook(info):
    manifests = manifests_for(info.id)
    write_bindings = [b for b in of_kind(manifests, "RoleBinding") if b["roleRef"]["name"] == "nasiko-runbooks-write"]
    write_verbs = {verb for verb, *_ in grants(manifests)} & WRITE_VERBS
    if info.side_effects == "mutating":
        assert {b["metadata"]["namespace"] for b in write_bindings} == set(snapshot.PLATFORM_NAMESPACES)
        assert write_verbs
    else:
        assert not write_bindings and not write_verbs
        assert not [m for m in manifests if "write" in m["metadata"]["name"] or "mutating" in m["metadata"]["name"]]


def test_mutating_runbook_rbac():
    manifests = manifests_for("12-restart-deployment")
    granted = grants(manifests)
    cluster_wide = {(verb, group, resource) for verb, group, resource, where in granted if where == "*"}
    # cluster-wide: the read role plus node usage (09's snapshot), no write verb
    assert cluster_wide == (reads_of_read_only_runbooks() - {("list", "", "secrets")}) | {
        ("list", "metrics.k8s.io", "nodes")}
    for namespace in snapshot.PLATFORM_NAMESPACES:
        here = {(verb, group, resource) for verb, group, resource, where in granted if where == namespace}
        assert here == {("list", "", "secrets")} | {(verb, rule["apiGroups"][0], rule["resources"][0])
                                                    for rule in schedule.WRITE_RULES for verb in rule["verbs"]}
    assert {resource for _, _, resource, where in granted if where != "*"} == {
        "secrets", "pods", "services", "configmaps", "deployments", "deployments/scale", "jobs"}
    assert all(verb in WRITE_VERBS | {"get", "list"} for verb, *_ in granted)
    assert not any("*" in (verb, group, resource) for verb, group, resource, _ in granted)


# --- the CronJob ---------------------------------------------------------------------------------------------

def test_cronjob_spec():
    manifests = manifests_for("00-triage", [("namespaces", "nasiko,nasiko-agents")])
    assert [m["kind"] for m in manifests] == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                              *["Role", "RoleBinding"] * 3, "CronJob"]
    cronjob = the_cronjob(manifests)
    spec = cronjob["spec"]
    assert cronjob["apiVersion"] == "batch/v1" and cronjob["metadata"]["namespace"] == "nasiko-runbooks"
    assert spec["schedule"] == "*/15 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 3
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == "runbook-00-triage" and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    (container,) = pod["containers"]
    assert container["command"] == ["nasiko-nb", "run", "00-triage", "--output", OUTPUT, "--notify-on", "critical",
                                    "-p", "namespaces", "nasiko,nasiko-agents"]
    assert container["image"] == schedule.default_image()
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    (scratch,) = pod["volumes"]
    assert "emptyDir" in scratch and container["volumeMounts"] == [{"name": scratch["name"], "mountPath": "/tmp"}]
    env = {e["name"]: e for e in container["env"]}
    assert env["HOME"]["value"] == "/tmp"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NASIKO_S3_ENDPOINT_URL"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "nasiko-runbooks-archive"
    assert not {"KUBECONFIG", "KUBERNETES_SERVICE_HOST"} & set(env)   # in-cluster configuration
    assert not of_kind(manifests, "Secret")


def test_the_webhook_comes_from_the_credentials_secret():
    manifests = schedule.build_manifests(records.resolve("00"), "@hourly", OUTPUT, notify_on="warning")
    container = the_cronjob(manifests)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][container["command"].index("--notify-on") + 1] == "warning"
    env = {e["name"]: e for e in container["env"]}
    assert env["NASIKO_NOTIFY_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "nasiko-runbooks-archive", "key": "NASIKO_NOTIFY_URL", "optional": True}
    assert "optional: AWS_DEFAULT_REGION, NASIKO_S3_ENDPOINT_URL, NASIKO_NOTIFY_URL" in schedule.credentials_hint(
        "nasiko-runbooks", "nasiko-runbooks-archive")
    with pytest.raises(ValueError, match="--notify-on must be one of critical, warning, info"):
        schedule.build_manifests(records.resolve("00"), "@hourly", OUTPUT, notify_on="loud")


def test_no_secret_reaches_the_container_arguments(tmp_path):
    info = records.resolve("05")
    for word in SECRET_PARAMETER_WORDS:
        with pytest.raises(ValueError, match="looks like a secret"):
            schedule.check_parameters(info, [(f"registry_{word}", "x")])
    with pytest.raises(ValueError, match="looks like a credential"):
        schedule.check_parameters(info, [("agent", "https://admin:hunter2hunter2@example.test/")])
    with pytest.raises(ValueError, match="does not apply in the cluster"):
        schedule.check_parameters(info, [("kubeconfig", "/home/me/.kube/config")])
    with pytest.raises(ValueError, match="has no parameter 'colour'"):
        schedule.check_parameters(info, [("colour", "blue")])
    with pytest.raises(ValueError, match="must not carry credentials"):
        schedule.check_output("s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/prefix")
    assert nasiko_nb_schedule("05", "--cron", "@hourly", "--output", OUTPUT, "-p", "pull_secret", "regcred",
                              "-p", "wait_s", "30", "--write", str(tmp_path)) == 0
    text = (tmp_path / "runbook-05-image-pull-backoff.yaml").read_text()
    container = the_cronjob(list(yaml.safe_load_all(text)))["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"][0]
    assert container["command"][-6:] == ["-p", "pull_secret", "regcred", "-p", "wait_s", "30"]
    assert scrub(text) == text


def test_output_must_be_an_s3_archive():
    for output in ("incidents", "/var/records", "s3://", "s3://ab", "https://bucket.example/prefix"):
        with pytest.raises(ValueError, match="--output must be s3://bucket/prefix"):
            schedule.check_output(output)
    assert schedule.check_output("s3://bucket") == "s3://bucket"


# --- the command line ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["99-nothing", "--cron", "@hourly", "--output", OUTPUT], "unknown runbook '99-nothing'"),
    (["00", "--cron", "*/15 * * *", "--output", OUTPUT], "invalid cron schedule '*/15 * * *': it has 4 field(s)"),
    (["00", "--cron", "@hourly", "--output", "incidents"], "--output must be s3://bucket/prefix"),
    (["00", "--cron", "@hourly", "--output", OUTPUT, "-p", "registry_token", "x"], "looks like a secret"),
    (["00", "--cron", "@hourly", "--output", OUTPUT, "--namespace", "Runbooks"], "is not a valid Kubernetes name"),
    (["00", "--cron", "@hourly", "--output", OUTPUT, "--context", "nowhere"], "context 'nowhere' is not in"),
])
def test_bad_input_is_one_line_and_nothing_is_written(argv, message, tmp_path, capsys):
    target = tmp_path / "manifests"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "a",
                                          "clusters": [{"name": "a", "cluster": {"server": "http://127.0.0.1:9"}}],
                                          "users": [{"name": "a", "user": {"token": "t"}}],
                                          "contexts": [{"name": "a", "context": {"cluster": "a", "user": "a"}}]}))
    assert nasiko_nb_schedule(*argv, "--kubeconfig", str(kubeconfig), "--write", str(target)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err
    assert not target.exists()


def test_stdout_is_one_multi_document_file_with_the_credentials_hint(capsys):
    assert nasiko_nb_schedule("triage", "--cron", "0 6 * * MON-FRI", "--output", OUTPUT,
                              "--credentials-secret", "spaces-keys") == 0
    out = capsys.readouterr().out
    assert out.startswith("# nasiko-nb schedule 00-triage --cron '0 6 * * MON-FRI'\n")
    assert "#   kubectl -n nasiko-runbooks create secret generic spaces-keys --from-env-file=archive.env" in out
    documents = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in documents] == [m["kind"] for m in manifests_for("00-triage")]
    env = the_cronjob(documents)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e} == {"spaces-keys"}


# --- applying to the emulator --------------------------------------------------------------------------------

@pytest.fixture
def emulator(tmp_path):
    with sim.start("healthy") as server:
        yield server, server.write_kubeconfig(tmp_path / "kubeconfig", context="sim-healthy")


def kubectl(kubeconfig, *args) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)


def assert_all_stored(server, manifests):
    for obj in manifests:
        meta = obj["metadata"]
        stored = server.store.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        for field in ("rules", "subjects", "roleRef"):
            assert stored.get(field) == obj.get(field), (obj["kind"], meta["name"], field)
    cronjob = the_cronjob(manifests)
    stored = server.store.get("batch/v1", "CronJob", "nasiko-runbooks", cronjob["metadata"]["name"])
    assert stored["spec"]["schedule"] == cronjob["spec"]["schedule"]
    assert stored["spec"]["concurrencyPolicy"] == "Forbid"


def test_the_emulator_serves_rbac_v1_and_batch_v1_cronjobs(emulator):
    _, kubeconfig = emulator
    versions = kubectl(kubeconfig, "api-versions").stdout.split()
    assert {"rbac.authorization.k8s.io/v1", "batch/v1"} <= set(versions)
    resources = kubectl(kubeconfig, "api-resources", "--no-headers", "-o", "name").stdout.split()
    assert {"clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
            "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io", "cronjobs.batch",
            "serviceaccounts", "namespaces"} <= set(resources)


@pytest.mark.parametrize("runbook", ["00-triage", "12-restart-deployment"])
def test_kubectl_applies_the_written_manifests(emulator, runbook, tmp_path, capsys):
    server, kubeconfig = emulator
    assert nasiko_nb_schedule(runbook, "--cron", "*/15 * * * *", "--output", OUTPUT, "--write", str(tmp_path),
                              "--kubeconfig", str(kubeconfig), "--context", "sim-healthy") == 0
    path = tmp_path / f"runbook-{runbook}.yaml"
    assert f"wrote {path}" in capsys.readouterr().out
    manifests = list(yaml.safe_load_all(path.read_text()))
    # the emulator serves no OpenAPI document for kubectl's client-side validation
    applied = kubectl(kubeconfig, "apply", "--validate=false", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    assert len(applied.stdout.splitlines()) == len(manifests)
    assert all(line.endswith(" created") for line in applied.stdout.splitlines())
    assert_all_stored(server, manifests)
    again = kubectl(kubeconfig, "apply", "--validate=false", "-f", str(path))
    assert again.returncode == 0 and all(line.endswith(" unchanged") for line in again.stdout.splitlines())
    listed = kubectl(kubeconfig, "get", "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/name=nasiko-nb",
                     "-o", "name")
    assert len(listed.stdout.split()) == len(of_kind(manifests, "ClusterRole") + of_kind(manifests,
                                                                                      "ClusterRoleBinding"))


def test_the_official_client_creates_and_reads_back_the_manifests(emulator, tmp_path):
    server, kubeconfig = emulator
    manifests = manifests_for("09-cluster-out-of-resources")
    path = tmp_path / "manifests.yaml"
    path.write_text(schedule.dump(manifests, header="written by the test"))
    api = k8s.ApiClient(k8s.Configuration(host=server.url))
    k8s_utils.create_from_yaml(api, str(path))
    rbac = k8s.RbacAuthorizationV1Api(api)
    role = rbac.read_cluster_role("nasiko-runbooks-read")
    assert [(r.api_groups, r.resources, r.verbs) for r in role.rules] == [
        (r["apiGroups"], r["resources"], r["verbs"]) for r in schedule.read_rules()]
    write = rbac.read_namespaced_role("nasiko-runbooks-write", "buildkit")
    assert {(r.api_groups[0], r.resources[0]) for r in write.rules} == {
        (r["apiGroups"][0], r["resources"][0]) for r in schedule.WRITE_RULES}
    cronjob = k8s.BatchV1Api(api).read_namespaced_cron_job("runbook-09-cluster-out-of-resources", "nasiko-runbooks")
    assert cronjob.spec.concurrency_policy == "Forbid" and cronjob.spec.schedule == "*/15 * * * *"
    assert cronjob.spec.job_template.spec.template.spec.service_account_name == "runbook-09-cluster-out-of-resources"
    assert_all_stored(server, manifests)


def test_apply_creates_then_replaces(emulator, capsys):
    server, kubeconfig = emulator
    argv = ["12", "--cron", "*/15 * * * *", "--output", OUTPUT, "--kubeconfig", str(kubeconfig), "--apply",
            "-p", "deployment", "nasiko-backend"]
    manifests = manifests_for("12", [("deployment", "nasiko-backend")])
    assert nasiko_nb_schedule(*argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:len(manifests)] == [f"created {schedule.describe(m)}" for m in manifests]
    assert "create secret generic nasiko-runbooks-archive" in out[-1]
    assert_all_stored(server, manifests)
    assert nasiko_nb_schedule(*argv) == 0   # idempotent
    out = capsys.readouterr().out.splitlines()
    assert out[:len(manifests)] == [f"replaced {schedule.describe(m)}" for m in manifests]
    stored = server.store.list("batch/v1", "CronJob", "nasiko-runbooks")
    assert [c["metadata"]["name"] for c in stored] == ["runbook-12-restart-deployment"]


def test_apply_refuses_before_creating_anything_when_a_platform_namespace_is_missing(emulator, capsys):
    server, kubeconfig = emulator
    server.store.delete("v1", "Namespace", None, "buildkit")
    assert nasiko_nb_schedule("00", "--cron", "@daily", "--output", OUTPUT, "--kubeconfig", str(kubeconfig),
                              "--apply") == 2
    assert "namespace 'buildkit' does not exist in context 'sim-healthy'" in capsys.readouterr().err
    assert not server.store.list("v1", "Namespace", label_selector="app.kubernetes.io/name=nasiko-nb")
    assert not server.store.list(RBAC, "ClusterRole", label_selector="app.kubernetes.io/name=nasiko-nb")


# --- the Dockerfile ------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves ``path`` out: a pattern matching it or one of its folders; ``**/`` at any depth."""
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        prefix, name = "/".join(parts[:depth]), parts[depth - 1]
        for pattern in patterns:
            if fnmatch(prefix, pattern) or (pattern.startswith("**/") and fnmatch(name, pattern[3:])):
                return True
    return False


def test_dockerfile_installs_the_package_and_its_runbooks_and_runs_as_non_root():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    workdir, copied = "/", {}
    for keyword, argument in instructions:
        if keyword == "WORKDIR":
            workdir = argument
        elif keyword == "COPY":
            *sources, destination = argument.split()
            assert not any(s.startswith("--") for s in sources)
            for source in sources:
                copied[source.rstrip("/")] = (Path(workdir) / destination.rstrip("/")).as_posix()
    assert {"pyproject.toml", "README.md", "nasiko_nb", "runbooks"} <= set(copied)
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for source in copied:
        assert (REPO / source).exists(), source
        files = [REPO / source] if (REPO / source).is_file() else [
            path for path in (REPO / source).rglob("*") if path.is_file() and "__pycache__" not in path.parts]
        assert files and not [f for f in files if docker_ignored(f.relative_to(REPO).as_posix(), patterns)], source
    assert {p.name for p in (REPO / "runbooks").glob("*.ipynb")} == {i.path.name for i in records.runbooks()}
    runs = [argument for keyword, argument in instructions if keyword == "RUN"]
    assert any(re.search(r"\bpip install --no-cache-dir \.(\s|$)", run) for run in runs)
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for k, a in instructions if k == "ENV")))
    assert env["NASIKO_RUNBOOKS"] == copied["runbooks"]   # records.RUNBOOKS_DIR inside the image
    users = [argument for keyword, argument in instructions if keyword == "USER"]
    assert users[-1] == f"{schedule.RUN_AS_USER}:{schedule.RUN_AS_USER}"   # numeric: runAsNonRoot can verify it
    assert any(f"--uid {schedule.RUN_AS_USER} --gid {schedule.RUN_AS_USER}" in run for run in runs)
    assert [a for k, a in instructions if k == "ENTRYPOINT"] == ['["nasiko-nb"]']
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'nasiko-nb = "nasiko_nb.cli:main"' in pyproject and 'readme = "README.md"' in pyproject


# --- in the pod: in-cluster configuration --------------------------------------------------------------------

def request_attributes(method: str, raw_path: str) -> tuple[str, str, str, str] | None:
    """(verb, group, resource, namespace) of a resource request as the API server's authorizer sees it;
    None for discovery and /version, which every authenticated user may read."""
    url = urlsplit(raw_path)
    parts = [p for p in url.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    if method == "GET":
        verb = "get" if named else ("watch" if parse_qs(url.query).get("watch") in (["true"], ["1"]) else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    return verb, group, resource, namespace


def authorized(store, subject: tuple[str, str], verb: str, group: str, resource: str, namespace: str) -> bool:
    """RBAC as the API server evaluates it, over the Roles and bindings stored in the emulator."""
    def binds(binding: dict) -> bool:
        return any((s.get("kind"), s.get("namespace"), s.get("name")) == ("ServiceAccount", *subject)
                   for s in binding.get("subjects") or [])

    def rules(kind: str, where: str | None, name: str) -> list[dict]:
        try:
            return store.get(RBAC, kind, where, name).get("rules") or []
        except ApiError:
            return []

    found = [rule for b in store.list(RBAC, "ClusterRoleBinding") if binds(b)
             for rule in rules("ClusterRole", None, b["roleRef"]["name"])]
    if namespace:
        found += [rule for b in store.list(RBAC, "RoleBinding", namespace) if binds(b)
                  for rule in rules(b["roleRef"]["kind"], namespace if b["roleRef"]["kind"] == "Role" else None,
                                    b["roleRef"]["name"])]
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in found)


class _PodViewHandler(KubeApiHandler):
    """The emulator's API as a pod's ServiceAccount meets it: its bearer token required, every request authorised."""

    def _dispatch(self, method):
        server = self.server
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        attributes = request_attributes(method, self.path)
        if scheme.lower() != "bearer" or token != POD_TOKEN:
            self._read_body()
            return self._send_error(ApiError(401, "Unauthorized", "Unauthorized"))
        if attributes is not None:
            if not authorized(server.store, server.subject, *attributes):
                self._read_body()
                server.denied.append(attributes)
                verb, group, resource, namespace = attributes
                return self._send_error(ApiError(403, "Forbidden", (
                    f'{resource} is forbidden: User "system:serviceaccount:{":".join(server.subject)}" cannot '
                    f'{verb} resource "{resource}" in API group "{group}"'
                    + (f' in the namespace "{namespace}"' if namespace else ""))))
            server.used.append(attributes)
        return super()._dispatch(method)


class PodView(ThreadingHTTPServer):
    """HTTPS on 127.0.0.1 over an emulator's store; the TLS handshake runs in each request's thread."""

    daemon_threads = True

    def __init__(self, store, certificate, subject: tuple[str, str]):
        super().__init__(("127.0.0.1", 0), _PodViewHandler)
        self.store, self.subject, self.faults, self.stopping = store, subject, [], threading.Event()
        self.used: list[tuple] = []
        self.denied: list[tuple] = []
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(certificate.cert_path, certificate.key_path)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def get_request(self):
        sock, address = super().get_request()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request, client_address):
        try:
            request.do_handshake()
        except OSError:
            return
        super().finish_request(request, client_address)

    def stop(self):
        self.stopping.set()
        self.shutdown()
        self.server_close()


SITECUSTOMIZE = '''"""Test-only (tests/test_schedule.py): the pod's service-account files, in a temporary folder."""
import os
from pathlib import Path

from kubernetes.config import incluster_config

import nasiko_nb.cluster

_directory = Path(os.environ["NASIKO_TEST_SERVICE_ACCOUNT"])
incluster_config.SERVICE_TOKEN_FILENAME = str(_directory / "token")
incluster_config.SERVICE_CERT_FILENAME = str(_directory / "ca.crt")
nasiko_nb.cluster.IN_CLUSTER_TOKEN = _directory / "token"
'''


@pytest.fixture
def service_account_files(tmp_path):
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount: a token and the cluster's CA."""
    directory = tmp_path / "serviceaccount"
    certificate = make_certificate(tmp_path / "tls")
    directory.mkdir()
    (directory / "token").write_text(POD_TOKEN)
    (directory / "ca.crt").write_bytes(certificate.cert_pem)
    return directory, certificate


@contextlib.contextmanager
def in_pod(scenario: str, runbook: str, kubeconfig_dir: Path, certificate, parameters=()):
    """Start a scenario, ``--apply`` the runbook's manifests as an administrator, serve the pod's view over TLS;
    yields the view and the CronJob as stored in the cluster."""
    info = records.resolve(runbook)
    with sim.start(scenario) as server:
        kubeconfig = server.write_kubeconfig(kubeconfig_dir / f"{scenario}.kubeconfig", context=f"sim-{scenario}")
        argv = [runbook, "--cron", "*/15 * * * *", "--output", OUTPUT, "--kubeconfig", str(kubeconfig), "--apply"]
        for name, value in parameters:
            argv += ["-p", name, value]
        assert nasiko_nb_schedule(*argv) == 0
        cronjob = server.store.get("batch/v1", "CronJob", "nasiko-runbooks", f"runbook-{info.id}")
        view = PodView(server.store, certificate, ("nasiko-runbooks", f"runbook-{info.id}"))
        try:
            yield view, cronjob
        finally:
            view.stop()


def run_cronjob_container(cronjob: dict, view: PodView, service_account: Path, tmp_path: Path) -> dict:
    """The CronJob's container command and environment, run here: in-cluster configuration, no kubeconfig.

    Only the output moves from S3 to a local folder (the S3 archive is not part of this module)."""
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    site = tmp_path / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {name: value for name, value in os.environ.items() if name != "KUBECONFIG"}
    env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
    env.update({e["name"]: "from-the-credentials-secret" for e in container["env"] if "valueFrom" in e})
    (tmp_path / "home").mkdir(exist_ok=True)
    env.update(HOME=str(tmp_path / "home"), KUBERNETES_SERVICE_HOST="127.0.0.1",
               KUBERNETES_SERVICE_PORT=str(view.port), NASIKO_TEST_SERVICE_ACCOUNT=str(service_account),
               PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
               NASIKO_RUNBOOKS=str(REPO / "runbooks"))
    command = list(container["command"])
    assert command[0] == "nasiko-nb" and command[command.index("--output") + 1] == OUTPUT
    records_dir = tmp_path / "records"
    command[0] = str(Path(sys.executable).parent / "nasiko-nb")
    command[command.index("--output") + 1] = str(records_dir)
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = [json.loads(p.read_text()) for p in records_dir.glob("*.json")]
    return record


def test_connect_without_kubeconfig_uses_the_pods_service_account(service_account_files, tmp_path, monkeypatch):
    directory, certificate = service_account_files
    with in_pod("healthy", "00-triage", tmp_path, certificate) as (view, _):
        monkeypatch.delenv("KUBECONFIG", raising=False)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(view.port))
        monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(directory / "token"))
        monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(directory / "ca.crt"))
        monkeypatch.setattr(nasiko_nb.cluster, "IN_CLUSTER_TOKEN", directory / "token")
        cluster = nasiko_nb.cluster.connect()   # checks /version over TLS, verified against the CA file
        configuration = cluster.api.configuration
        assert (cluster.context, cluster.server) == ("in-cluster", f"https://127.0.0.1:{view.port}")
        assert configuration.ssl_ca_cert == str(directory / "ca.crt")
        assert configuration.api_key["authorization"] == f"bearer {POD_TOKEN}"
        assert cluster.get_json("/api/v1/namespaces/nasiko-agents/pods")["items"]
        assert cluster.get_json("/api/v1/namespaces/nasiko-agents/secrets")["items"]
        for method, path in (("GET", "/api/v1/namespaces/default/secrets"),
                             ("GET", "/apis/apps/v1/namespaces/nasiko/deployments/nasiko-backend"),
                             ("PATCH", "/apis/apps/v1/namespaces/nasiko/deployments/nasiko-backend")):
            with pytest.raises(ApiException) as refused:
                if method == "GET":
                    cluster.get_json(path)
                else:
                    cluster.send_json(method, path, {"metadata": {"labels": {"x": "y"}}},
                                      "application/merge-patch+json")
            assert refused.value.status == 403


def test_the_read_only_runbooks_run_in_cluster_with_exactly_the_granted_reads(service_account_files, tmp_path):
    """The CronJob's command for 00-triage and 10-cluster-health, each as its own ServiceAccount: nothing is
    refused, and together they use every (verb, resource) granted, so none is granted in vain."""
    directory, certificate = service_account_files
    used = set()
    for scenario, runbook in (("healthy", "00-triage"), ("buildkit-down", "10-cluster-health")):
        with in_pod(scenario, runbook, tmp_path, certificate) as (view, cronjob):
            record = run_cronjob_container(cronjob, view, directory, tmp_path / runbook)
        assert record["context"] == "in-cluster" and record["outcome"] != "error", record
        assert not [f for f in record["findings"] if f["code"].startswith("cluster/")]
        assert view.denied == [] and view.used
        assert {namespace for verb, group, resource, namespace in view.used if resource == "secrets"} == set(
            snapshot.PLATFORM_NAMESPACES)
        used |= {(verb, group, resource) for verb, group, resource, _ in view.used}
    assert ("get", "", "pods/log") in used   # buildkitd's previous log
    assert used == {(verb, group, resource) for verb, group, resource, _ in grants(manifests_for("00-triage"))}
    assert used == reads_of_read_only_runbooks()


def test_a_mutating_runbook_changes_the_cluster_through_its_write_role(service_account_files, tmp_path):
    directory, certificate = service_account_files
    parameters = [("dry_run", "false"), ("confirm", "nasiko-backend"), ("timeout_s", "60")]
    with in_pod("healthy", "12-restart-deployment", tmp_path, certificate, parameters) as (view, cronjob):
        record = run_cronjob_container(cronjob, view, directory, tmp_path / "run")
    assert record["context"] == "in-cluster" and record["outcome"] == "changed", record
    assert [(c["verb"], c["resource"]) for c in record["changes"]] == [("patch", "Deployment nasiko/nasiko-backend")]
    assert view.denied == []
    granted = grants(manifests_for("12"))
    assert all((verb, group, resource, namespace) in granted or (verb, group, resource, "*") in granted
               for verb, group, resource, namespace in view.used)
    assert ("patch", "apps", "deployments", "nasiko") in view.used


def test_the_cli_offers_schedule(tmp_path, capsys):
    from nasiko_nb.cli import main

    assert main(["schedule", "00", "--cron", "*/15 * * *", "--output", "s3://bucket/nasiko"]) == 2
    assert "invalid cron schedule" in capsys.readouterr().err
    assert main(["schedule", "00", "--cron", "*/15 * * * *", "--output", "s3://bucket/nasiko", "--write", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["runbook-00-triage.yaml"]
