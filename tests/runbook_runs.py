"""Running a runbook through the CLI in a test, and reading what it left behind."""
import json

from nasiko_nb.cli import main
from nasiko_nb.sim.platform import REGISTRY_USER
from tests.secrets_check import leaked_in


def run_runbook(runbook, kubeconfig, output, *params):
    """``nasiko-nb run RUNBOOK --kubeconfig K --output O -p NAME VALUE ...``; returns the exit code."""
    args = ["run", runbook, "--kubeconfig", kubeconfig, "--output", str(output)]
    for name, value in zip(params[::2], params[1::2]):
        args += ["-p", name, value]
    return main(args)


def latest_record(output, runbook):
    return json.loads(sorted(output.glob(f"*-{runbook}.json"))[-1].read_text())


def assert_no_secret_in(output, server, users=(REGISTRY_USER,)):
    for path in output.iterdir():
        if path.is_file():
            assert leaked_in(path.read_text(), server.secret_values(), users=users) == [], path.name
