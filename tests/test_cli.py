"""Bad input gets one clear line on stderr and a non-zero exit, with nothing changed; good input works."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nasiko_nb.cli import main
from tests.paths import REPO

KUBECTL = shutil.which("kubectl")


def one_line_error(capsys, code, expected_code=2) -> str:
    assert code == expected_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def kubeconfig_for(server: str, path: Path) -> Path:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]
current-context: ctx
""")
    return path


def test_list_shows_runbooks_with_side_effects(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "00-triage" in out and "read-only" in out
    assert "05-image-pull-backoff" in out and "mutating" in out and "dry_run=True" in out


def test_unknown_runbook(capsys, tmp_path):
    err = one_line_error(capsys, main(["run", "no-such-runbook", "--output", str(tmp_path)]))
    assert "unknown runbook 'no-such-runbook'" in err and "05-image-pull-backoff" in err


def test_unknown_scenario(capsys, tmp_path):
    err = one_line_error(capsys, main(["run", "05", "--demo", "nope", "--output", str(tmp_path)]))
    assert "nope" in err and "image-pull-missing-secret" in err


def test_missing_kubeconfig(capsys, tmp_path):
    err = one_line_error(capsys, main(["run", "05", "--kubeconfig", str(tmp_path / "absent"), "--output", str(tmp_path)]))
    assert "kubeconfig not found" in err


def test_malformed_kubeconfig(capsys, tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("clusters: [unclosed\n  - : :")
    err = one_line_error(capsys, main(["run", "05", "--kubeconfig", str(bad), "--output", str(tmp_path)]))
    assert str(bad) in err and "not" in err


def test_unknown_context(capsys, tmp_path):
    kubeconfig = kubeconfig_for("http://127.0.0.1:1", tmp_path / "kc")
    err = one_line_error(capsys, main(["run", "05", "--kubeconfig", str(kubeconfig), "--context", "prod",
                                       "--output", str(tmp_path)]))
    assert "context 'prod'" in err and "ctx" in err


def test_api_server_refusing_connections(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    kubeconfig = kubeconfig_for(f"http://127.0.0.1:{port}", tmp_path / "kc")
    err = one_line_error(capsys, main(["run", "05", "--kubeconfig", str(kubeconfig), "--output", str(tmp_path)]))
    assert "connection refused" in err
    assert not list(tmp_path.glob("*.ipynb"))


def test_api_server_timing_out(capsys, tmp_path):
    with socket.socket() as listener:  # accepts connections but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        kubeconfig = kubeconfig_for(f"http://127.0.0.1:{listener.getsockname()[1]}", tmp_path / "kc")
        err = one_line_error(capsys, main(["run", "05", "--kubeconfig", str(kubeconfig), "--timeout", "1",
                                           "--output", str(tmp_path)]))
    assert "did not answer in time" in err


def test_namespace_that_does_not_exist(capsys, tmp_path):
    err = one_line_error(capsys, main(["run", "05", "--demo", "healthy", "-p", "namespace", "nasiko-agentz",
                                       "--output", str(tmp_path)]))
    assert "namespace 'nasiko-agentz' does not exist" in err and "nasiko-agents" in err


def test_agent_that_does_not_exist(capsys, tmp_path):
    err = one_line_error(capsys, main(["run", "05", "--demo", "healthy", "-p", "agent", "ghost-agent",
                                       "--output", str(tmp_path)]))
    assert "agent 'ghost-agent' not found" in err and "weather-agent" in err


def test_malformed_snapshot(capsys, tmp_path):
    bad = tmp_path / "bundle.yaml"
    bad.write_text("apiVersion: v1\nkind: List\nitems: [ {unclosed\n")
    err = one_line_error(capsys, main(["run", "05", "--snapshot", str(bad), "--output", str(tmp_path)]))
    assert "bundle.yaml" in err


@pytest.mark.parametrize("name, value, message", [
    ("dry_run", "maybe", "must be bool"),
    ("wait_s", "soon", "must be int"),
    ("no_such_parameter", "1", "has no parameter"),
    ("registry_password", "x", "looks like a secret"),
])
def test_bad_parameters(capsys, tmp_path, name, value, message):
    err = one_line_error(capsys, main(["run", "05", "--demo", "healthy", "-p", name, value, "--output", str(tmp_path)]))
    assert message in err
    assert not list(tmp_path.glob("*.ipynb"))


def test_parameters_file_with_wrong_type(capsys, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("dry_run: [1, 2]\n")
    err = one_line_error(capsys, main(["run", "05", "--demo", "healthy", "-f", str(params), "--output", str(tmp_path)]))
    assert "dry_run" in err and "must be bool" in err


def test_console_script_reports_one_line():
    result = subprocess.run([sys.executable, "-m", "nasiko_nb.cli", "run", "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("nasiko-nb: unknown runbook") and len(result.stderr.splitlines()) == 1


@pytest.fixture
def served_demo():
    """`nasiko-nb sim` in the foreground, as a user runs it, until the test ends."""
    kubeconfig = Path(tempfile.mkdtemp()) / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "nasiko_nb.cli", "sim", "image-pull-missing-secret",
                             "--write-kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline() for _ in range(2)]
    assert lines[1].startswith("kubeconfig: "), lines
    yield kubeconfig
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.skipif(not KUBECTL and not os.environ.get("CI"), reason="kubectl not installed")
def test_kubectl_reads_the_served_demo(served_demo, tmp_path):
    kubectl = [KUBECTL, "--kubeconfig", str(served_demo), "--cache-dir", str(tmp_path / "cache")]
    pods = subprocess.run([*kubectl, "get", "pods", "-A"], capture_output=True, text=True, check=True).stdout
    assert pods.split()[:6] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    broken = next(line.split() for line in pods.splitlines() if "ImagePullBackOff" in line)
    described = subprocess.run([*kubectl, "describe", "pod", "-n", broken[0], broken[1]],
                               capture_output=True, text=True, check=True).stdout
    assert "Failed to pull image" in described and "401 Unauthorized" in described


def test_readme_quick_start_and_ci_run_the_same_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.startswith("    python3 -m venv")]
    assert len(commands) == 2 and commands[0].endswith("nasiko-nb demo")
    assert commands[1] in ci.splitlines()


def test_samples_copy_matches_the_shared_samples():
    from tests.paths import SAMPLES, SHARED

    shared = SHARED / "samples" / "messages.yaml"
    if not shared.exists():
        pytest.skip("shared/ is not beside this clone")
    assert SAMPLES.read_text() == shared.read_text()
