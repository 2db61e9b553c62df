"""The workload benchmark: ``python -m bench embeddings [--quick] [--products N] [--latency-ms 150] [--rpm 3000]
[--batch-completion-s 60]``.

The real embedding worker (``workers.settings.embedding_settings()`` run by arq's ``Worker`` in
one child process, a SQLite store in a temporary directory) embeds N products against the loopback
OpenAI-compatible server, which answers each request after ``--latency-ms`` and allows ``--rpm``
requests a minute, refilled continuously as OpenAI does (3,000 a minute: 50 a second), with 429
and ``Retry-After`` beyond and OpenAI's rate-limit headers on every answer. It runs twice in the
same run, batched (the defaults: 64 inputs or 20 ms) and unbatched (batch size 1), with the same
concurrency and the same client-side rate limit (``EMBEDDING_RATE_LIMIT_PER_MINUTE`` set to the
server's limit, as an operator would, now a ceiling: the worker paces by the headers), each over
its own N products, and checks that every product was embedded exactly once with a vector of the
configured length. A third side (``bench/lanes.py``) embeds another N products on the batch lane
(``lane="batch"``) through the server's Batch API, which answers a batch ``--batch-completion-s``
after its creation, and compares its cost per product with the batched sync side's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jobqueue
from bench.lanes import DEFAULT_BATCH_COMPLETION_S, LaneResult, run_batch_lane_side, sync_cost
from bench.measure import percentile
from bench.server import Admin, redis_under_test, server_version
from jobqueue.settings import get_settings
from workers.jobs.products import canonical_text, text_hash
from workers.providers.store import SqlStore
from workers.testing.fake_openai import FakeOpenAI

QUEUE: Final = jobqueue.QueueName.PRODUCT_EMBEDDING
EMBEDDING_MODEL: Final = "text-embedding-3-small"
DEFAULT_PRODUCTS: Final = 10_000
QUICK_PRODUCTS: Final = 1_000
DEFAULT_LATENCY_MS: Final = 150.0
DEFAULT_RPM: Final = 3_000
DEFAULT_DIMS: Final = 256
# Both sides run this many jobs at once: the embedding queue's default.
DEFAULT_CONCURRENCY: Final = jobqueue.queue_options(QUEUE).concurrency
ROOT: Final = Path(__file__).resolve().parents[1]
WORKER_TIMEOUT_S: Final = 3600.0
SEED_CHUNK: Final = 500
LIKES: Final = ("tea", "books", "walks")


@dataclass(frozen=True, slots=True)
class Args:
    products: int
    latency_ms: float
    rpm: int
    concurrency: int
    dims: int
    batch_size: int
    batch_completion_s: float


@dataclass(slots=True)
class SideResult:
    name: str
    batch_size: int
    products: int
    seconds: float
    requests: int
    inputs: int
    rate_limited: int
    p50_ms: float
    p95_ms: float
    failed: int
    attempts_over_one: int
    verified: int
    input_tokens: int

    @property
    def rate(self) -> float:
        return self.products / self.seconds


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> Args:
    parser = argparse.ArgumentParser(
        prog="python -m bench embeddings",
        description="Batched against unbatched embeddings, in one worker process, same run.",
    )
    parser.add_argument("--quick", action="store_true", help=f"a short run ({QUICK_PRODUCTS:,} products per side)")
    parser.add_argument("--products", type=int, help=f"products per side (default {DEFAULT_PRODUCTS:,})")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="server latency per request")
    parser.add_argument("--rpm", type=int, default=DEFAULT_RPM, help="server's requests per minute (multiple of 60)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="jobs at once, both sides")
    parser.add_argument("--dims", type=int, default=DEFAULT_DIMS, help="EMBEDDING_DIMS")
    parser.add_argument("--batch-size", type=int, default=64, help="the batched side's batch size")
    parser.add_argument(
        "--batch-completion-s",
        type=float,
        default=DEFAULT_BATCH_COMPLETION_S,
        help="seconds the server's Batch API takes to answer a batch (the batch-lane side)",
    )
    ns = parser.parse_args(argv)
    products = ns.products if ns.products is not None else (QUICK_PRODUCTS if ns.quick else DEFAULT_PRODUCTS)
    if products < 100:
        parser.error("--products must be at least 100")
    if ns.rpm < 60 or ns.rpm % 60:
        parser.error("--rpm must be a positive multiple of 60 (it is enforced per second)")
    if ns.latency_ms < 0:
        parser.error("--latency-ms must not be negative")
    if ns.concurrency < 1 or ns.dims < 1 or ns.batch_size < 2:
        parser.error("--concurrency and --dims must be positive, --batch-size at least 2")
    if ns.batch_completion_s < 0:
        parser.error("--batch-completion-s must not be negative")
    return Args(products, ns.latency_ms, ns.rpm, ns.concurrency, ns.dims, ns.batch_size, ns.batch_completion_s)


def product_ids(side: str, n: int) -> list[str]:
    return [f"bench-{side}-{i:06d}" for i in range(n)]


async def seed(store: SqlStore, ids: list[str]) -> dict[str, str]:
    """Insert the products; return each one's canonical text."""
    texts = {}
    for start in range(0, len(ids), SEED_CHUNK):
        chunk = ids[start : start + SEED_CHUNK]
        records = await asyncio.gather(
            *(
                store.upsert_product(
                    pid,
                    name=f"Gift {pid}",
                    price=1000 + i,
                    category="home",
                    brand="Bench & Co",
                    tags=["gift", f"tag{i % 17}"],
                    description=f"A thoughtful present, number {i}, for someone who likes {LIKES[i % 3]}.",
                )
                for i, pid in enumerate(chunk, start)
            )
        )
        texts |= {record.id: canonical_text(record) for record in records}
    return texts


