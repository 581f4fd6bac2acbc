"""mxf-remote-qmtpc as a real process against a QMTP sink on a real socket."""

from __future__ import annotations

import contextlib
import os
import time

import pytest

from tests.clientkit import (
    Peer,
    converse,
    fold,
    make_home,
    netstring,
    read_qmtp_package,
    reports_of,
    run_client,
)

PROGRAM = "mxf-remote-qmtpc"
ARGS = ["example.org", "alice@example.org", "bob@example.org"]
MESSAGE = b"Received: (qmail 1 invoked by uid 0); today\nSubject: hi\n\nhello\n"


@pytest.fixture
def home(tmp_path: object) -> str:
    """A qmail home with control/me only."""
    return make_home(str(tmp_path))


def qmtpc(script, home: str, *, args=None, message: bytes | None = MESSAGE):
    """Run the client against ``script``; the result and the peer."""
    return converse(PROGRAM, script, list(args or ARGS), message, home=home)


def answer(*responses: bytes):
    """A sink that reads one package and answers ``responses`` (raw netstring contents)."""
    packages: list[tuple[bytes, bytes, list[bytes]]] = []

    def script(peer: Peer) -> None:
        packages.append(read_qmtp_package(peer))
        peer.send(b"".join(netstring(response) for response in responses))
        peer.read_to_eof()

    return script, packages


class TestPackage:
    """What goes over the wire."""

    def test_package_layout(self, home: str) -> None:
        """Message as LF + file (length size + 1), sender, recipient netstrings."""
        script, packages = answer(b"Kok 838640135 qp 1390")
        result, peer = qmtpc(script, home)
        assert packages == [(b"\n" + MESSAGE, b"alice@example.org", [b"bob@example.org"])]
        assert bytes(peer.received) == (
            b"%d:\n" % (len(MESSAGE) + 1) + MESSAGE + b","
            b"17:alice@example.org,"
            b"19:15:bob@example.org,,"
        )
        assert result.output == (
            b"r\0K127.0.0.1 accepted message.\nRemote host said: ok 838640135 qp 1390\n\0"
        )

    def test_message_sent_as_is(self, home: str) -> None:
        """Bytes go as they are: no CRLF, no dot-stuffing, partial last line, 8-bit."""
        message = b"Subject: x\n\n.\r\n..\rcaf\xc3\xa9\nno final newline"
        script, packages = answer(b"K")
        result, _ = qmtpc(script, home, message=message)
        assert packages[0][0] == b"\n" + message
        assert result.output == b"r\0K127.0.0.1 accepted message.\n\0"

    def test_empty_message_and_null_sender(self, home: str) -> None:
        """An empty message is the netstring 1:LF; the null sender is 0:,."""
        script, packages = answer(b"Kok")
        qmtpc(script, home, message=b"", args=["example.org", "", "bob@example.org"])
        assert packages == [(b"\n", b"", [b"bob@example.org"])]

    def test_ten_megabytes(self, home: str) -> None:
        """A 10 MB message arrives whole and byte for byte."""
        message = b"".join(b"line %07d %s\n" % (i, b"z" * 60) for i in range(150_000))
        assert len(message) > 10_000_000
        script, packages = answer(b"Kok")
        result, _ = qmtpc(script, home, message=message)
        assert packages[0][0] == b"\n" + message
        assert reports_of(result.output)[-1].startswith(b"K")


