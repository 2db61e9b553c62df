"""``python -m bench embeddings`` end to end, at a tiny size: it runs, verifies and reports."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.support.waiting import ROOT


def test_the_workload_benchmark_runs_both_sides_and_prints_its_summary(redis_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    args = ["--products", "100", "--latency-ms", "20", "--rpm", "6000", "--dims", "16", "--batch-completion-s", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "embeddings", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    rows = {line.split()[0]: line.split() for line in lines if re.match(r"(batched|unbatched) +\d", line)}
    # side, batch, products, seconds, products/s, requests, req/job, 429s, p50, p95, retried, failed, verified
    assert rows["batched"][1] == "64" and rows["unbatched"][1] == "1"
    for row in rows.values():
        assert row[2] == "100" and row[11] == "0" and row[12] == "100"
    assert int(rows["unbatched"][5]) >= 100  # one request per job at least
    assert int(rows["batched"][5]) < 100
    # The batch lane: one submission, every product verified, half the sync lane's cost.
    lane = next(line for line in lines if line.startswith("batch lane: "))
    assert "100 products in 1 Batch API submission(s)" in lane and "0 sync requests" in lane
    assert "failed 0, verified 100" in lane
    assert re.fullmatch(
        r"bench-embeddings: speedup=\d+\.\dx requests_per_job=0\.\d{4} p95_job_latency_ms=\d+ batch_cost_ratio=0\.50"
        r" rate_limited=\d+",
        lines[-1],
    ), lines[-1]


def test_bad_arguments_fail_with_a_one_line_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "embeddings", "--rpm", "100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--rpm must be a positive multiple of 60" in proc.stderr
