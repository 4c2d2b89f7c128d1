"""The event-file reader against real writers, tbparse, and dirty files."""

import numpy as np
import pytest

from analyzer.ingest.load import LoadOptions, load_runs
from analyzer.ingest.tensorboard import read_event_file
from tests.writers import (curve, event_file, flip_byte, truncate_file, write_summarywriter, write_tensorboardx,
                           write_tf2_tensor_scalars)


def _triples(points):
    return {(points.tags[c], int(s), float(np.float32(v))) for c, s, v in
            zip(points.tag_codes, points.steps, points.values)}


@pytest.mark.parametrize("writer", [write_summarywriter, write_tensorboardx])
def test_same_points_as_tbparse(tmp_path, writer):
    from tbparse import SummaryReader

    loss = curve(300, spike_at=150)
    writer(tmp_path, {"train/loss": loss, "train/grad_norm": loss * 3, "lr": np.full(300, 1e-3)})
    ours = _triples(read_event_file(event_file(tmp_path)).points)
    df = SummaryReader(str(event_file(tmp_path))).scalars
    theirs = {(t, int(s), float(np.float32(v))) for t, s, v in zip(df.tag, df.step, df.value)}
    assert ours == theirs
    assert len(ours) == 900


def test_never_samples_beyond_tensorboards_reservoir(tmp_path):
    # TensorBoard's default reservoir keeps 1,000 scalars per tag: a one-step spike can vanish.
    loss = curve(12_000, noise=0.0, spike_at=7_777, spike_height=50.0)
    write_summarywriter(tmp_path, {"loss": loss})
    pts = read_event_file(event_file(tmp_path)).points
    assert len(pts) == 12_000
    assert pts.steps[np.argmax(pts.values)] == 7_777


@pytest.mark.parametrize("dtype,encoding", [("float32", "float_val"), ("float64", "float_val"),
                                            ("float16", "float_val"), ("float32", "tensor_content"),
                                            ("float64", "tensor_content"), ("float16", "tensor_content")])
def test_tf2_tensor_scalars_every_encoding(tmp_path, dtype, encoding):
    values = [2.5, 1.25, 0.5, 0.25]
    write_tf2_tensor_scalars(tmp_path, {"epoch_loss": values, "epoch_lr": [0.1] * 4}, dtype=dtype, encoding=encoding)
    content = read_event_file(event_file(tmp_path))
    got = {(content.points.tags[c], int(s)): v for c, s, v in
           zip(content.points.tag_codes, content.points.steps, content.points.values)}
    assert [got[("epoch_loss", i)] for i in range(4)] == pytest.approx(values, rel=1e-3)
    assert content.plugins["epoch_loss"] == "scalars"


