"""Finding runs under the given paths and accounting for every file met on the way.

A run is: a directory of TensorBoard event files; a Lightning metrics.csv (hparams.yaml beside
it); an HF trainer_state.json (checkpoint-*/ copies merged into it: hf_trainer.choose_copy); a JSONL
log (recognised by content); an MLflow file-store run; a set of TensorBoard-exported CSVs; a
Keras or generic CSV. Every other file gets a skipped entry with the reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from analyzer.display import file_kind
from analyzer.errors import InputError
from analyzer.hparams import SIDE_FILE_NAMES
from analyzer.ingest import dvclive, hf_trainer, mlflow, registry, wandb_run
from analyzer.ingest.skipped import unreadable
from analyzer.types import Format, InputFile, Note

_CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")
_TIMESTAMP_DIR = re.compile(r"^\d{9,}(\.\d+)?$")  # SummaryWriter.add_hparams writes to logdir/<time.time()>/


@dataclass(frozen=True)
class RunSource:
    """Where one run's data lies, before reading it.

    Attributes:
        id: path relative to its root, '/'-separated.
        format: the format label of the JSON contract.
        reader: which reader reads it ("tensorboard", "csv", "tb_export", "hf", "jsonl", "mlflow", "dvclive", ...).
        files: data files, in read order.
        side_files: config files beside it (hparams), and add_hparams event files.
        directory: the run's directory.
        detail: reader-specific facts found while sniffing (CSV shape, JSONL step key, ...).
        merged: (path, why) of files folded into this run without being read as data.
        notes: what discovery decided that the run's report must say (an earlier run's stale copy).
        lineage: an identity the writer gave the run beyond its folder (a W&B run id): runs that share it
            are one run resumed into several folders (analyzer.ingest.lineage).
    """

    id: str
    format: Format
    reader: str
    files: tuple[Path, ...]
    side_files: tuple[Path, ...] = ()
    directory: Path = Path(".")
    detail: Any = None
    merged: tuple[tuple[Path, str], ...] = ()
    notes: tuple[Note, ...] = ()
    lineage: str | None = None


@dataclass
class Discovery:
    sources: list[RunSource] = field(default_factory=list)
    skipped: list[InputFile] = field(default_factory=list)
    files_seen: int = 0


_HIDDEN = "hidden or cache directory, not searched"

#: Directories that are one run each and own every file under them (layout readers).
_RUN_DIR_TESTS = (("mlflow", mlflow.is_run_dir), ("wandb", wandb_run.is_wandb_run_dir), ("dvclive", dvclive.is_run_dir))


def _walk(root: Path, skipped: list[InputFile]) -> list[Path]:
    """Every regular file under ``root``, depth first in name order, following directory symlinks (not
    cycles). Dangling links, FIFOs, sockets and devices are skipped inputs: opening a FIFO would block.
    One scandir per directory: a regular file costs no stat of its own."""
    files: list[Path] = []
    real_files: set[str] = set()  # real paths of the regular files found (the directory's real path + name)
    linked_files: list[str] = []  # links to files, taken last: a second path to a file read is not a second run
    seen: set[str] = set()  # real paths of directories walked: symlinked runs are followed, cycles are not
    stack = [str(root)]
    linked: list[str] = []  # links to directories, walked last: a link to a run beside it (W&B's latest-run) is
    while stack or linked:  # then the second path to it, and the run keeps its own name
        dirpath = stack.pop() if stack else linked.pop(0)
        real = os.path.realpath(dirpath)
        if real in seen:
            skipped.append(InputFile(dirpath, "skipped", "directory already searched (a symlink loop or a second "
                                     "link to it)"))
            continue
        seen.add(real)
        try:
            with os.scandir(dirpath) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(InputFile(dirpath, "skipped", f"cannot be listed: {exc.strerror}"))
            continue
        subdirs = []
        for entry in entries:
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError as exc:
                skipped.append(InputFile(str(Path(entry.path).absolute()), "skipped", f"cannot be read: {exc.strerror}"))
                continue
            if is_dir:
                if entry.name.startswith(".") or entry.name == "__pycache__":
                    skipped.append(InputFile(entry.path, "skipped", _HIDDEN))
                elif entry.is_symlink():
                    linked.append(entry.path)
                else:
                    subdirs.append(entry.path)
            elif is_file:
                if entry.is_symlink():
                    linked_files.append(entry.path)
                else:
                    files.append(Path(entry.path))
                    real_files.add(os.path.join(real, entry.name))
            else:
                what = _not_regular(entry.path)
                skipped.append(InputFile(str(Path(entry.path).absolute()), "skipped",
                                         what if "dangling" in what else f"{what}: not read"))
        stack.extend(reversed(subdirs))
    for link in linked_files:  # e.g. latest.jsonl -> train_20241203.jsonl
        target = os.path.realpath(link)
        if target in real_files:
            skipped.append(InputFile(str(Path(link).absolute()), "skipped",
                                     f"a link to {Path(target).name}, which is read as itself"))
        else:
            real_files.add(target)
            files.append(Path(link))
    return files


def _not_regular(path: str | Path) -> str:
    """What an entry that is neither a regular file nor a directory is, in words: a symlink to a device is
    not "dangling" (opening a FIFO would block; reading /dev/zero would never end)."""
    link = "a symbolic link to " if os.path.islink(path) else ""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a symbolic link to nothing (dangling link)" if link else "cannot be read"
    return f"{link}{file_kind(mode) or 'a special file'}, not a regular file"


def _run_id(root: Path, target: Path, multi_root: bool) -> str:
    rel = target.relative_to(root).as_posix() if target != root else ""
    base = root.name or root.resolve().name
    if not rel or rel == ".":
        return base
    return f"{base}/{rel}" if multi_root else rel


def discover(paths: Sequence[str | Path]) -> Discovery:
    """Every run under ``paths``, and a skipped entry for every file that is not part of one."""
    if not paths:
        raise InputError("no path given: name a log directory or file, e.g. `steadytrain inspect runs/`")
    found = Discovery()
    unique: dict[str, Path] = {}  # the same path given twice (or spelled two ways) is read once
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"{given}: no such file or directory")
        if not path.is_file() and not path.is_dir():
            raise InputError(f"{given}: {_not_regular(path)} or directory; name a log file or a directory of logs")
        unique.setdefault(os.path.realpath(path), path)
    multi = len(unique) > 1
    claimed: set[str] = set()  # real paths of files already read under an earlier path (overlapping paths)
    for path in unique.values():
        if path.is_file():
            root, files = path.parent, [path]
        else:
            root, files = path, _walk(path, found.skipped)
        if multi:
            real = [os.path.realpath(f) for f in files]
            files = [f for f, r in zip(files, real) if r not in claimed]
            claimed.update(real)
        found.files_seen += len(files)
        _classify(root.absolute(), [f.absolute() for f in files], found, multi)
    return found


def _classify(root: Path, files: list[Path], found: Discovery, multi: bool) -> None:
    """The runs of one root's files, in ``found``: run folders (MLflow, W&B), TensorBoard folders, loose files
    by the reader that claims them, HF output folders; then the side files of each run."""
    def rid(target: Path) -> str:
        return _run_id(root, target, multi)

    remaining = _run_folders(root, files, found, rid)
    by_dir: dict[Path, list[Path]] = {}
    for f in remaining:
        by_dir.setdefault(f.parent, []).append(f)
    folded = _tensorboard_runs(by_dir, found, rid)
    for f in (f for d in sorted(folded) for f in by_dir[d] if "tfevents" not in f.name):
        found.skipped.append(InputFile(str(f), "skipped", "in an add_hparams folder of a TensorBoard run (only its "
                                       "event files are read)"))
    hf_groups, loose, side_candidates = _claim_files({d: fs for d, fs in by_dir.items() if d not in folded}, found)
    for (reader_name, _), (claim, claimed) in loose.items():
        reader = registry.BY_NAME[reader_name]
        run_files = tuple(sorted(claimed))
        # each file keeps what its own sniff found (two panel exports of one run have different columns)
        detail = claim.detail if len(run_files) == 1 else registry.PerFile(claimed)
        found.sources.append(RunSource(rid(claim.target), reader.format, reader.name, run_files, (),
                                       run_files[0].parent, detail))
    for key, states in sorted(hf_groups.items()):
        _add_hf_run(rid(key), key, states, found)
    _attach_side_files(side_candidates, found)
    _dedupe_ids(found.sources)


def _run_folders(root: Path, files: list[Path], found: Discovery, rid: Callable[[Path], str]) -> list[Path]:
    """Runs of MLflow, W&B and DVCLive run folders (an MLflow or W&B run folder owns everything under it, a DVCLive
    folder what DVCLive writes); the files no run folder owns."""
    remaining: list[Path] = []
    owned_by: dict[Path, list[Path]] = {}
    owner_kind: dict[Path, str | None] = {}

    def owner(f: Path) -> Path | None:
        for p in f.parents:
            if p != root and root not in p.parents:
                return None
            if p not in owner_kind:
                owner_kind[p] = next((kind for kind, test in _RUN_DIR_TESTS if test(p)), None)
            if owner_kind[p] is not None:
                return p
        return None

    for f in files:
        run_dir = owner(f)
        # a DVCLive folder may be a trainer's output folder too (Live(dir=output_dir)): it owns only its own files
        if run_dir is not None and (owner_kind[run_dir] != "dvclive" or dvclive.owns(run_dir, f)):
            owned_by.setdefault(run_dir, []).append(f)
        else:
            remaining.append(f)
    for run_dir, owned in sorted(owned_by.items()):
        kind = owner_kind[run_dir]
        if kind == "mlflow":
            data = [f for f in owned if (run_dir / "metrics") in f.parents]
            why = "MLflow run metadata, params or artifacts"
        elif kind == "dvclive":
            data = [f for f in owned if dvclive.is_history(run_dir, f)]
            why = "DVCLive summary (metrics.json: the latest values), params, plots or report"
        else:
            data = [f for f in owned if f.parent == run_dir and f.suffix == ".wandb"][:1]
            why = "W&B run metadata, config or media (the history is read from the .wandb file)"
        reader = registry.BY_NAME[kind or ""]
        others = tuple((f, why) for f in owned if f not in data)
        lineage = wandb_run.run_id(data[0]) if kind == "wandb" and data else None
        found.sources.append(RunSource(rid(run_dir), reader.format, reader.name, tuple(data), (), run_dir, None,
                                       others, lineage=lineage))
    return remaining


def _tensorboard_runs(by_dir: dict[Path, list[Path]], found: Discovery, rid: Callable[[Path], str]) -> set[Path]:
    """One run per folder of event files, its add_hparams sub-folders (named by a timestamp) folded in: those
    sub-folders are returned (the run owns them whole)."""
    tb_dirs = {d for d, fs in by_dir.items() if any("tfevents" in f.name for f in fs)}
    hparam_dirs: dict[Path, list[Path]] = {}  # run dir -> its add_hparams sub-directories
    for d in tb_dirs:
        if _TIMESTAMP_DIR.match(d.name) and d.parent in tb_dirs:
            hparam_dirs.setdefault(d.parent, []).append(d)
    for directory, dir_files in sorted(by_dir.items()):
        events = [f for f in dir_files if "tfevents" in f.name]
        if not events or (_TIMESTAMP_DIR.match(directory.name) and directory.parent in tb_dirs):
            continue  # no events, or folded into the parent run
        hp_dirs = sorted(hparam_dirs.get(directory, ()))
        hp_files = tuple(f for d in hp_dirs for f in sorted(by_dir[d]) if "tfevents" in f.name)
        found.sources.append(RunSource(rid(directory), "tensorboard", "tensorboard",
                                       tuple(sorted(events, key=_event_file_order)), hp_files, directory))
    return {d for ds in hparam_dirs.values() for d in ds}


_Loose = dict[tuple[str, Hashable], tuple[registry.Claim, dict[Path, Any]]]  # (reader, group) -> claim, files


def _claim_files(by_dir: dict[Path, list[Path]], found: Discovery
                 ) -> tuple[dict[Path, list[Path]], _Loose, list[Path]]:
    """The files that are not event files, sorted out: HF trainer_state.json copies by output folder, loose
    files by the reader and group that claim them, side files (configs) for later; the rest skipped, why said."""
    hf_groups: dict[Path, list[Path]] = {}
    loose: _Loose = {}
    side_candidates: list[Path] = []
    for directory, dir_files in sorted(by_dir.items()):
        for f in dir_files:
            name = f.name
            if "tfevents" in name:
                continue
            if name == "trainer_state.json":
                key = directory.parent if _CHECKPOINT_DIR.match(directory.name) else directory
                hf_groups.setdefault(key, []).append(f)
            elif name in SIDE_FILE_NAMES:
                side_candidates.append(f)
            elif name == "meta.yaml" and _holds_mlflow_runs(directory):
                found.skipped.append(InputFile(str(f), "skipped", "MLflow experiment metadata (its runs are read "
                                               "from their own directories)"))
            else:
                try:
                    found_as = registry.recognise(f)
                except Exception as exc:  # noqa: BLE001 - one unreadable file is that file's problem only
                    found.skipped.append(InputFile(str(f), "skipped", _why(exc)))
                    continue
                for claim in registry.claims(f, found_as):
                    loose.setdefault((found_as.reader.name, claim.group), (claim, {}))[1][f] = claim.detail
    return hf_groups, loose, side_candidates


def _attach_side_files(side_candidates: list[Path], found: Discovery) -> None:
    """A config file beside a run's log (or in one of its checkpoint folders) goes with that run."""
    run_dirs = {s.directory: i for i, s in enumerate(found.sources)}
    for f in side_candidates:
        i = run_dirs.get(f.parent)
        if i is None and _CHECKPOINT_DIR.match(f.parent.name):
            i = run_dirs.get(f.parent.parent)
        if i is None:
            found.skipped.append(InputFile(str(f), "skipped", "configuration file with no log beside it"))
            continue
        src = found.sources[i]
        found.sources[i] = replace(src, side_files=src.side_files + (f,))


