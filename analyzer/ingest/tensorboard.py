"""TensorBoard event files -> every scalar point, never sampled.

Reads `simple_value` scalars (PyTorch SummaryWriter, tensorboardX, TF1) and TF2 tensor
scalars (rank-0 float/double/half/bfloat16, in tensor_content or the typed *_val fields;
their tag's plugin, named in metadata that writers attach to the first event only, must be
"scalars" or unknown). Histograms, images, audio, graphs are skipped without decoding them.

The fast path frames records with `tfrecord` and walks Event -> Summary -> Value fields with
`protowalk`, in batches so memory stays near the file size. Every record's data CRC is checked
first (one vectorised pass, `tfrecord.verify_data_crcs`): a record that fails is dropped and
counted, as TensorBoard's own reader would, so a flipped byte inside a value is never read as a
different number. With ``verify_crc=False`` only the records the walker cannot parse are
checked, before protobuf (`Event.FromString`) decodes them. TensorBoard's own loaders keep a
reservoir sample of 10,000 points per tag by default: a spike can vanish there; it cannot here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.frame import RawPoints
from analyzer.ingest import protowalk as pw
from analyzer.ingest.tb_tensors import tensor_scalars
from analyzer.ingest.tfrecord import data_crc_ok, frame_records, verify_data_crcs
from analyzer.types import Note

log = logging.getLogger(__name__)

_BATCH = 1 << 16  # records decoded per numpy pass; keeps the working set near 30 MB
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5  # protobuf wire types


@dataclass
class EventFileContent:
    """What one event file holds for the analyzer."""

    points: RawPoints
    end_offset: int
    plugins: dict[str, str] = field(default_factory=dict)  # tag -> plugin named in its metadata
    hparams: dict[str, Any] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    records: int = 0
    skipped_values: int = 0  # non-scalar summary values (histograms, images, ...)
    crc_checked: bool = True  # every record's data CRC was verified before decoding


def read_event_file(path: str | Path, *, verify_crc: bool = True, begin: int = 0) -> EventFileContent:
    """Every scalar of one event file, in write order, from byte ``begin`` on.

    ``verify_crc``: check the data CRC of every record (the default; dropped records are counted
    in the notes). False checks only records the fast decoder cannot parse.
    """
    buf = np.fromfile(str(path), dtype=np.uint8)
    framing = frame_records(buf, begin=begin)
    out = EventFileContent(points=RawPoints.empty(), end_offset=framing.end, records=int(framing.starts.size),
                           crc_checked=verify_crc)
    name = Path(path).name
    typical = int(np.median(framing.lengths)) + 16 if framing.damage and framing.lengths.size else 64
    for d in framing.damage:
        about = max(1, round(d.skipped_bytes / typical))
        where = (f"skipped {d.skipped_bytes:,} byte(s) (about {about} record(s)) to the next valid record at byte "
                 f"{d.resumed_at:,}" if d.resumed_at is not None else
                 f"no valid record follows: the last {d.skipped_bytes:,} byte(s) (about {about} record(s)) were not read")
        out.notes.append(Note("corrupt", f"{name}: a record header at byte {d.offset:,} failed its CRC; {where}",
                              count=about))
    if framing.truncated_bytes:
        out.notes.append(Note("truncated", f"{name}: the last record is incomplete ({framing.truncated_bytes} "
                              "trailing byte(s)); everything before it was read", count=1, source=name))
    starts, lengths = framing.starts, framing.lengths
    if verify_crc and starts.size:
        ok = verify_data_crcs(buf, starts, lengths)
        if not ok.all():
            _note_corrupt(out, name, starts[~ok] - 12)
            starts, lengths = starts[ok], lengths[ok]
    parts: list[RawPoints] = []
    for lo in range(0, starts.size, _BATCH):
        parts.append(_decode_batch(buf, starts[lo:lo + _BATCH], lengths[lo:lo + _BATCH], out, name))
    # Release the file's bytes before joining the parts: keeps peak memory near 2x the file.
    del buf, framing, starts, lengths
    pts = RawPoints.concat(parts)
    # Grouped by tag, each tag in write order: all the restart policy needs, and its sort is then O(n).
    order = np.argsort(pts.tag_codes.astype(np.int16) if len(pts.tags) < 1 << 15 else pts.tag_codes,
                       kind="stable")  # radix sort for 16-bit keys
    out.points = RawPoints(pts.tags, pts.tag_codes[order], pts.steps[order], pts.wall_times[order], pts.values[order])
    del pts, order
    if out.records > _TRIM_AFTER_RECORDS:
        _release_freed_memory()
    return out


_TRIM_AFTER_RECORDS = 1 << 20


def _release_freed_memory() -> None:
    """Hand the decoder's freed buffers back to the OS (glibc keeps them after large frees, as its
    mmap threshold rises), so building the run's frame next does not stack on top of them."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _note_corrupt(out: EventFileContent, name: str, offsets: np.ndarray) -> None:
    shown = ", ".join(str(int(o)) for o in offsets[:5])
    out.notes.append(Note("corrupt", f"{name}: {offsets.size} record(s) failed their data CRC (at byte(s) {shown}"
                          f"{', ...' if offsets.size > 5 else ''}); their values were not used", count=int(offsets.size)))


