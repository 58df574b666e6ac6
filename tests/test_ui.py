"""The widgets' logic without a browser: the typed confirmation gates Apply, which applies the plan shown and
verifies in place; pickers and filters draw into their output. tests/browser/ checks the same in JupyterLab."""
import pandas as pd
import pytest

from nasiko_nb import checks, fixes, runbook, sim, ui
from nasiko_nb.fixes.image_pull import plan_add_pull_secret

NAMESPACE, SECRET = "nasiko-agents", "agent-registry-credentials"


@pytest.fixture
def run_and_plan(tmp_path):
    """A run of 05's fix against the missing-secret scenario: (run, the one plan, the emulator's store)."""
    server = sim.start("image-pull-missing-secret")
    try:
        run = runbook.begin("05-image-pull-backoff", kubeconfig=str(server.write_kubeconfig(tmp_path / "kc")))
        snap = run.snapshot(namespaces=[NAMESPACE])
        [plan] = plan_add_pull_secret(snap, checks.run_checks(snap, {"namespace": NAMESPACE}), SECRET)
        yield run, plan, server.store
    finally:
        server.stop()


def pull_secrets(store, name: str) -> list[str]:
    deployment = store.get("apps/v1", "Deployment", NAMESPACE, name)
    return [s["name"] for s in deployment["spec"]["template"]["spec"].get("imagePullSecrets", [])]


@pytest.fixture
def shown(monkeypatch) -> list:
    """What ui displays, in order (outside a kernel an Output widget captures nothing)."""
    displayed = []
    monkeypatch.setattr(ui, "display", displayed.append)
    return displayed


def texts(displayed: list) -> str:
    return "\n".join(getattr(item, "data", None) or str(item) for item in displayed)


def parts(box):
    (field, button), out = box.children[0].children, box.children[1]
    return field, button, out


def test_apply_is_enabled_only_while_the_confirmation_names_the_target(run_and_plan, shown):
    run, plan, store = run_and_plan
    verified = []
    field, button, _ = parts(ui.confirm_box(run, plan, lambda: verified.append(True) or "verified", ready=True))
    assert button.disabled and not field.disabled
    for typed in ("", plan.target[:-1], plan.target + " ", plan.target.upper()):
        field.value = typed
        assert button.disabled, typed
    field.value = plan.target
    assert not button.disabled
    assert SECRET not in pull_secrets(store, plan.target)
    button.click()
    assert SECRET in pull_secrets(store, plan.target)
    assert verified == [True] and button.disabled and field.disabled
    assert texts(shown).splitlines() == ["_applied 1 change(s) to " + plan.target + "_", "verified"]
    assert [c["resource"] for c in fixes.journal_records()] == [f"Deployment {NAMESPACE}/{plan.target}"]


def test_a_plan_that_cannot_be_applied_keeps_both_disabled(run_and_plan):
    run, plan, _ = run_and_plan
    field, button, _ = parts(ui.confirm_box(run, plan, None, ready=False))
    assert field.disabled and button.disabled


def test_a_refused_apply_is_one_line_not_a_traceback(run_and_plan, shown):
    run, plan, store = run_and_plan
    store.delete("apps/v1", "Deployment", NAMESPACE, plan.target)
    field, button, _ = parts(ui.confirm_box(run, plan, None, ready=True))
    field.value = plan.target
    button.click()
    [line] = texts(shown).splitlines()
    assert line.startswith("**Not applied:** patch Deployment") and "was refused: 404" in line


def test_headless_fix_panel_shows_the_plan_and_changes_nothing_on_a_dry_run(run_and_plan, shown):
    run, plan, store = run_and_plan
    outcome = ui.fix_panel(run, plan, dry_run=True, confirm="")
    assert not outcome.applied and SECRET not in pull_secrets(store, plan.target)
    out = texts(shown)
    assert isinstance(shown[-1], ui.widgets.VBox)
    assert f"Fix `add-image-pull-secret` on `{plan.target}`" in out and "dry run: nothing changed" in out


def test_picker_shows_the_chosen_one_then_each_one_picked(shown):
    drawn = []
    ui.picker("agent", ["a", "b"], "b", drawn.append)
    assert drawn == ["b"] and shown[0].children[0].value == "b"
    shown[0].children[0].value = "a"
    assert drawn == ["b", "a"]


def test_filter_shows_the_whole_table_then_the_rows_of_the_value_picked(shown):
    frame = pd.DataFrame({"severity": ["critical", "warning"], "code": ["x/one", "x/two"]})
    ui.filterable(frame, "severity")
    whole, box = shown
    assert whole is frame and box.children[0].options == (ui.ALL, "critical", "warning")
    box.children[0].value = "warning"
    assert list(shown[-1]["code"]) == ["x/two"]
