"""Widgets for stepping through a runbook, each with a headless equivalent driven by parameters.

Headless (papermill) runs decide with the ``dry_run`` / ``confirm`` parameters; interactively the
same plan gets a confirm button that applies exactly that plan. Both paths go through
``fixes.apply_plan``, so the journal and the record are the same either way.
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as widgets
import pandas as pd
from IPython.display import Markdown, display

from nasiko_nb import fixes
from nasiko_nb.runbook import Run

ALL = "(all)"


def heading(text: str) -> None:
    display(Markdown(text))


def table(frame: pd.DataFrame, empty: str = "nothing found") -> None:
    """Show a table, or one line saying it is empty (an empty grid tells a tired reader nothing)."""
    if frame is None or frame.empty:
        display(Markdown(f"_{empty}_"))
    else:
        display(frame)


def filterable(frame: pd.DataFrame, column: str, empty: str = "nothing found") -> None:
    """Show ``frame`` with a dropdown that filters it by ``column``; headless output shows the whole table."""
    table(frame, empty)
    if frame is None or frame.empty or column not in frame:
        return
    choices = [ALL, *sorted({str(v) for v in frame[column]})]
    picker = widgets.Dropdown(options=choices, value=ALL, description=column)
    out = widgets.Output()

    def refresh(change=None):
        out.clear_output()
        with out:
            value = picker.value
            display(frame if value == ALL else frame[frame[column].astype(str) == value])

    picker.observe(refresh, names="value")
    display(widgets.VBox([picker, out]))


def fix_panels(run: Run, plans: list[fixes.Plan], *, dry_run: bool, confirm: str,
               verify: Callable[[str], object] | None = None, empty: str = "nothing to fix") -> None:
    """One panel per plan; headless, only the plan whose target ``confirm`` names is applied."""
    if not plans:
        display(Markdown(f"_{empty}_"))
        return
    targets = [plan.target for plan in plans]
    if not dry_run and confirm not in targets:
        raise fixes.ConfirmationError(
            f"confirm={confirm!r} names none of the targets ({', '.join(targets)}); nothing was changed")
    for plan in plans:
        fix_panel(run, plan, dry_run=dry_run or plan.target != confirm, confirm=confirm,
                  verify=(lambda target=plan.target: verify(target)) if verify else None)


def fix_panel(run: Run, plan: fixes.Plan, *, dry_run: bool, confirm: str,
              verify: Callable[[], object] | None = None) -> fixes.Outcome:
    """Show the plan, apply it if the parameters say so, and offer a confirm button for interactive use.

    The run's record is refreshed after every attempt, applied or refused, so it lists each change made.
    """
    display(Markdown(f"**Fix `{plan.fix}` on `{plan.target}`**" + "".join(f"\n- {n}" for n in plan.notes)))
    table(plan.to_frame(), "no change needed")
    if plan.blocked:
        display(Markdown(f"**Blocked:** {plan.blocked}"))
    try:
        outcome = fixes.apply_plan(run.cluster, plan, dry_run=dry_run, confirm=confirm)
    finally:
        run.publish()
    display(Markdown(f"_{outcome.message}_"))
    if outcome.applied and verify is not None:
        display(verify())
    out = widgets.Output()
    button = widgets.Button(description=f"Apply to {plan.target}"[:60], button_style="danger",
                            disabled=bool(plan.blocked) or outcome.applied or not plan.changes,
                            tooltip="applies exactly the plan shown above")

    def on_click(_):
        button.disabled = True
        with out:
            try:
                result = fixes.apply_plan(run.cluster, plan, dry_run=False, confirm=plan.target)
            finally:
                run.publish()
            display(Markdown(f"_{result.message}_"))
            if verify is not None:
                display(verify())

    button.on_click(on_click)
    display(widgets.VBox([button, out]))
    return outcome
