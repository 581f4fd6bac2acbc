"""End to end through MXPS: knot DNS -> mxf-remote -> mxf-remote-qmtpc, or SMTP as fallback.

A slice-1 MX (preference 12801) is tried with QMTP on port 209 first and, only when that
connection fails, with SMTP on port 25 of the same host (MXPS; spec §4).  Here a QMTP
sink (``clientkit.qmtp_sink``) and aiosmtpd (``sinkkit.SmtpSink``) listen on 127.0.5.1x
and fd6d:7866::51x; the clients are named by bare name in ``control/protocols`` and are
not on PATH.  Each test asserts the report bytes, qmail-rspawn's fold of them, and what
arrived where, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clientkit import (
    QMTP_SINK_ACCEPTED,
    QmtpArrival,
    ScriptedServer,
    fold,
    qmtp_sink,
)
from tests.deliverykit import (
    MESSAGE,
    SENDER,
    attempts,
    clear_text_home,
    deliver,
)
from tests.infra.knot import KnotServer
from tests.infra.netns import silence
from tests.remotekit import Delivery, QmailHome
from tests.sinkkit import SmtpSink

pytestmark = [pytest.mark.knot]

QMTP = "127.0.5.11"
REFUSING = "127.0.5.12"
SILENT = "127.0.5.13"
QMTP6 = "fd6d:7866::511"

ZONE = f"""
q                MX    12801 mx.q
mx.q             A     {QMTP}
q6               MX    12801 mx.q6
mx.q6            AAAA  {QMTP6}
refusing         MX    12801 mx.refusing
mx.refusing      A     {REFUSING}
silent           MX    12801 mx.silent
mx.silent        A     {SILENT}
"""
ZONES = {"qdlv.test": ZONE}

TRICKY = (
    b"Subject: caf\xc3\xa9 \xff\n\n.\n..\n.leading dot\r\nCRLF and bare\rCR\n\x80\x81 8-bit\nlast\n"
)
SMTP_ACCEPTED = b"Remote host said: 250 2.0.0 OK queued\n"
QMTP_TEXT = b"Remote host said: " + QMTP_SINK_ACCEPTED[1:] + b"\n"


@pytest.fixture(scope="module")
def qmtp_packages() -> list[QmtpArrival]:
    """Every package the QMTP sink read (shared by the module's sink)."""
    return []


@pytest.fixture(scope="module")
def qmtp_server(qmtp_packages: list[QmtpArrival]) -> Iterator[ScriptedServer]:
    """The QMTP sink on port 209 of the QMTP exchangers."""
    from tests.conftest import NETNS_PROBLEM

    if NETNS_PROBLEM is not None:
        pytest.skip(f"no private network namespace: {NETNS_PROBLEM}")
    server = ScriptedServer(qmtp_sink(qmtp_packages))
    try:
        for address in (QMTP, QMTP6):
            server.listen(address, 209)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpSink]:
    """aiosmtpd on port 25 of every exchanger (the MXPS fallback, or the unused spare)."""
    from tests.conftest import NETNS_PROBLEM

    if NETNS_PROBLEM is not None:
        pytest.skip(f"no private network namespace: {NETNS_PROBLEM}")
    server = SmtpSink()
    try:
        for address in (QMTP, REFUSING, SILENT, QMTP6):
            server.listen(address, 25)
        yield server
    finally:
        server.close()


@pytest.fixture
def sinks(
    qmtp_server: ScriptedServer, qmtp_packages: list[QmtpArrival], smtp_server: SmtpSink
) -> Iterator[tuple[list[QmtpArrival], SmtpSink]]:
    """Both sinks, emptied for this test; the QMTP sink's script must not have failed."""
    qmtp_packages.clear()
    qmtp_server.accepted.clear()
    smtp_server.arrivals.clear()
    yield qmtp_packages, smtp_server
    qmtp_server.check()


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """A qmail home: clear-text QMTP (slice 1) and SMTP by bare program name."""
    return clear_text_home(tmp_path)


def program(delivery: Delivery) -> str:
    """The program mxf-remote exec'd, from the trace."""
    (handoff,) = [e for e in delivery.trace if e["event"] == "handoff"]
    name: str = handoff["program"]
    return name


