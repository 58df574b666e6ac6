"""Session-wide set-up shared by the pytest tests and nbval's notebook runs.

nbval starts its kernels before any fixture runs, so the simulated platform the notebooks talk to
is started here, in ``pytest_sessionstart``, and exported through ``KUBECONFIG`` and the variables
that reach its fake DigitalOcean (kernels inherit them).
"""
import os
import tempfile
from pathlib import Path

NOTEBOOK_SCENARIO = "image-pull-missing-secret"
_server = None


def pytest_sessionstart(session):
    global _server
    from nasiko_nb import sim

    _server = sim.start(NOTEBOOK_SCENARIO)
    kubeconfig = Path(tempfile.mkdtemp(prefix="nasiko-test-")) / "kubeconfig"
    _server.write_kubeconfig(kubeconfig, context=f"sim-{NOTEBOOK_SCENARIO}")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    os.environ.update(_server.environment())   # the scenario's fake DigitalOcean, for the registry runbooks
    os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_sessionfinish(session, exitstatus):
    if _server is not None:
        _server.stop()
