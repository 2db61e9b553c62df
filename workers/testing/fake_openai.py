"""A loopback HTTP server that speaks OpenAI's wire format (stdlib only).

It runs in a background thread, so it serves async and sync clients and other processes alike::

    with FakeOpenAI(dims=8) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
        server.fail_next(status=429, headers={"Retry-After": "2"})

For workloads it can behave like a real provider: ``latency`` seconds per request (requests are
served concurrently, one thread each), ``request_limit`` requests and ``token_limit`` tokens per
``rate_window`` seconds and 429 with ``Retry-After``/``retry-after-ms`` beyond them,
``reject_input(text)`` to make one input invalid (400 for any embeddings request holding it, as for
an empty input), and ``stats()`` counting requests, inputs and 429s.

Its limits work as OpenAI's do: a bucket of ``limit`` that refills continuously, whole again after
``rate_window`` (3,000 a minute is 50 a second, with a burst of up to 3,000). Every answer to a
request that reached the limits carries OpenAI's headers: ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` (Go durations: ``20ms``,
``1.5s``, ``6m0s``), and the same for ``-tokens`` when a token limit is set. Tokens are counted
as words: the inputs' for embeddings, the messages' and the answer's for chat.

It also serves the Files and Batch APIs (``/v1/files``, ``/v1/batches``: ``workers.testing._fake_batches``)
for real through the ``openai`` SDK: batches answer after ``batch_completion_s`` seconds, and
``fail_in_batch``, ``expire_next_batch`` and a cancel script the other ways a batch ends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workers.testing._fake_batches import FakeBatches
from workers.testing._loopback import LoopbackServer

_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    409: ("invalid_request_error", "conflict"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived; ``at`` is ``time.monotonic()``, header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass(frozen=True)
class ChatReply:
    """What a responder returns to script more than the message content."""

    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    no_choices: bool = False


Responder = Callable[[dict[str, Any]], "str | ChatReply"]


@dataclass
class _Bucket:
    """A continuously refilling budget of ``limit`` per ``window`` seconds (call under the lock)."""

    limit: int
    window: float
    level: float
    at: float

    @property
    def rate(self) -> float:
        return self.limit / self.window

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.at) * self.rate)
        self.at = now

    def shortfall(self, cost: float) -> float | None:
        """Seconds until ``cost`` fits, or None when it fits now (refill first)."""
        return None if self.level >= cost else (cost - self.level) / self.rate

    def headers(self, kind: str) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{kind}": str(self.limit),
            f"x-ratelimit-remaining-{kind}": str(max(0, math.floor(self.level))),
            f"x-ratelimit-reset-{kind}": go_duration((self.limit - self.level) / self.rate),
        }


def go_duration(seconds: float) -> str:
    """``seconds`` as Go prints a duration, as OpenAI's reset headers do: ``120ms``, ``1.5s``, ``6m0s``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000, 3):g}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{round(rest, 3):g}s"
    if minutes or hours:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return text


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    path: str | None
    remaining: int = field(default=1)


class _Server(ThreadingHTTPServer):
    # Many clients connecting at once (a worker with a high concurrency) must not overflow the
    # listen backlog (socketserver's default is 5): each connection gets its own thread.
    request_queue_size = 512


