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
    flip_byte(f, 6)  # inside the float of the last record: decodes fine, CRC says no
    strict = read_event_file(f, verify_all_crcs=True)
    assert len(strict.points) == 49
    assert any(n.kind == "corrupt" for n in strict.notes)
    assert np.allclose(strict.points.values, np.float32(loss[:49]))


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
    from analyzer.ingest import load as load_mod

    logdir = tmp_path / "run"
    write_summarywriter(logdir, {"loss": curve(30)})
    f = event_file(logdir)
    opts = LoadOptions(cache_dir=tmp_path / "cache")
    first, _ = load_runs([logdir], opts)
    calls = []
    real = load_mod.read_event_file
    load_mod.read_event_file = lambda *a, **k: calls.append(k.get("begin", 0)) or real(*a, **k)
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
        load_mod.read_event_file = real
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