def worker_env(args: Args, redis_url: str, database_url: str, base_url: str, batch_size: int) -> dict[str, str]:
    prefix = "JOBQUEUE_PRODUCT_EMBEDDING_"
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "LLM_BASE_URL": base_url,
        "LLM_API_KEY": "sk-bench",
        "EMBEDDING_MODEL": EMBEDDING_MODEL,
        "EMBEDDING_DIMS": str(args.dims),
        # The client-side limit an operator sets to the provider's: the same for both sides.
        "EMBEDDING_RATE_LIMIT_PER_MINUTE": str(args.rpm // 60),
        "LLM_RATE_LIMIT_PERIOD": "1",
        prefix + "BATCH_SIZE": str(batch_size),
        prefix + "CONCURRENCY": str(args.concurrency),
        prefix + "KEEP_COMPLETED": str(args.products),
        prefix + "KEEP_FAILED": str(args.products),
        # A 429 costs the jobs of its request an attempt. The worker paces by the server's headers,
        # so none is expected; enough attempts that none would be lost: 429s are reported instead.
        prefix + "ATTEMPTS": "10",
    }


def run_worker(env: dict[str, str]) -> None:
    """One burst worker process: it exits once every job has finished."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.embeddings", "--worker"],
        env=env,
        cwd=ROOT,
        timeout=WORKER_TIMEOUT_S,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench-embeddings: the worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def worker_main() -> None:
    """The child: jobqueue's ``Worker`` running the real ``EmbeddingSettings``, in burst mode."""
    from arq.worker import get_kwargs

    from jobqueue.worker import Worker
    from workers.settings import embedding_settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("arq", "jobqueue", "workers"):  # arq logs every job at INFO: not what is measured
        logging.getLogger(name).setLevel(logging.ERROR)

    async def main() -> None:
        worker = Worker(**get_kwargs(embedding_settings()), burst=True, handle_signals=False)
        try:
            await worker.async_run()
        finally:
            await worker.close()

    asyncio.run(main())