def _f64_at(buf: np.ndarray, off: np.ndarray) -> np.ndarray:
    return pw.read_at(buf, off, "<f8")


def _f32_at(buf: np.ndarray, off: np.ndarray) -> np.ndarray:
    return pw.read_at(buf, off, "<f4").astype(np.float64)


def _match_simple_scalars(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray):  # type: ignore[no-untyped-def]
    """The layout nearly every scalar record of SummaryWriter/tensorboardX/TF1 has, matched byte by byte:

        09 <wall f64> [10 <step varint>] 2a L1 0a L2 0a L3 <tag> 15 <value f32>   (L1..L3 < 128)

    Returns (matched, step, wall, tag_off, tag_len, value) for the matched records; the others go
    through the generic field walker. Bytes are read eight at a time (one gather per word, then
    shifts), so a record costs five gathers, not one per byte."""
    end = starts + lengths
    u8 = np.uint64(8)

    def u64(pos: np.ndarray) -> np.ndarray:
        return pw.read_at(buf, np.minimum(pos, buf.shape[0] - 8), "<u8")

    ok = (lengths >= 20) & (buf.take(starts, mode="clip") == 0x09)
    after_wall = u64(starts + 9)  # 10 <step varint> ... or 2a ...
    has_step = (after_wall & np.uint64(0xFF)) == 0x10
    step, step_bytes, whole = _varint7(after_wall >> u8)
    ok &= whole | ~has_step  # a step of more than seven varint bytes (>= 2**49): the generic decoder reads it
    p = starts + 9 + np.where(has_step, 1 + step_bytes, 0)
    head = u64(p)  # 2a L1 0a L2 0a L3
    ok &= (head & np.uint64(0xFF00FF00FF)) == np.uint64(0x0A000A002A)
    l1 = (head >> u8) & np.uint64(0xFF)
    l2 = (head >> np.uint64(24)) & np.uint64(0xFF)
    l3 = ((head >> np.uint64(40)) & np.uint64(0xFF)).astype(np.int64)
    ok &= (l1 < 128) & (l2 + np.uint64(2) == l1) & (l2 == l3.astype(np.uint64) + np.uint64(7))
    tag_off = p + 6
    vpos = tag_off + l3
    ok &= vpos + 5 == end
    tail = u64(vpos)  # 15 <value f32>, read only where the record ends there (else clipped garbage, unused)
    ok &= (tail & np.uint64(0xFF)) == 0x15
    m = np.flatnonzero(ok)
    wall = pw.read_at(buf, starts[m] + 1, "<f8")
    value = ((tail[m] >> u8) & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32).astype(np.float64)
    step = np.where(has_step[m], step[m], 0)  # proto3 omits step 0
    return ok, step, wall, tag_off[m], l3[m], value