class TestResponses:
    """K, Z, D per recipient, and the message report qmail-send ends up with."""

    @pytest.mark.parametrize(
        ("response", "output", "folded"),
        [
            (
                b"Kok 1 qp 2",
                b"r\0K127.0.0.1 accepted message.\nRemote host said: ok 1 qp 2\n\0",
                b"K127.0.0.1 accepted message.\nRemote host said: ok 1 qp 2\n",
            ),
            (
                b"Zdisk full (#4.3.0)",
                b"s127.0.0.1 does not like recipient.\nRemote host said: disk full (#4.3.0)\n\0"
                b"DGiving up on 127.0.0.1.\n\0",
                b"Z127.0.0.1 does not like recipient.\nRemote host said: disk full (#4.3.0)\n"
                b"Giving up on 127.0.0.1.\n",
            ),
            (
                b"Dno mailbox (#5.1.1)",
                b"h127.0.0.1 does not like recipient.\nRemote host said: no mailbox (#5.1.1)\n\0"
                b"DGiving up on 127.0.0.1.\n\0",
                b"D127.0.0.1 does not like recipient.\nRemote host said: no mailbox (#5.1.1)\n"
                b"Giving up on 127.0.0.1.\n",
            ),
        ],
    )
    def test_one_recipient(self, home: str, response: bytes, output: bytes, folded: bytes) -> None:
        """K, Z and D reach qmail-send as K, Z and D after rspawn's folding."""
        script, _ = answer(response)
        result, _ = qmtpc(script, home)
        assert result.output == output
        assert fold(result.output) == folded
        assert result.returncode == 0

    def test_several_recipients(self, home: str) -> None:
        """Each recipient gets its letter in order; one K makes the message K."""
        script, packages = answer(b"Dno", b"Kyes", b"Zlater", b"Kalso")
        args = ["example.org", "a@x", "r1@y", "r2@y", "r3@y", "r4@y"]
        result, _ = qmtpc(script, home, args=args)
        assert packages[0][2] == [b"r1@y", b"r2@y", b"r3@y", b"r4@y"]
        assert reports_of(result.output) == [
            b"h127.0.0.1 does not like recipient.\nRemote host said: no\n\0",
            b"r\0",
            b"s127.0.0.1 does not like recipient.\nRemote host said: later\n\0",
            b"r\0",
            b"K127.0.0.1 accepted message.\nRemote host said: yes\n\0",
        ]

    def test_control_bytes_in_text(self, home: str) -> None:
        """Bytes below 32 or above 126 in a description are shown as ?."""
        script, _ = answer(b"Dbad\0\r\n\x7f\xffend")
        result, _ = qmtpc(script, home)
        assert reports_of(result.output)[0] == (
            b"h127.0.0.1 does not like recipient.\nRemote host said: bad?????end\n\0"
        )

    def test_bare_letter(self, home: str) -> None:
        """A response that is only a letter gives no Remote host said line."""
        script, _ = answer(b"K")
        result, _ = qmtpc(script, home)
        assert result.output == b"r\0K127.0.0.1 accepted message.\n\0"


NOT_QMTP = b"ZRecipient did not talk proper QMTP. Possible duplicate! (#4.3.0)\n\0"


