"""mxf-remote-smtpc as a real process over real sockets: every reply class, byte for byte."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.clientkit import (
    Peer,
    PostfixServer,
    converse,
    fold,
    free_port,
    make_home,
    postfix_binaries,
    reports_of,
    run_client,
)

PROGRAM = "mxf-remote-smtpc"
IP = "127.0.0.1"
ARGS = ["example.org", "alice@example.org", "bob@example.org"]
MESSAGE = b"Received: (qmail 1 invoked by uid 0); today\nSubject: hi\n\nhello\n"


@pytest.fixture
def home(tmp_path: object) -> str:
    """A qmail home with control/me only."""
    return make_home(str(tmp_path))


def greet(peer: Peer, *keywords: str, name: bytes = b"me.example") -> None:
    """Greeting, then EHLO answered with ``keywords``."""
    peer.reply("220 mx.example ESMTP")
    peer.expect(b"EHLO " + name)
    peer.reply(
        *[f"250-{k}" for k in ("mx.example", *keywords[:-1])],
        f"250 {keywords[-1]}" if keywords else "250 mx.example",
    )


def accept_all(peer: Peer, recipients: int = 1) -> bytes:
    """MAIL, RCPTs and DATA accepted one by one; returns the DATA bytes."""
    assert peer.line() is not None
    peer.reply("250 ok")
    for _ in range(recipients):
        assert peer.line() is not None
        peer.reply("250 ok")
    peer.expect(b"DATA")
    peer.reply("354 go ahead")
    data = peer.read_data()
    assert data is not None
    peer.reply("250 ok 1234 qp 42")
    peer.expect(b"QUIT")
    return data


def smtpc(script, home: str, *, args=None, message: bytes | None = MESSAGE, env=None):
    """Run the client against ``script``; the result and the peer."""
    return converse(PROGRAM, script, list(args or ARGS), message, home=home, env=env)


class TestInvocation:
    """What the client checks before it says a word."""

    def test_too_few_arguments(self, home: str) -> None:
        """Fewer than three arguments is qmail-remote's usage bounce."""
        result = run_client(PROGRAM, ["example.org", "a@b"], MESSAGE, home=home, connection=None)
        assert result.output == b"DI (qmail-remote) was invoked improperly. (#5.3.5)\n\0"
        assert result.returncode == 0

    def test_no_helohost_no_me(self, tmp_path: object) -> None:
        """Neither control/helohost nor control/me: qmail's control-file deferral."""
        home = make_home(str(tmp_path), me=None)
        result = run_client(PROGRAM, ARGS, MESSAGE, home=home, connection=None)
        assert result.output == b"ZUnable to read control files. (#4.3.0)\n\0"

    def test_bad_timeoutremote_names_the_file(self, tmp_path: object) -> None:
        """An unparsable control/timeoutremote defers and says which file and line."""
        home = make_home(str(tmp_path), timeoutremote="soon\n")
        result = run_client(PROGRAM, ARGS, MESSAGE, home=home, connection=None)
        assert result.output == (
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/timeoutremote line 1: 'soon' is not a whole number of seconds\n\0"
        )

    def test_no_network_descriptors(self, home: str) -> None:
        """Without fds 6 and 7 the client defers."""
        result = run_client(PROGRAM, ARGS, MESSAGE, home=home, connection=None)
        assert result.output == b"ZNo network connection on descriptors 6 and 7. (#4.3.0)\n\0"

    def test_message_not_a_file(self, home: str) -> None:
        """fd 0 that is not a regular file is an unreadable message."""

        def script(peer: Peer) -> None:
            peer.read_to_eof()

        result, _ = smtpc(script, home, message=None)
        assert result.output == b"ZUnable to read message. (#4.3.0)\n\0"

    def test_partial_final_line(self, home: str) -> None:
        """A message without a final LF is bounced before anything is sent."""

        def script(peer: Peer) -> None:
            peer.reply("220 mx.example ESMTP")
            assert peer.read_to_eof() == b""

        result, _ = smtpc(script, home, message=b"Subject: x\n\nno newline")
        assert result.output == (
            b"DSMTP cannot transfer messages with partial final lines. (#5.6.2)\n\0"
        )

    def test_sender_with_line_feed(self, home: str) -> None:
        """A sender containing LF is never put in a MAIL command."""

        def script(peer: Peer) -> None:
            assert peer.read_to_eof() == b""

        result, _ = smtpc(script, home, args=["example.org", "a@b\nRSET", "bob@example.org"])
        assert result.output == (
            b"DSorry, the sender address contains a carriage return or line feed. (#5.1.7)\n\0"
        )

    def test_internal_error_is_a_deferral(self) -> None:
        """An unexpected exception becomes a Z report and exit 0, never a traceback."""
        code = (
            "from mxf_remote.clients.common import run_guarded\n"
            "run_guarded('mxf-remote-smtpc', lambda argv: 1 // 0)\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        assert completed.returncode == 0
        assert completed.stdout == (
            b"Zmxf-remote-smtpc internal error: ZeroDivisionError: "
            b"integer division or modulo by zero (#4.3.0)\n\0"
        )

    def test_report_pipe_closed(self, home: str) -> None:
        """A report that cannot be written still exits 0, silently."""
        read_end, write_end = os.pipe()
        os.close(read_end)
        with open(os.devnull, "rb") as devnull:
            completed = subprocess.run(
                [sys.executable, "-m", "mxf_remote.clients.smtp", "x"],
                stdin=devnull,
                stdout=write_end,
                stderr=write_end,
                env={**os.environ, "MXF_QMAIL": home},
                check=False,
            )
        os.close(write_end)
        assert completed.returncode == 0


class TestGreetingAndHello:
    """Greeting, EHLO and the HELO fallback."""

    @pytest.mark.parametrize("code", ["421", "554"])
    def test_greeting_refused(self, home: str, code: str) -> None:
        """Any greeting but 220 defers (also 554), with the server's text."""

        def script(peer: Peer) -> None:
            peer.reply(f"{code} go away")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"ZConnected to 127.0.0.1 but greeting failed.\n"
            b"Remote host said: " + code.encode() + b" go away\n\0"
        )
        assert fold(result.output)[:1] == b"Z"

    def test_ehlo_refused_then_helo(self, home: str) -> None:
        """EHLO refused with 5xx falls back to HELO, and the delivery goes on."""
        seen: list[bytes] = []

        def script(peer: Peer) -> None:
            peer.reply("220 old.example SMTP")
            peer.expect(b"EHLO me.example")
            peer.reply("502 what?")
            peer.expect(b"HELO me.example")
            peer.reply("250 old.example")
            peer.expect(b"MAIL FROM:<alice@example.org>")  # no SIZE: no extensions
            peer.reply("250 ok")
            peer.expect(b"RCPT TO:<bob@example.org>")
            peer.reply("250 ok")
            peer.expect(b"DATA")
            peer.reply("354 go")
            seen.append(peer.read_data() or b"")
            peer.reply("250 accepted")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"r\0K127.0.0.1 accepted message.\nRemote host said: 250 accepted\n\0"
        )
        assert seen == [MESSAGE.replace(b"\n", b"\r\n")]

    def test_ehlo_and_helo_refused(self, home: str) -> None:
        """EHLO 5xx and HELO 5xx: my name was rejected, deferred."""

        def script(peer: Peer) -> None:
            peer.reply("220 mx")
            peer.expect(b"EHLO me.example")
            peer.reply("500 no")
            peer.expect(b"HELO me.example")
            peer.reply("550 not you")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"ZConnected to 127.0.0.1 but my name was rejected.\nRemote host said: 550 not you\n\0"
        )

    def test_ehlo_temporary_refusal_no_helo(self, home: str) -> None:
        """EHLO 421 is a rejected name at once; no HELO is tried."""

        def script(peer: Peer) -> None:
            peer.reply("220 mx")
            peer.expect(b"EHLO me.example")
            peer.reply("421 busy")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"ZConnected to 127.0.0.1 but my name was rejected.\nRemote host said: 421 busy\n\0"
        )

    def test_helohost_wins_over_me(self, tmp_path: object) -> None:
        """control/helohost is the EHLO name when present."""
        home = make_home(str(tmp_path), helohost="out.example\n")

        def script(peer: Peer) -> None:
            greet(peer, name=b"out.example")
            accept_all(peer)

        result, _ = smtpc(script, home)
        assert reports_of(result.output)[0] == b"r\0"


