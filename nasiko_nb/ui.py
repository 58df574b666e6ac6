"""Widgets for stepping through a runbook, each with a headless equivalent driven by parameters.

Headless (papermill) runs decide with the ``dry_run`` / ``confirm`` parameters; interactively the
same plan gets a confirm button that applies exactly that plan. Both paths go through
``fixes.apply_plan``, so the journal and the record are the same either way.
"""
from __future__ import annotations

import uuid
from typing import Callable

import ipywidgets as widgets
import pandas as pd
from IPython.display import Markdown, display, update_display

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


def picker(label: str, options: list[str], chosen: str, show: Callable[[str], None]) -> None:
    """``show(chosen)`` now, and a dropdown of ``options`` that shows another one interactively (headless: the
    parameter that set ``chosen``)."""
    if not options:
        display(Markdown(f"_no {label} found_"))
        return
    dropdown = widgets.Dropdown(options=options, value=chosen if chosen in options else options[0], description=label)
    out = widgets.Output()

    def refresh(change=None):
        out.clear_output()
        with out:
            show(dropdown.value)

    dropdown.observe(refresh, names="value")
    show(dropdown.value)
    display(widgets.VBox([dropdown, out]))


def describe_picker(snap, chosen: str, describe: Callable[..., str]) -> None:
    """``describe`` of the ``chosen`` pod ("namespace/name"), and a picker of every pod in the snapshot to
    describe another one (interactive)."""
    pods = sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in snap.pods)
    if chosen not in pods:
        display(Markdown(f"_pod {chosen!r} is not in the snapshot_" if chosen else "_no pods_"))
        return
    picker = widgets.Dropdown(options=pods, value=chosen, description="pod")
    out = widgets.Output()

    def show(change=None):
        out.clear_output()
        with out:
            print(describe(snap, *picker.value.split("/", 1)))

    picker.observe(show, names="value")
    print(describe(snap, *chosen.split("/", 1)))
    display(widgets.VBox([picker, out]))


class ProgressBar:
    """A bar and a counter for a fix or a wait, shown at its first report.

    The counter is also kept as a markdown line (updated in place, at most every percent), which is
    what an executed notebook and its HTML record show when no widget renders.
    """

    def __init__(self, description: str):
        self.description = description
        self._bar = widgets.IntProgress(value=0, min=0, max=1, description=description[:20])
        self._label = widgets.Label()
        self._display_id = uuid.uuid4().hex
        self._shown_percent: int | None = None

    def __call__(self, done: int, total: int) -> None:
        if total <= 1:      # a bar for a single object tells nothing the outcome line does not
            return
        first = self._shown_percent is None
        self._bar.max, self._bar.value = max(total, 1), min(done, max(total, 1))
        self._label.value = f"{done} of {total}"
        percent = done * 100 // max(total, 1)
        line = Markdown(f"_{self.description}: {done} of {total}_")
        if first:
            display(widgets.HBox([self._bar, self._label]))
            display(line, display_id=self._display_id)
        elif percent != self._shown_percent or done == total:
            update_display(line, display_id=self._display_id)
        self._shown_percent = percent


def fix_panels(run: Run, plans: list[fixes.Plan], *, dry_run: bool, confirm: str,
               verify: Callable[[str], object] | None = None, empty: str = "nothing to fix") -> None:
    """One panel per plan; headless, only the plan whose target ``confirm`` names is applied.

    With ``dry_run`` False, a ``confirm`` naming none of the targets stops the run before anything changes,
    also when there is nothing to fix: a typo must not look like success.
    """
    targets = [plan.target for plan in plans]
    if not dry_run and confirm not in targets and (plans or confirm):   # a confirm that names nothing here
        raise fixes.ConfirmationError(
            f"confirm={confirm!r} names none of the targets ({', '.join(targets) or empty}); nothing was changed")
    if not plans:
        display(Markdown(f"_{empty}_"))
        return
    for plan in plans:
        fix_panel(run, plan, dry_run=dry_run or plan.target != confirm, confirm=confirm,
                  verify=(lambda target=plan.target: verify(target)) if verify else None)


def confirmed_targets(confirm: str) -> list[str]:
    """``confirm`` may name several targets, comma-separated, to apply steps of a fix chain in one run."""
    return [target.strip() for target in confirm.split(",") if target.strip()]


def check_chain(plans: list[fixes.Plan], *, dry_run: bool, confirm: str) -> None:
    """Before any step is shown: every target ``confirm`` names must be one of the chain's plans."""
    targets = {plan.target for plan in plans}
    unknown = [target for target in confirmed_targets(confirm) if target not in targets]
    if not dry_run and (unknown or not confirm):
        raise fixes.ConfirmationError(
            f"confirm={confirm!r} names {', '.join(repr(t) for t in unknown) or 'no target'}, not one of this "
            f"runbook's fixes ({', '.join(sorted(targets)) or 'none'}); nothing was changed")


def chain_step(run: Run, plans: list[fixes.Plan], *, dry_run: bool, confirm: str, empty: str = "nothing to do") -> None:
    """One step of a fix chain checked with :func:`check_chain`: each plan is applied when ``confirm`` names it."""
    if not plans:
        display(Markdown(f"_{empty}_"))
    chosen = confirmed_targets(confirm)
    for plan in plans:
        fix_panel(run, plan, dry_run=dry_run or plan.target not in chosen, confirm=plan.target)


def fix_panel(run: Run, plan: fixes.Plan, *, dry_run: bool, confirm: str,
              verify: Callable[[], object] | None = None) -> fixes.Outcome:
    """Show the plan, apply it if the parameters say so, and offer a confirm button for interactive use.

    The run's record is refreshed after every attempt, applied or refused, so it lists each change made.
    Without ``verify``, the plan's own check (``plan.verify``) runs after it is applied.
    """
    if verify is None and plan.verify is not None:
        def verify():
            return plan.verify(run.cluster)
    display(Markdown(f"**Fix `{plan.fix}` on `{plan.target}`**" + "".join(f"\n- {n}" for n in plan.notes)))
    table(plan.to_frame(), "no change needed")
    if plan.blocked:
        display(Markdown(f"**Blocked:** {plan.blocked}"))
    try:
        outcome = fixes.apply_plan(run.cluster, plan, dry_run=dry_run, confirm=confirm,
                                   progress=ProgressBar(plan.fix))
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
                result = fixes.apply_plan(run.cluster, plan, dry_run=False, confirm=plan.target,
                                          progress=ProgressBar(plan.fix))
            finally:
                run.publish()
            display(Markdown(f"_{result.message}_"))
            if verify is not None:
                display(verify())

    button.on_click(on_click)
    display(widgets.VBox([button, out]))
    return outcome
