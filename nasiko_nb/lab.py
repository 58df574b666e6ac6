"""``nasiko-nb lab``: JupyterLab on the runbooks, wired to the demo platform or to a given kubeconfig.

Stepping through a runbook is one of the three ways the collection is used; this command makes it one
step. JupyterLab listens on 127.0.0.1 only, behind a token made for this session, and the URL printed
carries it. The cluster reaches every kernel through the environment JupyterLab is started with
(kernels inherit it): ``KUBECONFIG``, and with ``--demo`` the variables that point the runbooks at the
scenario's fake DigitalOcean or AWS and its Kong. The demo's DigitalOcean token travels as a 0600 file
(``DIGITALOCEAN_TOKEN_FILE``), so its value is neither printed nor left in the kernels' environment.

Ctrl-C (or SIGTERM) stops JupyterLab, which shuts its kernels down, and then the emulator; so does
JupyterLab's own File > Shut Down.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nasiko_nb.cluster import connect
from nasiko_nb.records import RUNBOOKS_DIR

DEFAULT_PORT = 8888
READY_TIMEOUT_S = 120      # JupyterLab's first start on a busy machine (extension discovery) takes a while
STOP_TIMEOUT_S = 30
#: Nothing but 127.0.0.1: no announcements feed, no update check, and no toast asking to turn them on.
QUIET = ("--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")
QUIET_SETTINGS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


class LabFailed(RuntimeError):
    """JupyterLab did not start or ended with an error; the message is its last log line."""


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``lab`` to the CLI's sub-commands; bad input raises ValueError/ClusterError (one line, exit 2)."""
    parser = subparsers.add_parser(
        "lab", help="JupyterLab on the runbooks, against the demo platform or a kubeconfig",
        description="Start JupyterLab on the runbooks folder, on 127.0.0.1 with a token, with the chosen cluster "
                    "exported to every kernel; print its URL. Ctrl-C stops it (and the demo platform).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", metavar="SCENARIO",
                        help="serve this scenario of the simulated platform (nasiko-nb scenarios lists them)")
    source.add_argument("--kubeconfig", metavar="PATH", help="a real cluster's kubeconfig "
                                                             "(default: $KUBECONFIG, then ~/.kube/config)")
    parser.add_argument("--port", type=int, metavar="N",
                        help=f"port on 127.0.0.1 (default: {DEFAULT_PORT} or the next free one; 0: any free port)")
    parser.set_defaults(handler=cmd_lab)
    return parser


def cmd_lab(args) -> int:
    """Serve until interrupted; 0 when stopped by Ctrl-C or JupyterLab's shut-down, 1 when JupyterLab failed."""
    if args.port is not None:
        require_free_port(args.port)
    with _stop_on_sigterm(), tempfile.TemporaryDirectory(prefix="nasiko-lab-") as tmp:
        workdir = Path(tmp)
        try:
            with cluster_environment(args, workdir) as (variables, described):
                return serve(variables, workdir, args.port, described)
        except KeyboardInterrupt:
            return 0
        except LabFailed as exc:
            print(f"nasiko-nb: JupyterLab stopped: {exc}", file=sys.stderr)
            return 1


@contextlib.contextmanager
def cluster_environment(args, workdir: Path):
    """Yield (variables for JupyterLab's environment, lines that say which cluster); a demo runs until the end."""
    if not args.demo:
        if not args.kubeconfig:
            yield {}, {"cluster": "the current kubeconfig ($KUBECONFIG, then ~/.kube/config)"}
            return
        path = Path(args.kubeconfig).expanduser().resolve()
        connect(str(path), check=False)   # missing or unusable: one line, before JupyterLab starts
        yield {"KUBECONFIG": str(path)}, {"cluster": "the current context of the kubeconfig", "kubeconfig": str(path)}
        return
    from nasiko_nb import sim

    if args.demo not in sim.SCENARIOS:
        raise sim.UnknownScenario(args.demo)
    server = sim.start(args.demo)
    try:
        kubeconfig = server.write_kubeconfig(workdir / "kubeconfig", context=f"sim-{args.demo}")
        yield ({"KUBECONFIG": str(kubeconfig), **kernel_environment(server.environment(), workdir)},
               {"cluster": f"demo scenario {args.demo}, simulated API server {server.url}", "kubeconfig": str(kubeconfig)})
    finally:
        server.stop()