class TestEnvelope:
    """MAIL, RCPT and the extensions."""

    @pytest.mark.parametrize(("code", "letter"), [("451", b"Z"), ("550", b"D")])
    def test_sender_rejected(self, home: str, code: str, letter: bytes) -> None:
        """MAIL 4xx defers, 5xx bounces: sender was rejected."""

        def script(peer: Peer) -> None:
            greet(peer)
            peer.expect(b"MAIL FROM:<alice@example.org>")
            peer.reply(f"{code} not from you")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            letter + b"Connected to 127.0.0.1 but sender was rejected.\n"
            b"Remote host said: " + code.encode() + b" not from you\n\0"
        )
        assert fold(result.output)[:1] == letter

    def test_mixed_recipients(self, home: str) -> None:
        """250/450/550 recipients give r, s, h in argument order, then K."""

        def script(peer: Peer) -> None:
            greet(peer)
            peer.expect(b"MAIL FROM:<alice@example.org>")
            peer.reply("250 ok")
            peer.expect(b"RCPT TO:<a@example.org>")
            peer.reply("250 ok")
            peer.expect(b"RCPT TO:<b@example.org>")
            peer.reply("450 mailbox busy")
            peer.expect(b"RCPT TO:<c@example.org>")
            peer.reply("550 no such user")
            peer.expect(b"DATA")
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        args = [
            "example.org",
            "alice@example.org",
            "a@example.org",
            "b@example.org",
            "c@example.org",
        ]
        result, _ = smtpc(script, home, args=args)
        assert reports_of(result.output) == [
            b"r\0",
            b"s127.0.0.1 does not like recipient.\nRemote host said: 450 mailbox busy\n\0",
            b"h127.0.0.1 does not like recipient.\nRemote host said: 550 no such user\n\0",
            b"K127.0.0.1 accepted message.\nRemote host said: 250 ok\n\0",
        ]

    @pytest.mark.parametrize(
        ("code", "letter", "folded"), [("450", b"s", b"Z"), ("550", b"h", b"D")]
    )
    def test_only_recipient_rejected(
        self, home: str, code: str, letter: bytes, folded: bytes
    ) -> None:
        """No recipient accepted: the recipient report, Giving up, no DATA; rspawn folds."""

        def script(peer: Peer) -> None:
            greet(peer)
            peer.expect(b"MAIL FROM:<alice@example.org>")
            peer.reply("250 ok")
            peer.expect(b"RCPT TO:<bob@example.org>")
            peer.reply(f"{code} nope")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            letter
            + b"127.0.0.1 does not like recipient.\nRemote host said: "
            + code.encode()
            + b" nope\n\0DGiving up on 127.0.0.1.\n\0"
        )
        assert fold(result.output) == (
            folded
            + b"127.0.0.1 does not like recipient.\nRemote host said: "
            + code.encode()
            + b" nope\nGiving up on 127.0.0.1.\n"
        )

    def test_pipelining_sends_the_envelope_at_once(self, home: str) -> None:
        """With PIPELINING, MAIL, every RCPT and DATA arrive before any reply is sent."""

        def script(peer: Peer) -> None:
            greet(peer, "PIPELINING")
            assert peer.line() == b"MAIL FROM:<alice@example.org>\r\n"
            assert peer.line() == b"RCPT TO:<a@example.org>\r\n"
            assert peer.line() == b"RCPT TO:<b@example.org>\r\n"
            assert peer.line() == b"DATA\r\n"
            peer.reply("250 ok", "550 unknown", "250 ok", "354 go")
            assert peer.read_data() is not None
            peer.reply("250 queued")
            peer.expect(b"QUIT")

        args = ["example.org", "alice@example.org", "a@example.org", "b@example.org"]
        result, _ = smtpc(script, home, args=args)
        assert reports_of(result.output) == [
            b"h127.0.0.1 does not like recipient.\nRemote host said: 550 unknown\n\0",
            b"r\0",
            b"K127.0.0.1 accepted message.\nRemote host said: 250 queued\n\0",
        ]

    def test_pipelining_all_refused_ignores_data_reply(self, home: str) -> None:
        """Pipelined and every RCPT refused: Giving up, whatever DATA got."""

        def script(peer: Peer) -> None:
            greet(peer, "PIPELINING")
            for _ in range(3):
                assert peer.line() is not None
            peer.reply("250 ok", "550 unknown", "554 no valid recipients")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"h127.0.0.1 does not like recipient.\nRemote host said: 550 unknown\n\0"
            b"DGiving up on 127.0.0.1.\n\0"
        )

    def test_pipelining_many_recipients_in_groups(self, home: str) -> None:
        """250 pipelined recipients go out in groups, so neither side can deadlock."""
        count = 250

        def script(peer: Peer) -> None:
            greet(peer, "PIPELINING")
            commands = 0
            while True:
                line = peer.line()
                assert line is not None
                commands += 1
                peer.reply("354 go" if line == b"DATA\r\n" else "250 ok")
                if line == b"DATA\r\n":
                    break
            assert commands == count + 2
            assert peer.read_data() is not None
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        args = ["example.org", "alice@example.org"] + [f"r{i}@example.org" for i in range(count)]
        result, _ = smtpc(script, home, args=args)
        assert reports_of(result.output)[:-1] == [b"r\0"] * count

    def test_size_and_8bitmime(self, home: str) -> None:
        """SIZE is the size with CRs added; BODY=8BITMIME only for 8-bit messages."""
        message = "Subject: caf\u00e9\n\nna\u00efve\n".encode()
        mails: list[bytes] = []

        def script(peer: Peer) -> None:
            greet(peer, "SIZE 1000000", "8BITMIME")
            mails.append(peer.line() or b"")
            peer.reply("250 ok")
            peer.expect(b"RCPT TO:<bob@example.org>")
            peer.reply("250 ok")
            peer.expect(b"DATA")
            peer.reply("354 go")
            assert peer.read_data() == message.replace(b"\n", b"\r\n")
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        smtpc(script, home, message=message)
        size = len(message) + message.count(b"\n")
        assert mails == [b"MAIL FROM:<alice@example.org> SIZE=%d BODY=8BITMIME\r\n" % size]

    def test_7bit_message_has_no_body_parameter(self, home: str) -> None:
        """A 7-bit message gets SIZE but no BODY=8BITMIME."""
        mails: list[bytes] = []

        def script(peer: Peer) -> None:
            greet(peer, "8BITMIME", "SIZE")
            mails.append(peer.line() or b"")
            peer.reply("550 stop here")
            peer.expect(b"QUIT")

        smtpc(script, home)
        size = len(MESSAGE) + MESSAGE.count(b"\n")
        assert mails == [b"MAIL FROM:<alice@example.org> SIZE=%d\r\n" % size]

    def test_size_counts_bare_carriage_returns(self, home: str) -> None:
        """Bare CRs go out as CRLF: SIZE is exactly the DATA bytes less the stuffed dots."""
        mails: list[bytes] = []
        data: list[bytes] = []
        message = b"Subject: cr\r\n\rone\rtwo\r\n.dot\n"

        def script(peer: Peer) -> None:
            greet(peer, "SIZE")
            mails.append(peer.line() or b"")
            peer.reply("250 ok")
            peer.expect(b"RCPT TO:<bob@example.org>")
            peer.reply("250 ok")
            peer.expect(b"DATA")
            peer.reply("354 go")
            data.append(peer.read_data() or b"")
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        smtpc(script, home, message=message)
        assert data == [b"Subject: cr\r\n\r\none\r\ntwo\r\n..dot\r\n"]
        size = len(data[0]) - 1  # one stuffed dot
        assert mails == [b"MAIL FROM:<alice@example.org> SIZE=%d\r\n" % size]

    def test_recipient_with_line_feed_is_not_sent(self, home: str) -> None:
        """A recipient containing LF gets h in its turn and never reaches the wire."""

        def script(peer: Peer) -> None:
            greet(peer)
            peer.expect(b"MAIL FROM:<alice@example.org>")
            peer.reply("250 ok")
            peer.expect(b"RCPT TO:<good@example.org>")
            peer.reply("250 ok")
            peer.expect(b"DATA")
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        args = ["example.org", "alice@example.org", "x@y>\r\nRSET", "good@example.org"]
        result, _ = smtpc(script, home, args=args)
        assert reports_of(result.output)[:2] == [
            b"hSorry, the recipient address contains a carriage return or line feed. (#5.1.3)\n\0",
            b"r\0",
        ]

    def test_double_bounce_sender_as_is(self, home: str) -> None:
        """qmail's double-bounce sender #@[] and the null sender go out unchanged."""
        mails: list[bytes] = []

        def script(peer: Peer) -> None:
            greet(peer)
            mails.append(peer.line() or b"")
            peer.reply("550 no")
            peer.expect(b"QUIT")

        smtpc(script, home, args=["example.org", "#@[]", "bob@example.org"])
        smtpc(script, home, args=["example.org", "", "bob@example.org"])
        assert mails == [b"MAIL FROM:<#@[]>\r\n", b"MAIL FROM:<>\r\n"]


