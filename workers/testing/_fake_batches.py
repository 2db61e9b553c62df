"""The Files and Batch APIs of the fake OpenAI server (``workers.testing.fake_openai``).

``/v1/files`` takes multipart uploads and serves their content; ``/v1/batches`` creates, retrieves,
cancels and lists batches. A batch's requests are answered by the same code that answers the sync
endpoints, so a vector from a batch equals the sync one. Time is lazy: a batch is looked at when a
client asks, and is done once ``completion_s`` seconds have passed since it was created (a change
of ``completion_s`` applies to running batches too). Scripted
endings: ``fail_in_batch(text)`` answers the requests holding ``text`` with an error (in the error
file, as OpenAI does), ``expire_next_batch(finished=n)`` lets the next batch answer only its first
``n`` requests and end ``expired`` (the rest in the error file as ``batch_expired``), and a cancel
ends the batch ``cancelled`` with the requests answered so far (the rest ``batch_cancelled``).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# OpenAI's limits on one batch input file.
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
ENDPOINTS = ("/v1/embeddings", "/v1/chat/completions")

Answer = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class _Batch:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    lines: list[dict[str, Any]]
    created: float  # time.monotonic()
    created_at: int
    finish_only: int | None = None  # expire after answering this many
    status: str = "in_progress"
    cancel_asked: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    ended_at: dict[str, int] = field(default_factory=dict)


class FakeBatches:
    """Files and batches held in memory; ``answer(path, body)`` answers one request."""

    def __init__(self, answer: Answer, *, completion_s: float = 0.0) -> None:
        self._answer = answer
        self.completion_s = completion_s
        self._lock = threading.RLock()
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)
        self._item_failures: list[list[Any]] = []  # [text, status, remaining]
        self._expire_next: list[int] = []

    # -- scripting and inspection ----------------------------------------------------------

    def fail_in_batch(self, text: str, *, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` batch requests whose body holds ``text`` with ``status``."""
        with self._lock:
            self._item_failures.append([text, status, times])

    def expire_next_batch(self, *, finished: int = 0) -> None:
        """The next batch created answers its first ``finished`` requests, then ends ``expired``."""
        with self._lock:
            self._expire_next.append(finished)

    def batches(self) -> list[dict[str, Any]]:
        """Every batch created so far, oldest first, as the API shows it (plus ``requests``)."""
        with self._lock:
            return [self._public(b) | {"requests": len(b.lines)} for b in self._batches.values()]

    # -- the HTTP side -----------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, raw: bytes, content_type: str) -> tuple[int, Any]:
        """(status, JSON payload or raw bytes) for one request to ``/v1/files`` or ``/v1/batches``."""
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        with self._lock:
            if parts == ["files"] and method == "POST":
                return self._upload(raw, content_type)
            if parts[:1] == ["files"] and len(parts) == 2 and method == "GET":
                found = self._files.get(parts[1])
                return (200, found.public()) if found else _not_found("file", parts[1])
            if parts[:1] == ["files"] and len(parts) == 3 and parts[2] == "content" and method == "GET":
                found = self._files.get(parts[1])
                return (200, found.content) if found else _not_found("file", parts[1])
            if parts == ["batches"] and method == "POST":
                return self._create(raw)
            if parts == ["batches"] and method == "GET":
                return 200, self._list(query)
            if parts[:1] == ["batches"] and len(parts) == 2 and method == "GET":
                batch = self._batches.get(parts[1])
                return (200, self._public(self._advance(batch))) if batch else _not_found("batch", parts[1])
            if parts[:1] == ["batches"] and len(parts) == 3 and parts[2] == "cancel" and method == "POST":
                return self._cancel(parts[1])
        return 404, _error(f"Unknown request URL: {method} {path}.")

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-fake{next(self._ids):06d}"

    def _upload(self, raw: bytes, content_type: str) -> tuple[int, Any]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or "purpose" not in fields:
            return 400, _error("'file' and 'purpose' are required")
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode()
        if purpose == "batch" and len(content) > MAX_FILE_BYTES:
            return 400, _error(f"a batch input file may hold at most {MAX_FILE_BYTES} bytes")
        stored = _File(self._new_id("file"), filename or "upload", purpose, content, int(time.time()))
        self._files[stored.id] = stored
        return 200, stored.public()

    def _create(self, raw: bytes) -> tuple[int, Any]:
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, _error("the body must be JSON")
        endpoint, file_id = body.get("endpoint"), body.get("input_file_id")
        if endpoint not in ENDPOINTS:
            return 400, _error(f"endpoint must be one of {', '.join(ENDPOINTS)}")
        if body.get("completion_window") != "24h":
            return 400, _error("completion_window must be '24h'")
        file = self._files.get(file_id)
        if file is None:
            return _not_found("file", str(file_id))
        if file.purpose != "batch":
            return 400, _error(f"file {file_id} was not uploaded with purpose 'batch'")
        lines, problem = _parse_lines(file.content, endpoint)
        if problem is not None:
            return 400, _error(problem)
        batch = _Batch(
            id=self._new_id("batch"),
            endpoint=endpoint,
            input_file_id=file_id,
            completion_window="24h",
            metadata=body.get("metadata"),
            lines=lines,
            created=time.monotonic(),
            created_at=int(time.time()),
            finish_only=self._expire_next.pop(0) if self._expire_next else None,
        )
        batch.counts["total"] = len(lines)
        self._batches[batch.id] = batch
        return 200, self._public(batch)

    def _list(self, query: str) -> dict[str, Any]:
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        limit = int(params.get("limit", "20"))
        ordered = list(reversed(self._batches.values()))  # newest first, as OpenAI lists them
        if "after" in params:
            ids = [b.id for b in ordered]
            ordered = ordered[ids.index(params["after"]) + 1 :] if params["after"] in ids else []
        page = [self._public(self._advance(b)) for b in ordered[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(ordered) > limit,
        }

    def _cancel(self, batch_id: str) -> tuple[int, Any]:
        batch = self._batches.get(batch_id)
        if batch is None:
            return _not_found("batch", batch_id)
        self._advance(batch)
        if batch.status not in ("validating", "in_progress"):
            return 409, _error(f"cannot cancel a batch that is {batch.status}")
        batch.cancel_asked = time.monotonic()
        batch.status = "cancelling"
        batch.ended_at["cancelling_at"] = int(time.time())
        return 200, self._public(batch)

    # -- time passing ------------------------------------------------------------------------

    def _advance(self, batch: _Batch) -> _Batch:
        """Bring ``batch`` up to now: answer its requests once its time has come."""
        if batch.status in ("completed", "expired", "cancelled", "failed"):
            return batch
        elapsed = time.monotonic() - batch.created
        if batch.status == "cancelling":
            done = self._due(batch, (batch.cancel_asked or batch.created) - batch.created)
            self._finish(batch, "cancelled", done, "batch_cancelled", "The batch was cancelled.")
        elif elapsed >= self.completion_s:
            if batch.finish_only is not None:
                message = "This request could not be executed before the completion window expired."
                self._finish(batch, "expired", batch.finish_only, "batch_expired", message)
            else:
                self._finish(batch, "completed", len(batch.lines), "", "")
        else:
            batch.counts["completed"] = self._due(batch, elapsed)
        return batch

    def _due(self, batch: _Batch, elapsed: float) -> int:
        """Requests answered after ``elapsed`` seconds: evenly over the completion time."""
        share = 1.0 if self.completion_s <= 0 else min(elapsed / self.completion_s, 1.0)
        done = int(len(batch.lines) * share)
        return done if batch.finish_only is None else min(done, batch.finish_only)

    def _finish(self, batch: _Batch, status: str, answered: int, unfinished_code: str, message: str) -> None:
        output, errors = [], []
        for index, line in enumerate(batch.lines):
            row: dict[str, Any] = {"id": f"batch_req_{batch.id}_{index}", "custom_id": line["custom_id"]}
            if index >= answered:
                errors.append(row | {"response": None, "error": {"code": unfinished_code, "message": message}})
                continue
            status_code, body = self._scripted_failure(line["body"]) or self._answer(batch.endpoint, line["body"])
            row["response"] = {"status_code": status_code, "request_id": f"req_{batch.id}_{index}", "body": body}
            row["error"] = None
            (output if status_code == 200 else errors).append(row)
        batch.counts["completed"] = len(output)
        batch.counts["failed"] = len(errors) if status == "completed" else len(errors) - (len(batch.lines) - answered)
        if output:
            batch.output_file_id = self._store_result(batch, "output", output)
        if errors:
            batch.error_file_id = self._store_result(batch, "errors", errors)
        batch.status = status
        batch.ended_at[f"{status}_at"] = int(time.time())

    def _scripted_failure(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        text = json.dumps(body)
        for failure in self._item_failures:
            if json.dumps(failure[0])[1:-1] in text:
                failure[2] -= 1
                if failure[2] <= 0:
                    self._item_failures.remove(failure)
                return failure[1], _error(f"scripted failure {failure[1]}", server=failure[1] >= 500)
        return None

    def _store_result(self, batch: _Batch, kind: str, rows: list[dict[str, Any]]) -> str:
        content = "".join(json.dumps(row) + "\n" for row in rows).encode()
        stored = _File(self._new_id("file"), f"{batch.id}_{kind}.jsonl", "batch_output", content, int(time.time()))
        self._files[stored.id] = stored
        return stored.id

    def _public(self, batch: _Batch) -> dict[str, Any]:
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": batch.created_at,
            "in_progress_at": batch.created_at,
            "expires_at": batch.created_at + 24 * 3600,
            "request_counts": dict(batch.counts),
            "metadata": batch.metadata,
            **batch.ended_at,
        }


def _parse_lines(content: bytes, endpoint: str) -> tuple[list[dict[str, Any]], str | None]:
    """The file's requests, or why OpenAI would refuse the file."""
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            return [], f"line {number} is not JSON"
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or custom_id in seen:
            return [], f"line {number}: custom_id must be a string unique in the file"
        if line.get("method") != "POST" or line.get("url") != endpoint or not isinstance(line.get("body"), dict):
            return [], f"line {number}: each request must be a POST to {endpoint} with a body"
        seen.add(custom_id)
        lines.append(line)
    if not lines:
        return [], "the file holds no requests"
    if len(lines) > MAX_REQUESTS:
        return [], f"a batch may hold at most {MAX_REQUESTS} requests, this file holds {len(lines)}"
    return lines, None


def _error(message: str, *, server: bool = False) -> dict[str, Any]:
    kind = "server_error" if server else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _not_found(kind: str, name: str) -> tuple[int, dict[str, Any]]:
    return 404, _error(f"No {kind} with id '{name}' found.")