async def run_side(
    name: str, batch_size: int, args: Args, admin: Admin, fake: FakeOpenAI, url: str, tmp: Path
) -> SideResult:
    await admin.clean()
    database_url = f"sqlite+aiosqlite:///{tmp / (name + '.db')}"
    store = SqlStore(database_url)
    try:
        ids = product_ids(name, args.products)
        progress(f"{name}: seeding {len(ids):,} products")
        texts = await seed(store, ids)
        await jobqueue.enqueue_product_embeddings(ids, triggered_by="bench")
        before = fake.stats()
        progress(f"{name}: one worker process, batch size {batch_size}, concurrency {args.concurrency}")
        await asyncio.to_thread(run_worker, worker_env(args, url, database_url, fake.base_url, batch_size))
        after = fake.stats()
        completed = await jobqueue.product_embedding_queue.get_jobs("completed", 0, args.products - 1)
        counts = await jobqueue.product_embedding_queue.get_job_counts()
        if len(completed) != args.products:
            raise SystemExit(f"bench-embeddings: {name}: {len(completed)} of {args.products} jobs completed: {counts}")
        started = min(j.started_at for j in completed if j.started_at is not None)
        finished = max(j.finished_at for j in completed if j.finished_at is not None)
        latencies = [
            (j.finished_at - j.started_at).total_seconds() * 1000
            for j in completed
            if j.finished_at is not None and j.started_at is not None
        ]
        verified = await verify(store, texts, fake, args.dims)
        return SideResult(
            name=name,
            batch_size=batch_size,
            products=args.products,
            seconds=(finished - started).total_seconds(),
            requests=after["embedding_requests"] - before["embedding_requests"],
            inputs=after["inputs"] - before["inputs"],
            rate_limited=after["rate_limited"] - before["rate_limited"],
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            failed=counts["failed"],
            attempts_over_one=sum(1 for j in completed if j.attempts_made > 1),
            verified=verified,
            input_tokens=after["sync_input_tokens"] - before["sync_input_tokens"],
        )
    finally:
        await store.aclose()
        await admin.clean()


async def verify(store: SqlStore, texts: dict[str, str], fake: FakeOpenAI, dims: int) -> int:
    """Every product has a vector of ``dims`` floats for its own text, which the server embedded
    exactly once; returns how many products passed (all, or the run stops)."""
    embedded = fake.embedded_counts()
    for pid, text in texts.items():
        product = await store.get_product(pid)
        if product is None or product.embedding is None:
            raise SystemExit(f"bench-embeddings: product {pid} has no embedding")
        if len(product.embedding) != dims:
            raise SystemExit(f"bench-embeddings: product {pid} has {len(product.embedding)} dimensions, not {dims}")
        if product.text_hash != text_hash(text) or product.embedding_model != EMBEDDING_MODEL:
            raise SystemExit(f"bench-embeddings: product {pid} has a stale hash or model")
        if embedded[text] != 1:
            raise SystemExit(f"bench-embeddings: product {pid}'s text was embedded {embedded[text]} times")
    return len(texts)


