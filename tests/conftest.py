"""Fixtures shared by the runbook tests."""
import pytest

from nasiko_nb import sim


@pytest.fixture
def platform(request, tmp_path, monkeypatch):
    """A scenario (``request.param``) served with its fake providers; runbook kernels reach them through the environment."""
    server = sim.start(request.param)
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    yield server, str(kubeconfig)
    server.stop()
