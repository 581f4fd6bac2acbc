"""What the end-to-end delivery tests share: a clear-text qmail home and one delivery.

The protocols name the clients by bare name, and deliveries run with a PATH that does
not contain them: every delivery that succeeds shows mxf-remote found its clients beside
itself, as an installed package must.
"""

from __future__ import annotations

from pathlib import Path

from tests.infra.knot import KnotServer
from tests.remotekit import Delivery, QmailHome, run_remote

PROTOCOLS = "qmtp:209:1:N:N:mxf-remote-qmtpc\nsmtp:25:0:N:N:mxf-remote-smtpc\n"
PATH_WITHOUT_CLIENTS = "/usr/bin:/bin"
SENDER = "alice@example.org"
MESSAGE = b"Subject: hello\n\nbody\n"


def clear_text_home(tmp_path: Path) -> QmailHome:
    """A qmail home: clear-text QMTP (slice 1) and SMTP by bare program name."""
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control("protocols", PROTOCOLS)
    qmail.control("me", "me.example\n")
    qmail.control("timeoutconnect", "10\n")
    qmail.control("timeoutremote", "30\n")
    return qmail


def deliver(
    home: QmailHome,
    host: str,
    knot: KnotServer,
    *,
    recipients: tuple[str, ...],
    message: bytes = MESSAGE,
    sender: str = SENDER,
) -> Delivery:
    """One delivery through the installed mxf-remote, with the clients off PATH."""
    delivery = run_remote(
        home,
        host,
        env={**knot.env, "PATH": PATH_WITHOUT_CLIENTS},
        recipients=recipients,
        sender=sender,
        message=message,
        timeout=60,
    )
    assert delivery.stderr == b""
    assert delivery.returncode == 0
    return delivery


def attempts(delivery: Delivery) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of every connection attempt, in order."""
    return [
        (e["protocol"], e["address"], e["port"]) for e in delivery.trace if e["event"] == "attempt"
    ]