class TestFailures:
    """Malformed answers, early closes, silence."""

    @pytest.mark.parametrize(
        "raw",
        [
            b"hello\r\n",
            b"3:Kok;",
            b"03:Kok,",
            b"2:Xy,",
            b"0:,",
            b":Kok,",
            b"99999999999:K",
            b"100000:K",
            b"5:Kok 1;",
            b"70000:K" + b"x" * 69999 + b",",
        ],
    )
    def test_malformed_answer(self, home: str, raw: bytes) -> None:
        """A malformed answer to a complete package: Z, Possible duplicate!"""

        def script(peer: Peer) -> None:
            read_qmtp_package(peer)
            with contextlib.suppress(OSError):
                peer.send(raw)
            peer.read_to_eof()

        result, _ = qmtpc(script, home)
        assert result.output == NOT_QMTP
        assert fold(result.output)[:1] == b"Z"

    def test_malformed_after_good(self, home: str) -> None:
        """Reports earned before a malformed answer are kept, then Z."""

        def script(peer: Peer) -> None:
            read_qmtp_package(peer)
            peer.send(b"3:Kok,junk")
            peer.read_to_eof()

        result, _ = qmtpc(script, home, args=["example.org", "a@x", "r1@y", "r2@y"])
        assert result.output == b"r\0" + NOT_QMTP

    def test_malformed_answer_before_the_package_is_complete(self, home: str) -> None:
        """Garbage, then a hang-up while the package is still going out: no duplicate."""

        def script(peer: Peer) -> None:
            peer.read_exact(100)
            with contextlib.suppress(OSError):
                peer.send(b"hello\r\n")
            peer.close()

        result, _ = qmtpc(script, home, message=b"x" * 5_000_000 + b"\n")
        assert result.output == b"ZConnected to 127.0.0.1 but connection died. (#4.4.2)\n\0"

    def test_closed_before_package_read(self, home: str) -> None:
        """A server that hangs up at once: connection died, no duplicate warning."""

        def script(peer: Peer) -> None:
            peer.close()

        result, _ = qmtpc(script, home, message=b"x" * 5_000_000 + b"\n")
        assert result.output == b"ZConnected to 127.0.0.1 but connection died. (#4.4.2)\n\0"

    def test_closed_without_answer(self, home: str) -> None:
        """Package sent, then EOF: a missing response defers with Possible duplicate!"""

        def script(peer: Peer) -> None:
            read_qmtp_package(peer)
            peer.close()

        result, _ = qmtpc(script, home)
        assert result.output == (
            b"ZConnected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n\0"
        )
        assert fold(result.output)[:1] == b"Z"

    def test_closed_mid_answers(self, home: str) -> None:
        """First recipient answered, then EOF: r for it, then the died deferral."""

        def script(peer: Peer) -> None:
            read_qmtp_package(peer)
            peer.send(netstring(b"Kok"))
            peer.close()

        result, _ = qmtpc(script, home, args=["example.org", "a@x", "r1@y", "r2@y"])
        assert result.output == (
            b"r\0ZConnected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n\0"
        )

    def test_silent_peer_times_out(self, tmp_path: object) -> None:
        """A sink that reads the package and never answers is dropped after timeoutremote."""
        home = make_home(str(tmp_path), timeoutremote="1\n")

        def script(peer: Peer) -> None:
            read_qmtp_package(peer)
            peer.read_to_eof()

        started = time.monotonic()
        result, _ = qmtpc(script, home)
        assert result.output == (
            b"ZConnected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n\0"
        )
        assert 0.9 < time.monotonic() - started < 5

    def test_peer_not_reading_times_out(self, tmp_path: object) -> None:
        """A sink that never reads a 20 MB message: the write stalls, then times out."""
        home = make_home(str(tmp_path), timeoutremote="1\n")

        def script(peer: Peer) -> None:
            time.sleep(2.5)
            peer.read_to_eof()

        result, _ = qmtpc(script, home, message=b"y" * 20_000_000 + b"\n")
        assert result.output == b"ZConnected to 127.0.0.1 but connection died. (#4.4.2)\n\0"
        assert result.elapsed < 2.4


class TestInvocation:
    """Before the package."""

    def test_too_few_arguments(self, home: str) -> None:
        """Fewer than three arguments is qmail-remote's usage bounce."""
        result = run_client(PROGRAM, ["example.org"], MESSAGE, home=home, connection=None)
        assert result.output == b"DI (qmail-remote) was invoked improperly. (#5.3.5)\n\0"

    def test_no_me_needed(self, tmp_path: object) -> None:
        """QMTP has no HELO: a home without control/me still delivers."""
        home = make_home(str(tmp_path), me=None)
        script, _ = answer(b"Kok")
        result, _ = qmtpc(script, home)
        assert reports_of(result.output)[-1].startswith(b"K")

    def test_no_network(self, home: str) -> None:
        """Without fds 6 and 7 the client defers."""
        result = run_client(PROGRAM, ARGS, MESSAGE, home=home, connection=None)
        assert result.output == b"ZNo network connection on descriptors 6 and 7. (#4.3.0)\n\0"

    def test_message_not_a_file(self, home: str) -> None:
        """fd 0 that is not a regular file is an unreadable message, nothing sent."""

        def script(peer: Peer) -> None:
            assert peer.read_to_eof() == b""

        result, _ = qmtpc(script, home, message=None)
        assert result.output == b"ZUnable to read message. (#4.3.0)\n\0"

    def test_bad_timeoutremote(self, tmp_path: object) -> None:
        """A timeoutremote of 0 is refused with the file named."""
        home = make_home(str(tmp_path), timeoutremote="0\n")
        result = run_client(PROGRAM, ARGS, MESSAGE, home=home, connection=None)
        assert result.output == (
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/timeoutremote line 1: 0 is outside 1..86400 seconds\n\0"
        )

    def test_nothing_on_stderr(self, home: str) -> None:
        """fd 2 is the report pipe too: it carries nothing but the reports."""
        script, _ = answer(b"Kok")
        result, _ = qmtpc(script, home)
        assert result.output.count(b"\0") == 2
        assert os.path.exists(home)
