"""`nasiko-nb lab` started as a user starts it, for tests/test_lab.py and the browser tests."""
import signal
import subprocess
import sys


def start_lab(*options: str, env: dict | None = None) -> tuple[subprocess.Popen, dict[str, str]]:
    """The running `nasiko-nb lab` and the `key: value` lines it printed up to its URL."""
    process = subprocess.Popen([sys.executable, "-m", "nasiko_nb.cli", "lab", *options], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    printed = {}
    while "url" not in printed:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"lab ended before printing its URL: {process.stderr.read()}")
        key, _, value = line.partition(": ")
        printed[key] = value.strip()
    return process, printed


def interrupt(process: subprocess.Popen) -> int:
    """Ctrl-C, as in a terminal; the exit code once JupyterLab and the emulator are stopped."""
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=60)
