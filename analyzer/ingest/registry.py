"""Every log format steadytrain reads, in one table: how each is recognised and which function reads it.

Two kinds of reader:
- *loose-file* readers claim single files by name (cheap, no I/O) and then by content (`sniff`,
  which reads only the head of the file and raises LogFormatError saying why a file is not its
  format). The first reader, in table order, whose name test and sniff both pass owns the file;
  when none does, the file is skipped with the reasons of the last (most general) reader of each
  kind of file that wanted it (a .txt: why it is not JSONL and why it is not a printed log). Readers that must win over a more general one (a Lightning metrics.csv over a
  generic CSV) come first.
- *layout* readers (TensorBoard run directories, HF trainer_state.json with its checkpoint
  copies, MLflow file-store runs, W&B offline run folders) are found by the directory layout in
  `discover`; they have no sniff.

Either way, a run's files are read here, one file at a time through `Reader.read`, so that
`load` handles failures in one place: whatever one file raises makes that file a skipped
input with the reason.

Adding a format: write its module (a sniff and a read function) and add one `Reader` line below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping

from analyzer.errors import LogFormatError
from analyzer.frame import RawPoints
from analyzer.ingest import (csv_logs, dvclive, hf_trainer, json_series, jsonl, mlflow, mlflow_sqlite, notebook,
                             parquet_logs, tb_export_json, textlog, wandb_logs, wandb_run)
from analyzer.ingest.cache import DecodeCache, read_events_cached
from analyzer.types import Format, Note


@dataclass(frozen=True)
class FileData:
    """What reading one data file produced."""

    points: RawPoints
    notes: tuple[Note, ...] = ()
    hparams: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadContext:
    """What a reader may need beyond the file: what its sniff found, the run's directory, read options."""

    detail: Any = None
    directory: Path = Path(".")
    verify_crc: bool = True
    decode_cache: DecodeCache | None = None


@dataclass(frozen=True)
class PerFile:
    """A run of several loose files: what each file's sniff found, by path."""

    by_path: Mapping[Path, Any]


@dataclass(frozen=True)
class Claim:
    """A loose file's place in a run: files whose claims share ``group`` are one run, named after ``target``."""

    target: Path
    group: Hashable
    detail: Any = None


@dataclass(frozen=True)
class Reader:
    """One format.

    Attributes:
        name: the key runs carry (RunSource.reader).
        format: the format label of the JSON contract.
        what: how a file read by it is listed among the report's inputs.
        recognised_by: how a file or folder is recognised, for README's format table and `--help`.
        read: reads one data file of a run.
        wants: loose-file readers: whether a file's name could be this format (no I/O).
        sniff: loose-file readers: by content, what reading needs to know (LogFormatError if not this format).
        claim: loose-file readers: which run(s) a sniffed file belongs to (default: a run of its own).
        run_hparams: settings read once per run (MLflow params/), beside the data files.
        family: loose-file readers of one kind of file ("csv", "json", "text"): when none reads a file, the
            reasons given are the last of each family's (the most general reader of a family speaks for it).
        file_is_run: loose-file readers: a file is one whole run (False where a file holds several runs, a W&B
            panel export, or a run is several files, TensorBoard's per-tag CSV export): only such runs can be
            copies or parts of another run of their folder.
        named: the format as --help and the "no readable logs" error name it (short, in the user's words).
        framework: what wrote such a log ("pytorch", "lightning", "hf_trainer"): recommendations' config
            snippets target it first.
        appends: how `steadytrain watch` reads only what such a file grew by: "lines" (complete JSON lines),
            "records" (whole TFRecord records), or None (the run is read again when it changes).
    """

    name: str
    format: Format
    what: str
    recognised_by: str
    read: Callable[[Path, ReadContext], FileData]
    wants: Callable[[Path], bool] | None = None
    sniff: Callable[[Path], Any] | None = None
    claim: Callable[[Path, Any], Iterable[Claim]] | None = None
    run_hparams: Callable[[Path], Mapping[str, Any]] | None = None
    family: str = ""
    file_is_run: bool = True
    named: str = ""
    framework: str = "pytorch"
    appends: str | None = None


