"""Writes mlflow.db.gz, the MLflow SQLite store tests/test_mlflow_sqlite.py reads, with MLflow itself.

    python -m venv /tmp/mlvenv && /tmp/mlvenv/bin/pip install mlflow-skinny==3.7.0 "sqlalchemy<2.1" alembic
    cd tests/data/mlflow_db && /tmp/mlvenv/bin/python make_mlflow_db.py

(MLflow 3.7's default tracking store; not a test dependency: the tests read the file this wrote.)
Runs: experiment "sweep" with two LRs (a stable run and one that diverges to NaN), experiment "demo" with two
runs of one name (one logging NaN and an infinity, which MLflow stores as 0 + is_nan and as the largest
double) and a deleted run.
"""

import gzip
import math
import os
import random
import shutil

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

DB = "mlflow.db"


def curve(n: int, diverge_at: int | None, rng: random.Random) -> list[tuple[int, float, float]]:
    """(step, loss, grad_norm) of a run: a falling loss with noise; past diverge_at it blows up, then NaN."""
    out = []
    for s in range(n):
        loss = 2.0 + 8.0 * math.exp(-s / 60) + rng.gauss(0, 0.03)
        grad = 1.0 + rng.gauss(0, 0.05)
        if diverge_at is not None and s >= diverge_at:
            k = s - diverge_at
            loss, grad = (loss * 3.0 ** k, grad * 10.0 ** k) if k < 6 else (math.nan, math.nan)
        out.append((s, loss, grad))
    return out


def log(client: MlflowClient, run_id: str, points: list[tuple[int, float, float]], lr: float) -> None:
    metrics = []
    for s, loss, grad in points:
        t = 1_700_000_000_000 + 1000 * s
        metrics += [Metric("train/loss", loss, t, s), Metric("train/grad_norm", grad, t, s), Metric("lr", lr, t, s)]
    for i in range(0, len(metrics), 900):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=metrics[i:i + 900])


def main() -> None:
    for stale in (DB, "mlruns"):
        if os.path.isdir(stale):
            shutil.rmtree(stale)
        elif os.path.exists(stale):
            os.remove(stale)
    mlflow.set_tracking_uri(f"sqlite:///{DB}")
    client = MlflowClient()
    rng = random.Random(0)
    mlflow.set_experiment("sweep")
    for lr, diverge_at in ((0.001, None), (0.3, 250)):
        with mlflow.start_run(run_name=f"lr={lr}") as run:
            mlflow.log_params({"lr": lr, "optimizer": "adamw", "max_steps": 400})
            log(client, run.info.run_id, curve(400, diverge_at, rng), lr)
    mlflow.set_experiment("demo")
    for variant in ("plain", "nonfinite"):
        with mlflow.start_run(run_name="run-a") as run:
            mlflow.log_param("variant", variant)
            for s in range(30):
                mlflow.log_metric("loss", 3.0 - 0.05 * s, step=s)
            if variant == "nonfinite":
                mlflow.log_metric("loss", math.inf, step=30)
                mlflow.log_metric("loss", -math.inf, step=31)
                mlflow.log_metric("loss", math.nan, step=32)
    with mlflow.start_run(run_name="trash") as run:
        mlflow.log_metric("loss", 1.0, step=1)
    client.delete_run(run.info.run_id)
    with open(DB, "rb") as src, gzip.GzipFile("mlflow.db.gz", "wb", mtime=0) as dst:
        shutil.copyfileobj(src, dst)
    os.remove(DB)
    shutil.rmtree("mlruns", ignore_errors=True)


if __name__ == "__main__":
    main()
