"""What the hostile suites (tests/test_hostile_*.py, tests/test_load.py) share.

Every hostile case runs the real installed ``mxf-remote`` (``remotekit.run_remote``) and
judges it by what qmail-rspawn would see: the bytes on fd 1, nothing on fd 2, exit 0.
Listeners live on 127.0.6.x and fd6d:7866::6xx, which no other test module uses.
"""

from __future__ import annotations

from pathlib import Path

from mxf_remote import report
from tests.remotekit import Delivery, QmailHome, write_recorder

SMTP_PORT = 2525
HANDED_OFF = b"Krecorder got it\n\0"


def recorder_home(tmp_path: Path, *, timeoutconnect: int = 5, timeoutdns: int = 5) -> QmailHome:
    """A qmail home whose only protocol, SMTP on ``SMTP_PORT``, runs the recorder."""
    recorder = write_recorder(tmp_path)
    home = QmailHome(tmp_path / "qmail")
    home.control("protocols", f"smtp:{SMTP_PORT}:0:N:N:{recorder}\n")
    home.control("timeoutconnect", f"{timeoutconnect}\n")
    home.control("timeoutdns", f"{timeoutdns}\n")
    return home


def assert_report(delivery: Delivery, expected: report.Report | bytes) -> None:
    """Exactly this one report on fd 1, nothing on fd 2, exit 0, no handoff."""
    wanted = expected if isinstance(expected, bytes) else expected.encode()
    assert delivery.stdout == wanted, (delivery.stdout, wanted)
    assert delivery.stderr == b"", delivery.stderr
    assert delivery.returncode == 0
    assert not delivery.handed_off


def assert_handed_to(delivery: Delivery, address: str) -> dict[str, object]:
    """The recorder ran, connected to ``address``; its record."""
    assert delivery.stderr == b"", delivery.stderr
    assert delivery.returncode == 0
    assert delivery.stdout == HANDED_OFF, delivery.stdout
    assert delivery.record is not None
    assert delivery.record["env"]["TCPREMOTEIP"] == address
    record: dict[str, object] = delivery.record
    return record


def control_report(detail: str) -> bytes:
    """The exact bytes of a control-file deferral naming ``detail``."""
    return b"ZUnable to read control files. (#4.3.0)\n" + detail.encode() + b"\n\0"