def _why(exc: Exception) -> str:
    """A skipped file's reason from the exception its sniffing raised (the loader's wording)."""
    return unreadable("", exc).reason


def _holds_mlflow_runs(directory: Path) -> bool:
    try:
        return any(mlflow.is_run_dir(d) for d in directory.iterdir() if d.is_dir())
    except OSError:
        return False


def _event_file_order(path: Path) -> tuple[int, str]:
    """Event files of one run in write order: by the timestamp in their name, then name."""
    parts = path.name.split(".")
    try:
        stamp = int(parts[parts.index("tfevents") + 1])
    except (ValueError, IndexError):
        stamp = 0
    return stamp, path.name


def _add_hf_run(run_id: str, key: Path, states: list[Path], found: Discovery) -> None:
    copies: list[hf_trainer.StateCopy] = []
    for f in states:
        try:
            state = hf_trainer.load_state(f)
            mtime = f.stat().st_mtime
        except Exception as exc:  # noqa: BLE001 - one unreadable file is that file's problem only
            found.skipped.append(InputFile(str(f), "skipped", _why(exc)))
            continue
        copies.append(hf_trainer.StateCopy(f, state, mtime, top_level=f.parent == key))
    if not copies:
        return
    chosen = hf_trainer.choose_copy(copies)
    found.sources.append(RunSource(run_id, "hf_trainer_state", "hf", (chosen.read.path,), (), key, chosen.read.state,
                                   chosen.merged, chosen.notes))


def _dedupe_ids(sources: list[RunSource]) -> None:
    seen: dict[str, int] = {}
    for i, src in enumerate(sources):
        if src.id in seen:
            seen[src.id] += 1
            sources[i] = replace(src, id=f"{src.id} ({src.format})")
        else:
            seen[src.id] = 0
