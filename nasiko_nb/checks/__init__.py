"""Detectors, one module per failure family, registered by family name.

A detector is pure: `detect(snapshot, params) -> list[Finding]`. It reads the snapshot (and any provider
answers passed in `params` as data) and never calls the API, so it runs the same on a live cluster, a
scenario and a replayed support bundle.
"""
from __future__ import annotations

import importlib
from typing import Callable, Iterable

from nasiko_nb.findings import Finding

Detector = Callable[..., list[Finding]]
DETECTORS: dict[str, Detector] = {}

# Modules whose detectors register themselves on import; a new family adds its module here.
DETECTOR_MODULES = (
    "nasiko_nb.checks.image_pull",
    "nasiko_nb.checks.registry",
    "nasiko_nb.checks.ecr",
    "nasiko_nb.checks.build",
    "nasiko_nb.checks.scheduling",
    "nasiko_nb.checks.resources",
    "nasiko_nb.checks.routing",
)


def detector(family: str) -> Callable[[Detector], Detector]:
    """Register the decorated function as the detector of `family` (e.g. "image-pull")."""
    def register(function: Detector) -> Detector:
        if family in DETECTORS and DETECTORS[family] is not function:
            raise ValueError(f"a detector for family {family!r} is already registered")
        DETECTORS[family] = function
        return function
    return register


def _load_detectors() -> None:
    for module in DETECTOR_MODULES:
        importlib.import_module(module)


def run_checks(snapshot, params: dict | None = None, families: Iterable[str] | None = None) -> list[Finding]:
    """The snapshot's own problems (e.g. cluster/forbidden) plus the findings of the chosen detector families."""
    _load_detectors()
    chosen = list(DETECTORS) if families is None else list(families)
    unknown = [family for family in chosen if family not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown check family {', '.join(unknown)}; known: {', '.join(sorted(DETECTORS))}")
    findings = list(snapshot.problems)
    for family in chosen:
        findings.extend(DETECTORS[family](snapshot, dict(params or {})))
    return findings