class TestQuoting:
    """Addresses go on the wire as qmail-remote's addrmangle writes them (contract §2.2)."""

    def test_hostile_addresses_are_quoted_on_the_wire(self, home: str) -> None:
        """Spaces, <, >, quotes and backslashes stay inside the path: exact MAIL/RCPT bytes."""
        seen: list[bytes] = []

        def script(peer: Peer) -> None:
            greet(peer, "PIPELINING")
            for _ in range(5):
                seen.append(peer.line() or b"")
            peer.reply("250 ok", "250 ok", "250 ok", "250 ok", "354 go")
            assert peer.read_data() is not None
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        args = [
            "example.org",
            "john doe@x.org",
            "a> NOTIFY=NEVER ORCPT=rfc822;x@example.org",
            'x"y\\z@example.org',
            "a..b@b@example.org",
        ]
        result, _ = smtpc(script, home, args=args)
        assert seen == [
            b'MAIL FROM:<"john doe"@x.org>\r\n',
            b'RCPT TO:<"a> NOTIFY=NEVER ORCPT=rfc822;x"@example.org>\r\n',
            b'RCPT TO:<"x\\"y\\\\z"@example.org>\r\n',
            b'RCPT TO:<"a..b@b"@example.org>\r\n',
            b"DATA\r\n",
        ]
        assert reports_of(result.output)[-1].startswith(b"K127.0.0.1 accepted message.")

    def test_eight_bit_local_part_is_quoted(self, home: str) -> None:
        """An 8-bit local part is quoted, its bytes as they are (qmail-remote does the same)."""
        seen: list[bytes] = []

        def script(peer: Peer) -> None:
            greet(peer)
            seen.append(peer.line() or b"")
            peer.reply("250 ok")
            seen.append(peer.line() or b"")
            peer.reply("550 no")
            peer.expect(b"QUIT")

        args = ["example.org", "alice@example.org", os.fsdecode(b"caf\xc3\xa9@example.org")]
        smtpc(script, home, args=args)
        assert seen[1] == b'RCPT TO:<"caf\xc3\xa9"@example.org>\r\n'

    def test_sender_domain_that_would_end_the_path_is_never_sent(self, home: str) -> None:
        """A sender domain with '> ' (queued from <a@"b> X=1">) is D #5.1.7, nothing sent."""

        def script(peer: Peer) -> None:
            assert peer.read_to_eof() == b""

        result, _ = smtpc(script, home, args=["example.org", "a@b> RET=HDRS", "bob@example.org"])
        assert result.output == (
            b"DSorry, the sender address has a domain that cannot be written in an SMTP "
            b"command. (#5.1.7)\n\0"
        )

    def test_recipient_domain_that_would_end_the_path_is_not_sent(self, home: str) -> None:
        """Such a recipient gets h in its turn; the others are delivered."""
        seen: list[bytes] = []

        def script(peer: Peer) -> None:
            greet(peer)
            peer.expect(b"MAIL FROM:<alice@example.org>")
            peer.reply("250 ok")
            seen.append(peer.line() or b"")
            peer.reply("250 ok")
            peer.expect(b"DATA")
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        args = ["example.org", "alice@example.org", "x@example.org> NOTIFY=NEVER", "ok@x.org"]
        result, _ = smtpc(script, home, args=args)
        assert seen == [b"RCPT TO:<ok@x.org>\r\n"]
        assert reports_of(result.output)[:2] == [
            b"hSorry, the recipient address has a domain that cannot be written in an SMTP "
            b"command. (#5.1.3)\n\0",
            b"r\0",
        ]


