"""End to end into real SMTP servers: knot DNS -> mxf-remote -> exec -> mxf-remote-smtpc.

The installed ``mxf-remote`` runs as qmail-rspawn would run it, in the session's private
network namespace, with ``control/protocols`` naming the clients by bare name and a PATH
that does not contain them: mxf-remote must find them beside itself.  Exchangers listen
on port 25 of 127.0.5.x and fd6d:7866::5xx: aiosmtpd (``sinkkit.SmtpSink``), Debian's
Postfix in the foreground, and a scripted server that refuses at the greeting.  Each test
asserts the report bytes, what qmail-rspawn folds them into (the K/Z/D qmail-send sees),
and what arrived, byte for byte.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clientkit import (
    Peer,
    PostfixServer,
    ScriptedServer,
    converse_records,
    fold,
    make_home,
    postfix_binaries,
)
from tests.deliverykit import (
    MESSAGE,
    PATH_WITHOUT_CLIENTS,
    SENDER,
    attempts,
    clear_text_home,
    deliver,
)
from tests.infra.knot import KnotServer
from tests.remotekit import MXF_REMOTE, Delivery, QmailHome
from tests.sinkkit import SINK_ACCEPTED, SmtpSink

pytestmark = [pytest.mark.knot]

AIOSMTPD = "127.0.5.1"
AIOSMTPD6 = "fd6d:7866::501"
POSTFIX = "127.0.5.2"
BUSY = "127.0.5.3"
SECOND = "127.0.5.4"
CLOSED = "127.0.5.5"

ZONE = f"""
aio              MX    10 mx.aio
mx.aio           A     {AIOSMTPD}
aio6             MX    10 mx.aio6
mx.aio6          AAAA  {AIOSMTPD6}
pf               MX    10 mx.pf
mx.pf            A     {POSTFIX}
busy             MX    10 mx1.busy
busy             MX    20 mx2.busy
mx1.busy         A     {BUSY}
mx2.busy         A     {SECOND}
refused          MX    10 mx1.refused
refused          MX    20 mx2.refused
mx1.refused      A     {CLOSED}
mx2.refused      A     {SECOND}
"""
ZONES = {"dlv.test": ZONE}

BUSY_GREETING = "421 4.3.2 mx1.busy is too busy, come back later"

TRICKY = (
    b"From: alice@example.org\nTo: bob@example.org\nDate: Wed, 25 Nov 2026 12:00:00 +0000\n"
    b"Message-ID: <e2e@example.org>\nSubject: caf\xc3\xa9 \xff\xfe\n\n"
    b".\n..\n...three\n.leading dot\nmiddle . dot\n. \n\xe9t\xe9 8-bit \x80\x81\nlast\n"
)


SINK_ADDRESSES = (AIOSMTPD, AIOSMTPD6, SECOND)
"""Where the module's sink (conftest.py) listens, on port 25."""


@pytest.fixture(scope="module")
def busy_server() -> Iterator[ScriptedServer]:
    """An SMTP server on the best ``busy`` MX that answers 421 at the greeting."""
    from tests.conftest import NETNS_PROBLEM

    if NETNS_PROBLEM is not None:
        pytest.skip(f"no private network namespace: {NETNS_PROBLEM}")

    def script(peer: Peer, where: tuple[str, int]) -> None:
        peer.reply(BUSY_GREETING)
        peer.expect(b"QUIT")
        assert peer.read_to_eof(30) == b""

    server = ScriptedServer(script)
    try:
        server.listen(BUSY, 25)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixServer]:
    """Debian's postfix in the foreground on 127.0.5.2:25 (skipped when absent)."""
    from tests.conftest import NETNS_PROBLEM

    if NETNS_PROBLEM is not None:
        pytest.skip(f"no private network namespace: {NETNS_PROBLEM}")
    binaries = postfix_binaries()
    if binaries is None:
        pytest.skip("postfix is not installed (Debian package: postfix)")
    if os.geteuid() != 0:
        pytest.skip("postfix's master must start as root")
    server = PostfixServer(*binaries, 25, address=POSTFIX)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """A qmail home: clear-text QMTP (slice 1) and SMTP by bare program name."""
    return clear_text_home(tmp_path)


