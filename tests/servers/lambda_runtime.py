"""A stand-in of the AWS Lambda Runtime API on loopback, for running function images the
way Lambda runs them: NOT AWS Lambda. It is a real HTTP server in a thread of the test
process that follows the documented Runtime API (version 2018-06-01) a runtime interface
client such as `awslambdaric` talks to through `AWS_LAMBDA_RUNTIME_API=HOST:PORT`:

- `GET /2018-06-01/runtime/invocation/next` waits for the next event and returns it
  (200, the event as the body) with the headers `Lambda-Runtime-Aws-Request-Id`,
  `Lambda-Runtime-Deadline-Ms`, `Lambda-Runtime-Invoked-Function-Arn` and
  `Lambda-Runtime-Trace-Id`;
- `POST /2018-06-01/runtime/invocation/{request id}/response` and `.../error` take the
  function's result or error for that request (202; 400 for an unknown request id);
- `POST /2018-06-01/runtime/init/error` takes an initialization error (202).

`LambdaRuntimeApi.invoke(event)` hands one event to the function and waits for what the
function posts back for it. There is no billing, sandbox, concurrency or timeout
enforcement: only the protocol.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
RESULT = re.compile(rf"^{PREFIX}/invocation/([^/]+)/(response|error)$")
ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:mpfn-test-function"


class LambdaRuntimeError(RuntimeError):
    """The function failed to initialize, stopped, or did not answer in time."""


@dataclass(frozen=True)
class Outcome:
    """What the function posted for one invocation."""

    request_id: str
    kind: str  # "response" or "error"
    body: bytes
    error_type: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Invocation:
    request_id: str
    event: bytes
    deadline_ms: int
    trace_id: str
    answered: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None


class LambdaRuntimeApi:
    """The Runtime API of one function instance (see the module docstring)."""

    def __init__(self, function_arn: str = FUNCTION_ARN) -> None:
        self.function_arn = function_arn
        self.init_errors: list[tuple[str, bytes]] = []  # (error type, body)
        self._pending: queue.Queue[_Invocation] = queue.Queue()
        self._handed_out: dict[str, _Invocation] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())  # bound: no race

    @property
    def address(self) -> str:
        """The `AWS_LAMBDA_RUNTIME_API` value: HOST:PORT."""
        return f"127.0.0.1:{self.server.server_address[1]}"

    def invoke(
        self,
        event: object,
        *,
        timeout_s: float = 300.0,
        alive: Callable[[], bool] | None = None,
    ) -> Outcome:
        """Hand `event` to the function and wait for its response or error. Raises
        `LambdaRuntimeError` on an init error, when `alive()` turns false, or after
        `timeout_s` (which is also the deadline the function is told)."""
        started = time.monotonic()
        invocation = _Invocation(
            request_id=str(uuid.uuid4()),
            event=json.dumps(event).encode(),
            deadline_ms=int((time.time() + timeout_s) * 1000),
            trace_id=f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
        )
        self._pending.put(invocation)
        while not invocation.answered.wait(0.2):
            if self.init_errors:
                kind, body = self.init_errors[0]
                raise LambdaRuntimeError(f"init error {kind}: {body.decode(errors='replace')}")
            if alive is not None and not alive():
                raise LambdaRuntimeError("the function stopped before it answered")
            if time.monotonic() - started > timeout_s:
                raise LambdaRuntimeError(f"no answer within {timeout_s}s")
        assert invocation.outcome is not None
        return invocation.outcome

    def close(self) -> None:
        self._closed.set()
        self.server.shutdown()
        self.server.server_close()

    # -- the HTTP side ------------------------------------------------------------------

    def _next(self) -> _Invocation | None:
        """The next event, waiting for one (None once closed)."""
        while not self._closed.is_set():
            with contextlib.suppress(queue.Empty):
                invocation = self._pending.get(timeout=0.2)
                with self._lock:
                    self._handed_out[invocation.request_id] = invocation
                return invocation
        return None

    def _answer(self, request_id: str, kind: str, body: bytes, error_type: str | None) -> bool:
        with self._lock:
            invocation = self._handed_out.pop(request_id, None)
        if invocation is None:
            return False
        invocation.outcome = Outcome(request_id, kind, body, error_type)
        invocation.answered.set()
        return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers `Expect: 100-continue` at once
            timeout = 30

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def _status(self, status: int, error_type: str = "", message: str = "") -> None:
                doc = {"errorType": error_type, "errorMessage": message} if error_type else {}
                body = json.dumps(doc or {"status": "OK"}).encode()
                self._reply(status, body, {"Content-Type": "application/json"})

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._status(404, "NotFound", self.path)
                    return
                invocation = api._next()
                if invocation is None:
                    self.close_connection = True
                    return
                headers = {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                    "Lambda-Runtime-Trace-Id": invocation.trace_id,
                }
                with contextlib.suppress(OSError):
                    self._reply(200, invocation.event, headers)

            def do_POST(self) -> None:
                body = self._body()
                error_type = self.headers.get(ERROR_TYPE)
                if self.path == f"{PREFIX}/init/error":
                    api.init_errors.append((error_type or "Unknown", body))
                    self._status(202)
                    return
                match = RESULT.match(self.path)
                if match is None:
                    self._status(404, "NotFound", self.path)
                elif api._answer(match[1], match[2], body, error_type):
                    self._status(202)
                else:
                    self._status(400, "InvalidRequestID", f"unknown request id {match[1]}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@contextlib.contextmanager
def lambda_runtime_api(function_arn: str = FUNCTION_ARN) -> Iterator[LambdaRuntimeApi]:
    """The Runtime API stand-in, serving in a thread until the block ends."""
    api = LambdaRuntimeApi(function_arn)
    thread = threading.Thread(target=api.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.close()
