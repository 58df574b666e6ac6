"""No credential leaves a run: canaries (a registry password and its docker-config ``auth``, a DigitalOcean token
and an AWS secret key in Secrets, the kubeconfig's bearer token, an AWS secret key in the environment) and the
scenario's own secrets are searched, plain, base64 and URL-encoded, in every record file (executed notebook with
papermill's parameters, HTML, JSON) and in everything the CLI printed, for every runbook's diagnosis and every
fix runbook's applied fix."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import fault_matrix
from tests.canaries import CANARY_AWS_SECRET, bearer_token, canaries_in, plant_canaries

RUNS = [(runbook, scenario, parameters, False) for runbook, (scenario, parameters) in fault_matrix.RUNBOOKS.items()]
RUNS += [(runbook, scenario, parameters, True) for runbook, (scenario, parameters) in fault_matrix.FIXES.items()]


def leaks_of(runbook: str, scenario: str, parameters, applies: bool) -> dict:
    """Run one runbook with canaries planted; the canary forms found per file or stream, and the run's exit code."""
    token = bearer_token(runbook)

    def prepare(server) -> dict:
        plant_canaries(server)
        return parameters(server) if applies else parameters

    with fault_matrix.emulated_run(runbook, scenario, prepare, token=token, timeout_s=10) as (server, done, records):
        secrets = (token, *server.secret_values())
        texts = {path.name: path.read_text() for path in records.iterdir()}
        texts.update(stdout=done.stdout, stderr=done.stderr)
        found = {name: canaries_in(text, secrets) for name, text in texts.items()}
        return {"exit": done.returncode, "files": len(texts) - 2, "leaks": {k: v for k, v in found.items() if v},
                "summarised": any("canary-regcred" in text for text in texts.values())}


@pytest.fixture(scope="module")
def results(monkeypatch_module):
    monkeypatch_module.setenv("AWS_SECRET_ACCESS_KEY", CANARY_AWS_SECRET)
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = pool.map(lambda run: leaks_of(*run), RUNS)
        return {(run[0], run[3]): outcome for run, outcome in zip(RUNS, outcomes)}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize("runbook, applies", [(run[0], run[3]) for run in RUNS],
                         ids=[f"{run[0]}{'-fix' if run[3] else ''}" for run in RUNS])
def test_no_canary_anywhere(results, runbook, applies):
    outcome = results[(runbook, applies)]
    assert outcome["files"] == 3, outcome            # the record was written: the search covered it
    assert outcome["leaks"] == {}


def test_the_canary_secret_was_read_and_summarised(results):
    """The secret-management runbook shows every registry secret (user, host, fingerprint): the canary went through
    the code that decodes secrets, and still appears nowhere."""
    assert results[("06-secret-management", False)]["summarised"]