def deliver_until_data(peer: Peer) -> None:
    """Greeting to DATA's 354, everything accepted."""
    greet(peer)
    peer.expect(b"MAIL FROM:<alice@example.org>")
    peer.reply("250 ok")
    peer.expect(b"RCPT TO:<bob@example.org>")
    peer.reply("250 ok")
    peer.expect(b"DATA")


class TestData:
    """DATA, the body on the wire, and the reply after the dot."""

    @pytest.mark.parametrize(("code", "letter"), [("451", b"Z"), ("554", b"D")])
    def test_data_refused(self, home: str, code: str, letter: bytes) -> None:
        """DATA 4xx/5xx: failed on DATA command, after the r report."""

        def script(peer: Peer) -> None:
            deliver_until_data(peer)
            peer.reply(f"{code} not now")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"r\0" + letter + b"127.0.0.1 failed on DATA command.\n"
            b"Remote host said: " + code.encode() + b" not now\n\0"
        )
        assert fold(result.output)[:1] == letter

    @pytest.mark.parametrize(("code", "letter"), [("451", b"Z"), ("554", b"D")])
    def test_refused_after_dot(self, home: str, code: str, letter: bytes) -> None:
        """4xx/5xx after the final dot: failed after I sent the message."""

        def script(peer: Peer) -> None:
            deliver_until_data(peer)
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.reply(f"{code} spam")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"r\0" + letter + b"127.0.0.1 failed after I sent the message.\n"
            b"Remote host said: " + code.encode() + b" spam\n\0"
        )
        assert fold(result.output)[:1] == letter

    def test_accepted(self, home: str) -> None:
        """250 after the dot: r, then K with the server's reply; QUIT follows."""

        def script(peer: Peer) -> None:
            deliver_until_data(peer)
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.reply("250 2.0.0 ok 1234 qp 42")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"r\0K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 ok 1234 qp 42\n\0"
        )
        assert fold(result.output) == (
            b"K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 ok 1234 qp 42\n"
        )

    def test_cut_after_dot_possible_duplicate(self, home: str) -> None:
        """The connection dies after the final dot: Possible duplicate!"""

        def script(peer: Peer) -> None:
            deliver_until_data(peer)
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.close()

        result, _ = smtpc(script, home)
        assert result.output == (
            b"r\0ZConnected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n\0"
        )
        assert fold(result.output)[:1] == b"Z"

    def test_cut_before_dot(self, home: str) -> None:
        """The connection dies during the envelope: connection died, no duplicate warning."""

        def script(peer: Peer) -> None:
            greet(peer)
            peer.expect(b"MAIL FROM:<alice@example.org>")
            peer.close()

        result, _ = smtpc(script, home)
        assert result.output == b"ZConnected to 127.0.0.1 but connection died. (#4.4.2)\n\0"

    def test_silent_peer_times_out(self, tmp_path: object) -> None:
        """A peer that never answers is dropped after control/timeoutremote seconds."""
        home = make_home(str(tmp_path), timeoutremote="1\n")

        def script(peer: Peer) -> None:
            peer.read_to_eof()

        started = time.monotonic()
        result, _ = smtpc(script, home)
        assert result.output == b"ZConnected to 127.0.0.1 but connection died. (#4.4.2)\n\0"
        assert 0.9 < time.monotonic() - started < 5

    def test_silent_after_dot_times_out(self, tmp_path: object) -> None:
        """No reply after the final dot within timeoutremote: Possible duplicate!"""
        home = make_home(str(tmp_path), timeoutremote="1\n")

        def script(peer: Peer) -> None:
            deliver_until_data(peer)
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.read_to_eof()

        result, _ = smtpc(script, home)
        assert result.output == (
            b"r\0ZConnected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n\0"
        )

    def test_wire_form(self, home: str) -> None:
        """LF becomes CRLF, CRLF stays, a bare CR is a line end, leading dots are doubled."""
        message = b"Subject: x\n\n.\n..two\nmid.dot\r\nbare\rcr\r.\nend\n"
        received: list[bytes] = []

        def script(peer: Peer) -> None:
            deliver_until_data(peer)
            peer.reply("354 go")
            line = b""
            raw = bytearray()
            while line != b".\r\n":
                line = peer.line() or b".\r\n"
                raw += line
            received.append(bytes(raw))
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        smtpc(script, home, message=message)
        assert received == [
            b"Subject: x\r\n\r\n..\r\n...two\r\nmid.dot\r\nbare\r\ncr\r\n..\r\nend\r\n.\r\n"
        ]

    def test_empty_message(self, home: str) -> None:
        """An empty message is an empty DATA: just the final dot."""
        received: list[bytes | None] = []

        def script(peer: Peer) -> None:
            deliver_until_data(peer)
            peer.reply("354 go")
            received.append(peer.read_data())
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home, message=b"")
        assert received == [b""]
        assert reports_of(result.output)[-1].startswith(b"K")


