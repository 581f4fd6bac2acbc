"""An MTA-STS policy host for the tests and the benchmark: real HTTPS on a loopback address.

``PolicyHost`` serves ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` from one thread:
for each request it asks ``answer(domain)`` (the ``Host`` header without ``mta-sts.``) for
``(status, body)``, or None to stall -- hold the connection unanswered for
``stall_seconds``, as a policy host that accepts and never answers.  It counts requests per
domain (``hits``) and its own CPU (``cpu``: ``time.thread_time()`` from each accepted
connection to its close, the handshake included, the idle polling left out).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable

Answer = Callable[[str], "tuple[int, bytes] | None"]


class PolicyHost:
    """HTTPS on ``address``:443, answering by ``Host``."""

    def __init__(
        self,
        address: str,
        context: ssl.SSLContext,
        answer: Answer,
        *,
        stall_seconds: float = 3.0,
    ) -> None:
        from tests.infra.netns import listen_tcp

        self.sock = listen_tcp(address, 443)
        self.context = context
        self.answer = answer
        self.stall_seconds = stall_seconds
        self.hits: dict[str, int] = {}
        self.accepted = 0
        self.served = 0
        self.cpu = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="policyhost", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            began = time.thread_time()
            with self._lock:
                self.accepted += 1
            with contextlib.suppress(OSError):
                self._answer(raw)
            raw.close()
            with self._lock:
                self.cpu += time.thread_time() - began
                self.served += 1

    def _answer(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        with self.context.wrap_socket(raw, server_side=True) as conn:
            request = conn.recv(65536).decode("latin-1")
            host = next(
                (line.split(":", 1)[1].strip() for line in request.split("\r\n")
                 if line.lower().startswith("host:")),
                "",
            )  # fmt: skip
            domain = host.lower().removeprefix("mta-sts.")
            with self._lock:
                self.hits[domain] = self.hits.get(domain, 0) + 1
            answer = self.answer(domain)
            if answer is None:  # stall: read until the client gives up, or the time is over
                conn.settimeout(self.stall_seconds)
                while conn.recv(4096):
                    pass
                return
            status, body = answer
            head = f"HTTP/1.0 {status} X\r\nContent-Type: text/plain\r\n"
            if 300 <= status < 400:
                head += "Location: https://elsewhere.example/\r\n"
            head += f"Content-Length: {len(body)}\r\n\r\n"
            conn.sendall(head.encode() + body)

    def reading(self, deadline: float) -> tuple[float, int]:
        """(CPU seconds, requests) so far, once every accepted request is answered."""
        while True:
            with self._lock:
                if self.served == self.accepted:
                    return self.cpu, self.served
            if time.monotonic() > deadline:
                raise RuntimeError("the policy host is still answering a request")
            time.sleep(0.001)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
