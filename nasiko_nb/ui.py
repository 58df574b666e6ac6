"""Widgets for stepping through a runbook, each with a headless equivalent driven by parameters.

Headless (papermill) runs decide with the ``dry_run`` / ``confirm`` parameters; interactively the
same plan gets a confirmation field and an Apply button that apply exactly that plan. Both paths go
through ``fixes.apply_plan``, so the journal and the record are the same either way.

Every widget action and what stands for it in a headless run:

=====================================  ==========================================================
widget                                 headless equivalent
=====================================  ==========================================================
:func:`filterable` dropdown            none needed: the whole table is shown
:func:`picker` (agent, job, ...)       the runbook parameter that chose what is shown first
:func:`describe_picker` (pod)          the ``pod`` parameter
:func:`fix_panel` confirm field        ``confirm`` = the target's name
:func:`fix_panel` Apply button         ``dry_run = False``
:class:`ProgressBar`                   the counter line kept as markdown
=====================================  ==========================================================
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
    display(choice(column, choices, ALL,
                   lambda value: display(frame if value == ALL else frame[frame[column].astype(str) == value])))


def picker(label: str, options: list[str], chosen: str, show: Callable[[str], None]) -> None:
    """``show(chosen)`` now, and a dropdown of ``options`` that shows another one interactively (headless: the
    parameter that set ``chosen``)."""
    if not options:
        display(Markdown(f"_no {label} found_"))
        return
    value = chosen if chosen in options else options[0]
    show(value)
    display(choice(label, options, value, show))


def describe_picker(snap, chosen: str, describe: Callable[..., str]) -> None:
    """``describe`` of the ``chosen`` pod ("namespace/name"), and a picker of every pod in the snapshot to
    describe another one (interactive)."""
    pods = sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in snap.pods)
    if chosen not in pods:
        display(Markdown(f"_pod {chosen!r} is not in the snapshot_" if chosen else "_no pods_"))
        return
    picker("pod", pods, chosen, lambda pod: print(describe(snap, *pod.split("/", 1))))


def choice(label: str, options: list[str], value: str, show: Callable[[str], None]) -> widgets.VBox:
    """A dropdown and the output below it where ``show`` draws each value picked (not the first: the caller
    shows that outside the widget, so executed notebooks and HTML records keep it)."""
    dropdown = widgets.Dropdown(options=options, value=value, description=label)
    out = widgets.Output()

    def refresh(change=None):
        out.clear_output()
        with out:
            show(dropdown.value)

    dropdown.observe(refresh, names="value")
    return widgets.VBox([dropdown, out])


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
    """Show the plan, apply it if the parameters say so, and offer :func:`confirm_box` for interactive use.

    The run's record is refreshed after every attempt, applied or refused, so it lists each change made.
    Without ``verify``, the plan's own check (``plan.verify``) runs after it is applied.
    """
    if verify is None and plan.verify is not None:
        def verify():
            return plan.verify(run.cluster)
    show_plan(plan)
    try:
        outcome = fixes.apply_plan(run.cluster, plan, dry_run=dry_run, confirm=confirm,
                                   progress=ProgressBar(plan.fix))
    finally:
        run.publish()
    display(Markdown(f"_{outcome.message}_"))
    if outcome.applied and verify is not None:
        display(verify())
    display(confirm_box(run, plan, verify, ready=not (plan.blocked or outcome.applied or not plan.changes)))
    return outcome


def show_plan(plan: fixes.Plan) -> None:
    """The fix, its target and notes, the exact changes (redacted) and why it cannot be applied, if so."""
    display(Markdown(f"**Fix `{plan.fix}` on `{plan.target}`**" + "".join(f"\n- {n}" for n in plan.notes)))
    table(plan.to_frame(), "no change needed")
    if plan.blocked:
        display(Markdown(f"**Blocked:** {plan.blocked}"))


def confirm_box(run: Run, plan: fixes.Plan, verify: Callable[[], object] | None, *, ready: bool) -> widgets.VBox:
    """A confirm field, an Apply button enabled only while the field holds the target's name, and the output
    where apply and verify answer in place: typing is the ``confirm`` parameter, clicking is ``dry_run=False``.

    Not ``ready`` (blocked, already applied, nothing to change): both stay disabled.
    """
    field = widgets.Text(value="", placeholder=f"type {plan.target} to confirm", description="confirm",
                         disabled=not ready, layout=widgets.Layout(width="36em"))
    button = widgets.Button(description=f"Apply to {plan.target}"[:60], button_style="danger", disabled=True,
                            tooltip="applies exactly the plan shown above", layout=widgets.Layout(width="auto"))
    out = widgets.Output()

    def on_type(change):
        button.disabled = change["new"] != plan.target

    def on_click(_):
        button.disabled = field.disabled = True
        with out:
            apply_in_place(run, plan, field.value, verify)

    field.observe(on_type, names="value")
    button.on_click(on_click)
    return widgets.VBox([widgets.HBox([field, button]), out])


def apply_in_place(run: Run, plan: fixes.Plan, confirm: str, verify: Callable[[], object] | None) -> None:
    """Apply the plan as a headless run with ``dry_run=False`` and this ``confirm`` would, then verify; a refusal
    is one line (a widget callback's traceback would land in the log console, out of sight)."""
    try:
        result = fixes.apply_plan(run.cluster, plan, dry_run=False, confirm=confirm, progress=ProgressBar(plan.fix))
    except (fixes.FixFailed, fixes.ConfirmationError) as exc:
        display(Markdown(f"**Not applied:** {exc}"))
        return
    finally:
        run.publish()
    display(Markdown(f"_{result.message}_"))
    if verify is not None:
        display(verify())
