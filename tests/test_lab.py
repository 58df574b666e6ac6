"""``nasiko-nb lab``: JupyterLab on 127.0.0.1 behind its token, every kernel on the demo cluster, Ctrl-C stops all;
bad input is one line and exit 2 before anything starts."""
import argparse
import json
import socket
from pathlib import Path

import pytest
import requests
from jupyter_client import BlockingKernelClient

from nasiko_nb.cli import main
from nasiko_nb.lab import cluster_environment, kernel_environment
from tests.lab_process import interrupt, start_lab
from tests.test_cli import kubeconfig_for

SCENARIO = "image-pull-missing-secret"
#: Run in a kernel of the lab: what the kernel sees of the cluster, as JSON.
PROBE = """
import json, os, stat
from nasiko_nb.cluster import connect
token_file = os.environ["DIGITALOCEAN_TOKEN_FILE"]
print(json.dumps({"context": connect().context, "token_in_env": "DIGITALOCEAN_TOKEN" in os.environ,
                  "token_file_mode": oct(stat.S_IMODE(os.stat(token_file).st_mode)),
                  "kong": os.environ.get("NASIKO_KONG_ADMIN_URL", "")}))
"""


@pytest.fixture(scope="module")
def lab():
    process, printed = start_lab("--demo", SCENARIO, "--port", "0")
    yield process, printed
    if process.poll() is None:
        interrupt(process)


def test_lab_answers_with_its_token_only_and_on_loopback(lab):
    _, printed = lab
    base, token = printed["url"].split("lab?token=")
    assert base.startswith("http://127.0.0.1:") and len(token) == 48
    assert requests.get(f"{base}api/status", headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200
    assert requests.get(f"{base}api/status", timeout=10).status_code == 403
    assert requests.get(f"{base}api/status", headers={"Authorization": "token wrong"}, timeout=10).status_code == 403
    contents = requests.get(f"{base}api/contents", params={"token": token}, timeout=10).json()
    assert "05-image-pull-backoff.ipynb" in {entry["name"] for entry in contents["content"]}


def test_kernels_use_the_demo_cluster_and_never_see_the_token(lab):
    _, printed = lab
    base, token = printed["url"].split("lab?token=")
    auth = {"Authorization": f"token {token}"}
    kernel = requests.post(f"{base}api/kernels", headers=auth, json={"name": "python3"}, timeout=60).json()
    try:
        client = BlockingKernelClient()
        client.load_connection_file(Path(printed["log"]).parent / "runtime" / f"kernel-{kernel['id']}.json")
        client.start_channels()
        client.wait_for_ready(timeout=60)
        lines = []
        client.execute_interactive(PROBE, timeout=60,
                                   output_hook=lambda msg: lines.append(msg["content"].get("text", "")))
        client.stop_channels()
    finally:
        requests.delete(f"{base}api/kernels/{kernel['id']}", headers=auth, timeout=30)
    seen = json.loads("".join(lines))
    assert seen == {"context": f"sim-{SCENARIO}", "token_in_env": False, "token_file_mode": "0o600",
                    "kong": seen["kong"]} and seen["kong"].startswith("http://127.0.0.1:")


def test_ctrl_c_stops_jupyterlab_and_the_emulator(lab):
    process, printed = lab
    base = printed["url"].split("lab?token=")[0]
    emulator = printed["cluster"].split("simulated API server ")[1]
    kubeconfig = Path(printed["kubeconfig"])
    assert kubeconfig.exists() and kubeconfig.parent == Path(printed["log"]).parent
    assert interrupt(process) == 0
    for url in (base, emulator):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)
    assert not kubeconfig.parent.exists()
    assert process.stderr.read() == ""


@pytest.mark.parametrize("options, message", [
    (["--demo", "no-such-scenario"], "unknown scenario 'no-such-scenario'"),
    (["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig not found"),
    (["--port", "70000"], "--port 70000 is not a TCP port"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, options, message):
    assert main(["lab", *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_port_in_use_is_refused_before_anything_starts(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        assert main(["lab", "--demo", SCENARIO, "--port", str(busy.getsockname()[1])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is in use" in err, err


def test_the_demo_token_goes_to_a_private_file(tmp_path):
    variables = kernel_environment({"DIGITALOCEAN_TOKEN": "dop_v1_not_a_real_one", "NASIKO_DO_API_URL": "u"}, tmp_path)
    token_file = Path(variables.pop("DIGITALOCEAN_TOKEN_FILE"))
    assert variables == {"NASIKO_DO_API_URL": "u"}
    assert token_file.read_text() == "dop_v1_not_a_real_one" and token_file.stat().st_mode & 0o777 == 0o600


def test_a_kubeconfig_is_exported_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kubeconfig_for("https://127.0.0.1:6443", tmp_path / "kc")
    with cluster_environment(argparse.Namespace(demo=None, kubeconfig="kc"), tmp_path) as (variables, lines):
        assert variables == {"KUBECONFIG": str(tmp_path / "kc")} and lines["kubeconfig"] == str(tmp_path / "kc")