def handed_to(delivery: Delivery) -> list[tuple[str, str, int]]:
    """(program, address, port) of the handoff, from the trace; [] when there was none."""
    won = [(e["address"], e["port"]) for e in delivery.trace if e["event"] == "attempt_won"]
    programs = [e["program"] for e in delivery.trace if e["event"] == "handoff"]
    return [(program, *where) for program, where in zip(programs, won, strict=True)]


def crlf(message: bytes) -> bytes:
    """The message as SMTP carries it (and aiosmtpd keeps it): CRLF line ends."""
    return message.replace(b"\n", b"\r\n")


@pytest.mark.usefixtures("netns")
class TestAiosmtpd:
    """Delivery through mxf-remote into aiosmtpd: envelope and body byte for byte."""

    def test_dots_and_8bit_arrive_exactly(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """Dot lines, leading dots and 8-bit bytes arrive as written; BODY=8BITMIME, SIZE."""
        delivery = deliver(
            home, "aio.dlv.test", knot, recipients=("bob@aio.dlv.test",), message=TRICKY
        )
        assert delivery.stdout == (
            b"r\0K127.0.5.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )
        assert fold(delivery.stdout) == (
            b"K127.0.5.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n"
        )
        size = len(TRICKY) + TRICKY.count(b"\n")
        assert [
            (a.exchanger, a.sender, a.recipients, a.content, a.mail_options)
            for a in arrivals.arrivals
        ] == [
            (
                AIOSMTPD,
                SENDER,
                ["bob@aio.dlv.test"],
                crlf(TRICKY),
                [f"SIZE={size}", "BODY=8BITMIME"],
            ),
        ]

    def test_the_clients_are_found_beside_mxf_remote(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """``mxf-remote-smtpc`` by bare name, not on PATH: the one beside mxf-remote runs."""
        assert not any(
            os.path.exists(os.path.join(d, "mxf-remote-smtpc"))
            for d in PATH_WITHOUT_CLIENTS.split(":")
        )
        delivery = deliver(home, "aio.dlv.test", knot, recipients=("bob@aio.dlv.test",))
        assert handed_to(delivery) == [("mxf-remote-smtpc", AIOSMTPD, 25)]
        assert delivery.stdout.endswith(
            b"K127.0.5.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )
        assert len(arrivals.arrivals) == 1

    def test_without_the_clients_beside_it_nothing_is_usable(
        self, home: QmailHome, knot: KnotServer, tmp_path: Path
    ) -> None:
        """A copy of mxf-remote in a directory without the clients: #4.3.0.

        (Through a symbolic link the clients are found beside the real program:
        test_install.py.)
        """
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        shutil.copy2(MXF_REMOTE, elsewhere / "mxf-remote")
        message = home.root / "message"
        message.write_bytes(MESSAGE)
        with message.open("rb") as stdin:
            done = subprocess.run(
                [str(elsewhere / "mxf-remote"), "aio.dlv.test", SENDER, "bob@x.test"],
                stdin=stdin,
                capture_output=True,
                timeout=60,
                check=False,
                env={**knot.env, "PATH": PATH_WITHOUT_CLIENTS, "MXF_QMAIL": str(home.root)},
            )
        assert (done.stdout, done.stderr, done.returncode) == (
            b"ZNo usable mail protocol is installed (control/protocols). (#4.3.0)\n\0",
            b"",
            0,
        )

    def test_several_recipients_in_one_run(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """Two recipients (the form qmail-rspawn never uses): r, r, then one K; one copy."""
        delivery = deliver(
            home, "aio.dlv.test", knot, recipients=("bob@aio.dlv.test", "carol@aio.dlv.test")
        )
        assert delivery.stdout == (
            b"r\0r\0K127.0.5.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )
        assert [(a.recipients, a.content) for a in arrivals.arrivals] == [
            (["bob@aio.dlv.test", "carol@aio.dlv.test"], crlf(MESSAGE)),
        ]

    def test_ten_megabytes(self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink) -> None:
        """A 10 MB message with dot lines and 8-bit bytes arrives byte for byte."""
        message = b"".join(
            b".dot %07d\n" % i if i % 7 == 0 else b"line %07d \xe9 %s\n" % (i, b"z" * 60)
            for i in range(150_000)
        )
        assert len(message) > 10_000_000
        delivery = deliver(
            home, "aio.dlv.test", knot, recipients=("bob@aio.dlv.test",), message=message
        )
        assert delivery.stdout == (
            b"r\0K127.0.5.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )
        assert len(arrivals.arrivals) == 1
        assert arrivals.arrivals[0].content == crlf(message)

    def test_no_final_newline_is_bounced_and_nothing_arrives(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """A message without its final LF: D (#5.6.2), qmail-send bounces, nothing sent."""
        delivery = deliver(
            home,
            "aio.dlv.test",
            knot,
            recipients=("bob@aio.dlv.test",),
            message=b"Subject: x\n\nno final newline",
        )
        assert delivery.stdout == (
            b"DSMTP cannot transfer messages with partial final lines. (#5.6.2)\n\0"
        )
        assert fold(delivery.stdout) == (
            b"DSMTP cannot transfer messages with partial final lines. (#5.6.2)\n"
        )
        assert arrivals.arrivals == []

    def test_an_ipv6_exchanger(self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink) -> None:
        """An AAAA-only exchanger: the report names its IPv6 address, the mail arrives."""
        delivery = deliver(
            home, "aio6.dlv.test", knot, recipients=("bob@aio6.dlv.test",), message=TRICKY
        )
        assert delivery.stdout == (
            b"r\0Kfd6d:7866::501 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )
        assert [(a.exchanger, a.content) for a in arrivals.arrivals] == [
            (AIOSMTPD6, crlf(TRICKY)),
        ]


REFUSED_RCPT = b"h127.0.5.1 does not like recipient.\nRemote host said: 550 5.1.1 no such user\n"
BUSY_RCPT = b"s127.0.5.1 does not like recipient.\nRemote host said: 450 4.2.1 mailbox busy\n"
GIVING_UP = b"DGiving up on 127.0.5.1.\n"
ACCEPTED = b"K127.0.5.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n"


@pytest.mark.usefixtures("netns")
class TestOutcomes:
    """Every SMTP outcome of a real server, folded as qmail-rspawn folds it."""

    @pytest.mark.parametrize(
        ("sender", "recipient", "extra_header", "output", "folded"),
        [
            pytest.param(
                SENDER,
                "bob",
                b"",
                b"r\0" + ACCEPTED + b"\0",
                ACCEPTED,
                id="accepted-K",
            ),
            pytest.param(
                SENDER,
                "nobody",
                b"",
                REFUSED_RCPT + b"\0" + GIVING_UP + b"\0",
                b"D127.0.5.1 does not like recipient.\n"
                b"Remote host said: 550 5.1.1 no such user\nGiving up on 127.0.5.1.\n",
                id="recipient-550-D",
            ),
            pytest.param(
                SENDER,
                "busy",
                b"",
                BUSY_RCPT + b"\0" + GIVING_UP + b"\0",
                b"Z127.0.5.1 does not like recipient.\n"
                b"Remote host said: 450 4.2.1 mailbox busy\nGiving up on 127.0.5.1.\n",
                id="recipient-450-Z",
            ),
            pytest.param(
                "refused@example.org",
                "bob",
                b"",
                b"DConnected to 127.0.5.1 but sender was rejected.\n"
                b"Remote host said: 553 5.7.1 sender refused\n\0",
                b"DConnected to 127.0.5.1 but sender was rejected.\n"
                b"Remote host said: 553 5.7.1 sender refused\n",
                id="sender-553-D",
            ),
            pytest.param(
                "deferred@example.org",
                "bob",
                b"",
                b"ZConnected to 127.0.5.1 but sender was rejected.\n"
                b"Remote host said: 451 4.7.1 sender deferred\n\0",
                b"ZConnected to 127.0.5.1 but sender was rejected.\n"
                b"Remote host said: 451 4.7.1 sender deferred\n",
                id="sender-451-Z",
            ),
            pytest.param(
                SENDER,
                "bob",
                b"X-Sink-Reply: 554 5.6.0 content refused\n",
                b"r\0D127.0.5.1 failed after I sent the message.\n"
                b"Remote host said: 554 5.6.0 content refused\n\0",
                b"D127.0.5.1 failed after I sent the message.\n"
                b"Remote host said: 554 5.6.0 content refused\n",
                id="after-dot-554-D",
            ),
            pytest.param(
                SENDER,
                "bob",
                b"X-Sink-Reply: 452 4.3.1 queue full\n",
                b"r\0Z127.0.5.1 failed after I sent the message.\n"
                b"Remote host said: 452 4.3.1 queue full\n\0",
                b"Z127.0.5.1 failed after I sent the message.\n"
                b"Remote host said: 452 4.3.1 queue full\n",
                id="after-dot-452-Z",
            ),
        ],
    )
    def test_report_and_fold(
        self,
        *,
        home: QmailHome,
        knot: KnotServer,
        arrivals: SmtpSink,
        sender: str,
        recipient: str,
        extra_header: bytes,
        output: bytes,
        folded: bytes,
    ) -> None:
        """The exact reports, the K/Z/D qmail-send gets, and an arrival only for K."""
        message = b"Subject: outcome\n" + extra_header + b"\nbody\n"
        delivery = deliver(
            home,
            "aio.dlv.test",
            knot,
            recipients=(f"{recipient}@x.test",),
            message=message,
            sender=sender,
        )
        assert delivery.stdout == output
        assert fold(delivery.stdout) == folded
        delivered = [(a.sender, a.recipients, a.content) for a in arrivals.arrivals]
        if folded.startswith(b"K"):
            assert delivered == [(sender, [f"{recipient}@x.test"], crlf(message))]
        else:
            assert delivered == []

    def test_mixed_recipients_in_one_run(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """Refused, deferred and accepted recipients: h, s, r, K; only bob gets the mail."""
        delivery = deliver(
            home, "aio.dlv.test", knot, recipients=("nobody@x.test", "busy@x.test", "bob@x.test")
        )
        assert delivery.stdout == (
            REFUSED_RCPT + b"\0" + BUSY_RCPT + b"\0" + b"r\0" + ACCEPTED + b"\0"
        )
        assert [a.recipients for a in arrivals.arrivals] == [["bob@x.test"]]


@pytest.mark.usefixtures("netns")
class TestMultipleExchangers:
    """djb: a refused connection moves on to the next MX; a refusal after connect does not."""

    def test_421_at_greeting_is_z_and_no_other_mx_is_tried(
        self,
        home: QmailHome,
        knot: KnotServer,
        arrivals: SmtpSink,
        busy_server: ScriptedServer,
    ) -> None:
        """Best MX greets 421: Z with its text; MX 20 is never contacted, nothing arrives."""
        busy_server.accepted.clear()
        delivery = deliver(home, "busy.dlv.test", knot, recipients=("bob@busy.dlv.test",))
        busy_server.check()
        assert delivery.stdout == (
            b"ZConnected to 127.0.5.3 but greeting failed.\n"
            b"Remote host said: " + BUSY_GREETING.encode() + b"\n\0"
        )
        assert fold(delivery.stdout) == (
            b"ZConnected to 127.0.5.3 but greeting failed.\n"
            b"Remote host said: " + BUSY_GREETING.encode() + b"\n"
        )
        assert attempts(delivery) == [("smtp", BUSY, 25)]
        assert busy_server.accepted == [(BUSY, 25)]
        assert arrivals.arrivals == []

    def test_a_refused_connection_moves_on_to_the_next_mx(
        self, home: QmailHome, knot: KnotServer, arrivals: SmtpSink
    ) -> None:
        """Best MX refuses the TCP connection: MX 20 gets the mail at once, K."""
        delivery = deliver(
            home, "refused.dlv.test", knot, recipients=("bob@x.test",), message=TRICKY
        )
        assert delivery.stdout == (
            b"r\0K127.0.5.4 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )
        assert attempts(delivery) == [("smtp", CLOSED, 25), ("smtp", SECOND, 25)]
        assert [(a.exchanger, a.content) for a in arrivals.arrivals] == [
            (SECOND, crlf(TRICKY)),
        ]


def _postfix_queue_id(report: bytes) -> str:
    """The queue id in ``... 250 2.0.0 Ok: queued as ID``."""
    return report.split(b"queued as ")[1].split(b"\n")[0].decode()


@pytest.mark.usefixtures("netns")
class TestPostfix:
    """Delivery through mxf-remote into a real Postfix 3.7, as a production MX answers."""

    def test_delivery_byte_for_byte(
        self, home: QmailHome, knot: KnotServer, postfix: PostfixServer
    ) -> None:
        """Envelope and content as Postfix stored them, after its own Received line."""
        delivery = deliver(
            home, "pf.dlv.test", knot, recipients=("bob@example.org",), message=TRICKY
        )
        head = b"r\0K127.0.5.2 accepted message.\nRemote host said: 250 2.0.0 Ok: queued as "
        assert delivery.stdout.startswith(head)
        assert delivery.stdout.endswith(b"\n\0") and delivery.stdout.count(b"\0") == 2
        queue_id = _postfix_queue_id(delivery.stdout)
        assert queue_id.isalnum()
        assert fold(delivery.stdout) == delivery.stdout[2:-1]
        envelope, content = postfix.held(queue_id)
        assert "sender: alice@example.org\n" in envelope
        assert [
            line.split(": ", 1)[1]
            for line in envelope.splitlines()
            if line.startswith("recipient: ")
        ] == ["bob@example.org"]
        assert "encoding=8bit" in envelope
        received, _, stored = content.partition(b"\nFrom: ")
        assert received.startswith(b"Received: from me.example (")
        assert b"by mx.postfix.test (Postfix) with ESMTP id " + queue_id.encode() in received
        assert b"From: " + stored == TRICKY

    def test_a_recipient_postfix_refuses(
        self, home: QmailHome, knot: KnotServer, postfix: PostfixServer
    ) -> None:
        """Postfix refuses a non-qualified recipient with 5xx: h, D, and qmail-send bounces."""
        delivery = deliver(home, "pf.dlv.test", knot, recipients=("bob@",))
        first, second, rest = delivery.stdout.split(b"\0")
        assert first.startswith(b"h127.0.5.2 does not like recipient.\nRemote host said: 5")
        assert second == b"DGiving up on 127.0.5.2.\n" and rest == b""
        assert fold(delivery.stdout) == b"D" + first[1:] + b"Giving up on 127.0.5.2.\n"

    def test_the_same_message_to_postfix_and_aiosmtpd(
        self, home: QmailHome, knot: KnotServer, postfix: PostfixServer, arrivals: SmtpSink
    ) -> None:
        """Both servers store the identical body (Postfix with LF, aiosmtpd with CRLF)."""
        pf = deliver(home, "pf.dlv.test", knot, recipients=("bob@example.org",), message=TRICKY)
        aio = deliver(home, "aio.dlv.test", knot, recipients=("bob@example.org",), message=TRICKY)
        assert aio.stdout.endswith(SINK_ACCEPTED.encode() + b"\n\0")
        _, content = postfix.held(_postfix_queue_id(pf.stdout))
        from_postfix = b"From: " + content.partition(b"\nFrom: ")[2]
        assert crlf(from_postfix) == arrivals.arrivals[0].content == crlf(TRICKY)


class TestWrites:
    """What the client leaves to TCP: write boundaries, seen on a SOCK_SEQPACKET pair."""

    def test_a_small_body_and_its_final_dot_go_in_one_write(self, tmp_path: Path) -> None:
        """The end of the body and ``.`` CRLF leave in one write, so no delayed ACK stalls."""
        records: list[bytes] = []

        def script(server: socket.socket) -> None:
            server.send(b"220 records.example ESMTP\r\n")
            for reply in (b"250 records.example", b"250 ok", b"250 ok", b"354 go ahead"):
                assert server.recv(65536)
                server.send(reply + b"\r\n")
            while not b"".join(records).endswith(b"\r\n.\r\n"):
                record = server.recv(65536)
                assert record, "EOF inside DATA"
                records.append(record)
            server.send(b"250 ok\r\n")
            assert server.recv(65536) == b"QUIT\r\n"

        result = converse_records(
            "mxf-remote-smtpc",
            script,
            ["example.org", SENDER, "bob@example.org"],
            MESSAGE,
            home=make_home(str(tmp_path)),
        )
        assert result.output == b"r\0K127.0.0.1 accepted message.\nRemote host said: 250 ok\n\0"
        assert records == [crlf(MESSAGE) + b".\r\n"]
