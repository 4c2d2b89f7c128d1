"""The key/value items of the lines one `LinePattern` claimed, vectorised with polars.

A Python loop per item reads a Megatron log at ~25 MB/s on the project's machine (a line holds
~13 items). Here whole columns of lines are split at once, and the common case is cheaper still:
a tool prints the same keys in the same order on almost every line, so the items of lines that
follow the first line's layout are read position by position (a prefix check and a slice per
position: `TagColumn`), and only the other lines go through the general split (`LineItems.items`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Callable

import polars as pl

from analyzer.ingest.tabular import flatten, progress_step, to_float
from analyzer.ingest.text_patterns import LinePattern
from analyzer.types import Note

#: An item with no key separator: key, whitespace, value (the value is the last word).
_LAST_WORD = r"^\s*(.*\S)\s+(\S+)\s*$"
#: One entry of a Python dict repr: 'key': value, where value is a quoted string (newer HF
#: versions print floats as '{v:.4g}' strings), a call (np.float64(2.3), tensor(1.2, device=...)),
#: or a bare literal.
_PY_ITEM = r"'[^']*': (?:'[^']*'|[A-Za-z_][\w.]*\([^()]*\)|[^,{}]*)"
_PY_KV = r"^'([^']*)': (?:'([^']*)'|[A-Za-z_][\w.]*\(\s*([^,()]*)[^()]*\)|(.*))$"
#: A tqdm bar's counter at the end of a line: "... 40%|####      | 40/100 [00:04<00:06, 9.9it/s]".
_BAR_AT_END = r"\|\s*(\d+)/\d+ \[[^\]]*\]\s*$"
_UNIT = re.compile(r"^(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>ms|s|%)$")
_UNIT_NAMES = {"ms": "ms", "s": "s", "%": "percent"}


@dataclass(frozen=True)
class TagColumn:
    """One tag's values, read position by position from lines that follow the common layout.

    Attributes:
        key: the key as printed (with its unit: ``time_ms``).
        tag: the tag (prefix and renames applied).
        rows: line index of each value (u32).
        values: the values as numbers (f64; null where the printed value is not one).
    """

    key: str
    tag: str
    rows: pl.Series
    values: pl.Series


#: A pattern's common layout: (prefix of every line, item count, fields); a field is (position, raw text up to
#: the value, key, unit). Two reads that use the same one read every line of that layout alike.
Layout = tuple[str | None, int, tuple[tuple[int, str, str, str], ...]]
#: Called with the lines of one pattern (``row``, ``body``, ``prefix``, ``seps``) before their layout is chosen.
Census = Callable[[pl.DataFrame], None]


@dataclass(frozen=True)
class LineItems:
    """What one pattern's lines hold.

    Attributes:
        lines: one row per line read: ``row`` (u32 line index), ``step`` (the step as printed, or null).
        columns: the values of lines in the common layout, one tag at a time.
        items: the values of the other lines: ``row``, ``tag``, ``value`` (as printed), ``src`` (0: the item
            held the key separator, 1: it was split at its last space; all of the first come first).
        notes: lines or items that could not be read, with counts.
        counts: what the notes about dropped lines and items count (``damaged``, ``unpaired``, ``bad_json``).
        layout: the common layout the columns were read by (None: every line took the general path).
    """

    lines: pl.DataFrame
    columns: tuple[TagColumn, ...]
    items: pl.DataFrame
    notes: tuple[Note, ...]
    counts: tuple[tuple[str, int], ...] = ()
    layout: Layout | None = None


def tag_of(p: LinePattern, key: str, prefix: str | None) -> str:
    """The tag of an item: suffix dropped, renamed, prefixed."""
    key = key.strip()
    if p.drop_suffix and key.endswith(p.drop_suffix):
        key = key[: -len(p.drop_suffix)]
    key = p.rename.get(key, key)
    return f"{prefix}/{key}" if prefix else key


def _split_key(item: str, key_sep: str) -> tuple[str, str] | None:
    """(raw text up to the value, value) of one item, the way `_split_kv` splits it."""
    if key_sep != " " and key_sep in item:
        head, _, value = item.partition(key_sep)
        return head + key_sep, value
    m = re.match(_LAST_WORD, item)
    return None if m is None else (item[: m.start(2)], m.group(2))


def common_layout(p: LinePattern, prefix: str | None, common: int, body: str) -> Layout:
    """The layout of lines with ``common`` separators laid out like ``body`` (the first such line)."""
    first = body.split("|" if p.split == "pipe" else ",")
    fields: list[tuple[int, str, str, str]] = []  # position, raw text up to the value, key, unit
    for j, item in enumerate(first):
        last = p.terminated and j == common
        if not item.strip() or last or (p.step_item is not None and re.search(p.step_item, item)):
            continue
        split = _split_key(item, p.key_sep)
        if split is None:
            continue
        head, value = split
        key = (head[:-1] if p.key_sep != " " and head.endswith(p.key_sep) else head).strip()
        m = _UNIT.match(value.strip()) if p.units and to_float(value) is None else None
        unit = m.group("unit") if m is not None else ""
        fields.append((j, head, f"{key}_{_UNIT_NAMES[unit]}" if unit else key, unit))
    return prefix, common, tuple(fields)


def _by_layout(p: LinePattern, df: pl.DataFrame, prefix: str | None, sep: str) -> tuple[list[TagColumn], pl.Series,
                                                                                         Layout]:
    """The tag columns (values as numbers) of the lines laid out like the first line of the most common item
    count, a mask of the lines that are not (they take the general path), and that layout."""
    seps = df.get_column("seps")
    common = int(seps.mode().sort()[-1])
    layout = common_layout(p, prefix, common, str(df.filter(seps == common).get_column("body")[0]))
    fields = layout[2]
    parts = df.select(pl.col("seps"), pl.col("body").str.split_exact(sep, common).alias("part")).unnest("part")

    def part(j: int) -> pl.Expr:
        return pl.col(f"field_{j}")

    checks = [pl.col("seps") == common]
    checks += [part(j).str.starts_with(head).fill_null(False) for j, head, _, _ in fields]
    if p.terminated:
        checks.append(~part(common).str.contains(r"\S").fill_null(False))

    def number(j: int, head: str, unit: str) -> pl.Expr:
        text = part(j).str.slice(len(head)).str.strip_chars()
        if unit:
            text = text.str.strip_suffix(unit).str.strip_chars()
        return text.cast(pl.Float64, strict=False).alias(str(j))

    # One select: the checks and every column's numbers side by side.
    out = parts.select(pl.all_horizontal(checks).alias("ok"), *[number(j, head, unit) for j, head, _, unit in fields])
    ok = out.get_column("ok")
    rows = df.get_column("row").filter(ok)
    columns = [TagColumn(key, tag_of(p, key, prefix), rows, out.get_column(str(j)).filter(ok))
               for j, _, key, _ in fields]
    return columns, ~ok, layout


def _split_kv(df: pl.DataFrame, key_sep: str) -> tuple[pl.DataFrame, int]:
    """``item`` -> ``key``, ``value``; an item without the separator splits at its last space. Also
    how many non-blank items were neither (no key/value pair: a damaged line)."""
    if key_sep != " ":
        df = df.with_columns(pl.col("item").str.split_exact(key_sep, 1).struct.rename_fields(["key", "value"])
                             .alias("kv")).unnest("kv")
        ok = df.filter(pl.col("value").is_not_null()).select("row", "key", "value", src=pl.lit(0, pl.UInt8))
        rest = df.filter(pl.col("value").is_null()).select("row", "item")
    else:
        ok, rest = None, df.select("row", "item")
    rest = rest.filter(pl.col("item").str.contains(r"\S"))
    words = rest.with_columns(pl.col("item").str.extract_groups(_LAST_WORD).struct.rename_fields(["key", "value"])
                              .alias("kv")).unnest("kv")
    unpaired = int(words.get_column("value").null_count())
    words = words.filter(pl.col("value").is_not_null()).select("row", "key", "value", src=pl.lit(1, pl.UInt8))
    out = words if ok is None else pl.concat([ok, words])
    return out.select("row", pl.col("key").str.strip_chars(), pl.col("value").str.strip_chars(), "src"), unpaired


def _split_lines(p: LinePattern, base: pl.DataFrame, census: Census | None) -> tuple[list[TagColumn], pl.DataFrame,
                                                                                     dict[str, int], Layout | None]:
    """Columns and items of '|' or ',' separated lines; what was dropped (counts); the common layout used."""
    counts: dict[str, int] = {}
    sep = "|" if p.split == "pipe" else ","
    columns: list[TagColumn] = []
    layout = None
    if base.height:
        if census is not None:
            census(base)
        prefixes = base.get_column("prefix").unique()
        if len(prefixes) == 1:  # a per-line prefix (fairseq's subset name) takes the general path
            columns, other, layout = _by_layout(p, base, prefixes[0], sep)
            base = base.filter(other)
    df = base.select("row", "prefix", pl.col("body").str.split(sep).alias("item"))
    if p.terminated:
        counts["damaged"] = int(df.get_column("item").list.last().str.contains(r"\S").sum())
        df = df.with_columns(pl.col("item").list.head(pl.col("item").list.len() - 1))
    df = df.explode("item").filter(pl.col("item").is_not_null())
    if p.step_item is not None:
        df = df.filter(~pl.col("item").str.contains(p.step_item))
    items, counts["unpaired"] = _split_kv(df.select("row", "item"), p.key_sep)
    return columns, items, counts, layout


def count_notes(p: LinePattern, counts: dict[str, int], name: str) -> list[Note]:
    """The notes on one pattern's dropped lines and items."""
    notes = []
    if counts.get("damaged"):
        notes.append(Note("dropped", f"{name}: {counts['damaged']} {p.name} line(s) cut off or run into other output; "
                          "their complete items were read, the rest was not", count=counts["damaged"]))
    if counts.get("unpaired"):
        notes.append(Note("dropped", f"{name}: {counts['unpaired']} {p.name} item(s) that are no key/value pair "
                          "(damaged lines) were not read", count=counts["unpaired"]))
    if counts.get("bad_json"):
        notes.append(Note("dropped", f"{name}: {counts['bad_json']} {p.name} line(s) whose JSON could not be read",
                          count=counts["bad_json"]))
    return notes