class TestReplies:
    """Multi-line, dirty, malformed and enormous replies."""

    def test_multiline_reply_text(self, home: str) -> None:
        """Every line of a multi-line reply is in the text, CRs removed."""

        def script(peer: Peer) -> None:
            peer.reply("220-mx.example ESMTP", "220-we are busy", "220 really")
            peer.expect(b"EHLO me.example")
            peer.reply("250-mx.example", "250 SIZE")
            peer.expect(b"MAIL FROM:<alice@example.org> SIZE=%d" % (len(MESSAGE) + 4))
            peer.reply("550-5.7.1 first line", "550-5.7.1 second line", "550 5.7.1 last")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"DConnected to 127.0.0.1 but sender was rejected.\nRemote host said: "
            b"550-5.7.1 first line\n550-5.7.1 second line\n550 5.7.1 last\n\0"
        )

    def test_nul_and_cr_in_reply(self, home: str) -> None:
        """NUL bytes in a reply become ?, every CR is dropped (qmail-remote's text rules)."""

        def script(peer: Peer) -> None:
            peer.send(b"421 bad\0byte\rhere\r\r\n")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        assert result.output == (
            b"ZConnected to 127.0.0.1 but greeting failed.\nRemote host said: 421 bad?bytehere\n\0"
        )

    def test_text_capped_at_5000_bytes(self, home: str) -> None:
        """The reply text is cut at qmail-remote's 5000 bytes, and still ends in LF."""

        def script(peer: Peer) -> None:
            peer.reply(*[f"421-{'x' * 96}" for _ in range(60)], "421 end")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home)
        text = reports_of(result.output)[0]
        head = b"ZConnected to 127.0.0.1 but greeting failed.\nRemote host said: "
        assert text.startswith(head)
        assert len(text) == len(head) + 5000 + 2  # the 5000 bytes, an added LF, the NUL
        assert text.endswith(b"x\n\0")

    @pytest.mark.parametrize(
        "garbage",
        [b"hello there\r\n", b"2500 too many digits\r\n", b"250x\r\n", b"\r\n", b"650 six\r\n"],
    )
    def test_malformed_reply(self, home: str, garbage: bytes) -> None:
        """A reply without a proper code defers: not proper SMTP."""

        def script(peer: Peer) -> None:
            peer.send(garbage)
            peer.read_to_eof()

        result, _ = smtpc(script, home)
        shown = garbage.replace(b"\r", b"")
        assert result.output == (
            b"ZConnected to 127.0.0.1 but the remote host did not talk proper SMTP. (#4.5.0)\n"
            b"Remote host said: " + shown + b"\0"
        )

    def test_enormous_reply_line(self, home: str) -> None:
        """A 10 MB reply line is refused after 64 KiB, quickly, with 5000 bytes of text."""

        def script(peer: Peer) -> None:
            with contextlib.suppress(OSError):  # the client hangs up half-way: the point
                peer.send(b"220 " + b"y" * 10_000_000 + b"\r\n")
            peer.read_to_eof()

        result, _ = smtpc(script, home)
        text = reports_of(result.output)[0]
        assert text == (
            b"ZConnected to 127.0.0.1 but the remote host did not talk proper SMTP. (#4.5.0)\n"
            b"Remote host said: 220 " + b"y" * 4996 + b"\n\0"
        )
        assert result.elapsed < 10

    def test_endless_multiline_reply(self, home: str) -> None:
        """A reply of more than 1000 lines is not SMTP."""

        def script(peer: Peer) -> None:
            with contextlib.suppress(OSError):
                peer.send(b"220-more\r\n" * 2000)
            peer.read_to_eof()

        result, _ = smtpc(script, home)
        assert reports_of(result.output)[0].startswith(
            b"ZConnected to 127.0.0.1 but the remote host did not talk proper SMTP. (#4.5.0)\n"
        )

    def test_malformed_after_dot_possible_duplicate(self, home: str) -> None:
        """Garbage after the final dot defers with Possible duplicate!"""

        def script(peer: Peer) -> None:
            deliver_until_data(peer)
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.reply("OK thanks")
            peer.read_to_eof()

        result, _ = smtpc(script, home)
        assert result.output == (
            b"r\0ZConnected to 127.0.0.1 but the remote host did not talk proper SMTP. "
            b"Possible duplicate! (#4.5.0)\nRemote host said: OK thanks\n\0"
        )


