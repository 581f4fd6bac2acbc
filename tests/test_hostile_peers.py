"""Hostile peers: the real protocol clients against peers that misbehave on real sockets.

Each case runs mxf-remote-smtpc, mxf-remote-qmtpc or mxf-remote-tlsc as mxf-remote leaves
them (tests/clientkit.py: fds 6/7 on a real TCP connection, fds 1+2 one pipe) against a
scripted peer that resets, says nothing, sends a 10 MB line, sends NUL bytes, or stalls
in the TLS handshake.  What counts is a well-formed report -- every report one letter,
text, one NUL; exit 0 -- in bounded time, and a Z wherever the mail was not delivered.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clientkit import Peer, Result, client_command, loopback_pair, make_home, run_client

SMTPC = "mxf-remote-smtpc"
QMTPC = "mxf-remote-qmtpc"
ARGS = ["example.test", "s@example.test", "r@example.test"]
MESSAGE = b"Subject: x\n\nbody\n"
DIED = b"ZConnected to 127.0.0.1 but connection died. (#4.4.2)\n\0"
TEN_MB = 10 * 1024 * 1024


def _reset(peer: Peer) -> None:
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.sock.close()


def _converse(program: str, script: Callable[[Peer], None], tmp_path: Path) -> Result:
    home = make_home(str(tmp_path), timeoutremote="2\n")
    with loopback_pair() as (client, server), Peer(server, script):
        result = run_client(program, ARGS, MESSAGE, home=home, connection=client, timeout=30)
        client.close()
    return result


def _well_formed(result: Result) -> list[bytes]:
    """The reports, after checking exit 0 and that the output is only NUL-ended reports."""
    assert result.returncode == 0
    assert result.output.endswith(b"\0"), result.output[:200]
    reports = result.output[:-1].split(b"\0")
    for report in reports:
        assert report[:1] in (b"r", b"h", b"s", b"K", b"Z", b"D"), report[:200]
    assert reports[-1][:1] in (b"K", b"Z", b"D")
    return reports


class TestSmtpPeers:
    """mxf-remote-smtpc against hostile SMTP servers."""

    def test_reset_mid_greeting(self, tmp_path: Path) -> None:
        """``220 hal`` then RST: connection died, Z."""

        def script(peer: Peer) -> None:
            peer.send(b"220 hal")
            _reset(peer)

        assert _converse(SMTPC, script, tmp_path).output == DIED

    def test_a_peer_that_never_speaks(self, tmp_path: Path) -> None:
        """Accepts and says nothing: Z after timeoutremote (2 s)."""

        def script(peer: Peer) -> None:
            peer.read_to_eof(limit=10)

        result = _converse(SMTPC, script, tmp_path)
        assert result.output == DIED
        assert result.elapsed < 8

    def test_a_ten_megabyte_greeting_line(self, tmp_path: Path) -> None:
        """10 MB without a line end: a bounded Z report, not a crash or a 10 MB report."""

        def script(peer: Peer) -> None:
            try:
                peer.send(b"220 " + b"x" * TEN_MB)
                peer.read_to_eof(limit=10)
            except OSError:
                return

        result = _converse(SMTPC, script, tmp_path)
        reports = _well_formed(result)
        assert reports[-1][:1] == b"Z"
        assert len(result.output) <= 6000

    def test_nul_bytes_in_replies(self, tmp_path: Path) -> None:
        """A greeting with NULs, then a 554: D report with each NUL shown as ``?``."""

        def script(peer: Peer) -> None:
            peer.send(b"554 no\0way\0\r\n")
            peer.read_to_eof(limit=10)

        result = _converse(SMTPC, script, tmp_path)
        reports = _well_formed(result)
        assert len(reports) == 1 and b"no?way?" in reports[0]


class TestQmtpPeers:
    """mxf-remote-qmtpc against hostile QMTP servers."""

    def test_reset_before_the_answer(self, tmp_path: Path) -> None:
        """RST instead of an answer: Z, never K or D."""

        def script(peer: Peer) -> None:
            peer.read_exact(10)
            _reset(peer)

        reports = _well_formed(_converse(QMTPC, script, tmp_path))
        assert reports[-1][:1] == b"Z"

    def test_a_peer_that_never_answers(self, tmp_path: Path) -> None:
        """Reads the package, says nothing: Z after timeoutremote."""

        def script(peer: Peer) -> None:
            peer.read_to_eof(limit=10)

        result = _converse(QMTPC, script, tmp_path)
        assert _well_formed(result)[-1][:1] == b"Z"
        assert result.elapsed < 8

    def test_a_ten_megabyte_answer(self, tmp_path: Path) -> None:
        """A 10 MB netstring length prefix with no end: a bounded Z report."""

        def script(peer: Peer) -> None:
            try:
                peer.send(b"9" * TEN_MB)
                peer.read_to_eof(limit=10)
            except OSError:
                return

        result = _converse(QMTPC, script, tmp_path)
        assert _well_formed(result)[-1][:1] == b"Z"
        assert len(result.output) <= 6000

    def test_nul_bytes_in_the_answer(self, tmp_path: Path) -> None:
        """``11:Kgot\\0it\\0ok.,``: K, NULs shown as ``?``, one NUL per report."""

        def script(peer: Peer) -> None:
            peer.send(b"11:Kgot\0it\0ok.,")
            peer.read_to_eof(limit=10)

        reports = _well_formed(_converse(QMTPC, script, tmp_path))
        assert reports[-1][:1] == b"K" and b"got?it?ok." in reports[-1]


class TestTlsPeers:
    """mxf-remote-tlsc against a peer that stalls in the handshake (bounded by ``-K``)."""

    def test_a_stalled_handshake(self, tmp_path: Path) -> None:
        """The peer reads the ClientHello, answers nothing: Z when ``-K`` (2 s) runs out."""
        home = make_home(str(tmp_path), timeoutremote="2\n")

        def script(peer: Peer) -> None:
            peer.read_to_eof(limit=15)

        smtpc = client_command(SMTPC)
        with loopback_pair() as (client, server), Peer(server, script):
            result = run_client(
                "mxf-remote-tlsc",
                ["-K", "2000", "-k", "mx.example", "--", *smtpc, *ARGS],
                MESSAGE,
                home=home,
                connection=client,
                timeout=15,
            )
            client.close()
        assert _well_formed(result)[-1][:1] == b"Z"
        assert result.elapsed < 12


@pytest.fixture(autouse=True)
def _tls_client_known() -> None:
    """mxf-remote-tlsc must be installed beside the interpreter (client_command finds it)."""
    import os
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "mxf-remote-tlsc")
    if not os.access(script, os.X_OK):
        pytest.skip("mxf-remote-tlsc is not installed")
