"""The HTML record reads well without Jupyter: title, parameters, findings first, changes, then the steps, code
hidden, charts described, nothing fetched from elsewhere, no secret."""
from html.parser import HTMLParser

import nbformat
import pytest

from nasiko_nb.charts import ALT_NODES, capacity_alt
from nasiko_nb.checks.resources import node_capacity_frame
from nasiko_nb.findings import COLOURS
from nasiko_nb.records import render_html
from nasiko_nb.runbook import RECORD_MIME
from tests.checks.test_resource_frames import node, pod, snap
from tests.runbook_runs import assert_no_secret_in, latest_record, run_runbook

RUNBOOK = "09-cluster-out-of-resources"


class Outline(HTMLParser):
    """The landmarks of a record page, in document order, and what a reader of it would meet."""

    def __init__(self):
        super().__init__()
        self.landmarks: list[str] = []       # "h1", "section:<id>", "step" (a notebook cell)
        self.tables: dict[str, list[list[str]]] = {}    # section id -> rows of cell texts
        self.badges: list[tuple[str, str]] = []          # (text, style) of severity/outcome badges
        self.images: list[dict] = []
        self.remote: list[str] = []          # src/href that would fetch something
        self.code_inputs = 0                 # code cells that show their source
        self.title = ""
        self._section = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._badge: str | None = None
        self._in_title = False
        self._code_cell_depth: list[int] = []
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        self._depth += 1
        if tag == "title":
            self._in_title = True
        if tag == "h1" and "h1" not in self.landmarks:
            self.landmarks.append("h1")
        if tag == "section":
            self._section = attrs["id"]
            self.landmarks.append(f"section:{self._section}")
        if tag == "div" and "jp-Cell" in classes:
            self.landmarks.append("step")
            if "jp-CodeCell" in classes:
                self._code_cell_depth.append(self._depth)
        if tag == "div" and "jp-InputArea" in classes and self._code_cell_depth:
            self.code_inputs += 1
        if tag == "tr" and self._section:
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = []
        if tag == "span" and "nasiko-severity" in classes:
            self._badge = attrs.get("style", "")
        if tag == "img":
            self.images.append(attrs)
        for name in ("src", "href"):
            if (attrs.get(name) or "").startswith(("http:", "https:", "//")):
                self.remote.append(attrs[name])

    def handle_endtag(self, tag):
        if self._code_cell_depth and self._code_cell_depth[-1] == self._depth:
            self._code_cell_depth.pop()
        self._depth -= 1
        if tag == "title":
            self._in_title = False
        if tag == "section":
            self._section = ""
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row:
            self.tables.setdefault(self._section, []).append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)
        if self._badge is not None:
            self.badges.append((data, self._badge))
            self._badge = None


def outline(html: str) -> Outline:
    parsed = Outline()
    parsed.feed(html)
    return parsed


@pytest.mark.parametrize("platform", ["cluster-failed-jobs"], indirect=True)
def test_record_of_an_applied_fix_reads_top_down(platform, tmp_path):
    server, kubeconfig = platform
    assert run_runbook("09", kubeconfig, tmp_path, "dry_run", "false", "confirm", "delete-failed-jobs/nasiko-agents") == 0
    record = latest_record(tmp_path, RUNBOOK)
    html = next(tmp_path.glob("*.html")).read_text()
    page = outline(html)

    # title, parameters, findings, changes, and only then the notebook's steps
    assert page.landmarks[:4] == ["h1", "section:parameters", "section:findings", "section:changes"]
    assert set(page.landmarks[4:]) == {"step"}
    assert page.title == f"Cluster out of resources · {record['context']} · changed"

    assert ["confirm", "delete-failed-jobs/nasiko-agents"] in page.tables["parameters"]
    assert ["dry_run", "false"] in page.tables["parameters"]
    findings = page.tables["findings"]
    assert [row[1] for row in findings] == [f["code"] for f in record["findings"]]
    assert findings[0][:2] == ["warning", "resources/failed-jobs"] and findings[0][4] == RUNBOOK
    assert ("warning", f"background:{COLOURS['warning']};padding:0 0.4em") in page.badges
    [change] = page.tables["changes"]
    assert change[1:4] == ["delete-failed-jobs", "delete-collection", "300 Jobs in nasiko-agents"]

    # the steps: markdown and outputs, never code, widgets or the raw record
    assert page.code_inputs == 0
    assert "node_capacity_frame(snap)" not in html and "run.finish()" not in html
    assert "jupyter-widgets" not in html and RECORD_MIME not in html and "VBox(" not in html
    assert "Jobs by status" in html

    # self-contained, the chart described in words, no secret
    assert page.remote == [] and "<script src" not in html
    [chart] = page.images
    assert chart["src"].startswith("data:image/png;base64,")
    nodes = [n["metadata"]["name"] for n in server.store.list("v1", "Node")]
    assert chart["alt"].startswith("Bar chart of cpu and memory requested") and all(n in chart["alt"] for n in nodes)
    assert_no_secret_in(tmp_path, server)


def test_a_record_without_findings_or_changes_says_so_and_escapes_what_it_shows():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Restart a deployment\nWhy and how."),
        nbformat.v4.new_code_cell("print('hello')", outputs=[nbformat.v4.new_output("stream", text="<b>out</b>\n")])])
    nb.metadata["nasiko"] = {"runbook": "12-restart-deployment", "context": "prod<1>", "outcome": "error",
                             "error": "ConfirmationError: confirm='x' names none of the targets",
                             "parameters": {"deployment": "<script>alert(1)</script>", "dry_run": True},
                             "findings": [], "changes": [], "started": "2026-11-26T10:11:12+00:00",
                             "duration_s": 0.5, "api_calls": 3}
    html = render_html(nb)
    page = outline(html)
    assert page.landmarks == ["h1", "section:parameters", "section:findings", "section:changes", "step", "step"]
    assert "No findings" in html and "None: the cluster was not changed." in html
    assert "The run stopped: ConfirmationError" in html
    assert ["deployment", "<script>alert(1)</script>"] in page.tables["parameters"]
    assert "<script>alert" not in html and "&lt;b&gt;out&lt;/b&gt;" in html
    assert "2026-11-26 10:11:12 UTC" in html and "prod&lt;1&gt;" in html
    assert page.code_inputs == 0 and "print(" not in html


def test_chart_alt_text_names_the_busiest_nodes_and_counts_the_rest():
    frame = node_capacity_frame(snap(*[node(f"n{i}") for i in range(ALT_NODES + 2)], pod("a", "n3", cpu="3900m")))
    alt = capacity_alt(frame)
    assert alt.startswith(f"Bar chart of cpu and memory requested against allocatable on {ALT_NODES + 2} node(s)")
    assert "n3: cpu 3.90 of 4.00 cores requested (98%)" in alt.split(";")[0]
    assert alt.endswith("; 2 more node(s), none with a higher share of cpu requested.")