class TestFold:
    """qmail-rspawn's folding (the helper itself, against contract §1.3's table)."""

    @pytest.mark.parametrize(
        ("output", "folded"),
        [
            (b"Zfoo\n\0", b"Zfoo\n"),
            (b"Dfoo\n\0", b"Dfoo\n"),
            (b"Kfoo\n\0", b"Kfoo\n"),
            (b"r\0Kok\n\0", b"Kok\n"),
            (b"r\0Zlater\n\0", b"Zlater\n"),
            (b"r\0Dperm\n\0", b"Dperm\n"),
            (b"hno\n\0Dgive up\n\0", b"Dno\ngive up\n"),
            (b"sno\n\0Dgive up\n\0", b"Zno\ngive up\n"),
            (b"hno\n\0Zlater\n\0", b"Dno\n"),
            (b"rtext\0Kok\n\0", b"Ktextok\n"),
            (b"Zfoo\n", b"D"),
            (b"r\0", b"D"),
            (b"error: x\nZfoo\n\0", b"Drror: x\nZfoo\n"),
            (b"hello\nZfoo\n\0", b"Dello\nZfoo\n"),
            (b"", b"Zqmail-remote produced no output.\n"),
        ],
    )
    def test_contract_table(self, output: bytes, folded: bytes) -> None:
        """The fold helper reproduces every row of the contract's table."""
        assert fold(output) == folded

    def test_exit_codes(self) -> None:
        """Exit 111 defers and any other non-zero exit bounces, whatever was printed."""
        assert fold(b"Kok\n\0", 111) == b"ZUnable to run qmail-remote.\n"
        assert fold(b"Kok\n\0", 1) == b"DUnable to run qmail-remote.\n"


class _Sink:
    """An aiosmtpd handler that keeps every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes, list[str]]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.envelopes.append(
            (
                envelope.mail_from,  # type: ignore[attr-defined]
                list(envelope.rcpt_tos),  # type: ignore[attr-defined]
                envelope.original_content,  # type: ignore[attr-defined]
                list(envelope.mail_options),  # type: ignore[attr-defined]
            )
        )
        return "250 2.0.0 OK queued"


@pytest.fixture(scope="module")
def aiosmtpd_server():
    """A real aiosmtpd SMTP server on 127.0.0.1 (its own thread and event loop)."""
    from aiosmtpd.controller import Controller

    port = free_port()
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, data_size_limit=64 << 20)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def deliver_to(port: int, args: list[str], message: bytes, home: str):
    """Run the client over a real TCP connection to 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        return run_client(PROGRAM, args, message, home=home, connection=connection)


class TestAiosmtpd:
    """A real SMTP server (aiosmtpd): envelope and body byte for byte."""

    def test_dots_and_8bit(self, aiosmtpd_server, home: str) -> None:
        """Dot lines, leading dots and 8-bit bytes arrive exactly; BODY and SIZE declared."""
        sink, port = aiosmtpd_server
        sink.envelopes.clear()
        message = b"Received: x\nSubject: caf\xc3\xa9\n\n.\n..\n.leading\nmiddle.\n. \nlast\n"
        result = deliver_to(
            port, [*ARGS[:2], "bob@example.org", "carol@example.org"], message, home
        )
        assert reports_of(result.output) == [
            b"r\0",
            b"r\0",
            b"K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0",
        ]
        size = len(message) + message.count(b"\n")
        assert sink.envelopes == [
            (
                "alice@example.org",
                ["bob@example.org", "carol@example.org"],
                message.replace(b"\n", b"\r\n"),
                [f"SIZE={size}", "BODY=8BITMIME"],
            )
        ]

    def test_ten_megabytes(self, aiosmtpd_server, home: str) -> None:
        """A 10 MB message with dot lines arrives byte for byte."""
        sink, port = aiosmtpd_server
        sink.envelopes.clear()
        message = b"".join(
            b".dot %07d\n" % i if i % 7 == 0 else b"line %07d %s\n" % (i, b"z" * 60)
            for i in range(150_000)
        )
        assert len(message) > 8_000_000
        result = deliver_to(port, ARGS, message, home)
        assert reports_of(result.output)[-1].startswith(b"K127.0.0.1 accepted message.")
        assert len(sink.envelopes) == 1
        assert sink.envelopes[0][2] == message.replace(b"\n", b"\r\n")

    def test_quoted_addresses_are_accepted_and_stored(self, aiosmtpd_server, home: str) -> None:
        """A recipient that used to inject a parameter (555, then a bounce) is delivered."""
        sink, port = aiosmtpd_server
        sink.envelopes.clear()
        args = ["example.org", "john doe@x.org", "postmaster> XFOO=1@example.org"]
        result = deliver_to(port, args, MESSAGE, home)
        assert reports_of(result.output) == [
            b"r\0",
            b"K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0",
        ]
        assert [(mail, rcpts) for mail, rcpts, _, _ in sink.envelopes] == [
            ('"john doe"@x.org', ['"postmaster> XFOO=1"@example.org'])
        ]

    def test_partial_final_line_delivers_nothing(self, aiosmtpd_server, home: str) -> None:
        """A message without its final LF is bounced and never reaches the server."""
        sink, port = aiosmtpd_server
        sink.envelopes.clear()
        result = deliver_to(port, ARGS, b"Subject: x\n\nno end", home)
        assert result.output == (
            b"DSMTP cannot transfer messages with partial final lines. (#5.6.2)\n\0"
        )
        assert sink.envelopes == []


@pytest.fixture(scope="module")
def postfix_server():
    """Debian's postfix in the foreground from a private directory (skipped when absent)."""
    binaries = postfix_binaries()
    if binaries is None:
        pytest.skip("postfix is not installed (Debian package: postfix)")
    if os.geteuid() != 0:
        pytest.skip("postfix's master must start as root")
    server = PostfixServer(*binaries, free_port())
    try:
        yield server
    finally:
        server.stop()


