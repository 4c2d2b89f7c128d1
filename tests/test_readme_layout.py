"""README's Layout block is the map a newcomer reads: it must name every module and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analyzer", "reporters", "probes")


def _layout_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Layout")
    fence = text.index("```", start)
    return text[fence + 3 : text.index("```", fence + 3)]


def _modules() -> set[str]:
    return {
        path.name
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" or path.parent.name == "cli"
    }


def test_the_layout_names_every_module():
    named = set(re.findall(r"[A-Za-z_]\w*\.py", _layout_block()))
    missing = sorted(_modules() - named)
    assert not missing, f"README Layout does not name: {missing}"


def test_every_file_the_layout_names_exists():
    named = set(re.findall(r"[A-Za-z_]\w*\.py", _layout_block()))
    existing = _modules() | {"__init__.py"} | {path.name for path in (ROOT / "tests").glob("*.py")}
    gone = sorted(named - existing)
    assert not gone, f"README Layout names files that do not exist: {gone}"