def report(results: list[SideResult], lane: LaneResult, args: Args, origin: str, server: str) -> str:
    batched, unbatched = results
    batched_cost = sync_cost(EMBEDDING_MODEL, batched.input_tokens)
    cost_ratio = lane.cost_per_product / (batched_cost / batched.products) if batched_cost else math.nan
    lines = [
        f"{'side':<10} {'batch':>5} {'products':>9} {'seconds':>8} {'products/s':>11} {'requests':>9} "
        f"{'req/job':>8} {'429s':>5} {'p50 ms':>8} {'p95 ms':>8} {'retried':>8} {'failed':>7} {'verified':>9}",
    ]
    for r in results:
        lines.append(
            f"{r.name:<10} {r.batch_size:>5} {r.products:>9,} {r.seconds:>8.1f} {r.rate:>11,.1f} {r.requests:>9,} "
            f"{r.requests / r.products:>8.4f} {r.rate_limited:>5} {r.p50_ms:>8.0f} {r.p95_ms:>8.0f} "
            f"{r.attempts_over_one:>8} {r.failed:>7} {r.verified:>9,}"
        )
    ceiling = min(args.concurrency / (args.latency_ms / 1000) if args.latency_ms else math.inf, args.rpm / 60)
    lines += [
        "",
        f"server: loopback OpenAI-compatible, {args.latency_ms:g} ms per request, {args.rpm:,} requests/minute "
        f"refilled continuously ({args.rpm // 60}/s), x-ratelimit-* headers on every answer, 429 + Retry-After "
        f"beyond; Redis: {origin} ({server})",
        f"worker: one process, arq Worker with workers.settings.embedding_settings(), SQLite store, "
        f"EMBEDDING_DIMS={args.dims}, concurrency {args.concurrency} on both sides, client-side limit "
        f"EMBEDDING_RATE_LIMIT_PER_MINUTE={args.rpm // 60} per LLM_RATE_LIMIT_PERIOD=1 s on both sides",
        f"unbatched ceiling: min(concurrency / latency, rpm / 60) = {ceiling:,.1f} products/s; "
        f"reached: {unbatched.rate / ceiling:.1%}",
        "429s: answers of the server's request limit; the worker paces by its x-ratelimit-* headers",
        "products/s: products over the span from the first job's start to the last job's end; job latency: "
        "a job's start to its end (store read, waiting for its batch, the request, store write)",
        f"verified: every product has a {args.dims}-float vector for its own text, and the server embedded "
        "each text exactly once",
        "",
        f"batch lane: {lane.products:,} products in {lane.submissions} Batch API submission(s) "
        f"({lane.batch_requests:,} batch requests, {lane.http_embedding_requests} sync requests), "
        f"wall {lane.wall_s:.1f} s from enqueue to the last job's end with the server answering a batch "
        f"{args.batch_completion_s:g} s after its creation; failed {lane.failed}, verified {lane.verified:,}",
        f"cost (JOBQUEUE_LLM_PRICES, {EMBEDDING_MODEL}, tokens from the server's usage): sync lane (batched side) "
        f"${batched_cost:.6f} for {batched.input_tokens:,} tokens, batch lane ${lane.cost_usd:.6f} for "
        f"{lane.input_tokens:,} tokens; per product {cost_ratio:.2f}x",
        "",
        f"bench-embeddings: speedup={batched.rate / unbatched.rate:.1f}x "
        f"requests_per_job={batched.requests / batched.products:.4f} p95_job_latency_ms={batched.p95_ms:.0f} "
        f"batch_cost_ratio={cost_ratio:.2f} rate_limited={sum(r.rate_limited for r in results)}",
    ]
    return "\n".join(lines)


async def run(args: Args, url: str, tmp: Path) -> tuple[list[SideResult], LaneResult]:
    admin = Admin(url)
    latency = args.latency_ms / 1000
    try:
        with FakeOpenAI(dims=args.dims, latency=latency, request_limit=args.rpm // 60, rate_window=1.0) as fake:
            results = [
                await run_side("batched", args.batch_size, args, admin, fake, url, tmp),
                await run_side("unbatched", 1, args, admin, fake, url, tmp),
            ]
            lane = await run_batch_lane_side(args, admin, fake, url, tmp)
    finally:
        await jobqueue.close_queues()
        await admin.aclose()
    return results, lane


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with redis_under_test() as (url, origin), tempfile.TemporaryDirectory(prefix="bench-embeddings-") as tmp:
        os.environ["REDIS_URL"] = url  # jobqueue reads it on first use
        get_settings.cache_clear()
        results, lane = asyncio.run(run(args, url, Path(tmp)))
        server = server_version(url)
    print(report(results, lane, args, origin, server))


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker_main()
    else:
        main()