def _pydict_items(base: pl.DataFrame) -> pl.DataFrame:
    df = base.select("row", pl.col("body").str.extract_all(_PY_ITEM).alias("item")).explode("item")
    df = df.filter(pl.col("item").is_not_null())
    kv = df.get_column("item").str.extract_groups(_PY_KV).struct.unnest()
    key, quoted, called, bare = (kv.get_column(c) for c in kv.columns)
    return pl.DataFrame({"row": df.get_column("row"), "key": key,
                         "value": pl.select(pl.coalesce(quoted, called, bare).str.strip_chars()).to_series(),
                         "src": pl.Series([0] * df.height, dtype=pl.UInt8)})


def _json_items(base: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Items of JSON bodies (few lines: fairseq's JSON progress bar); also how many were not JSON objects."""
    rows: list[int] = []
    keys: list[str] = []
    values: list[str] = []
    bad = 0
    for row, body in base.select("row", "body").iter_rows():
        try:
            obj = json.loads(body)
        except (json.JSONDecodeError, RecursionError, TypeError):
            obj = None
        if not isinstance(obj, dict):
            bad += 1
            continue
        for k, v in flatten(obj).items():
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                rows.append(row)
                keys.append(k)
                values.append(v if isinstance(v, str) else repr(v))
    return pl.DataFrame({"row": rows, "key": keys, "value": values, "src": [0] * len(rows)},
                        schema={"row": pl.UInt32, "key": pl.String, "value": pl.String, "src": pl.UInt8}), bad


def _regular(counts: list[int]) -> bool:
    """Counters one logging interval apart (the first may be step 1: logging_first_step)."""
    tail = counts[1:] if len(counts) > 2 and counts[0] == 1 else counts
    if len(tail) < 2:
        return bool(tail)
    gap = tail[1] - tail[0]
    return gap > 0 and all(b - a == gap for a, b in zip(tail, tail[1:]))


def _own_step(value: str) -> str:
    """A dict's own step as printed; of a progress fraction (ms-swift's ``'5/94'``), its first number."""
    step = progress_step(value)
    return value if step is None else str(step)


def _ordinal_steps(p: LinePattern, lines: pl.DataFrame, items: pl.DataFrame,
                   name: str) -> tuple[pl.DataFrame, pl.DataFrame, list[Note]]:
    """HF's printed log dicts carry no step: the k-th counted dict is at step k, or at the tqdm counter
    printed just before each dict when those counters are one logging interval apart; an evaluation
    dict takes the step of the dict before it; the end-of-training summary is left out."""
    keys = dict(items.group_by("row", maintain_order=True).agg(pl.col("key")).iter_rows())
    own = {row: _own_step(value) for row, value in
           items.filter(pl.col("key").is_in(list(p.step_keys))).select("row", "value").iter_rows()}
    bars = dict(lines.select("row", "bar").iter_rows())
    kind: dict[int, str] = {}
    for row in lines.get_column("row").to_list():
        ks = [k for k in keys.get(row, []) if k not in p.skip]
        if any(k in p.summary_keys for k in ks):
            kind[row] = "summary"
        elif ks and all(k.startswith(p.attach_prefixes) for k in ks):
            kind[row] = "attach"
        else:
            kind[row] = "counted"
    counted = [r for r in kind if kind[r] == "counted" and r not in own]
    position = {r: i for i, r in enumerate(counted)}
    bar_values = [bars.get(r) for r in counted]
    use_bars = (len(counted) >= 2 and all(v is not None for v in bar_values)
                and _regular([int(v) for v in bar_values if v is not None]))
    step: dict[int, str] = {}
    last = 0
    n_attach = 0
    for row in sorted(kind):
        if kind[row] == "summary":
            continue
        if row in own:
            step[row] = own[row]
        elif kind[row] == "counted":
            step[row] = str(bar_values[position[row]]) if use_bars else str(position[row] + 1)
        else:
            step[row] = str(last)
            n_attach += 1
        as_float = to_float(step[row])
        if as_float is not None and math.isfinite(as_float):
            last = int(as_float)
    notes: list[Note] = []
    if counted:
        how = ("the training progress bar's counter printed just before each (the Trainer's bar counts optimizer "
               "steps)" if use_bars else "their order: the k-th log dict is at step k (the dicts print no step; "
               "multiply by the run's logging_steps for the trainer's global step)")
        notes.append(Note("derived_step", f"{name}: {len(counted)} printed log dict(s) placed by {how}",
                          count=len(counted)))
    if n_attach:
        notes.append(Note("derived_step", f"{name}: {n_attach} evaluation dict(s) took the step of the log dict "
                          "before them (0 before the first)", count=n_attach))
    n_summary = sum(1 for k in kind.values() if k == "summary")
    if n_summary:
        notes.append(Note("ignored_fields", f"{name}: {n_summary} end-of-training summary dict(s) (an averaged "
                          "train_loss, runtimes) were not read as points", count=n_summary))
    kept = pl.DataFrame({"row": list(step), "step": list(step.values())}, schema={"row": pl.UInt32, "step": pl.String})
    return kept, items.filter(pl.col("row").is_in(list(step))), notes


def items_of(p: LinePattern, got: pl.DataFrame, name: str, census: Census | None = None) -> LineItems:
    """The lines (row, step) and values of the lines ``p`` claimed (``got``: row, line); ``census`` sees the
    lines a common layout is chosen from."""
    groups = re.compile(p.find).groupindex
    line = pl.col("line")

    def group(name_: str, default: str | None = None) -> pl.Expr:
        if name_ == "step" and p.step_find is not None:
            return line.str.extract(p.step_find, re.compile(p.step_find).groupindex["step"]).alias(name_)
        found = line.str.extract(p.find, groups[name_]) if name_ in groups else pl.lit(default, dtype=pl.String)
        return found.alias(name_)

    bar = group("bar")
    if "previous" in got.columns:  # the bar's last redraw on the line before (tqdm.write clears it first)
        bar = pl.coalesce(bar, pl.col("previous").str.extract(_BAR_AT_END, 1)).alias("bar")
    body = group("body") if "body" in groups else line.alias("body")
    seps = ([body.str.count_matches("|" if p.split == "pipe" else ",", literal=True).alias("seps")]
            if p.split in ("pipe", "comma") else [])
    # One select: polars runs the expressions side by side.
    base = got.select(pl.col("row"), body, group("step"), group("prefix", p.prefix or None), bar, *seps)
    counts: dict[str, int] = {}
    columns: list[TagColumn] = []
    layout = None
    if p.split in ("pipe", "comma"):
        columns, items, counts, layout = _split_lines(p, base, census)
    elif p.split == "pydict":
        items = _pydict_items(base)
    else:
        items, counts["bad_json"] = _json_items(base)
    notes = count_notes(p, counts, name)
    if p.units and items.height:
        unit = pl.col("value").str.extract(_UNIT.pattern, 2)
        items = items.with_columns(
            pl.when(unit.is_not_null()).then(pl.col("key") + "_" + unit.replace(_UNIT_NAMES)).otherwise("key").alias("key"),
            pl.when(unit.is_not_null()).then(pl.col("value").str.extract(_UNIT.pattern, 1)).otherwise("value")
            .alias("value"))
    lines = base.select("row", "step", "bar")
    if p.step_from == "ordinal":
        lines, items, more = _ordinal_steps(p, lines, items, name)
        notes += more
    elif p.step_keys:
        prio = {k: i for i, k in enumerate(p.step_keys)}
        found = [items.filter(pl.col("key").is_in(list(p.step_keys))).select("row", "key", "value")]
        found += [pl.DataFrame({"row": c.rows, "key": [c.key] * len(c.rows), "value": c.values.cast(pl.String)})
                  for c in columns if c.key in prio]
        from_keys = (pl.concat(found).with_columns(pl.col("key").replace_strict(prio, return_dtype=pl.Int32).alias("prio"))
                     .sort("row", "prio").unique("row", keep="first", maintain_order=True)
                     .select("row", pl.col("value").alias("key_step")))
        lines = lines.join(from_keys, on="row", how="left").select("row", pl.coalesce("key_step", "step").alias("step"))
    columns = [c for c in columns if c.key not in p.skip]
    items = items.filter(~pl.col("key").is_in(list(p.skip)))
    with_prefix = items.join(base.select("row", pl.col("prefix").fill_null("")), on="row", how="left",
                             maintain_order="left")
    pairs = with_prefix.select("key", "prefix").unique(maintain_order=True)
    pairs = pairs.with_columns(pl.Series("tag", [tag_of(p, k, pre) for k, pre in pairs.iter_rows()], dtype=pl.String))
    # Items keep their order (`TextPoints` takes a tag's values in it; `text_stream` rebuilds it across blocks).
    items = with_prefix.join(pairs, on=["key", "prefix"], how="left", maintain_order="left").select("row", "tag",
                                                                                                   "value", "src")
    return LineItems(lines.select("row", "step"), tuple(columns), items, tuple(notes), tuple(counts.items()), layout)
