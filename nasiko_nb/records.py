"""Run runbooks headless with papermill and archive each run as an incident record.

A record is three files sharing one stem, ``<UTC timestamp>-<runbook>``: the executed notebook
(with the record in ``metadata.nasiko``), an HTML report view (markdown and outputs, code hidden) and
the findings JSON. Everything is scrubbed of secret material before it is written; where the files go
(a local folder or S3) is ``nasiko_nb.archive``'s business.
"""
from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from nasiko_nb.archive import SUFFIXES, Archive, ArchiveError, open_archive
from nasiko_nb.findings import COLOURS, Report
from nasiko_nb.redact import scrub, scrub_obj
from nasiko_nb.runbook import RECORD_MIME, SECRET_PARAMETER_WORDS

RUNBOOKS_DIR = Path(os.environ.get("NASIKO_RUNBOOKS", Path(__file__).resolve().parent.parent / "runbooks"))


class RecordError(ValueError):
    """Bad input to a run (unknown runbook, bad parameter): one line, nothing executed."""


@dataclass(frozen=True)
class RunbookInfo:
    id: str
    path: Path
    title: str
    side_effects: str
    parameters: dict

    @property
    def slug(self) -> str:
        return self.id.split("-", 1)[1] if self.id[:2].isdigit() else self.id


def runbooks(directory: Path = RUNBOOKS_DIR) -> list[RunbookInfo]:
    return [describe(path) for path in sorted(directory.glob("[0-9][0-9]-*.ipynb"))]


def describe(path: Path) -> RunbookInfo:
    nb = nbformat.read(path, as_version=4)
    title = notebook_title(nb, path.stem)
    parameters = {}
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            namespace: dict = {}
            exec(compile(cell.source, str(path), "exec"), {}, namespace)  # the cell holds literals only
            parameters = {k: v for k, v in namespace.items() if not k.startswith("_")}
    side_effects = nb.metadata.get("nasiko", {}).get("side_effects", "read-only")
    return RunbookInfo(path.stem, path, title, side_effects, parameters)


def notebook_title(nb, default: str) -> str:
    """The notebook's first level-1 markdown heading."""
    return next((line.lstrip("# ").strip() for cell in nb.cells if cell.cell_type == "markdown"
                 for line in cell.source.splitlines() if line.startswith("# ")), default)


def resolve(name: str, directory: Path = RUNBOOKS_DIR) -> RunbookInfo:
    """Find a runbook by id (``05-image-pull-backoff``), slug (``image-pull-backoff``) or number (``05``)."""
    known = runbooks(directory)
    for info in known:
        if name in (info.id, info.slug, info.id[:2], f"{info.id}.ipynb"):
            return info
    raise RecordError(f"unknown runbook {name!r}; known: {', '.join(i.id for i in known)}")


def coerce_parameters(info: RunbookInfo, raw: dict) -> dict:
    """Check names and types against the runbook's defaults; strings from ``-p`` are converted."""
    typed = {}
    for name, value in raw.items():
        if any(word in name.lower() for word in SECRET_PARAMETER_WORDS):
            raise RecordError(f"parameter {name!r} looks like a secret: pass it through the environment or a file")
        if name not in info.parameters:
            raise RecordError(f"runbook {info.id} has no parameter {name!r}; it has: {', '.join(info.parameters)}")
        typed[name] = _coerce(name, value, info.parameters[name])
    return typed