def smtp_lines(message: bytes) -> bytes:
    """What an SMTP server stores: every LF, CRLF or bare CR a CRLF (qmail-remote's rule)."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", message)


def packages(arrived: list[QmtpArrival]) -> list[tuple[str, bytes, bytes, list[bytes]]]:
    """The packages as plain tuples, for comparison."""
    return [(a.exchanger, a.message, a.sender, a.recipients) for a in arrived]


@pytest.mark.usefixtures("netns")
class TestSliceOne:
    """A slice-1 exchanger that speaks QMTP gets the message over QMTP, as it is."""

    def test_message_arrives_as_is_over_qmtp(
        self, home: QmailHome, knot: KnotServer, sinks: tuple[list[QmtpArrival], SmtpSink]
    ) -> None:
        """QMTP on 209, not SMTP: the package carries LF + the file unchanged; K."""
        arrived, smtp = sinks
        delivery = deliver(
            home, "q.qdlv.test", knot, recipients=("bob@q.qdlv.test",), message=TRICKY
        )
        assert delivery.stdout == b"r\0K127.0.5.11 accepted message.\n" + QMTP_TEXT + b"\0"
        assert fold(delivery.stdout) == b"K127.0.5.11 accepted message.\n" + QMTP_TEXT
        assert attempts(delivery) == [("qmtp", QMTP, 209)]
        assert program(delivery) == "mxf-remote-qmtpc"
        assert packages(arrived) == [(QMTP, b"\n" + TRICKY, SENDER.encode(), [b"bob@q.qdlv.test"])]
        assert smtp.arrivals == []

    def test_no_final_newline_goes_over_qmtp(
        self, home: QmailHome, knot: KnotServer, sinks: tuple[list[QmtpArrival], SmtpSink]
    ) -> None:
        """QMTP carries a message without its final LF (SMTP would bounce it): K."""
        arrived, _ = sinks
        message = b"Subject: x\n\nno final newline"
        delivery = deliver(home, "q.qdlv.test", knot, recipients=("bob@x.test",), message=message)
        assert delivery.stdout == b"r\0K127.0.5.11 accepted message.\n" + QMTP_TEXT + b"\0"
        assert [a.message for a in arrived] == [b"\n" + message]

    def test_ten_megabytes(
        self, home: QmailHome, knot: KnotServer, sinks: tuple[list[QmtpArrival], SmtpSink]
    ) -> None:
        """A 10 MB message arrives byte for byte in one netstring."""
        arrived, _ = sinks
        message = b"".join(b".line %07d \xe9 %s\n" % (i, b"q" * 60) for i in range(150_000))
        assert len(message) > 10_000_000
        delivery = deliver(home, "q.qdlv.test", knot, recipients=("bob@x.test",), message=message)
        assert delivery.stdout == b"r\0K127.0.5.11 accepted message.\n" + QMTP_TEXT + b"\0"
        assert len(arrived) == 1
        assert arrived[0].message == b"\n" + message

    def test_an_ipv6_slice_one_exchanger(
        self, home: QmailHome, knot: KnotServer, sinks: tuple[list[QmtpArrival], SmtpSink]
    ) -> None:
        """AAAA only: QMTP to [fd6d:7866::511]:209, the report names the IPv6 address."""
        arrived, _ = sinks
        delivery = deliver(home, "q6.qdlv.test", knot, recipients=("bob@x.test",))
        assert delivery.stdout == b"r\0Kfd6d:7866::511 accepted message.\n" + QMTP_TEXT + b"\0"
        assert packages(arrived) == [(QMTP6, b"\n" + MESSAGE, SENDER.encode(), [b"bob@x.test"])]


@pytest.mark.usefixtures("netns")
class TestQmtpOutcomes:
    """Every QMTP answer, folded as qmail-rspawn folds it; no SMTP after a QMTP connect."""

    @pytest.mark.parametrize(
        ("recipient", "output", "folded"),
        [
            pytest.param(
                "bob",
                b"r\0K127.0.5.11 accepted message.\n" + QMTP_TEXT + b"\0",
                b"K127.0.5.11 accepted message.\n" + QMTP_TEXT,
                id="K",
            ),
            pytest.param(
                "busy",
                b"s127.0.5.11 does not like recipient.\n"
                b"Remote host said: mailbox busy, try later\n\0DGiving up on 127.0.5.11.\n\0",
                b"Z127.0.5.11 does not like recipient.\n"
                b"Remote host said: mailbox busy, try later\nGiving up on 127.0.5.11.\n",
                id="Z-is-a-deferral",
            ),
            pytest.param(
                "nobody",
                b"h127.0.5.11 does not like recipient.\n"
                b"Remote host said: no such user\n\0DGiving up on 127.0.5.11.\n\0",
                b"D127.0.5.11 does not like recipient.\n"
                b"Remote host said: no such user\nGiving up on 127.0.5.11.\n",
                id="D-is-a-bounce",
            ),
            pytest.param(
                "garbage",
                b"ZRecipient did not talk proper QMTP. Possible duplicate! (#4.3.0)\n\0",
                b"ZRecipient did not talk proper QMTP. Possible duplicate! (#4.3.0)\n",
                id="not-QMTP-is-a-deferral",
            ),
        ],
    )
    def test_report_and_fold(
        self,
        *,
        home: QmailHome,
        knot: KnotServer,
        sinks: tuple[list[QmtpArrival], SmtpSink],
        recipient: str,
        output: bytes,
        folded: bytes,
    ) -> None:
        """Exact reports and K/Z/D for qmail-send; the SMTP port of the host is never used."""
        arrived, smtp = sinks
        delivery = deliver(home, "q.qdlv.test", knot, recipients=(f"{recipient}@x.test",))
        assert delivery.stdout == output
        assert fold(delivery.stdout) == folded
        assert attempts(delivery) == [("qmtp", QMTP, 209)]
        assert [a.recipients for a in arrived] == [[f"{recipient}@x.test".encode()]]
        assert smtp.arrivals == []

    def test_mixed_recipients_in_one_package(
        self, home: QmailHome, knot: KnotServer, sinks: tuple[list[QmtpArrival], SmtpSink]
    ) -> None:
        """D, Z and K recipients of one package: h, s, r in order, then K; one package."""
        arrived, _ = sinks
        delivery = deliver(
            home, "q.qdlv.test", knot, recipients=("nobody@x.test", "busy@x.test", "bob@x.test")
        )
        assert delivery.stdout == (
            b"h127.0.5.11 does not like recipient.\nRemote host said: no such user\n\0"
            b"s127.0.5.11 does not like recipient.\nRemote host said: mailbox busy, try later\n\0"
            b"r\0K127.0.5.11 accepted message.\n" + QMTP_TEXT + b"\0"
        )
        assert [a.recipients for a in arrived] == [
            [b"nobody@x.test", b"busy@x.test", b"bob@x.test"]
        ]


@pytest.mark.usefixtures("netns")
class TestFallbackToSmtp:
    """Port 209 does not connect: SMTP on port 25 of the same host, as MXPS says."""

    def test_refused_209_falls_back_at_once(
        self, home: QmailHome, knot: KnotServer, sinks: tuple[list[QmtpArrival], SmtpSink]
    ) -> None:
        """209 refuses: SMTP to the same address right after, K, the message byte for byte."""
        arrived, smtp = sinks
        delivery = deliver(
            home, "refusing.qdlv.test", knot, recipients=("bob@x.test",), message=TRICKY
        )
        assert delivery.stdout == (b"r\0K127.0.5.12 accepted message.\n" + SMTP_ACCEPTED + b"\0")
        assert fold(delivery.stdout) == b"K127.0.5.12 accepted message.\n" + SMTP_ACCEPTED
        assert attempts(delivery) == [("qmtp", REFUSING, 209), ("smtp", REFUSING, 25)]
        assert program(delivery) == "mxf-remote-smtpc"
        starts = [e["t"] for e in delivery.trace if e["event"] == "attempt"]
        assert starts[1] - starts[0] < 100, "the SMTP attempt waited for nothing"
        assert [(a.exchanger, a.sender, a.recipients, a.content) for a in smtp.arrivals] == [
            (REFUSING, SENDER, ["bob@x.test"], smtp_lines(TRICKY)),
        ]
        assert arrived == []

    def test_silent_209_falls_back_after_one_connect_delay(
        self,
        home: QmailHome,
        knot: KnotServer,
        sinks: tuple[list[QmtpArrival], SmtpSink],
        silent_hosts: None,
    ) -> None:
        """209 drops SYNs: SMTP starts one connectdelay (250 ms) later and delivers, K."""
        _, smtp = sinks
        silence(SILENT, 209)
        delivery = deliver(home, "silent.qdlv.test", knot, recipients=("bob@x.test",))
        assert delivery.stdout == (b"r\0K127.0.5.13 accepted message.\n" + SMTP_ACCEPTED + b"\0")
        assert attempts(delivery) == [("qmtp", SILENT, 209), ("smtp", SILENT, 25)]
        starts = [e["t"] for e in delivery.trace if e["event"] == "attempt"]
        assert 240 <= starts[1] - starts[0] <= 400, f"SMTP {starts[1] - starts[0]} ms later"
        assert delivery.seconds < 3.0
        assert [(a.exchanger, a.content) for a in smtp.arrivals] == [
            (SILENT, smtp_lines(MESSAGE)),
        ]

    def test_silent_209_with_a_shorter_connect_delay(
        self,
        home: QmailHome,
        knot: KnotServer,
        sinks: tuple[list[QmtpArrival], SmtpSink],
        silent_hosts: None,
    ) -> None:
        """control/connectdelay 100: the fallback costs 100 ms, not the 250 ms default."""
        silence(SILENT, 209)
        home.control("connectdelay", "100\n")
        delivery = deliver(home, "silent.qdlv.test", knot, recipients=("bob@x.test",))
        assert delivery.stdout.endswith(b"K127.0.5.13 accepted message.\n" + SMTP_ACCEPTED + b"\0")
        starts = [e["t"] for e in delivery.trace if e["event"] == "attempt"]
        assert 90 <= starts[1] - starts[0] <= 250, f"SMTP {starts[1] - starts[0]} ms later"
