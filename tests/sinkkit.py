"""The one SMTP sink of the test suite: real aiosmtpd, keeping every message it accepts.

``SmtpSink`` serves on one or more ``address:port`` pairs, each an aiosmtpd ``Controller``
(a thread with an event loop) on a socket from ``tests.infra.netns.listen_tcp``, so the
test addresses of the private network namespace work, IPv6 included.  Given an
``ssl.SSLContext`` it offers STARTTLS.  Every message it accepts becomes an ``Arrival``:
where it came in, the envelope, the content as received, the MAIL parameters, and the TLS
version of the session.

What the sink refuses is chosen by the message itself: ``SINK_SENDER_REPLIES`` by the
sender's local part, ``SINK_RECIPIENT_REPLIES`` by the recipient's, and an
``X-Sink-Reply:`` header for the reply after the final dot.
"""

from __future__ import annotations

import queue
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

TIMEOUT = 20.0
"""How long ``arrival()`` and a controller's start-up may take."""


@dataclass
class Arrival:
    """One message the sink accepted: where, the envelope, the content, the TLS version."""

    exchanger: str
    """The listening address the message came in on."""
    sender: str
    recipients: list[str]
    content: bytes = field(repr=False)
    """The DATA as received (CRLF line ends, dot-stuffing undone)."""
    mail_options: list[str] = field(default_factory=list)
    """The MAIL FROM parameters (``SIZE=...``, ``BODY=8BITMIME``)."""
    tls: str | None = None
    """The TLS version of the session (``TLSv1.3``), None in clear."""


SINK_SENDER_REPLIES = {
    "refused": "553 5.7.1 sender refused",
    "deferred": "451 4.7.1 sender deferred",
}
"""Replies of ``SmtpSink`` to MAIL, by the sender's local part; anything else is 250."""

SINK_RECIPIENT_REPLIES = {
    "nobody": "550 5.1.1 no such user",
    "busy": "450 4.2.1 mailbox busy",
}
"""Replies of ``SmtpSink`` to RCPT, by the recipient's local part; anything else is 250."""

SINK_ACCEPTED = "250 2.0.0 OK queued"
SINK_REPLY_HEADER = b"X-Sink-Reply: "
"""A message with this header gets its value as the reply after the final dot."""


class Arrivals(list[Arrival]):
    """The messages a sink accepted that nobody took yet, oldest first.

    A list, which tests compare, index and clear; and a queue, which hands the oldest out
    (``get``, ``get_nowait``; ``queue.Empty`` when there is none, as ``queue.Queue``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def put(self, arrival: Arrival) -> None:
        """Add ``arrival`` (from a controller's thread)."""
        with self._changed:
            self.append(arrival)
            self._changed.notify_all()

    def get(self, timeout: float = TIMEOUT) -> Arrival:
        """Take the oldest, waiting at most ``timeout`` seconds for one."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self) > 0, timeout):
                raise queue.Empty
            return self.pop(0)

    def get_nowait(self) -> Arrival:
        """Take the oldest, if there is one."""
        return self.get(0)

    def empty(self) -> bool:
        """True when there is none to take."""
        with self._changed:
            return not self


def _tls_version(session: Any) -> str | None:
    """The TLS version of an aiosmtpd session after STARTTLS, None in clear."""
    if session.ssl is None:
        return None
    ssl_object = session.ssl.get("ssl_object")
    return ssl_object.version() if ssl_object is not None else "?"


class _SinkHandler:
    """aiosmtpd hooks for one listening address of an ``SmtpSink``."""

    def __init__(self, arrivals: Arrivals, exchanger: str) -> None:
        self.arrivals = arrivals
        self.exchanger = exchanger

    async def handle_MAIL(
        self,
        server: object,
        session: object,
        envelope: Any,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = SINK_SENDER_REPLIES.get(address.partition("@")[0])
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: object,
        session: object,
        envelope: Any,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = SINK_RECIPIENT_REPLIES.get(address.partition("@")[0])
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        header_at = content.find(b"\r\n" + SINK_REPLY_HEADER)
        if header_at >= 0:
            start = header_at + 2 + len(SINK_REPLY_HEADER)
            return content[start : content.index(b"\r\n", start)].decode()
        self.arrivals.put(
            Arrival(
                self.exchanger,
                envelope.mail_from,
                list(envelope.rcpt_tos),
                content,
                list(envelope.mail_options),
                _tls_version(session),
            )
        )
        return SINK_ACCEPTED


class SmtpSink:
    """A real aiosmtpd server on one or more ``address:port`` pairs, keeping what arrives.

    ``SmtpSink(address, port, context)`` starts serving on that pair at once (port 0: any
    free port; ``port`` then tells which); ``listen()`` adds more.  ``arrivals`` holds the
    messages accepted and not yet taken by ``arrival()``.
    """

    def __init__(
        self,
        address: str | None = None,
        port: int = 0,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.context = context
        self.arrivals = Arrivals()
        self.address = address
        self.port = port
        self._controllers: list[Any] = []
        if address is not None:
            self.port = self.listen(address, port)

    def listen(self, address: str, port: int) -> int:
        """Start serving on ``address``:``port``; the port bound."""
        from aiosmtpd.controller import Controller

        from tests.infra.netns import listen_tcp

        sock = listen_tcp(address, port)
        bound: int = sock.getsockname()[1]

        class SocketController(Controller):  # type: ignore[misc]
            def _create_server(self) -> Any:
                return self.loop.create_server(self._factory_invoker, sock=sock)

        controller = SocketController(
            _SinkHandler(self.arrivals, address),
            hostname=address,
            port=bound,
            tls_context=self.context,
            data_size_limit=64 << 20,
            ready_timeout=TIMEOUT,
        )
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self._controllers.append(controller)
        return bound

    def arrival(self, timeout: float = TIMEOUT) -> Arrival:
        """Take the oldest message not yet taken, waiting at most ``timeout`` seconds."""
        return self.arrivals.get(timeout)

    def no_arrival(self) -> bool:
        """True when no message is waiting to be taken."""
        return self.arrivals.empty()

    def close(self) -> None:
        """Stop every server."""
        for controller in self._controllers:
            controller.stop()
        self._controllers.clear()