def _coerce(name: str, value, default):
    kind = type(default)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if not isinstance(value, str):
        raise RecordError(f"parameter {name!r} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    text = value.strip()
    if kind is bool:
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
    elif kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    elif kind is str:
        return value
    elif kind is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    raise RecordError(f"parameter {name!r} must be {kind.__name__} (like {default!r}), got {value!r}")


@dataclass
class RunResult:
    """A finished run: its record and where the archive stored it (local paths or s3:// URLs)."""

    record: dict
    id: str
    notebook: str
    html: str
    json: str
    error: str = ""


def execute(info: RunbookInfo, output: str | os.PathLike | Archive, parameters: dict, *, kubeconfig: str = "",
            context: str = "", label: str = "") -> RunResult:
    """Execute a runbook with papermill in a scratch folder, then store the three record files in the archive
    at ``output`` (a local folder or ``s3://bucket/prefix``); never overwrites a record.

    The archive is checked before the runbook runs, so an unusable one stops the run before it changes anything.
    If storing fails afterwards, the error says where the record is kept on this machine.
    """
    archive = open_archive(output)
    archive.check()
    started = datetime.now(timezone.utc)
    stem = f"{started:%Y%m%dT%H%M%SZ}-{info.id}{('-' + _name_part(label)) if label else ''}"
    scratch = Path(tempfile.mkdtemp(prefix="nasiko-record-"))
    try:
        record, error = _execute_into(scratch / f"{stem}.ipynb", info, parameters, kubeconfig, context, started)
        stored = archive.store(stem, {suffix: scratch / f"{stem}{suffix}" for suffix in SUFFIXES})
    except ArchiveError as exc:
        raise ArchiveError(f"{exc}; the record is kept in {scratch}") from None
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    return RunResult(record, stored.id, stored.locations[".ipynb"], stored.locations[".html"],
                     stored.locations[".json"], error)


def _execute_into(notebook_path: Path, info: RunbookInfo, parameters: dict, kubeconfig: str, context: str,
                  started: datetime) -> tuple[dict, str]:
    """Run the notebook to ``notebook_path`` and write the scrubbed record files beside it; (record, error)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    run_parameters = {**parameters, "kubeconfig": str(kubeconfig or ""), "context": context}
    error = ""
    try:
        # kernel log level CRITICAL: its shutdown chatter (an interrupt while a background request retries) is not
        # the runbook's output, which is in the notebook
        papermill.execute_notebook(str(info.path), str(notebook_path), parameters=run_parameters,
                                   kernel_name="python3", progress_bar=False, log_output=False,
                                   cwd=str(info.path.parent), extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except PapermillExecutionError as exc:
        error = _one_line(exc.ename, exc.evalue)
    nb = nbformat.read(notebook_path, as_version=4)
    record = _extract_record(nb) or {
        "runbook": info.id, "context": context, "parameters": run_parameters, "findings": [], "changes": [],
        "outcome": "error", "started": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(timezone.utc) - started).total_seconds(), 2)}
    if error:
        record["outcome"], record["error"] = "error", error
    record["side_effects"] = info.side_effects
    record = scrub_obj(record)
    nb.metadata["nasiko"] = record
    _scrub_notebook(nb)
    nbformat.write(nb, notebook_path)
    notebook_path.with_suffix(".html").write_text(render_html(nb), encoding="utf-8")
    notebook_path.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    return record, error


def _name_part(label: str) -> str:
    """A label made safe for a file name and an S3 key (contexts may hold ``/`` and ``:``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")


def _one_line(ename: str, evalue: str) -> str:
    text = " ".join(str(evalue).split())
    return f"{ename}: {text}" if ename not in ("", "Exception") else text


def _extract_record(nb) -> dict | None:
    for cell in reversed(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if RECORD_MIME in data:
                return dict(data[RECORD_MIME])
    return None


def _scrub_notebook(nb) -> None:
    """Mask secret patterns in every output, including tracebacks, and in the notebook's metadata (widget state,
    papermill's copy of the parameters)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = scrub(output["text"])
            if "data" in output:
                output["data"] = scrub_obj(output["data"])
            if "traceback" in output:
                output["traceback"] = [scrub(line) for line in output["traceback"]]
            if "evalue" in output:
                output["evalue"] = scrub(output["evalue"])
    nb.metadata = nbformat.from_dict(scrub_obj(dict(nb.metadata)))


def render_html(nb) -> str:
    """The report view, for people who do not use Jupyter: a title (runbook, cluster, when, outcome), the
    parameters, the findings worst first, the changes applied, then the notebook's steps (markdown and outputs,
    code hidden). Self-contained (nothing is fetched from elsewhere to show it); charts keep their alt text."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    record = scrub_obj(dict(nb.metadata.get("nasiko", {})))
    title = notebook_title(nb, record.get("runbook", "runbook"))
    exporter = HTMLExporter(extra_loaders=[DictLoader({"nasiko-record.html.j2": _REPORT_TEMPLATE})],
                            template_file="nasiko-record.html.j2", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    resources = {"metadata": {"name": f"{title} · {_context(record)} · {record.get('outcome', 'unknown')}"},
                 "nasiko_summary": _summary_html(record, title)}
    body, _ = exporter.from_notebook_node(_steps(nb), resources=resources)
    return body


# The lab template without its scripts (require.js, MathJax, mermaid and widgets come from a CDN), with the
# summary above the steps and each image's alt text.
_REPORT_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
.nasiko-summary { padding: 0.5em 0 0 0.3em; font-family: var(--jp-content-font-family, sans-serif); }
.nasiko-summary table { border-collapse: collapse; margin-bottom: 1em; }
.nasiko-summary th, .nasiko-summary td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left;
  vertical-align: top; }
.nasiko-summary th { background: #f3f3f3; }
.nasiko-severity { color: #fff; font-weight: bold; }
.nasiko-error { color: #d62728; font-weight: bold; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.nasiko_summary }}
{%- endblock body_header -%}
{% block data_png scoped %}
<div class="jp-RenderedImage jp-OutputArea-output">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}" alt="{{ ((output | get_metadata('alt', 'image/png')) or 'a chart without a description') | escape_html }}">
</div>
{% endblock data_png %}
"""


def _steps(nb):
    """The notebook without what only Jupyter renders (widgets) or the summary already shows (the run record)."""
    steps = copy.deepcopy(nb)
    hidden = (RECORD_MIME, "application/vnd.jupyter.widget-view+json")
    for cell in steps.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not any(mime in o.get("data", {}) for mime in hidden)]
    steps.metadata.pop("widgets", None)
    return steps


def _summary_html(record: dict, title: str) -> str:
    """Title, facts of the run, parameters, findings and changes: what a reader of the record needs first."""
    e = html.escape
    outcome = record.get("outcome", "unknown")
    facts = [("Runbook", e(record.get("runbook", ""))), ("Cluster context", e(_context(record))),
             ("Started", e(_when(record.get("started", "")))),
             ("Took", e(f"{record['duration_s']} s" if "duration_s" in record else "unknown")),
             ("API calls", e(str(record.get("api_calls", "unknown")))),
             ("Outcome", _badge(outcome, _OUTCOME_COLOURS.get(outcome, "#777777")))]
    parts = [f'<header class="nasiko-summary" id="summary"><h1>{e(title)} · {e(_context(record))}</h1>',
             "<table><tbody>" + "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
             + "</tbody></table>"]
    if record.get("error"):
        parts.append(f'<p class="nasiko-error">The run stopped: {e(record["error"])}</p>')
    parameters = record.get("parameters") or {}
    parts.append('<section id="parameters"><h2>Parameters</h2>' + (_table(
        ["name", "value"], [[e(name), e(_parameter(value))] for name, value in parameters.items()])
        if parameters else "<p>none</p>") + "</section>")
    findings = Report.from_record(record).findings
    parts.append(f'<section id="findings"><h2>Findings ({len(findings)})</h2>' + (_table(
        ["severity", "code", "resource", "message", "next step"],
        [[_badge(f.severity, COLOURS[f.severity]), e(f.code), e(f.resource), e(f.message), e(f.next)]
         for f in findings])
        if findings else "<p>No findings: nothing needs attention.</p>") + "</section>")
    changes = record.get("changes") or []
    parts.append(f'<section id="changes"><h2>Changes applied ({len(changes)})</h2>' + (_table(
        ["when", "fix", "request", "resource", "change"],
        [[e(_when(c.get("at", ""))), e(c.get("fix", "") + (" (diagnostic)" if c.get("diagnostic") else "")),
          e(c.get("verb", "")), e(c.get("resource", "")), e(c.get("change", "")) + _body(c.get("body", ""))]
         for c in changes]) if changes else "<p>None: the cluster was not changed.</p>") + "</section>")
    parts.append('</header>\n<h2 class="nasiko-summary" id="steps">Steps</h2>')
    return "\n".join(parts)


def _context(record: dict) -> str:
    return record.get("context") or "the current context"


_OUTCOME_COLOURS = {**COLOURS, "changed": COLOURS["info"], "error": COLOURS["critical"]}


def _badge(text: str, colour: str) -> str:
    return f'<span class="nasiko-severity" style="background:{colour};padding:0 0.4em">{html.escape(text)}</span>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of cells that are already escaped."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _parameter(value) -> str:
    if isinstance(value, str):
        return value or "(empty)"
    return json.dumps(value)


def _body(body: str) -> str:
    return f"<details><summary>request body</summary><pre>{html.escape(body)}</pre></details>" if body else ""


def _when(timestamp: str) -> str:
    """An ISO timestamp as a reader writes it (UTC), or as given when it is not one."""
    try:
        return f"{datetime.fromisoformat(timestamp).astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    except (TypeError, ValueError):
        return timestamp or "unknown"