# ---- reading functions of each format (thin adapters onto the format modules) ----

def _read_tensorboard(path: Path, ctx: ReadContext) -> FileData:
    if path.stat().st_size == 0:
        raise LogFormatError("empty event file (0 bytes): nothing was written to it")
    got = read_events_cached(path, ctx.verify_crc, ctx.decode_cache)
    corrupt = [n for n in got.notes if n.kind == "corrupt"]
    if not len(got.points) and not got.hparams and corrupt:
        raise LogFormatError("no valid TensorBoard record: " + corrupt[0].message)
    if not len(got.points) and not got.hparams:  # nothing to judge: say why, not "name a tag with --role"
        if got.skipped_values:
            raise LogFormatError(f"no scalar values, only {got.skipped_values} non-scalar summary value(s) "
                                 "(histograms, images, text): this tool reads scalars")
        if any(n.kind == "truncated" for n in got.notes):
            raise LogFormatError(f"no complete scalar record in its {path.stat().st_size:,} byte(s): the last record "
                                 "is cut off (a truncated or unfinished event file)")
        raise LogFormatError(f"no scalar values in its {path.stat().st_size:,} byte(s) (only file or graph metadata)")
    notes = list(got.notes)
    if got.skipped_values:
        notes.append(Note("non_scalar", f"{path.name}: {got.skipped_values} non-scalar summary value(s) "
                          "(histograms, images, text, ...) not read: this tool reads scalars",
                          count=got.skipped_values, source=path.name))
    return FileData(got.points, tuple(notes), got.hparams)


def _read_csv(path: Path, ctx: ReadContext) -> FileData:
    pts, notes = csv_logs.read_csv_log(path, ctx.detail)
    return FileData(pts, tuple(notes))


def _read_tb_export(path: Path, ctx: ReadContext) -> FileData:
    pts, notes = csv_logs.read_tb_export(path)
    return FileData(pts, tuple(notes))


def _read_hf(path: Path, ctx: ReadContext) -> FileData:
    pts, notes, info = hf_trainer.read_trainer_state(path, ctx.detail)
    return FileData(pts, tuple(notes), info)


def _read_jsonl(path: Path, ctx: ReadContext) -> FileData:
    pts, notes = jsonl.read_jsonl(path, ctx.detail)
    return FileData(pts, tuple(notes))


def _read_mlflow(path: Path, ctx: ReadContext) -> FileData:
    pts, notes = mlflow.read_metric_file(ctx.directory, path)
    return FileData(pts, tuple(notes))


def _read_dvclive(path: Path, ctx: ReadContext) -> FileData:
    pts, notes = dvclive.read_metric_file(ctx.directory, path)
    return FileData(pts, tuple(notes))


def _read_mlflow_db(path: Path, ctx: ReadContext) -> FileData:
    pts, notes, params = mlflow_sqlite.read_run(path, ctx.detail)
    return FileData(pts, tuple(notes), params)


def _read_text(path: Path, ctx: ReadContext) -> FileData:
    pts, notes = textlog.read_text_log(path, ctx.detail)
    return FileData(pts, tuple(notes))


def _read_panel(path: Path, ctx: ReadContext) -> FileData:
    panel, run_name = ctx.detail
    pts, notes = wandb_logs.read_panel_csv(path, panel, run_name)
    return FileData(pts, tuple(notes))


def _read_wandb(path: Path, ctx: ReadContext) -> FileData:
    pts, notes, config = wandb_run.read_wandb_run(ctx.directory)
    return FileData(pts, tuple(notes), config)


def _adapt_detail(read: Callable[[Path, Any], tuple[RawPoints, list[Note]]]) -> Callable[[Path, ReadContext], FileData]:
    """A format module's ``read(path, detail) -> (points, notes)`` (``detail``: what its sniff found) as a reader."""
    def read_file(path: Path, ctx: ReadContext) -> FileData:
        points, notes = read(path, ctx.detail)
        return FileData(points, tuple(notes))
    return read_file