class TestPostfix:
    """A real MTA (Postfix 3.7): PIPELINING, SIZE, 8BITMIME as a production server offers them."""

    def test_delivery_byte_for_byte(self, postfix_server: PostfixServer, home: str) -> None:
        """Envelope and content as Postfix stored them, after its own Received line."""
        message = (
            b"From: alice@example.org\nTo: bob@example.org\nDate: Wed, 25 Nov 2026 12:00:00 +0000\n"
            b"Message-ID: <1@example.org>\nSubject: caf\xc3\xa9\n\n.\n..two\n.leading\nend\n"
        )
        args = ["example.org", "alice@example.org", "bob@example.org", "carol@example.org"]
        result = deliver_to(postfix_server.port, args, message, home)
        reports = reports_of(result.output)
        assert reports[:2] == [b"r\0", b"r\0"]
        assert reports[2].startswith(
            b"K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 Ok: queued as "
        )
        queue_id = reports[2].split(b"queued as ")[1].rstrip(b"\n\0").decode()
        envelope, content = postfix_server.held(queue_id)
        assert "sender: alice@example.org\n" in envelope
        recipients = [
            line.split(": ", 1)[1]
            for line in envelope.splitlines()
            if line.startswith("recipient: ")
        ]
        assert recipients == ["bob@example.org", "carol@example.org"]
        assert "encoding=8bit" in envelope
        received, _, stored = content.partition(b"\nFrom: ")
        assert received.startswith(b"Received: from me.example (localhost [127.0.0.1])")
        assert b"From: " + stored == message

    def test_quoted_recipient_is_stored_unquoted(
        self, postfix_server: PostfixServer, home: str
    ) -> None:
        """Postfix takes the quoted local part and stores the address qmail had queued."""
        args = ["example.org", "john doe@x.org", "a> NOTIFY=NEVER@example.org"]
        result = deliver_to(postfix_server.port, args, MESSAGE, home)
        reports = reports_of(result.output)
        assert reports[0] == b"r\0"
        queue_id = reports[1].split(b"queued as ")[1].rstrip(b"\n\0").decode()
        envelope, _ = postfix_server.held(queue_id)
        assert "sender: john doe@x.org\n" in envelope
        assert "recipient: a> NOTIFY=NEVER@example.org\n" in envelope
        assert "notify_flags" not in envelope.lower() or "notify_flags: 0" in envelope.lower()

    def test_rejected_recipient(self, postfix_server: PostfixServer, home: str) -> None:
        """A recipient Postfix refuses (not fully qualified) is h, and the message D."""
        result = deliver_to(
            postfix_server.port, ["example.org", "a@example.org", "bob@"], MESSAGE, home
        )
        reports = reports_of(result.output)
        assert reports[0].startswith(b"h127.0.0.1 does not like recipient.\nRemote host said: 5")
        assert reports[1] == b"DGiving up on 127.0.0.1.\n\0"


class TestStartup:
    """What a fresh interpreter pays for each delivery."""

    def test_socket_module_unused_at_start(self) -> None:
        """The client runs over plain descriptors: importing it loads no socket/ssl/asyncio."""
        code = (
            "import sys, mxf_remote.clients.smtp, mxf_remote.clients.qmtp\n"
            "heavy = {'socket', 'ssl', 'asyncio', 'email', 'smtplib', 'threading'}\n"
            "bad = heavy & set(sys.modules)\n"
            "print(sorted(bad))\n"
        )
        completed = subprocess.run(
            [sys.executable, "-S", "-c", code],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))},
        )
        assert completed.stdout == b"[]\n"


UTF8_SENDER = "j\u00f6rg@b\u00fccher.example"
UTF8_RECIPIENT = "\u7528\u6237@fa\u00df.example"
LATIN1_RECIPIENT = os.fsdecode(b"caf\xe9@example.org")
"""Bytes that are not UTF-8 (``os.fsdecode`` keeps them as surrogates, as mxf-remote does)."""


def envelope_transcript(
    keywords: tuple[str, ...], commands: list[bytes]
) -> tuple[bytes, Callable[[Peer], None]]:
    """(what the client must write, the peer's script) for a delivery where each of
    ``commands`` (MAIL, then the RCPTs) gets 250, one at a time, then DATA and QUIT."""

    def script(peer: Peer) -> None:
        greet(peer, *keywords)
        for _ in commands:
            assert peer.line() is not None
            peer.reply("250 ok")
        peer.expect(b"DATA")
        peer.reply("354 go ahead")
        assert peer.read_data() is not None
        peer.reply("250 ok 1234 qp 42")
        peer.expect(b"QUIT")

    body = MESSAGE.replace(b"\n", b"\r\n")
    wire = b"EHLO me.example\r\n" + b"".join(c + b"\r\n" for c in commands)
    return wire + b"DATA\r\n" + body + b".\r\nQUIT\r\n", script


