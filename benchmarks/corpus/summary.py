"""The family table and the corpus counts, printed by build and written to OUT/SUMMARY.md."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks.corpus.spec import CLASSES

_SHORT = {"stable": "stable", "early_instability": "early", "mid_instability": "mid", "divergence": "div"}


def family_table(labels: dict[str, Any]) -> str:
    per: dict[str, Counter[str]] = defaultdict(Counter)
    shapes: dict[str, set[str]] = defaultdict(set)
    for r in labels["runs"]:
        per[r["family"]][r["regime"]] += 1
        shapes[r["family"]].add(r["shape"])
    for s in labels["sweeps"]:
        for t in s["trials"]:
            key = "ambiguous" if t["ambiguous"] else t["regime"]
            per[s["family"]][key] += 1
            shapes[s["family"]].add(t["shape"])
    drops = Counter(d["family"] for d in labels["dropped"])
    sweeps = defaultdict(list)
    for s in labels["sweeps"]:
        sweeps[s["family"]].append(s["sweep"])
    head = "| family | split | model | optimizer | shapes | " + " | ".join(_SHORT[c] for c in CLASSES) + \
        " | ambiguous | dropped | sweeps |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, fam in labels["families"].items():
        c = per[name]
        lines.append(f"| {name} | {fam['split']} | {fam['model']} | {fam['optimizer']} | "
                     f"{', '.join(sorted(shapes[name]))} | " + " | ".join(str(c[k]) for k in CLASSES) +
                     f" | {c['ambiguous']} | {drops[name]} | {', '.join(sweeps[name]) or '-'} |")
    return "\n".join(lines)


def counts_table(labels: dict[str, Any]) -> str:
    c: Counter[tuple[str, str]] = Counter()
    for r in labels["runs"]:
        c[(r["split"], r["regime"])] += 1
    for s in labels["sweeps"]:
        for t in s["trials"]:
            if not t["ambiguous"]:
                c[(s["split"], t["regime"])] += 1
    lines = ["| split | " + " | ".join(CLASSES) + " | total |", "|---|" + "---|" * (len(CLASSES) + 1)]
    for split in ("tune", "heldout"):
        row = [c[(split, k)] for k in CLASSES]
        lines.append(f"| {split} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    row = [c[("tune", k)] + c[("heldout", k)] for k in CLASSES]
    lines.append("| all | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    return "\n".join(lines)


def write_summary(out: Path, labels: dict[str, Any], *, build_seconds: float, train_cpu_seconds: float) -> None:
    n_trials = sum(len(s["trials"]) for s in labels["sweeps"])
    sw = ["| sweep | family | split | LRs | lr* | runner-up's best eval vs lr*'s | edge | infeasible | ambiguous trials |",
          "|---|---|---|---|---|---|---|---|---|"]
    for s in labels["sweeps"]:
        lrs = ", ".join(f"{t['lr']:g}" for t in s["trials"])
        inf = ", ".join(f"{t['lr']:g}" for t in s["trials"] if not t["feasible"]) or "-"
        amb = ", ".join(f"{t['lr']:g}" for t in s["trials"] if t["ambiguous"]) or "-"
        m = s.get("lr_star_margin")
        sw.append(f"| {s['sweep']} | {s['family']} | {s['split']} | {lrs} | {s['best_lr']} | "
                  f"{'-' if m is None else f'+{m:.1%}'} | "
                  f"{s['edge_of_instability']} | {inf} | {amb} |")
    drops = [f"- {d['id']} (intended {d['intended']}, {d['shape']}): {d['reason']}" for d in labels["dropped"]]
    text = (f"# Detection corpus\n\n{len(labels['runs'])} labeled runs + {n_trials} sweep trials in "
            f"{len(labels['sweeps'])} LR sweeps, {len(labels['dropped'])} configured runs dropped by verification. "
            f"Last build: {build_seconds / 60:.1f} min wall, {train_cpu_seconds / 60:.1f} min of training "
            "(CPU, this build only; cached records are not retrained).\n\n"
            "## Families\n\n" + family_table(labels) + "\n\n## Labeled runs per split (sweep trials included, "
            "ambiguous excluded)\n\n" + counts_table(labels) + "\n\n## Sweeps\n\n" + "\n".join(sw) +
            "\n\n## Dropped\n\n" + ("\n".join(drops) or "none") + "\n")
    (out / "SUMMARY.md").write_text(text)
