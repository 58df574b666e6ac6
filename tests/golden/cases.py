"""Which scenario and parameters each golden notebook shows, and the emulator it runs against.

One table, read by both the nbval hooks (``tests/golden/conftest.py``) and the regeneration script
(``tests/golden/regenerate.py``), so a golden is always checked against the cluster it was made on.
Every golden gets a fresh emulator: the two that apply a fix (09, 12) change it.

The emulator draws uids at random and derives a pod's name from them, and a pod's node, its
containers' usage and an image's size from a hash of a name that, for agents, carries the scenario's
build time; moto stamps each image the scenario pushes with the current second. A golden would then
show other pods per node, other usage and (when a second boundary falls between two pushes) another
order of ECR's newest-first tags on every run. So while a golden's emulator runs (``deterministic``),
its uids come from a seeded generator, those hashes see names without the build time and moto's push
clock stands still. What still varies (times, the build time in names, random name suffixes, token
fingerprints, ports) is masked by ``sanitize.cfg``.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from moto.ecr import models as moto_ecr

from nasiko_nb import sim
from nasiko_nb.sim import aws, controllers, digitalocean, kong, kubelet, metrics, platform, store
from tests.paths import REPO

GOLDEN_DIR = REPO / "tests" / "golden"
SANITIZE = GOLDEN_DIR / "sanitize.cfg"
CHECK_TAG = "nbval-check-output"   # nbval compares a tagged cell's outputs, also under --nbval-lax
#: variables a developer's shell or another emulator may have set; the kernel gets only the golden's own
_CLUSTER_VARIABLES = ("NASIKO_", "DIGITALOCEAN_", "AWS_", "KUBECONFIG")


@dataclass(frozen=True)
class Case:
    scenario: str
    parameters: dict = field(default_factory=dict)


CASES = {
    "00-triage": Case("image-pull-unauthorized"),
    "01-registry-name-mismatch": Case("registry-name-mismatch"),
    "02-registry-401-unauthorized": Case("registry-401-read-only-token"),
    "03-buildkit-job-pending": Case("job-pending-insufficient-cpu"),
    "04-build-job-failed": Case("build-missing-dockerfile"),
    "05-image-pull-backoff": Case("image-pull-missing-secret"),
    "06-secret-management": Case("registry-secrets-inconsistent"),
    "07-agent-chat-404": Case("agent-chat-missing-label"),
    "08-buildkit-unreachable": Case("buildkit-down"),
    # an applied clean-up and its verify: 300 failed Jobs deleted with one delete-collection
    "09-cluster-out-of-resources": Case("cluster-failed-jobs",
                                        {"dry_run": False, "confirm": "delete-failed-jobs/nasiko-agents"}),
    "10-cluster-health": Case("buildkit-down"),
    "11-reset-registry-credentials": Case("registry-401-read-only-token"),
    # an applied rollout restart, watched to the end
    "12-restart-deployment": Case("healthy", {"dry_run": False, "confirm": "nasiko-backend"}),
    "13-clean-slate-reset": Case("cluster-failed-jobs"),
    "14-digitalocean-registry": Case("healthy"),
    "15-aws-ecr": Case("ecr-agent-secret-stale"),
}


def golden_path(runbook: str) -> Path:
    return GOLDEN_DIR / f"{runbook}.ipynb"


def comparable(value):
    """An output value as nbval's sanitizing sees it: text as is, JSON (the run record) as sorted JSON text."""
    return json.dumps(value, indent=1, sort_keys=True) if isinstance(value, (dict, list)) else value


def masked(value, patterns: list[tuple[str, str]]):
    """``value`` with the sanitize patterns applied as nbval applies them; JSON stays JSON."""
    text = comparable(value)
    if not isinstance(text, str):
        return value
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return json.loads(text) if isinstance(value, (dict, list)) else text


class _SeededUuid:
    """The ``uuid`` module with ``uuid4`` drawn from a seeded generator."""

    def __init__(self, rng: random.Random):
        self._rng = rng

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def __getattr__(self, name):
        return getattr(uuid, name)


#: the build time in agents' names and tags (`job-weather-agent-1795704155-gkk6k`, `weather-agent:v1795704155`),
#: with the hashes derived from it
BUILD_TIME = re.compile(r"(?<=[-v])\d{10}(?:-[bcdfghjklmnpqrstvwxz2456789]{5,10})*\b")


def _timeless(function, position: int = 0):
    """``function`` with the build time taken out of its name argument (the one at ``position``)."""
    def without_build_time(*args):
        args = list(args)
        args[position] = BUILD_TIME.sub("", args[position])
        return function(*args)
    return without_build_time


@contextmanager
def deterministic(seed: int = 0):
    """The emulator started inside this block places pods, sizes images and reports usage the same way every run."""
    rng = random.Random(seed)
    with ExitStack() as stack:
        patch = stack.enter_context
        for module in (controllers, digitalocean, kong, kubelet, platform, store):
            patch(mock.patch.object(module, "uuid", _SeededUuid(rng)))
        patch(mock.patch.object(platform.Cluster, "node_for", _timeless(platform.Cluster.node_for, 1)))
        for module in (platform, aws):
            patch(mock.patch.object(module, "image_size", _timeless(platform.image_size)))
        patch(mock.patch.object(metrics, "_share", _timeless(metrics._share)))
        patch(mock.patch.object(moto_ecr, "datetime", _stopped_clock(datetime.now(timezone.utc))))
        yield


def _stopped_clock(instant: datetime) -> type[datetime]:
    """``datetime`` whose ``now`` is always ``instant``."""
    class Stopped(datetime):
        @classmethod
        def now(cls, tz=None):
            return instant.astimezone(tz) if tz else instant.replace(tzinfo=None)
    return Stopped


class Served:
    """A fresh emulator of one golden's scenario, and the environment its kernel starts with."""

    def __init__(self, runbook: str):
        case = CASES[runbook]
        with ExitStack() as stack:
            stack.enter_context(deterministic())
            self.server = sim.start(case.scenario)
            self._deterministic = stack.pop_all()
        self._folder = Path(tempfile.mkdtemp(prefix="nasiko-golden-"))
        kubeconfig = self.server.write_kubeconfig(self._folder / "kubeconfig", context=f"sim-{case.scenario}")
        kept = {k: v for k, v in os.environ.items() if not k.startswith(_CLUSTER_VARIABLES)}
        self.environment = {**kept, **self.server.environment(), "KUBECONFIG": str(kubeconfig), "MPLBACKEND": "Agg"}

    @contextmanager
    def kernel_environment(self):
        """This process's environment while a kernel starts (kernels inherit it), restored afterwards."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.environment)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def stop(self) -> None:
        self.server.stop()
        self._deterministic.close()
        shutil.rmtree(self._folder, ignore_errors=True)
