"""Score the analyzer on the corpus: run analyzer.pipeline.analyze on OUT/runs and compare.

A report run matches a labeled path when one is a prefix path of the other (as
/work/shared/eval/score.py does): a label names the run directory, the analyzer may name the log
file or the log directory under it. A label that matches no report run scores as "unmatched", one
that matches several (one training read as several runs) as "split". Ambiguous runs and trials
are not scored. Prints Markdown for benchmarks/RESULTS.md: for tune, heldout and all, per-class
precision/recall/F1, macro-F1 over the 4 classes, the false-alarm rate on stable runs, the
early/mid confusion rate, the confusion matrix (label -> verdict), sweep lr* hits and edge-flag
agreement, and the misjudged runs with their family.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.corpus.spec import CLASSES

_UNSTABLE = CLASSES[1:]


def _matches(label_rel: str, run_id: str) -> bool:
    return run_id == label_rel or run_id.startswith(label_rel + "/") or label_rel.startswith(run_id + "/")


def _rel(path: str) -> str:
    return path[len("runs/"):] if path.startswith("runs/") else path


def collect(labels: dict[str, Any], verdicts: dict[str, str]) -> list[dict[str, Any]]:
    """One row per scored label: id, family, split, label, verdict."""
    items = []
    for r in labels["runs"]:
        if not r.get("ambiguous"):
            items.append((r["id"], r["path"], r["family"], r["split"], r["regime"]))
    for s in labels["sweeps"]:
        for t in s["trials"]:
            if not t.get("ambiguous"):
                items.append((t["run"], t["path"], s["family"], s["split"], t["regime"]))
    rows = []
    for rid, path, fam, split, label in items:
        hits = [v for k, v in verdicts.items() if _matches(_rel(path), k)]
        verdict = hits[0] if len(hits) == 1 else ("unmatched" if not hits else f"split into {len(hits)}")
        rows.append({"id": rid, "family": fam, "split": split, "label": label, "verdict": verdict})
    return rows


def scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    conf = Counter((r["label"], r["verdict"]) for r in rows)
    per = {}
    f1s = []
    for c in CLASSES:
        tp = conf[(c, c)]
        fp = sum(v for (lab, p), v in conf.items() if p == c and lab != c)
        fn = sum(v for (lab, p), v in conf.items() if lab == c and p != c)
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if tp else 0.0
        per[c] = {"n": tp + fn, "precision": prec, "recall": rec, "f1": f1}
        f1s.append(f1)
    n_stable = sum(v for (lab, _), v in conf.items() if lab == "stable")
    fa = sum(v for (lab, p), v in conf.items() if lab == "stable" and p in _UNSTABLE)
    n_em = sum(v for (lab, _), v in conf.items() if lab in ("early_instability", "mid_instability"))
    em = conf[("early_instability", "mid_instability")] + conf[("mid_instability", "early_instability")]
    present = [f for c, f in zip(CLASSES, f1s) if per[c]["n"]]
    return {"n": len(rows), "per_class": per, "macro_f1": sum(f1s) / len(f1s),
            "macro_f1_present": sum(present) / len(present) if present else float("nan"),
            "false_alarm_rate": fa / n_stable if n_stable else float("nan"), "n_stable": n_stable,
            "early_mid_confusion": em / n_em if n_em else float("nan"), "n_early_mid": n_em,
            "confusion": {f"{a} -> {b}": v for (a, b), v in sorted(conf.items())},
            "misjudged": [r for r in rows if r["verdict"] != r["label"]]}


def sweep_scores(labels: dict[str, Any], report_sweeps: list[Any], split: str | None) -> dict[str, Any]:
    rows = []
    member: dict[str, str] = {}
    for s in labels["sweeps"]:
        for t in s["trials"]:
            member[_rel(t["path"])] = s["sweep"]
    for s in labels["sweeps"]:
        if split not in (None, "all") and s["split"] != split:
            continue
        paths = [_rel(t["path"]) for t in s["trials"]]
        got = [rs for rs in report_sweeps if any(_matches(p, r) for r in rs.runs for p in paths)]
        g = got[0] if got else None
        best = g.best_lr if g is not None else None
        hit = best is not None and s["best_lr"] is not None and math.isclose(best, s["best_lr"], rel_tol=1e-6)
        rows.append({"sweep": s["sweep"], "family": s["family"], "split": s["split"], "best_lr": s["best_lr"],
                     "found_lr": best, "lr_hit": hit, "edge": s["edge_of_instability"],
                     "found_edge": g.edge_of_instability if g is not None else None,
                     "edge_agrees": g is not None and bool(g.edge_of_instability) == bool(s["edge_of_instability"]),
                     "report_sweeps": len(got)})
    spurious = 0
    for rs in report_sweeps:
        names = {next((n for p, n in member.items() if _matches(p, r)), None) for r in rs.runs}
        if None in names or len(names) > 1:
            spurious += 1
    return {"sweeps": rows, "spurious": spurious}


def _f(x: float) -> str:
    return "-" if x != x else f"{x:.2f}"


def markdown(title: str, sc: dict[str, Any], sw: dict[str, Any], families: list[str]) -> str:
    out = [f"### {title}: {sc['n']} labeled runs ({', '.join(families)})", "",
           "| class | n | precision | recall | F1 |", "|---|---|---|---|---|"]
    for c in CLASSES:
        p = sc["per_class"][c]
        out.append(f"| {c} | {p['n']} | {_f(p['precision'])} | {_f(p['recall'])} | {_f(p['f1'])} |")
    out += ["", f"macro-F1 **{sc['macro_f1']:.3f}** over the 4 classes ({sc['macro_f1_present']:.3f} over the "
                f"classes present) · false alarms on stable runs "
                f"**{_f(sc['false_alarm_rate'] * 100) if sc['n_stable'] else '-'}%** ({sc['n_stable']} runs) · "
                f"early/mid confusion **{_f(sc['early_mid_confusion'] * 100) if sc['n_early_mid'] else '-'}%** "
                f"({sc['n_early_mid']} runs)", ""]
    verdicts = sorted({k.split(" -> ")[1] for k in sc["confusion"]}, key=lambda v: (v not in CLASSES, v))
    verdicts = [v for v in CLASSES if v in verdicts] + [v for v in verdicts if v not in CLASSES]
    out += ["| label \\ verdict | " + " | ".join(verdicts) + " |", "|---|" + "---|" * len(verdicts)]
    for c in CLASSES:
        out.append(f"| {c} | " + " | ".join(str(sc["confusion"].get(f"{c} -> {v}", 0)) for v in verdicts) + " |")
    if sw["sweeps"]:
        hits = sum(r["lr_hit"] for r in sw["sweeps"])
        edges = sum(r["edge_agrees"] for r in sw["sweeps"])
        out += ["", f"Sweeps: lr* found {hits}/{len(sw['sweeps'])}, edge flag agrees {edges}/{len(sw['sweeps'])}, "
                    f"spurious report sweeps (all splits) {sw['spurious']}", "",
                "| sweep | family | lr* label | lr* found | edge label | edge found |", "|---|---|---|---|---|---|"]
        for r in sw["sweeps"]:
            out.append(f"| {r['sweep']} | {r['family']} | {r['best_lr']} | {r['found_lr']} | {r['edge']} | "
                       f"{r['found_edge']} |")
    if sc["misjudged"]:
        out += ["", "Misjudged (label -> verdict):", ""]
        out += [f"- {m['id']} [{m['family']}]: {m['label']} -> {m['verdict']}" for m in sc["misjudged"]]
    return "\n".join(out)


def scores_by_split(labels: dict, rows: list[dict], sweeps, splits: list[str]) -> tuple[dict, list[str]]:
    """Scores of each split (tune families, held-out families, all) and their markdown tables."""
    result, tables = {}, []
    for sp in splits:
        sel = [r for r in rows if sp == "all" or r["split"] == sp]
        fams = sorted({f for f, v in labels["families"].items() if sp == "all" or v["split"] == sp})
        sc = scores(sel)
        sw = sweep_scores(labels, sweeps, sp)
        result[sp] = {**sc, **sw}
        tables += [markdown(sp, sc, sw, fams), ""]
    return result, tables


def evaluate(out: Path, *, split: str | None = None, json_path: Path | None = None) -> str:
    from analyzer.ingest.load import LoadOptions
    from analyzer.pipeline import analyze

    labels = json.loads((out / "labels.json").read_text())
    report = analyze([out / "runs"], load_options=LoadOptions(cache_dir=None))
    verdicts = {d.run.id: d.verdict for d in report.diagnoses}
    rows = collect(labels, verdicts)
    result, tables = scores_by_split(labels, rows, report.sweeps, [split] if split else ["tune", "heldout", "all"])
    parts = ["## Detection corpus: analyzer scores", "", *tables]
    parts.append(f"{len(labels['dropped'])} configured runs were dropped by label verification; "
                 f"{sum(r.get('ambiguous', False) for r in labels['runs']) + sum(t['ambiguous'] for s in labels['sweeps'] for t in s['trials'])} "
                 "ambiguous runs/trials are not scored.")
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1, default=str))
    return "\n".join(parts)
