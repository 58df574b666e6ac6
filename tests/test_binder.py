"""Binder: its dependency list agrees with pyproject.toml, and binder/start serves the demo platform and points
what it starts (the notebook server, and so every kernel) at it."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.paths import REPO

BINDER = REPO / "binder"
KUBECTL = shutil.which("kubectl")
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
LOCAL_PROJECT = {"-e .", "."}   # the project itself: installs exactly pyproject's dependencies
#: What Binder hands to start ("$@"): checks the kubeconfig and the environment, then kubectl against the demo.
CHECK = """
set -e
test -s "$KUBECONFIG" && test "$KUBECONFIG" = "$HOME/.kube/config"
test -n "$NASIKO_KONG_ADMIN_URL" && test -n "$NASIKO_DO_API_URL"
test -z "${DIGITALOCEAN_TOKEN:-}" && test "$(stat -c %a "$DIGITALOCEAN_TOKEN_FILE")" = 600
kubectl get pods -A
"""


def requirement_lines() -> list[str]:
    lines = [line.split(" #")[0].strip() for line in (BINDER / "requirements.txt").read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_binder_installs_the_project_and_contradicts_none_of_its_pins():
    lines = requirement_lines()
    assert LOCAL_PROJECT & set(lines), "binder/requirements.txt must install the project (-e .)"
    pinned = {Requirement(dep).name.lower(): Requirement(dep).specifier for dep in PROJECT["dependencies"]}
    for line in set(lines) - LOCAL_PROJECT:
        requirement = Requirement(line)
        assert requirement.name.lower() in pinned, f"{line}: not a dependency in pyproject.toml"
        assert requirement.specifier == pinned[requirement.name.lower()], f"{line}: pyproject.toml says otherwise"


def test_binder_python_satisfies_requires_python():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert runtime.startswith("python-")
    assert Version(runtime.removeprefix("python-")) in SpecifierSet(PROJECT["requires-python"])


@pytest.fixture
def binder_home(tmp_path):
    """An empty HOME, as on a fresh Binder; the emulator that start leaves running is stopped at the end."""
    yield tmp_path
    pid_file = tmp_path / ".nasiko-sim" / "sim.pid"
    if pid_file.exists():
        stop(int(pid_file.read_text()))


def stop(pid: int) -> None:
    """SIGTERM, then wait until it is gone (a zombie counts as gone: its parent, the start shell, has exec'd)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while running(pid):
        assert time.monotonic() < deadline, f"emulator {pid} still running"
        time.sleep(0.1)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not KUBECTL and not os.environ.get("CI"), reason="kubectl not installed")
def test_start_serves_the_demo_and_hands_its_environment_to_the_command(binder_home):
    env = {"HOME": str(binder_home), "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"]))}
    result = subprocess.run([str(BINDER / "start"), "bash", "-c", CHECK], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:6] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "ImagePullBackOff" in result.stdout and "nasiko-agents" in result.stdout
    token = (binder_home / ".kube" / "digitalocean-token").read_text().strip()
    log = (binder_home / ".nasiko-sim" / "sim.log").read_text()
    assert token and token not in log + result.stdout + result.stderr
