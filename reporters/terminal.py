"""Report -> plain terminal text: a table of runs, sweeps, and the inputs accounting."""

from __future__ import annotations

from collections import Counter

from analyzer.types import Diagnosis, Finding, Report, Severity
from analyzer.verdicts import REPORT_ORDER, VERDICT, VERDICT_ORDER


def severity_key(d: Diagnosis) -> tuple[int, str]:
    return REPORT_ORDER.index(d.verdict), d.run.id


#: C0/C1 control characters (and DEL) as visible escapes: a run named "\x1b[2J" must not drive the terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def clean(text: object) -> str:
    """``text`` safe to print: names and messages come from untrusted files."""
    return str(text).translate(_CONTROLS)


def _cut(text: str, width: int) -> str:
    text = clean(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def _shown(d: Diagnosis, *, verbose: bool) -> list[Finding]:
    """A stable run's findings are context (shown with -a), except warnings: those are worth a look."""
    if verbose or d.verdict != "stable":
        return list(d.findings)
    return [f for f in d.findings if f.severity >= Severity.WARN]


def runs_table(report: Report, *, with_verdicts: bool = True, limit: int | None = None) -> str:
    """The runs, worst first; with ``limit``, that many rows and a line saying how many more there are."""
    rows = []
    ordered = sorted(report.diagnoses, key=severity_key)
    for d in ordered[:limit]:
        rng = d.run.step_range()
        roles = ",".join(k for k, v in d.run.roles.as_dict().items() if v) or "-"
        top = d.headline.message if d.headline else ""
        notes = sum(1 for n in d.run.notes if n.kind not in ("ignored_fields",))
        row = [_cut(d.run.id, 40), d.run.format, f"{d.run.n_points:,}", f"{rng[0]}-{rng[1]}" if rng else "-", roles,
               str(notes)]
        if with_verdicts:
            row = [VERDICT[d.verdict].badge] + row + [_cut(top, 70)]
        rows.append(row)
    header = ["run", "format", "points", "steps", "roles", "notes"]
    if with_verdicts:
        header = ["verdict"] + header + ["top finding"]
    text = _table(rows, header)
    hidden = len(ordered) - len(rows)
    if hidden > 0:
        text += (f"\n… and {hidden} more run(s), not shown ({len(ordered)} in all: `steadytrain inspect` lists "
                 "every run, the HTML report has them all)")
    return text


def summary(report: Report) -> str:
    counts = Counter(d.verdict for d in report.diagnoses)
    parts = [f"{counts[v]} {v}" for v in reversed(VERDICT_ORDER) if counts[v]]
    read = {i.path for i in report.inputs if i.status == "read"}  # a file of several runs (mlflow.db) once
    skipped = [i for i in report.inputs if i.status == "skipped" and i.path not in read]
    unread_runs = [i for i in report.inputs if i.status == "skipped" and i.path in read]  # a deleted MLflow run
    text = (f"{len(report.diagnoses)} run(s): " + ", ".join(parts) +
            f"\n{len(read)} file(s) read, {len({i.path for i in skipped})} skipped")
    for listed, what in ((skipped, ""), (unread_runs, f"; {len(unread_runs)} run(s) in them not read")):
        if listed:
            reasons = Counter(clean(i.reason.split(":")[0]) for i in listed)
            more = f"; {len(reasons) - 4} more reason(s): see the report's inputs" if len(reasons) > 4 else ""
            text += what + " (" + "; ".join(f"{n}x {r}" for r, n in reasons.most_common(4)) + more + ")"
    dropped = sum(n.count for d in report.diagnoses for n in d.run.notes
                  if n.kind in ("dropped", "truncated", "restart", "duplicate_steps", "corrupt"))
    if dropped:
        text += f"\n{dropped:,} point(s)/record(s) dropped or superseded: see each run's notes"
    return text


def render_inspect(report: Report, *, verbose: bool = False) -> str:
    out = [runs_table(report), ""]
    for s in report.sweeps:
        out.append(f"LR sweep over {len(s.runs)} runs: {clean(s.message)}")
    if report.sweeps:
        out.append("")
    for d in sorted(report.diagnoses, key=severity_key):
        lines = []
        for f in _shown(d, verbose=verbose):
            lines.append(f"  [{f.severity.label}] {clean(f.message)}")
        for r in d.recommendations[:3] if d.verdict not in ("stable", "insufficient_data") or verbose else []:
            lines.append(f"  -> {r.kind}: {_cut(r.rationale, 160)}")
        for n in d.run.notes if verbose else [n for n in d.run.notes if n.kind != "ignored_fields"][:5]:
            lines.append(f"  note: {clean(n.message)}")
        if lines:
            out.append(f"{clean(d.run.id)} ({VERDICT[d.verdict].badge})")
            out += lines
    if verbose:
        out.append("\nInputs:")
        out += [f"  {i.status:7s} {clean(i.path)}  ({clean(i.reason)})" for i in report.inputs]
    out.append(summary(report))
    return "\n".join(out)