class FakeOpenAI(LoopbackServer):
    """``POST /v1/embeddings``, ``POST /v1/chat/completions``, files and batches on 127.0.0.1, with
    scripted faults."""

    server_class = _Server

    def __init__(
        self,
        *,
        dims: int = 8,
        honour_dimensions: bool = True,
        api_key: str | None = None,
        responder: Responder | None = None,
        reverse_embedding_data: bool = False,
        latency: float = 0.0,
        request_limit: int | None = None,
        token_limit: int | None = None,
        rate_window: float = 60.0,
        port: int = 0,
        batch_completion_s: float = 0.0,
    ) -> None:
        self.dims = dims
        # Seconds each request takes before it is answered (a provider's round trip).
        self.latency = latency
        # Requests and tokens per `rate_window` seconds, refilled continuously; beyond: 429 with
        # Retry-After. OpenAI enforces a per-minute limit over shorter periods too (3,000 a minute
        # as 50 a second).
        self.request_limit = request_limit
        self.token_limit = token_limit
        self.rate_window = rate_window
        self._buckets: dict[str, _Bucket] = {}
        self._rejected_inputs: set[str] = set()
        self._truncated_inputs: set[str] = set()
        self._stats: Counter[str] = Counter()
        self._embedded: Counter[str] = Counter()
        # The API may list embeddings in any order; clients must sort by `index`.
        self.reverse_embedding_data = reverse_embedding_data
        self.honour_dimensions = honour_dimensions
        self.api_key = api_key
        self.responder: Responder = responder or default_responder
        self._requests: list[RecordedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        # Files and batches; a batch's requests are answered like sync ones, without the latency,
        # the request limit or scripted HTTP failures (the Batch API has its own limits).
        self.files_and_batches = FakeBatches(self._answer, completion_s=batch_completion_s)
        super().__init__(("127.0.0.1", port))  # port 0: a free one

    # lifecycle (start, stop, with: LoopbackServer)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("_BoundHandler", (_Handler,), {"fake": self})

    def _before_close(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wake handler threads blocked on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def base_url(self) -> str:
        return self._origin("server") + "/v1"

    # scripting and inspection

    def fail_next(
        self,
        status: int = 500,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        message: str | None = None,
        code: str | None = None,
        type: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests (to ``path``, if given) with an OpenAI error body."""
        default_type, default_code = _ERROR_KINDS.get(status, ("server_error", None))
        body = {
            "error": {
                "message": message or f"scripted failure {status}",
                "type": type or default_type,
                "param": None,
                "code": code if code is not None else default_code,
            }
        }
        with self._lock:
            self._failures.append(_Failure(status, dict(headers or {}), body, path, times))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def reject_input(self, text: str) -> None:
        """Answer 400 to every embeddings request whose input holds ``text``."""
        with self._lock:
            self._rejected_inputs.add(text)

    def truncate_vector(self, text: str) -> None:
        """Answer ``text`` with a vector one float short (a server that breaks its own contract)."""
        with self._lock:
            self._truncated_inputs.add(text)

    def fail_in_batch(self, text: str, *, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` batch requests whose body holds ``text`` with ``status``."""
        self.files_and_batches.fail_in_batch(text, status=status, times=times)

    def expire_next_batch(self, *, finished: int = 0) -> None:
        """The next batch created answers its first ``finished`` requests, then ends ``expired``."""
        self.files_and_batches.expire_next_batch(finished=finished)

    @property
    def batch_completion_s(self) -> float:
        """Seconds a batch takes from its creation to its end."""
        return self.files_and_batches.completion_s

    @batch_completion_s.setter
    def batch_completion_s(self, seconds: float) -> None:
        self.files_and_batches.completion_s = seconds

    def batches(self) -> list[dict[str, Any]]:
        """Every batch created so far, oldest first (the API's fields plus ``requests``)."""
        return self.files_and_batches.batches()

    def stats(self) -> dict[str, int]:
        """Counters: ``requests``, ``embedding_requests``, ``inputs`` (in embeddings requests),
        ``embedded`` (inputs answered with a vector, sync or batch), ``rate_limited`` (429s of the
        request limit), ``invalid`` (400s), ``failed`` (scripted failures), ``batch_requests``
        (requests answered inside batches), and the tokens the ``usage`` of answers reported:
        ``sync_input_tokens``, ``sync_output_tokens``, ``batch_input_tokens``, ``batch_output_tokens``."""
        keys = (
            "requests",
            "embedding_requests",
            "inputs",
            "embedded",
            "rate_limited",
            "invalid",
            "failed",
            "batch_requests",
            "sync_input_tokens",
            "sync_output_tokens",
            "batch_input_tokens",
            "batch_output_tokens",
        )
        with self._lock:
            return {key: self._stats[key] for key in keys}

    def embedded_counts(self) -> Counter[str]:
        """How many times each text was answered with a vector."""
        with self._lock:
            return Counter(self._embedded)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path is ``path`` (e.g. ``"/v1/embeddings"``)."""
        return [r for r in self.requests if r.path == path]

    @staticmethod
    def vector_for(text: str, dims: int) -> list[float]:
        """The deterministic unit vector the server returns for ``text`` (float32 values)."""
        raw = b""
        counter = 0
        while len(raw) < dims:
            raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
            counter += 1
        values = [b / 127.5 - 1.0 for b in raw[:dims]]
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        packed = struct.pack(f"<{dims}f", *(v / norm for v in values))
        return list(struct.unpack(f"<{dims}f", packed))

    # request handling (runs on the server's threads)

    def _handle(self, handler: _Handler) -> None:
        raw = _read_body(handler)
        path, _, query = handler.path.partition("?")
        if path.startswith(("/v1/files", "/v1/batches")):
            self._files_or_batches(handler, path, query, raw)
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        arrived = time.monotonic()
        with self._lock:
            self._requests.append(RecordedRequest(handler.command, path, headers, body, arrived))
            self._stats["requests"] += 1
            if path == "/v1/embeddings" and isinstance(body, dict):
                self._stats["embedding_requests"] += 1
                inputs = body.get("input")
                self._stats["inputs"] += len(inputs) if isinstance(inputs, list) else 1
            failure = self._take_failure(path)
            if failure is not None:
                self._stats["failed"] += 1
            refusal, limit_headers = (None, {}) if failure is not None else self._over_limit(arrived, path, body)
        if self.latency > 0:
            time.sleep(self.latency)
        if failure is not None:
            _send_json(handler, failure.status, failure.body, failure.headers)
            return
        if refusal is not None:
            message, retry_after = refusal
            with self._lock:
                self._stats["rate_limited"] += 1
            retry_headers = {
                **limit_headers,
                "Retry-After": str(math.ceil(retry_after)),
                "retry-after-ms": str(math.ceil(retry_after * 1000)),
            }
            _send_json(handler, 429, _error_body(429, message), retry_headers)
            return
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            _send_error(handler, 401, "Incorrect API key provided.")
            return
        if handler.command != "POST" or path not in ("/v1/embeddings", "/v1/chat/completions"):
            _send_error(handler, 404, f"Unknown request URL: {handler.command} {path}.")
            return
        status, payload = self._answer(path, body, lane="sync")
        _send_json(handler, status, payload, limit_headers)

    def _files_or_batches(self, handler: _Handler, path: str, query: str, raw: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self._requests.append(RecordedRequest(handler.command, path, headers, None, time.monotonic()))
            self._stats["requests"] += 1
            failure = self._take_failure(path)
        if failure is not None:
            _send_json(handler, failure.status, failure.body, failure.headers)
            return
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            _send_error(handler, 401, "Incorrect API key provided.")
            return
        status, payload = self.files_and_batches.handle(
            handler.command, path, query, raw, headers.get("content-type", "")
        )
        if isinstance(payload, bytes):
            _send_bytes(handler, status, payload)
        else:
            _send_json(handler, status, payload)

    def _answer(self, path: str, body: Any, lane: str = "batch") -> tuple[int, dict[str, Any]]:
        """(status, body) answering one request to ``path``; ``lane`` names whose tokens it counts."""
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return 400, _error_body(400, "you must provide a model parameter")
        if lane == "batch":
            with self._lock:
                self._stats["batch_requests"] += 1
        status, payload = self._embeddings(body) if path == "/v1/embeddings" else self._chat(body)
        usage = payload.get("usage") if status == 200 else None
        if usage:
            with self._lock:
                self._stats[f"{lane}_input_tokens"] += usage.get("prompt_tokens", 0)
                self._stats[f"{lane}_output_tokens"] += usage.get("completion_tokens", 0)
        return status, payload

    def _over_limit(self, now: float, path: str, body: Any) -> tuple[tuple[str, float] | None, dict[str, str]]:
        """Take one request and its tokens from the buckets, or refuse: ``(None, headers)`` when
        they fit, else ``((message, seconds until they fit), headers)``. Call under the lock."""
        costs = {"requests": (self.request_limit, 1), "tokens": (self.token_limit, request_tokens(path, body))}
        buckets: dict[str, tuple[_Bucket, int]] = {}
        for kind, (limit, cost) in costs.items():
            if limit is None:
                continue
            bucket = self._buckets.get(kind)
            if bucket is None or bucket.limit != limit or bucket.window != self.rate_window:
                bucket = self._buckets[kind] = _Bucket(limit, self.rate_window, float(limit), now)
            bucket.refill(now)
            buckets[kind] = (bucket, cost)
        for kind, (bucket, cost) in buckets.items():
            wait = bucket.shortfall(cost)
            if wait is not None:
                message = f"Rate limit reached: {bucket.limit} {kind} per {self.rate_window:g}s."
                return (message, max(0.001, wait)), _limit_headers(buckets)
        for bucket, cost in buckets.values():
            bucket.level -= cost
        return None, _limit_headers(buckets)

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.path is None or failure.path == path:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            return 400, _error_body(400, "'input' must be a string or a non-empty array of strings")
        with self._lock:
            bad = next((i for i, t in enumerate(inputs) if not t or t in self._rejected_inputs), None)
        if bad is not None:
            with self._lock:
                self._stats["invalid"] += 1
            return 400, _error_body(400, f"'$.input[{bad}]' is invalid: empty or over the model's token limit")
        dims = body.get("dimensions") if self.honour_dimensions and body.get("dimensions") else self.dims
        encoding = body.get("encoding_format", "float")
        data = []
        for index, text in enumerate(inputs):
            vector: Any = self.vector_for(text, dims)
            if text in self._truncated_inputs:
                vector = vector[:-1]
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        if self.reverse_embedding_data:
            data.reverse()
        tokens = request_tokens("/v1/embeddings", body)
        with self._lock:
            self._stats["embedded"] += len(inputs)
            self._embedded.update(inputs)
        return 200, {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return 400, _error_body(400, "'messages' must be a non-empty array")
        problem = _response_format_problem(body.get("response_format"))
        if problem is not None:
            return 400, _error_body(400, problem)
        try:
            reply = self.responder(body)
        except Exception as exc:  # a broken test responder shows up as a 500 in the test, not a hang
            return 500, _error_body(500, f"responder failed: {exc!r}")
        if isinstance(reply, str):
            reply = ChatReply(content=reply)
        choices = []
        if not reply.no_choices:
            message = {"role": "assistant", "content": reply.content, "refusal": reply.refusal}
            choices.append({"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason})
        completion_tokens = len((reply.content or "").split())
        prompt_tokens = request_tokens("/v1/chat/completions", body)
        return 200, {
            "id": f"chatcmpl-fake{len(self._requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": None,
        }


def request_tokens(path: str, body: Any) -> int:
    """The tokens the server counts for a request: words of the embeddings inputs or of the chat
    messages (at least one)."""
    if not isinstance(body, dict):
        return 1
    if path == "/v1/embeddings":
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
    else:
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        texts = [m.get("content") for m in messages if isinstance(m, dict)]
    return max(1, sum(len(t.split()) for t in texts if isinstance(t, str)))


def _limit_headers(buckets: dict[str, tuple[_Bucket, int]]) -> dict[str, str]:
    return {name: value for kind, (bucket, _) in buckets.items() for name, value in bucket.headers(kind).items()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    timeout = 10  # an idle keep-alive connection frees its thread after this long
    fake: FakeOpenAI

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_POST(self) -> None:
        self.fake._handle(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _send_json(
    handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("x-request-id", f"req_fake_{time.monotonic_ns()}")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
    handler.wfile.flush()


def _send_bytes(handler: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
    handler.wfile.flush()


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _send_error(handler: BaseHTTPRequestHandler, status: int, message: str) -> None:
    _send_json(handler, status, _error_body(status, message))


# OpenAI answers 400 to a strict json_schema with an open object or an optional property.
def _response_format_problem(response_format: Any) -> str | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        return f"Invalid 'response_format.json_schema.name': {name!r}."
    if not spec.get("strict"):
        return None
    problem = _strict_problem(spec.get("schema") or {}, ())
    return None if problem is None else f"Invalid schema for response_format '{name}': {problem}"


def _strict_problem(node: Any, context: tuple[str, ...]) -> str | None:
    if not isinstance(node, dict):
        return None
    if "properties" in node or node.get("type") == "object":
        if node.get("additionalProperties") is not False:
            return f"In context={context}, 'additionalProperties' is required to be supplied and to be false."
        props = node.get("properties") or {}
        missing = [key for key in props if key not in (node.get("required") or [])]
        if missing:
            return f"In context={context}, 'required' is required to include every key; missing {missing}."
    children: list[tuple[tuple[str, ...], Any]] = []
    for key in ("properties", "$defs"):
        children += [((*context, key, k), v) for k, v in (node.get(key) or {}).items()]
    children += [((*context, "items"), node.get("items"))]
    for key in ("anyOf", "allOf"):
        children += [((*context, key, str(i)), v) for i, v in enumerate(node.get(key) or [])]
    for child_context, child in children:
        problem = _strict_problem(child, child_context)
        if problem is not None:
            return problem
    return None


def default_responder(request: dict[str, Any]) -> str:
    """Valid JSON for the requested json_schema (simple schemas), else a plain text answer."""
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_object":
        return "{}"
    if response_format.get("type") != "json_schema":
        return "OK"
    schema = response_format["json_schema"].get("schema") or {}
    return json.dumps(example_for_schema(schema, schema))


def example_for_schema(node: dict[str, Any], root: dict[str, Any]) -> Any:
    """A value that satisfies ``node`` for the common JSON-schema keywords pydantic emits."""
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return example_for_schema(target, root)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        variants = [v for v in node.get(key) or [] if v.get("type") != "null"]
        if variants:
            return example_for_schema(variants[0], root)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in node:
        return {k: example_for_schema(v, root) for k, v in (node.get("properties") or {}).items()}
    if kind == "array":
        item = example_for_schema(node.get("items") or {}, root)
        return [item] * max(1, node.get("minItems", 1))
    if kind == "string":
        return "example".ljust(node.get("minLength", 0), "x")
    if kind == "integer":
        return int(node.get("minimum", 0))
    if kind == "number":
        return float(node.get("minimum", 0.0))
    if kind == "boolean":
        return False
    return None
