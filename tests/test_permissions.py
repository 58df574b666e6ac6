"""A 403 on a list becomes a cluster/forbidden finding naming what is needed, and the run goes on."""
import json
import tempfile
from pathlib import Path

import pytest

from nasiko_nb import sim
from nasiko_nb.cli import main
from nasiko_nb.sim.server import Fault

FORBIDDEN_SECRETS = ('secrets is forbidden: User "system:serviceaccount:nasiko:runbooks" cannot list resource '
                     '"secrets" in API group "" in the namespace "nasiko-agents"')


@pytest.fixture
def platform_without_secret_access():
    server = sim.start("image-pull-missing-secret")
    server.inject(Fault(403, r"^/api/v1/namespaces/nasiko-agents/secrets$", message=FORBIDDEN_SECRETS))
    yield server, server.write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig")
    server.stop()


def test_forbidden_list_becomes_a_finding_and_the_diagnosis_continues(platform_without_secret_access, tmp_path):
    server, kubeconfig = platform_without_secret_access
    assert main(["run", "05", "--kubeconfig", str(kubeconfig), "--output", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    by_code = {f["code"]: f for f in record["findings"]}
    forbidden = by_code["cluster/forbidden"]
    assert forbidden["message"] == "The runbook needs list on secrets in nasiko-agents."
    assert "cannot list resource" in forbidden["evidence"]
    assert "image-pull/missing-pull-secret" in by_code  # the pods were still read and diagnosed


def test_server_errors_become_api_error_findings(tmp_path):
    with sim.start("healthy") as server:
        server.inject(Fault(500, r"/jobs$"))
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        assert main(["run", "00-triage", "--kubeconfig", str(kubeconfig), "--output", str(tmp_path)]) == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    errors = [f for f in record["findings"] if f["code"] == "cluster/api-error"]
    assert {f["resource"] for f in errors} == {"Job nasiko", "Job nasiko-agents", "Job buildkit"}