def _varint7(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The varint at the start of each word's 7 low bytes: (value, byte count, whether it ends within them),
    with bit operations on whole arrays (no per-byte pass)."""
    u = np.uint64
    words = words & u(0x00FFFFFFFFFFFFFF)
    stops = ~words & u(0x0080808080808080)  # the high bit of each byte that ends the varint
    lowest = stops & (~stops + u(1))  # the first of them
    whole = lowest != 0
    nbytes = (np.frexp(lowest.astype(np.float64))[1] // 8).astype(np.int64)  # bit 7 -> 1 byte, bit 15 -> 2, ...
    v = words & ((lowest << u(1)) - u(1))
    value = v & u(0x7F)
    for k in range(1, 7):
        value |= (v >> u(k)) & u(0x7F << (7 * k))
    return value.astype(np.int64), nbytes, whole


def _tag_table(buf: np.ndarray, tag_off: np.ndarray, tag_len: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct tags and each value's code: hash the bytes, decode one representative per tag."""
    hashes = pw.hash_strings(buf, tag_off, tag_len)
    # A run logs few tags: those of the first values are usually all of them, and then each value's code
    # is a binary search among them, not a sort of every hash.
    distinct, first = np.unique(hashes[:4096], return_index=True)
    codes = np.minimum(np.searchsorted(distinct, hashes), max(distinct.size - 1, 0))
    if distinct.size == 0 or not bool((distinct[codes] == hashes).all()):
        _, first, codes = np.unique(hashes, return_index=True, return_inverse=True)
    tags = tuple(bytes(buf[tag_off[i]:tag_off[i] + tag_len[i]]).decode("utf-8", "replace") for i in first)
    return tags, codes.astype(np.int32)


def _decode_batch(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                  out: EventFileContent, name: str) -> RawPoints:
    ok, step, wall, tag_off, tag_len, values = _match_simple_scalars(buf, starts, lengths)
    simple = RawPoints.empty()
    if ok.any():
        tags, codes = _tag_table(buf, tag_off, tag_len)
        simple = RawPoints(tags, codes, step, wall, values)
    if ok.all():
        return simple
    rest = np.flatnonzero(~ok)
    general = _decode_general(buf, starts[rest], lengths[rest], out, name)
    if not len(simple):
        return general.points
    # Back to write order: record index of each point (generic points carry their order key).
    merged = RawPoints.concat([simple, general.points])
    key = np.concatenate([np.flatnonzero(ok).astype(np.float64), rest[general.record_index].astype(np.float64)
                          + general.order_frac])
    order = np.argsort(key, kind="stable")
    return RawPoints(merged.tags, merged.tag_codes[order], merged.steps[order], merged.wall_times[order],
                     merged.values[order])


@dataclass
class _General:
    points: RawPoints
    record_index: np.ndarray  # per point: index into the records given to _decode_general
    order_frac: np.ndarray  # per point: position within its record, in [0, 1)


def _decode_general(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                    out: EventFileContent, name: str) -> _General:
    n = starts.size
    ev = pw.walk(buf, starts, starts + lengths)
    wall = np.full(n, np.nan)
    m, v, _ = ev.select(1, _FIXED64)
    wall[m] = _f64_at(buf, v)
    step = np.zeros(n, dtype=np.int64)  # proto3 omits step 0
    m, v, _ = ev.select(2, _VARINT)
    step[m] = v.view(np.int64)
    sum_rec, sum_off, sum_len = ev.select(5, _BYTES)
    slow = set(np.flatnonzero(ev.bad).tolist())

    sm = pw.walk(buf, sum_off.astype(np.int64), sum_off.astype(np.int64) + sum_len)
    slow.update(sum_rec[np.flatnonzero(sm.bad)].tolist())
    vm, voff, vlen = sm.select(1, _BYTES)
    val_rec = sum_rec[vm]
    val_pos = np.arange(vm.size)  # write order of values across the batch
    vw = pw.walk(buf, voff.astype(np.int64), voff.astype(np.int64) + vlen)
    slow.update(val_rec[np.flatnonzero(vw.bad)].tolist())

    nv = vm.size
    tag_off = np.zeros(nv, np.int64)
    tag_len = np.zeros(nv, np.int64)
    m, v, ln = vw.select(1, _BYTES)
    tag_off[m], tag_len[m] = v.astype(np.int64), ln
    values = np.full(nv, np.nan)
    is_point = np.zeros(nv, dtype=bool)
    m, v, _ = vw.select(2, _FIXED32)
    values[m] = _f32_at(buf, v)
    is_point[m] = True

    tag_names, codes = _tag_table(buf, tag_off, tag_len)

    _read_metadata(buf, vw, tag_names, codes, out)
    tm, toff, tlen = vw.select(8, _BYTES)
    if tm.size:
        tval, tok, tslow = tensor_scalars(buf, toff.astype(np.int64), tlen)
        plugin_ok = np.array([out.plugins.get(tag_names[c], "scalars") == "scalars" for c in codes[tm]], dtype=bool)
        keep = tok & plugin_ok
        values[tm[keep]] = tval[keep]
        is_point[tm[keep]] = True
        slow.update(val_rec[tm[tslow & plugin_ok]].tolist())
    out.skipped_values += int((~is_point).sum())

    slow_recs = np.array(sorted(slow), dtype=np.int64)
    if slow_recs.size:
        is_point &= ~np.isin(val_rec, slow_recs)
    sel = np.flatnonzero(is_point)
    fast = RawPoints(tag_names, codes[sel].astype(np.int32), step[val_rec[sel]], wall[val_rec[sel]],
                     values[sel]).compact()
    fast_rec = val_rec[sel].astype(np.int64)
    fast_frac = val_pos[sel] / (nv + 1.0)
    if not slow_recs.size:
        return _General(fast, fast_rec, fast_frac)
    slow_pts, slow_order = _decode_slowly(buf, starts[slow_recs], lengths[slow_recs], slow_recs, out, name)
    merged = RawPoints.concat([fast, slow_pts])
    # Restore write order: record index first, value position within the record second.
    rec = np.concatenate([fast_rec, np.floor(slow_order).astype(np.int64)])
    frac = np.concatenate([fast_frac, slow_order - np.floor(slow_order)])
    order = np.lexsort((frac, rec))
    return _General(RawPoints(merged.tags, merged.tag_codes[order], merged.steps[order],
                              merged.wall_times[order], merged.values[order]), rec[order], frac[order])


def _read_metadata(buf: np.ndarray, vw: pw.Fields, tag_names: tuple[str, ...], codes: np.ndarray,
                   out: EventFileContent) -> None:
    """Plugin name per tag (and hparams), decoding each distinct metadata blob once."""
    mm, moff, mlen = vw.select(9, _BYTES)
    if not mm.size:
        return
    from tensorboard.compat.proto.summary_pb2 import SummaryMetadata

    hashes = pw.hash_strings(buf, moff.astype(np.int64), mlen)
    _, first = np.unique(hashes, return_index=True)
    for i in first.tolist():
        blob = bytes(buf[int(moff[i]):int(moff[i]) + int(mlen[i])])
        try:
            meta = SummaryMetadata.FromString(blob)
        except Exception:  # noqa: BLE001 - a broken metadata blob only loses the plugin name
            continue
        tag = tag_names[int(codes[mm[i]])]
        plugin = meta.plugin_data.plugin_name or ("scalars" if meta.data_class == 1 else "")
        if plugin:
            out.plugins.setdefault(tag, plugin)
        if plugin == "hparams":
            out.hparams.update(_hparams_from_plugin(meta.plugin_data.content))


def _hparams_from_plugin(content: bytes) -> dict[str, Any]:
    try:
        from tensorboard.plugins.hparams import plugin_data_pb2
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
    except Exception:  # noqa: BLE001 - hparams are a nicety; the scalars still count
        return {}
    result: dict[str, Any] = {}
    # a protobuf map iterates in no fixed order: sorted, so the same file gives the same report byte for byte
    for key, value in sorted(data.session_start_info.hparams.items()):
        kind = value.WhichOneof("kind")
        if kind is not None:
            result[key] = getattr(value, kind)
    return result


def _decode_slowly(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, recs: np.ndarray,
                   out: EventFileContent, name: str) -> tuple[RawPoints, np.ndarray]:
    """Records the fast path would not vouch for: CRC-checked (unless every record was), then decoded by protobuf."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.util import tensor_util

    if out.crc_checked:  # verify_data_crcs has vouched for these (and rewritten their footers)
        ok = np.ones(starts.shape[0], dtype=bool)
    else:
        ok = data_crc_ok(buf, starts, lengths)
        if not ok.all():
            _note_corrupt(out, name, starts[~ok] - 12)
    tags: list[str] = []
    steps: list[int] = []
    walls: list[float] = []
    vals: list[float] = []
    order: list[float] = []
    for s, ln, rec, good in zip(starts.tolist(), lengths.tolist(), recs.tolist(), ok.tolist()):
        if not good:
            continue
        try:
            event = Event.FromString(bytes(buf[s:s + ln]))
        except Exception:  # noqa: BLE001 - CRC-valid but not an Event: count it, keep going
            out.notes.append(Note("corrupt", f"{name}: a record at byte {s - 12} is not a valid Event", count=1))
            continue
        for k, value in enumerate(event.summary.value):
            if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                out.plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                x = float(value.simple_value)
            elif kind == "tensor" and out.plugins.get(value.tag, "scalars") == "scalars":
                try:
                    arr = tensor_util.make_ndarray(value.tensor)
                except Exception:  # noqa: BLE001
                    out.skipped_values += 1
                    continue
                if arr.size != 1 or arr.dtype.kind not in "fiu":
                    out.skipped_values += 1
                    continue
                x = float(arr.reshape(()))
            else:
                out.skipped_values += 1
                continue
            tags.append(value.tag)
            steps.append(event.step)
            walls.append(event.wall_time)
            vals.append(x)
            order.append(rec + (k + 0.5) / (len(event.summary.value) + 1.0))
    table: dict[str, int] = {}
    codes = np.array([table.setdefault(t, len(table)) for t in tags], dtype=np.int32)
    pts = RawPoints(tuple(table), codes, np.array(steps, np.int64), np.array(walls, np.float64),
                    np.array(vals, np.float64))
    return pts, np.array(order, np.float64)
