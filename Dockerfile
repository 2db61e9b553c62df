# The image every compose.yaml service of jobqueue runs: the library, the workers and the dashboard.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY jobqueue ./jobqueue
COPY workers ./workers
RUN pip install . && useradd --create-home --uid 10001 jobqueue

USER jobqueue
# compose.yaml gives each service its command: `arq workers.<Name>` or `jobqueue dashboard`.
CMD ["arq", "workers.EmbeddingSettings"]