def _adapt(read: Callable[[Path], tuple[RawPoints, list[Note]]]) -> Callable[[Path, ReadContext], FileData]:
    """A format module's ``read(path) -> (points, notes)`` as a reader of the table."""
    def read_file(path: Path, ctx: ReadContext) -> FileData:
        points, notes = read(path)
        return FileData(points, tuple(notes))
    return read_file


# ---- how loose files are recognised ----

def _suffix(*suffixes: str) -> Callable[[Path], bool]:
    return lambda path: path.suffix.lower() in suffixes


_JSONISH = (".jsonl", ".json", ".ndjson", ".log", ".txt")
#: stdout captures: Slurm's slurm-<id>.out, nohup.out, train.log, *.err; also names without an extension.
_TEXTISH = (".log", ".txt", ".out", ".err", "")


def _csv_of_kind(*kinds: str) -> Callable[[Path], csv_logs.CsvShape]:
    def sniff(path: Path) -> csv_logs.CsvShape:
        shape = csv_logs.sniff(path)
        if shape.kind not in kinds:
            raise LogFormatError(f"a {shape.kind} CSV")
        return shape
    return sniff


def _claim_directory(path: Path, detail: Any) -> Iterable[Claim]:
    return (Claim(path.parent, path.parent, detail),)


def _claim_tb_export(path: Path, detail: Any) -> Iterable[Claim]:
    run_part, _ = csv_logs.tb_export_tag(path)
    target = path.parent / run_part if run_part and run_part != "." else path.parent
    return (Claim(target, ("tb_export", path.parent, run_part), detail),)


def _claim_parquet(path: Path, table: Any) -> Iterable[Claim]:
    # Numbered parts (W&B's history artifact: 0000.parquet, 0001.parquet) are one table: one run of their folder.
    if parquet_logs.is_part(path):
        return (Claim(path.parent, ("parquet", path.parent), table),)
    return (Claim(path, ("parquet", path), table),)


def _claim_panel_runs(path: Path, panel: Any) -> Iterable[Claim]:
    # One panel export holds several runs; exports of other panels of the same runs join them by run name.
    return tuple(Claim(path.parent / name, ("wandb_panel", path.parent, name), (panel, name)) for name in panel.runs)


def _claim_store_runs(path: Path, store: mlflow_sqlite.Store) -> Iterable[Claim]:
    # One database holds every run of every experiment: each run is one run of the report, named in the store.
    names = mlflow_sqlite.run_names(store)
    return tuple(Claim(path / names[run.uuid], ("mlflow_db", path, run.uuid), run) for run in store.runs)


_CSV_REASON_PREFIX = "CSV that is not a usable log: "


def _generic_csv_sniff(path: Path) -> csv_logs.CsvShape:
    try:
        return _csv_of_kind("keras", "long", "wide")(path)
    except LogFormatError as exc:
        raise LogFormatError(_CSV_REASON_PREFIX + str(exc)) from None


