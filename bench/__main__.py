"""``python -m bench [--quick] [--jobs N] [--repeat R] [--profile]``: the hot path against raw arq.

``python -m bench embeddings [--quick] [--products N] [--latency-ms 150] [--rpm 3000]``: the workload
benchmark, batched against unbatched embeddings (``bench/embeddings.py``).

``python -m bench capacity [--quick] [--jobs N] [--shape-jobs N]``: jobs/s with 1, 2 and 4 worker
processes, and Redis CPU time per job for each queue's job shape (``bench/capacity.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from bench import report
from bench.config import QUEUE, make_config
from bench.profiling import run_profile
from bench.runner import run_all
from bench.server import redis_under_test, server_version
from jobqueue import queue_options
from jobqueue.settings import get_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="jobqueue against raw arq, same run.")
    parser.add_argument("--quick", action="store_true", help="a short run (N=3000, one repeat)")
    parser.add_argument("--jobs", type=int, help="jobs per measurement (default 20000; quick 3000)")
    parser.add_argument("--repeat", type=int, help="report the median of this many repeats (default 3; quick 1)")
    parser.add_argument("--profile", action="store_true", help="count Redis commands per job and profile processing")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 100:
        parser.error("--jobs must be at least 100")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["embeddings"]:
        from bench import embeddings

        embeddings.main(argv[1:])
        return
    if argv[:1] == ["capacity"]:
        from bench import capacity

        capacity.main(argv[1:])
        return
    args = parse_args(argv)
    cfg = make_config(quick=args.quick, jobs=args.jobs, repeat=args.repeat)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("arq", "jobqueue"):  # arq logs every job at INFO: not what is measured
        logging.getLogger(name).setLevel(logging.WARNING)

    with redis_under_test() as (url, origin):
        os.environ["REDIS_URL"] = url  # jobqueue reads it on first use
        get_settings.cache_clear()
        if args.profile:
            asyncio.run(run_profile(cfg, url))
            return
        medians = asyncio.run(run_all(cfg, url))
        server = server_version(url)
    print(report.table(medians))
    print()
    print(report.notes(medians, cfg, origin, server, queue_options(QUEUE)))
    print(report.summary(medians))


if __name__ == "__main__":
    main()