class TestSmtputf8:
    """RFC 6531: SMTPUTF8 and unquoted UTF-8 only with a server that offers it."""

    @pytest.mark.parametrize(
        ("keywords", "args", "commands"),
        [
            pytest.param(
                ("SMTPUTF8",),
                ["x", UTF8_SENDER, UTF8_RECIPIENT],
                [
                    b"MAIL FROM:<j\xc3\xb6rg@b\xc3\xbccher.example> SMTPUTF8",
                    b"RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@fa\xc3\x9f.example>",
                ],
                id="offered",
            ),
            pytest.param(
                ("8BITMIME",),
                ["x", UTF8_SENDER, UTF8_RECIPIENT],
                [
                    b'MAIL FROM:<"j\xc3\xb6rg"@b\xc3\xbccher.example>',
                    b'RCPT TO:<"\xe7\x94\xa8\xe6\x88\xb7"@fa\xc3\x9f.example>',
                ],
                id="not-offered",
            ),
            pytest.param(
                ("SMTPUTF8",),
                ["x", "alice@example.org", "bob@example.org"],
                [b"MAIL FROM:<alice@example.org>", b"RCPT TO:<bob@example.org>"],
                id="ascii-envelope",
            ),
            pytest.param(
                ("SMTPUTF8",),
                ["x", "", "bob@fa\u00df.example"],
                [b"MAIL FROM:<> SMTPUTF8", b"RCPT TO:<bob@fa\xc3\x9f.example>"],
                id="utf8-domain-only",
            ),
            pytest.param(
                ("SMTPUTF8",),
                ["x", "alice@example.org", LATIN1_RECIPIENT],
                [b"MAIL FROM:<alice@example.org>", b'RCPT TO:<"caf\xe9"@example.org>'],
                id="not-utf8-only",
            ),
            pytest.param(
                ("SMTPUTF8",),
                ["x", "alice@example.org", LATIN1_RECIPIENT, UTF8_RECIPIENT],
                [
                    b"MAIL FROM:<alice@example.org> SMTPUTF8",
                    b'RCPT TO:<"caf\xe9"@example.org>',
                    b"RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@fa\xc3\x9f.example>",
                ],
                id="not-utf8-beside-utf8",
            ),
            pytest.param(
                ("SMTPUTF8",),
                ["x", "j\u00f6rg doe@x.example", ".\u00e9@x.example"],
                [
                    b'MAIL FROM:<"j\xc3\xb6rg doe"@x.example> SMTPUTF8',
                    b'RCPT TO:<".\xc3\xa9"@x.example>',
                ],
                id="ascii-rules-still-quote",
            ),
        ],
    )
    def test_the_envelope_byte_for_byte(
        self, home: str, keywords: tuple[str, ...], args: list[str], commands: list[bytes]
    ) -> None:
        """Everything the client writes, exactly, with and without the extension."""
        wire, script = envelope_transcript(keywords, commands)
        result, peer = smtpc(script, home, args=args)
        assert bytes(peer.received) == wire
        assert reports_of(result.output)[-1] == (
            b"K127.0.0.1 accepted message.\nRemote host said: 250 ok 1234 qp 42\n\0"
        )

    def test_with_size_body_and_pipelining(self, home: str) -> None:
        """SIZE, BODY=8BITMIME and SMTPUTF8 together on MAIL; the envelope in one write."""
        seen: list[bytes] = []
        message = b"Subject: gr\xc3\xbc\xc3\x9fe\n\nhello\n"

        def script(peer: Peer) -> None:
            greet(peer, "PIPELINING", "SIZE 1000000", "8BITMIME", "SMTPUTF8")
            seen.extend(peer.line() or b"" for _ in range(3))
            peer.reply("250 ok", "250 ok", "354 go")
            assert peer.read_data() is not None
            peer.reply("250 ok")
            peer.expect(b"QUIT")

        result, _ = smtpc(script, home, args=["x", UTF8_SENDER, UTF8_RECIPIENT], message=message)
        size = len(message) + message.count(b"\n")
        assert seen == [
            b"MAIL FROM:<j\xc3\xb6rg@b\xc3\xbccher.example> SIZE=%d BODY=8BITMIME SMTPUTF8\r\n"
            % size,
            b"RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@fa\xc3\x9f.example>\r\n",
            b"DATA\r\n",
        ]
        assert reports_of(result.output)[-1].startswith(b"K127.0.0.1 accepted message.")

    def test_a_recipient_never_sent_does_not_ask_for_smtputf8(self, home: str) -> None:
        """The only UTF-8 address has a LF (never sent): no SMTPUTF8 on MAIL."""
        wire, script = envelope_transcript(
            ("SMTPUTF8",), [b"MAIL FROM:<alice@example.org>", b"RCPT TO:<bob@example.org>"]
        )
        args = ["x", "alice@example.org", "j\u00f6rg@x\nRSET", "bob@example.org"]
        result, peer = smtpc(script, home, args=args)
        assert bytes(peer.received) == wire
        assert reports_of(result.output)[0].startswith(b"hSorry, the recipient address contains")

    def test_the_keyword_in_lower_case(self, home: str) -> None:
        """``250 smtputf8`` (keywords are case-insensitive): SMTPUTF8 is used."""
        wire, script = envelope_transcript(
            ("smtputf8",),
            [b"MAIL FROM:<alice@example.org> SMTPUTF8", b"RCPT TO:<j\xc3\xb6rg@example.org>"],
        )
        result, peer = smtpc(script, home, args=["x", "alice@example.org", "j\u00f6rg@example.org"])
        assert bytes(peer.received) == wire
        assert reports_of(result.output)[-1].startswith(b"K127.0.0.1 accepted message.")


@contextlib.contextmanager
def aiosmtpd_with_smtputf8(enabled: bool) -> Iterator[tuple[_Sink, int]]:
    """aiosmtpd on 127.0.0.1 offering SMTPUTF8 (and decoding UTF-8) or not."""
    from aiosmtpd.controller import Controller

    port = free_port()
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, enable_SMTPUTF8=enabled)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def aiosmtpd_utf8_server() -> Iterator[tuple[_Sink, int]]:
    """aiosmtpd with ``enable_SMTPUTF8``: it offers the extension and decodes UTF-8."""
    with aiosmtpd_with_smtputf8(True) as server:
        yield server


@pytest.fixture(scope="module")
def aiosmtpd_ascii_server() -> Iterator[tuple[_Sink, int]]:
    """aiosmtpd without SMTPUTF8 (its Controller offers it unless told not to)."""
    with aiosmtpd_with_smtputf8(False) as server:
        yield server


class TestAiosmtpdSmtputf8:
    """A real server with SMTPUTF8 (aiosmtpd): the UTF-8 envelope stored as written."""

    def test_utf8_addresses_are_stored(
        self, aiosmtpd_utf8_server: tuple[_Sink, int], home: str
    ) -> None:
        """UTF-8 sender and recipients arrive unquoted, SMTPUTF8 among the MAIL options."""
        sink, port = aiosmtpd_utf8_server
        sink.envelopes.clear()
        args = ["x", UTF8_SENDER, UTF8_RECIPIENT, "j\u00f6rg doe@fa\u00df.example"]
        result = deliver_to(port, args, MESSAGE, home)
        assert reports_of(result.output) == [
            b"r\0",
            b"r\0",
            b"K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0",
        ]
        size = len(MESSAGE) + MESSAGE.count(b"\n")
        assert sink.envelopes == [
            (
                UTF8_SENDER,
                [UTF8_RECIPIENT, '"j\u00f6rg doe"@fa\u00df.example'],
                MESSAGE.replace(b"\n", b"\r\n"),
                [f"SIZE={size}", "SMTPUTF8"],
            )
        ]

    def test_without_the_extension_it_is_qmail_remote_bytes(
        self, aiosmtpd_ascii_server: tuple[_Sink, int], home: str
    ) -> None:
        """aiosmtpd without SMTPUTF8 gets qmail-remote's quoted 8-bit and refuses it (500)."""
        sink, port = aiosmtpd_ascii_server
        sink.envelopes.clear()
        result = deliver_to(port, ["x", "alice@example.org", UTF8_RECIPIENT], MESSAGE, home)
        assert reports_of(result.output) == [
            b"h127.0.0.1 does not like recipient.\n"
            b"Remote host said: 500 Error: strict ASCII mode\n\0",
            b"DGiving up on 127.0.0.1.\n\0",
        ]
        assert sink.envelopes == []