READERS: tuple[Reader, ...] = (
    # layout readers (found by `discover` from the directory layout)
    Reader("tensorboard", "tensorboard", "tensorboard events",
           "files named *tfevents* (one run per directory; add_hparams sub-directories folded in)",
           _read_tensorboard, named="TensorBoard event files", appends="records"),
    Reader("hf", "hf_trainer_state", "HF trainer_state.json",
           "trainer_state.json with a log_history list (checkpoint-*/ copies folded into the most complete one)",
           _read_hf, named="HF Trainer's trainer_state.json", framework="hf_trainer"),
    Reader("mlflow", "mlflow", "MLflow metric",
           "an MLflow file store run: a directory with metrics/ and meta.yaml or params/",
           _read_mlflow, run_hparams=mlflow.read_params, named="MLflow file stores (mlruns/)"),
    Reader("dvclive", "dvclive", "DVCLive metric history",
           "a DVCLive folder (dvclive/): plots/metrics/<name>.tsv per metric beside metrics.json or params.yaml",
           _read_dvclive, run_hparams=dvclive.read_params, named="DVCLive folders (dvclive/)"),
    Reader("wandb", "wandb", "W&B offline run",
           "a W&B run folder holding run-*.wandb (wandb/offline-run-*/); needs the [wandb] extra", _read_wandb,
           named="W&B offline runs"),
    # loose-file readers, most specific first
    Reader("mlflow_db", "mlflow", "MLflow SQLite store",
           "an SQLite file with MLflow's runs and metrics tables (mlflow.db: MLflow's default store since 3.7); "
           "one run per MLflow run", _read_mlflow_db, wants=_suffix(".db", ".sqlite", ".sqlite3"),
           sniff=mlflow_sqlite.sniff, claim=_claim_store_runs, family="sqlite", file_is_run=False,
           named="MLflow SQLite stores (mlflow.db)"),
    Reader("tb_export", "csv", "TensorBoard-exported CSV (one tag)",
           "a CSV whose header is Wall time,Step,Value (TensorBoard's download; one file per tag)",
           _read_tb_export, wants=_suffix(".csv"), sniff=_csv_of_kind("tb_export"), claim=_claim_tb_export,
           family="csv", file_is_run=False, named="TensorBoard's CSV export"),
    Reader("wandb_panel", "wandb_csv", "W&B panel CSV export",
           "a CSV whose header is Step, then '<run> - <metric>' columns (W&B panel export; one run per name)",
           _read_panel, wants=_suffix(".csv"), sniff=wandb_logs.sniff_panel_csv, claim=_claim_panel_runs,
           family="csv", file_is_run=False, named="W&B panel CSV exports"),
    Reader("lightning", "lightning_csv", "CSV (lightning)",
           "metrics.csv with a step or epoch column (Lightning's CSVLogger; hparams.yaml beside it)",
           _read_csv, wants=lambda p: p.name == "metrics.csv", sniff=_csv_of_kind("lightning"),
           claim=_claim_directory, family="csv", named="Lightning's metrics.csv", framework="lightning"),
    Reader("csv", "csv", "CSV",
           "any other comma-separated file with a header: Keras CSVLogger (epoch first), long (tag,value,step) "
           "or wide (a step column and metric columns)",
           _read_csv, wants=_suffix(".csv"), sniff=_generic_csv_sniff, family="csv", named="other CSV (Keras, long, wide)"),
    Reader("parquet", "parquet", "Parquet table",
           "a .parquet table with a step column and metric columns (W&B's run history artifact, a script's "
           "df.to_parquet); numbered parts (0000.parquet, ...) of one folder are one run",
           _adapt_detail(parquet_logs.read), wants=_suffix(".parquet", ".pq"), sniff=parquet_logs.sniff, claim=_claim_parquet,
           family="parquet", named="Parquet tables (W&B run history)"),
    Reader("tb_export_json", "tensorboard_json", "TensorBoard-exported JSON (one tag)",
           "a .json list of [wall_time, step, value] (TensorBoard's JSON download; one file per tag)",
           _adapt(tb_export_json.read), wants=_suffix(".json"), sniff=tb_export_json.sniff, claim=_claim_tb_export,
           family="json", file_is_run=False, named="TensorBoard's JSON export"),
    Reader("json_series", "json", "JSON document of series",
           "a .json object of whole series: Sacred's metrics.json ({name: {steps, values, timestamps}}) or a dumped "
           "Keras History ({loss: [...], val_loss: [...]}, a value per epoch)",
           _adapt_detail(json_series.read), wants=_suffix(".json"), sniff=json_series.sniff, family="json",
           named="JSON series (Sacred's metrics.json, a Keras History)", framework="pytorch"),
    Reader("jsonl", "jsonl", "JSONL log",
           "one JSON object per line with a step key (step, global_step, iteration, num_updates, ...), "
           "by content; a split/phase/mode field separates train and val records",
           _read_jsonl, wants=_suffix(*_JSONISH), sniff=jsonl.sniff, family="json",
           named="JSONL (fairseq, Detectron2, MMEngine, ...)", appends="lines"),
    Reader("notebook", "text_log", "Jupyter notebook outputs",
           "a .ipynb whose saved cell outputs hold a training log (printed lines, the HF Trainer's notebook table, "
           "tracebacks), read as a printed log", _adapt_detail(notebook.read), wants=_suffix(".ipynb"), sniff=notebook.sniff,
           family="notebook", named="Jupyter notebooks (their saved outputs)"),
    Reader("text", "text_log", "text log",
           "a job's printed output (stdout, Slurm .out): Megatron-LM/NeMo/GPT-NeoX iteration lines, nanoGPT, "
           "the HF Trainer's printed dicts, fairseq; by content, noise between the lines tolerated",
           _read_text, wants=_suffix(*_TEXTISH), sniff=textlog.sniff, family="text",
           named="printed logs (Megatron-LM, NeMo, nanoGPT, HF Trainer, fairseq stdout)"),
)

