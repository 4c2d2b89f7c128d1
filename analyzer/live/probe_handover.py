"""The hand-over from a live finding to `steadytrain probe`: the probe spec `steadytrain report` would write.

Like `analyzer.cli`, this module is a composition point: the in-process callbacks act on a finding (save a
checkpoint, write the restart plan and the probe spec beside it), so it calls the probes package, whose
spec writing is torch-free. It is the only module of `analyzer.live` that imports probes, and it is loaded
only when a spec is asked for: `import analyzer` and `import analyzer.live` never load probes (tests check
both, and the import graph).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from analyzer.types import Diagnosis
from probes.from_report import spec_for
from probes.spec import dump_spec

__all__ = ["spec_for", "spec_yaml", "write_spec"]


def spec_yaml(diagnosis: Diagnosis) -> str | None:
    """The probe spec of a flagged run as the YAML `steadytrain probe` reads; None when it is not flagged."""
    spec = spec_for(diagnosis)
    if spec is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return dump_spec(spec, Path(tmp) / "spec.yaml").read_text(encoding="utf-8")


def write_spec(diagnosis: Diagnosis, path: str | Path) -> Path | None:
    """Write the probe spec (``steadytrain probe PATH`` runs it); None when the run is not flagged."""
    spec = spec_for(diagnosis)
    return dump_spec(spec, path) if spec is not None else None
