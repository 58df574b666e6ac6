"""Runbooks in JupyterLab, in a real browser, against the demo platform: every cell runs without an error, the
findings table and the widgets render and answer, and the fix panel's typed confirmation and Apply button patch
the emulator's Deployment and show the verify answer in place.

The tests share one JupyterLab and one demo cluster and run in file order: the read-only runbooks first,
05's fix last (it repairs the cluster the others look at).
"""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")]

PULL_SECRET = "agent-registry-credentials"
PROMPTS = "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim())"
#: Run All has ended: nothing queued or running, and either every cell ran or one failed (the rest never will).
RUN_ENDED = """() => {
    const prompts = (%s)();
    const numbered = prompts.filter(text => /^\\[\\d+\\]:$/.test(text)).length;
    const failed = document.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
    return !prompts.includes('[*]:') && numbered > 0 && (numbered === prompts.length || failed !== null);
}""" % PROMPTS


def open_and_run_all(page, lab, runbook: str) -> None:
    """Open the runbook (a fresh workspace), wait for its kernel, Run > Run All Cells, and check every cell ran
    without an error."""
    page.goto(f"{lab.base}lab/tree/{runbook}.ipynb?reset&token={lab.token}")
    expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(RUN_ENDED, timeout=120_000)
    assert_no_cell_errored(page)
    prompts = page.evaluate(PROMPTS)
    assert all(re.fullmatch(r"\[\d+\]:", prompt) for prompt in prompts), prompts


def assert_no_cell_errored(page) -> None:
    errors = [text for text in page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
              .all_inner_texts() if "Traceback" in text or "Error" in text]
    assert not errors, errors
    assert page.get_by_text("Error displaying widget").count() == 0


def dropdown(page, label: str):
    """The ``select`` of the dropdown widget whose description is ``label``."""
    return (page.locator(".widget-dropdown")
            .filter(has=page.locator("label.widget-label", has_text=re.compile(f"^{label}$"))).locator("select"))


def output_containing(page, text: str):
    return page.locator(".jp-OutputArea-output", has_text=text)


def test_00_triage_findings_table_filters_by_severity(page, lab):
    open_and_run_all(page, lab, "00-triage")
    findings = page.locator(".jp-OutputArea-output table", has_text="image-pull/missing-pull-secret").first
    expect(findings).to_be_visible()
    severity = dropdown(page, "severity")
    expect(severity).to_have_count(1)
    severity.select_option("critical")
    filtered = page.locator(".widget-output table").first
    expect(filtered).to_contain_text("image-pull/missing-pull-secret")
    rows = filtered.locator("tbody tr")
    assert rows.count() >= 1 and all(re.search(r"\bcritical\b", row) for row in rows.all_inner_texts())
    expect(page.get_by_text(re.compile(r"00-triage: outcome critical, \d+ finding"))).not_to_have_count(0)


def test_10_cluster_health_pod_picker_describes_the_pod_picked(page, lab):
    open_and_run_all(page, lab, "10-cluster-health")
    expect(page.locator(".jp-OutputArea-output table", has_text="image-pull/missing-pull-secret").first).to_be_visible()
    pods = dropdown(page, "pod")
    expect(pods).to_have_count(1)
    other = next(option for option in pods.locator("option").all_inner_texts()
                 if option.startswith("nasiko/") and option != pods.input_value())
    pods.select_option(other)
    described = page.locator(".widget-output", has_text="Name:")
    expect(described).to_contain_text(other.split("/", 1)[1])
    expect(described).to_contain_text("Namespace:")


def test_05_image_pull_backoff_fixed_with_a_typed_confirmation(page, lab):
    open_and_run_all(page, lab, "05-image-pull-backoff")
    expect(page.locator(".jp-OutputArea-output table", has_text="image-pull/missing-pull-secret").first).to_be_visible()
    expect(dropdown(page, "pod")).to_have_count(1)
    expect(output_containing(page, "dry run: nothing changed")).to_have_count(1)

    button = page.locator(".widget-button", has_text="Apply to ")
    target = button.inner_text().removeprefix("Apply to ").strip()
    assert PULL_SECRET not in lab.kubectl("get", "deployment", target, "-n", "nasiko-agents", "-o",
                                          "jsonpath={.spec.template.spec.imagePullSecrets[*].name}")
    field = (page.locator(".widget-text")
             .filter(has=page.locator("label.widget-label", has_text=re.compile("^confirm$"))).locator("input"))
    expect(button).to_be_disabled()
    field.press_sequentially(target[:-1])
    expect(button).to_be_disabled()
    field.press_sequentially(target[-1])
    expect(button).to_be_enabled()
    button.click()

    answer = page.locator(".widget-output", has_text=f"applied 1 change(s) to {target}")
    expect(answer).to_be_visible()
    expect(answer.locator("table")).to_contain_text("pull secret in pod template", timeout=120_000)
    expect(button).to_be_disabled()
    expect(field).to_be_disabled()
    assert_no_cell_errored(page)
    secrets = lab.kubectl("get", "deployment", target, "-n", "nasiko-agents", "-o",
                          "jsonpath={.spec.template.spec.imagePullSecrets[*].name}")
    assert PULL_SECRET in secrets.split()
    # the record shown by the first cell is updated in place, so a notebook saved now records the change
    record = re.compile(r"^05-image-pull-backoff: outcome changed, 1 finding\(s\), 1 change\(s\)")
    expect(page.locator(".jp-OutputArea-output").filter(has_text=record)).to_have_count(1)