BY_NAME: dict[str, Reader] = {r.name: r for r in READERS}
#: The reader of each JSON-contract format (where two share a format, the first: they agree on what is asked here).
_BY_FORMAT: dict[str, Reader] = {}
for _reader in READERS:
    _BY_FORMAT.setdefault(_reader.format, _reader)


def framework_of(fmt: str) -> str:
    """What wrote a log of this format ("pytorch" when the format does not say)."""
    reader = _BY_FORMAT.get(fmt)
    return reader.framework if reader is not None else "pytorch"


def appends_of(fmt: str) -> str | None:
    """How a growing log of this format is read from where the last read stopped (`Reader.appends`)."""
    reader = _BY_FORMAT.get(fmt)
    return reader.appends if reader is not None else None


def formats_in_words() -> str:
    """Every format the table reads, in words (for --help and the "no readable logs" error): taken from
    this table, so a new reader is listed without another edit."""
    return ", ".join(r.named for r in READERS)
LOOSE_FILE_READERS: tuple[Reader, ...] = tuple(r for r in READERS if r.sniff is not None)


@dataclass(frozen=True)
class Recognised:
    """A loose file and the reader that claimed it (with what its sniff found)."""

    reader: Reader
    detail: Any


def recognise(path: Path) -> Recognised:
    """The reader of a loose file, or LogFormatError with why none reads it."""
    reasons: dict[str, str] = {}
    for reader in LOOSE_FILE_READERS:
        assert reader.wants is not None and reader.sniff is not None
        if not reader.wants(path):
            continue
        try:
            return Recognised(reader, reader.sniff(path))
        except LogFormatError as exc:
            reasons[reader.family] = str(exc)
    if not reasons:
        if is_checkpoint(path):
            raise LogFormatError("a checkpoint (weights / optimizer state), not a log: a probe spec written by "
                                 "`steadytrain report` can resume from it")
        raise LogFormatError(f"not a recognised log format ({path.suffix or 'no extension'})")
    raise LogFormatError("; ".join(reasons.values()))


#: Files that hold a checkpoint (weights, optimizer or scheduler state, the HF Trainer's arguments), by name.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors", ".ckpt")
CHECKPOINT_NAMES = ("training_args.bin", "pytorch_model.bin", "optimizer.bin", "scheduler.bin")


def is_checkpoint(path: Path) -> bool:
    name = path.name.lower()
    return path.suffix.lower() in CHECKPOINT_SUFFIXES or name in CHECKPOINT_NAMES or (
        name.startswith("pytorch_model-") and name.endswith(".bin"))


def claims(path: Path, found: Recognised) -> Iterable[Claim]:
    if found.reader.claim is not None:
        return found.reader.claim(path, found.detail)
    return (Claim(path, path, found.detail),)
