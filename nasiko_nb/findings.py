"""Findings (one diagnosed cause each) and the Report that shows and records them."""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Iterable

from nasiko_nb.codes import SEVERITIES

_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
COLOURS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4", "ok": "#2ca02c"}
COLUMNS = ["severity", "code", "resource", "message", "evidence", "next"]


@dataclass(frozen=True)
class Finding:
    """One diagnosed cause on one resource; evidence is already redacted."""

    code: str
    severity: str
    resource: str
    message: str
    evidence: str
    next: str

    def __post_init__(self):
        if self.severity not in _RANK:
            raise ValueError(f"finding {self.code}: unknown severity {self.severity!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Finding":
        names = {f.name for f in fields(cls)}
        missing = names - set(data)
        if missing:
            raise ValueError(f"finding record lacks {', '.join(sorted(missing))}")
        return cls(**{name: data[name] for name in names})


class Report:
    """The findings of a run, worst first."""

    def __init__(self, findings: Iterable[Finding] = ()):
        self.findings: list[Finding] = sorted(findings, key=lambda f: (_RANK[f.severity], f.code, f.resource))

    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self):
        return iter(self.findings)

    @property
    def worst(self) -> str:
        """The most severe severity present; "ok" for an empty report."""
        return self.findings[0].severity if self.findings else "ok"

    @property
    def outcome(self) -> str:
        """"ok" when nothing needs attention, otherwise the worst severity ("critical" or "warning")."""
        return self.worst if self.worst in ("critical", "warning") else "ok"

    def codes(self) -> list[str]:
        """Distinct cause codes, worst first."""
        return list(dict.fromkeys(f.code for f in self.findings))

    def counts(self) -> dict[str, int]:
        counter = Counter(f.severity for f in self.findings)
        return {severity: counter[severity] for severity in SEVERITIES if counter[severity]}

    def summary(self) -> str:
        if not self.findings:
            return "No findings."
        counts = ", ".join(f"{n} {severity}" for severity, n in self.counts().items())
        return f"{counts}: {', '.join(self.codes())}"

    def to_frame(self):
        import pandas

        return pandas.DataFrame([f.to_dict() for f in self.findings], columns=COLUMNS)

    def to_record(self) -> dict:
        """JSON-ready form for notebook metadata and the incident archive."""
        return {"outcome": self.outcome, "worst": self.worst, "counts": self.counts(),
                "findings": [f.to_dict() for f in self.findings]}

    @classmethod
    def from_record(cls, record: dict) -> "Report":
        return cls(Finding.from_dict(item) for item in record.get("findings", []))

    def _repr_html_(self) -> str:
        if not self.findings:
            return f'<p style="color:{COLOURS["ok"]}"><b>ok</b>: no findings.</p>'
        header = "".join(f"<th>{name}</th>" for name in COLUMNS)
        rows = []
        for finding in self.findings:
            cells = [f'<td style="color:{COLOURS[finding.severity]};font-weight:bold">{finding.severity}</td>']
            cells += [f"<td>{html.escape(str(getattr(finding, name)))}</td>" for name in COLUMNS[1:]]
            rows.append("<tr>" + "".join(cells) + "</tr>")
        return (f"<p>{html.escape(self.summary())}</p>"
                f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>")

    def __repr__(self) -> str:
        return f"Report({self.summary()})"