def test_histograms_and_images_are_skipped_cheaply(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    for step in range(20):
        w.add_scalar("loss", 1.0 / (step + 1), step)
        w.add_histogram("weights", np.random.default_rng(step).normal(size=100), step)
        w.add_image("img", np.zeros((3, 4, 4)), step)
    w.close()
    content = read_event_file(event_file(tmp_path))
    assert content.points.tags == ("loss",)
    assert len(content.points) == 20
    assert content.skipped_values == 40


def test_truncated_last_record_keeps_everything_before(tmp_path):
    write_summarywriter(tmp_path, {"loss": curve(50)})
    truncate_file(event_file(tmp_path), 7)
    content = read_event_file(event_file(tmp_path))
    assert len(content.points) == 49
    assert [n.kind for n in content.notes] == ["truncated"]


def test_corrupt_value_is_never_silently_wrong(tmp_path):
    loss = curve(50)
    write_summarywriter(tmp_path, {"loss": loss})
    f = event_file(tmp_path)
    flip_byte(f, 6)  # inside the float of the last record: decodes fine, only its CRC says no
    for content in (read_event_file(f), read_event_file(f, verify_crc=True)):  # the default checks every CRC
        assert len(content.points) == 49
        assert [n.kind for n in content.notes] == ["corrupt"] and content.notes[0].count == 1
        assert np.array_equal(content.points.values, np.float32(loss[:49]).astype(np.float64))
    (run,), _ = load_runs([tmp_path], LoadOptions(cache_dir=None))  # and what every command reads
    assert len(run.series("loss")) == 49
    assert any(n.kind == "corrupt" and "failed their data CRC" in n.message for n in run.notes)
    unchecked = read_event_file(f, verify_crc=False)  # --no-verify-crc: the documented trade-off
    assert len(unchecked.points) == 50 and not unchecked.notes


def _record_offsets(path):
    from analyzer.ingest.tfrecord import frame_records

    framing = frame_records(np.fromfile(path, dtype=np.uint8))
    return framing.starts - 12, framing.lengths


def test_every_flipped_byte_is_caught_or_harmless(tmp_path):
    """Flip each byte of a small file in turn: never a point that was not written."""
    write_summarywriter(tmp_path / "w", {"loss": curve(6), "lr": np.full(6, 0.1)})
    clean = event_file(tmp_path / "w").read_bytes()
    written = _triples(read_event_file(event_file(tmp_path / "w")).points)
    target = tmp_path / "events.out.tfevents.1.x"
    for i in range(len(clean)):
        target.write_bytes(clean[:i] + bytes([clean[i] ^ 0x10]) + clean[i + 1:])
        content = read_event_file(target)
        assert _triples(content.points) <= written, i
        if len(content.points) < len(written):
            assert any(n.kind in ("corrupt", "truncated") for n in content.notes), i


def test_vectorised_crc_check_agrees_with_one_crc_per_record(tmp_path):
    from analyzer.ingest.tfrecord import data_crc_ok, frame_records, verify_data_crcs

    write_summarywriter(tmp_path, {"loss": curve(300), "grad_norm": curve(300) * 3, "a/much/longer/tag": curve(300)})
    clean = np.fromfile(event_file(tmp_path), dtype=np.uint8)
    framing = frame_records(clean)
    rng = np.random.default_rng(0)
    for trial in range(20):
        buf = clean.copy()
        for r in rng.choice(framing.starts.size, size=trial, replace=False):  # 0..19 damaged records
            buf[framing.starts[r] + rng.integers(0, framing.lengths[r] + 4)] ^= 1 << int(rng.integers(0, 8))
        expected = data_crc_ok(buf, framing.starts, framing.lengths)
        assert (~expected).sum() == trial
        assert np.array_equal(verify_data_crcs(buf.copy(), framing.starts, framing.lengths), expected)


def test_damaged_header_resyncs_at_the_next_record(tmp_path):
    write_summarywriter(tmp_path, {"loss": curve(100)})
    f = event_file(tmp_path)
    heads, _ = _record_offsets(f)
    data = bytearray(f.read_bytes())
    data[heads[40] + 2] ^= 0xFF  # the length field of the record of step 39 (record 0 is the file version)
    f.write_bytes(bytes(data))
    content = read_event_file(f)
    assert content.points.steps.tolist() == [s for s in range(100) if s != 39]
    (note,) = content.notes
    assert note.kind == "corrupt" and f"at byte {heads[40]:,}" in note.message
    assert f"next valid record at byte {heads[41]:,}" in note.message and note.count == 1


def test_garbage_spliced_between_records_is_skipped_and_counted(tmp_path):
    write_summarywriter(tmp_path, {"loss": curve(60)})
    f = event_file(tmp_path)
    heads, _ = _record_offsets(f)
    data = f.read_bytes()
    junk = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    f.write_bytes(data[:heads[30]] + junk + data[heads[30]:])
    content = read_event_file(f)
    assert content.points.steps.tolist() == list(range(60))
    (note,) = content.notes
    assert "skipped 5,000 byte(s)" in note.message


def test_records_not_starting_with_a_wall_time_are_framed_one_by_one(tmp_path):
    """proto3 omits a 0.0 wall_time: such records do not look like the usual candidates."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.record_writer import RecordWriter

    with open(tmp_path / "events.out.tfevents.1.h", "wb") as fh:
        w = RecordWriter(fh)
        for step in range(30):
            ev = Event(wall_time=0.0 if step % 3 else 1.7e9 + step, step=step,
                       summary=Summary(value=[Summary.Value(tag="loss", simple_value=1.0 / (step + 1))]))
            w.write(ev.SerializeToString())
    content = read_event_file(tmp_path / "events.out.tfevents.1.h")
    assert content.points.steps.tolist() == list(range(30)) and not content.notes


def test_zero_byte_event_file_is_skipped_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "events.out.tfevents.1.host").write_bytes(b"")
    write_summarywriter(tmp_path / "good", {"loss": curve(20)})
    runs, inputs = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert [r.id for r in runs] == ["good"]
    (skipped,) = [i for i in inputs if i.status == "skipped"]
    assert skipped.path.endswith("events.out.tfevents.1.host") and "0 bytes" in skipped.reason


def test_garbage_named_like_event_file_is_skipped(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.out.tfevents.123.host").write_bytes(b"this is not a tfrecord at all, just text" * 10)
    write_summarywriter(tmp_path / "good", {"loss": curve(20)})
    runs, inputs = load_runs([tmp_path], LoadOptions(cache_dir=None))
    assert [r.id for r in runs] == ["good"]
    skipped = [i for i in inputs if i.status == "skipped"]
    assert len(skipped) == 1 and "TensorBoard" in skipped[0].reason


def test_restart_keeps_latest_attempt_and_says_so(tmp_path):
    # A job logs steps 0..59, crashes, resumes from the checkpoint at step 40 into a new event file.
    first = curve(60, seed=1)
    write_summarywriter(tmp_path, {"loss": first})
    second = curve(60, seed=2) * 0.5
    import time
    time.sleep(1.1)  # a new event file name (its timestamp) sorts after the first
    write_summarywriter(tmp_path, {"loss": second}, start_step=40)
    runs, _ = load_runs([tmp_path], LoadOptions(cache_dir=None))
    s = runs[0].series("loss")
    assert s.steps.tolist() == list(range(100))
    assert s.values[40] == pytest.approx(np.float32(second[0]))
    restart = [n for n in runs[0].notes if n.kind == "restart"]
    assert restart and restart[0].count == 20 and restart[0].step == 40

    keep_all, _ = load_runs([tmp_path], LoadOptions(cache_dir=None, restarts="keep_all"))
    assert keep_all[0].series("loss").steps.size == 120


def test_cache_hit_and_incremental_growth(tmp_path):
    from analyzer.ingest import cache as cache_mod

    logdir = tmp_path / "run"
    write_summarywriter(logdir, {"loss": curve(30)})
    f = event_file(logdir)
    opts = LoadOptions(cache_dir=tmp_path / "cache")
    first, _ = load_runs([logdir], opts)
    calls = []
    real = cache_mod.read_event_file
    cache_mod.read_event_file = lambda *a, **k: calls.append(k.get("begin", 0)) or real(*a, **k)
    try:
        again, _ = load_runs([logdir], opts)
        assert calls == []  # unchanged: no decoding at all
        extra = (tmp_path / "more")
        write_summarywriter(extra, {"loss": curve(10)}, start_step=30)
        size = f.stat().st_size
        appended = event_file(extra).read_bytes()
        with open(f, "ab") as fh:  # a live run appending records
            fh.write(appended)
        grown, _ = load_runs([logdir], opts)
        assert calls == [size]  # only the new bytes were decoded
    finally:
        cache_mod.read_event_file = real
    assert grown[0].series("loss").steps.tolist() == list(range(40))
    assert again[0].points.equals(first[0].points)


def test_unchanged_runs_come_whole_from_the_run_cache(tmp_path, monkeypatch):
    from analyzer.ingest import load as load_mod

    write_summarywriter(tmp_path / "logs" / "a", {"loss": curve(40), "grad_norm": curve(40)})
    (tmp_path / "logs" / "notes.txt").write_text("not a log")
    opts = LoadOptions(cache_dir=tmp_path / "cache")
    first, inputs1 = load_runs([tmp_path / "logs"], opts)
    monkeypatch.setattr(load_mod, "_read_source", lambda *a, **k: (_ for _ in ()).throw(AssertionError("read")))
    again, inputs2 = load_runs([tmp_path / "logs"], opts)  # nothing is read, decoded or purged
    assert again[0].points.equals(first[0].points) and again[0].roles == first[0].roles
    assert inputs2 == inputs1


def test_hparams_come_back_in_the_same_order_in_every_process(tmp_path):
    """The hparams plugin stores a protobuf map, whose iteration order follows the process's string hashing: the
    report must not differ between two runs of the same command (it did: the JSON changed byte for byte)."""
    import os
    import subprocess
    import sys

    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "run")) as w:
        w.add_hparams({f"key_{c}": i for i, c in enumerate("qwertyuiopasdfgh")}, {"hparam/loss": 1.0}, run_name=".")
        for s in range(10):
            w.add_scalar("train/loss", 1.0 / (s + 1), s)
    code = ("import sys; from analyzer.ingest.load import LoadOptions, load_runs; "
            "runs, _ = load_runs([sys.argv[1]], LoadOptions(cache_dir=None)); print(list(runs[0].hparams))")
    orders = {subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3)}
    assert len(orders) == 1 and "key_q" in orders.pop()
