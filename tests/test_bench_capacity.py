"""``python -m bench capacity`` end to end, at a tiny size: on a server of its own, every row."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from jobqueue import QUEUE_NAMES
from tests.support.waiting import ROOT


def test_the_capacity_benchmark_reports_process_counts_and_every_queues_shape() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)  # it starts its own server whatever REDIS_URL says
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "capacity", "--jobs", "300", "--shape-jobs", "100"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith("`python -m bench capacity --jobs 300 --shape-jobs 100` on ")
    processes = re.findall(r"^\| (\d) \| 300 \| ([\d,]+) \| ([\d,]+) \|", out, re.MULTILINE)
    assert [p[0] for p in processes] == ["1", "2", "4"]
    for queue in QUEUE_NAMES.values():
        row = re.search(rf"^\| {queue} \|(.*)\|$", out, re.MULTILINE)
        assert row is not None, f"no row for {queue}:\n{out}"
        per_core = int(row.group(1).split("|")[-1].strip().replace(",", ""))
        assert per_core > 0
