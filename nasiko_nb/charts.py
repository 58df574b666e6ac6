"""Charts of the runbooks, rendered to PNG so an executed notebook and its HTML record keep them.

A bare ``Figure`` (no pyplot) draws off-screen whatever backend the kernel has, so a headless run
stores the same image an interactive one shows, and no figure is left open in the kernel.
"""
from __future__ import annotations

import io

import pandas as pd
from IPython.display import Image
from matplotlib.figure import Figure

_PANELS = (("cpu", "cpu_allocatable", "cpu_requested", "cpu_used", "cores"),
           ("memory", "memory_allocatable_gib", "memory_requested_gib", "memory_used_gib", "GiB"))
ALT_NODES = 5   # nodes described in a chart's alt text; the rest are counted


def capacity_chart(frame: pd.DataFrame) -> Image | None:
    """Per node, requested (and used, with metrics) against allocatable, for cpu and memory side by side.

    ``frame`` is :func:`nasiko_nb.checks.resources.node_capacity_frame`; nodes with the highest share of
    cpu requested come first. None for a cluster without nodes.
    """
    if frame is None or frame.empty:
        return None
    nodes = frame.sort_values("cpu_requested_pct", ascending=True, na_position="first")
    height = 1.4 + 0.28 * len(nodes)
    figure = Figure(figsize=(11, height), dpi=100, layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    positions = range(len(nodes))
    for axis, (resource, allocatable, requested, used, unit) in zip(axes, _PANELS):
        axis.barh(positions, nodes[allocatable], color="#d9d9d9", label="allocatable", height=0.8)
        axis.barh(positions, nodes[requested], color=_colours(nodes[requested] / nodes[allocatable]),
                  label="requested", height=0.5)
        if nodes[used].notna().any():
            axis.scatter(nodes[used], positions, marker="|", s=120, color="black", label="used (metrics)", zorder=3)
        axis.set_title(f"{resource} ({unit})")
        axis.set_xlim(0, max(float(nodes[allocatable].max()), float(nodes[requested].max())) * 1.05)
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(positions), labels=list(nodes["node"]), fontsize="small" if len(nodes) > 12 else None)
    handles, labels = axes[-1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    figure.suptitle("Requested vs allocatable per node (orange: 75% or more requested, red: 90% or more)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return Image(buffer.getvalue(), format="png", alt=capacity_alt(frame))


def capacity_alt(frame: pd.DataFrame) -> str:
    """What the capacity chart shows, in words (screen readers, the HTML record): the nodes with the highest
    share of cpu requested, each with its cpu and memory requested (and used) against allocatable."""
    nodes = frame.sort_values("cpu_requested_pct", ascending=False, na_position="last").to_dict("records")
    described = "; ".join(f"{row['node']}: " + ", ".join(_described(row, *panel) for panel in _PANELS)
                          for row in nodes[:ALT_NODES])
    rest = len(nodes) - ALT_NODES
    more = f"; {rest} more node(s), none with a higher share of cpu requested" if rest > 0 else ""
    return (f"Bar chart of cpu and memory requested against allocatable on {len(nodes)} node(s), highest share "
            f"of cpu requested first. {described}{more}.")


def _described(row: dict, resource: str, allocatable: str, requested: str, used: str, unit: str) -> str:
    used_part = "" if pd.isna(row[used]) else f", {row[used]:.2f} used"
    return (f"{resource} {row[requested]:.2f} of {row[allocatable]:.2f} {unit} requested "
            f"({row[f'{resource}_requested_pct']:.0f}%){used_part}")


def _colours(shares: pd.Series) -> list[str]:
    return ["#c0392b" if share >= 0.9 else "#e67e22" if share >= 0.75 else "#2e86c1" for share in shares.fillna(0)]