def kernel_environment(variables: dict[str, str], directory: Path) -> dict[str, str]:
    """The emulator's variables with the DigitalOcean token moved into a 0600 file (its value is never shown)."""
    result = dict(variables)
    token = result.pop("DIGITALOCEAN_TOKEN", None)
    if token is not None:
        token_file = directory / "digitalocean-token"
        token_file.touch(mode=0o600)
        token_file.write_text(token)
        result["DIGITALOCEAN_TOKEN_FILE"] = str(token_file)
    return result


def serve(variables: dict[str, str], workdir: Path, port: int | None, described: dict[str, str]) -> int:
    """Start JupyterLab, print where it is, wait for it to end; it is always stopped on the way out."""
    token = secrets.token_hex(24)
    log = workdir / "jupyterlab.log"
    with log.open("wb") as log_file:
        process = start_jupyter(variables, workdir, token, port, log_file)
        try:
            url = wait_until_ready(process, workdir / "runtime", log)
            lines = {"runbooks": RUNBOOKS_DIR, **described, "log": log, "url": f"{url}lab?token={token}"}
            print("".join(f"{key}: {value}\n" for key, value in lines.items()) + "Ctrl-C stops it", flush=True)
            if process.wait() != 0:
                raise LabFailed(last_line(log))
            return 0
        finally:
            stop(process)


def start_jupyter(variables: dict[str, str], workdir: Path, token: str, port: int | None, log_file) -> subprocess.Popen:
    """JupyterLab in its own session (a terminal's Ctrl-C reaches this command, which stops it in order)."""
    environment = {**os.environ, **variables, "JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
                   "JUPYTER_CONFIG_PATH": os.pathsep.join(filter(None, (str(default_settings(workdir)),
                                                                        os.environ.get("JUPYTER_CONFIG_PATH"))))}
    if "DIGITALOCEAN_TOKEN_FILE" in variables:
        environment.pop("DIGITALOCEAN_TOKEN", None)   # the demo's token file, not a token of the caller's
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={DEFAULT_PORT if port is None else port}",
               f"--ServerApp.port_retries={50 if port is None else 0}",
               f"--ServerApp.root_dir={RUNBOOKS_DIR}", *QUIET,
               # checkpoints live with this session, not as .ipynb_checkpoints/ inside the repository's runbooks
               f"--FileCheckpoints.checkpoint_dir={workdir / 'checkpoints'}"]
    if os.geteuid() == 0:   # containers and CI run as root; JupyterLab refuses that unless told
        command.append("--allow-root")
    return subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL, stdout=log_file,
                            stderr=subprocess.STDOUT, start_new_session=True)


def default_settings(workdir: Path) -> Path:
    """A config folder whose lab defaults are :data:`QUIET_SETTINGS` (the user's own settings still win)."""
    folder = workdir / "config"
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    (folder / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(QUIET_SETTINGS))
    return folder


def wait_until_ready(process: subprocess.Popen, runtime: Path, log: Path) -> str:
    """The server's base URL, read from the server file JupyterLab writes once it listens."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabFailed(last_line(log))
        for info in runtime.glob("jpserver-*.json"):
            with contextlib.suppress(ValueError, OSError):
                return json.loads(info.read_text())["url"]
        time.sleep(0.2)
    raise LabFailed(f"not ready after {READY_TIMEOUT_S} s (log: {log})")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, on which JupyterLab shuts its kernels down; SIGKILL if it does not end in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def require_free_port(port: int) -> None:
    """An asked-for port must be free on 127.0.0.1 (JupyterLab would otherwise pick another one)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port} is not a TCP port (0 to 65535)")
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise ValueError(f"port {port} on 127.0.0.1 is in use; pick another with --port, or 0 for any") from None


@contextlib.contextmanager
def _stop_on_sigterm():
    """SIGTERM and SIGHUP stop the lab like Ctrl-C, so JupyterLab and the emulator are never left running."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
