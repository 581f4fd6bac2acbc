"""``mxf_remote.conversation``: the probe's SMTP conversation, on real sockets with real TLS.

The servers are aiosmtpd (with and without STARTTLS, trustme certificates) and scripted
peers on a loopback connection for what no real server does on purpose: a refusal,
garbage, an endless line, silence, a reset, a broken handshake.  The socket handed to
``converse`` is non-blocking, as the race leaves its winner.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mxf_remote.clients.smtp import MAX_LINE
from mxf_remote.conversation import (
    BANNER,
    DEFAULT_STORE,
    EHLO,
    EHLO_TLS,
    HANDSHAKE,
    QUIT,
    STARTTLS,
    Conversation,
    as_dict,
    converse,
    render_text,
)
from mxf_remote.trace import now_ms
from tests.clientkit import Peer, loopback_pair
from tests.tlskit import SERVER_NAME, TIMEOUT, AiosmtpdServer, Certs, ServerTLS

HELO = "probe.example.test"
TLS_PHASES = [BANNER, EHLO, STARTTLS, HANDSHAKE, EHLO_TLS, QUIT]


class SniServer:
    """An aiosmtpd server offering STARTTLS with ``context``, noting the SNI it is sent."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.sni: list[str | None] = []
        context.sni_callback = self._sni
        self.server = AiosmtpdServer("127.0.0.1", 0, context)

    def _sni(self, obj: object, name: str | None, context: ssl.SSLContext) -> None:
        self.sni.append(name)

    def close(self) -> None:
        """Stop the server."""
        self.server.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A trustme CA with its CAFILE, a certificate for SERVER_NAME and an untrusted one."""
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[SniServer]:
    """aiosmtpd offering STARTTLS with the certificate for SERVER_NAME."""
    server = SniServer(certs.server_context())
    yield server
    server.close()


@pytest.fixture(scope="module")
def plain_server() -> Iterator[AiosmtpdServer]:
    """aiosmtpd without STARTTLS."""
    server = AiosmtpdServer("127.0.0.1", 0, None)
    yield server
    server.close()


def talk(
    server: AiosmtpdServer,
    *,
    name: str | None = SERVER_NAME,
    env: dict[str, str] | None = None,
) -> Conversation:
    """``converse`` on a fresh, non-blocking connection to ``server``."""
    sock = socket.create_connection((server.address, server.port), timeout=TIMEOUT)
    sock.setblocking(False)
    return converse(
        sock, server_name=name, helohost=HELO, timeout=TIMEOUT, environ=env or {}, clock=now_ms
    )


def scripted(
    script: Callable[[Peer], None],
    *,
    timeout: float = TIMEOUT,
    name: str | None = SERVER_NAME,
    helohost: str = HELO,
    env: dict[str, str] | None = None,
) -> tuple[Conversation, Peer, float]:
    """``converse`` against a scripted peer: the conversation, the peer, seconds taken."""
    with loopback_pair() as (client, server):
        client.setblocking(False)
        with Peer(server, script) as peer:
            started = time.monotonic()
            conversation = converse(
                client,
                server_name=name,
                helohost=helohost,
                timeout=timeout,
                environ=env or {},
                clock=now_ms,
            )
            elapsed = time.monotonic() - started
    return conversation, peer, elapsed


def names(conversation: Conversation) -> list[str]:
    """The phase names, in order."""
    return [phase.name for phase in conversation.phases]


def offer_starttls(peer: Peer) -> None:
    """Banner, then an EHLO reply that offers STARTTLS (and much that invites MAIL)."""
    peer.reply("220 mx.example.test ESMTP")
    peer.expect(b"EHLO " + HELO.encode())
    peer.reply("250-mx.example.test", "250-PIPELINING", "250-SIZE 1000", "250 STARTTLS")


def wait_for_eof(peer: Peer) -> None:
    """Read until the client closes (a reset counts as closing)."""
    peer.read_to_eof(TIMEOUT)


def after_starttls(peer: Peer) -> bytes:
    """What the client sent after its STARTTLS line."""
    return bytes(peer.received).split(b"STARTTLS\r\n", 1)[1]


class TlsLines:
    """Command lines from a ``ServerTLS`` session; None at the end of the session."""

    def __init__(self, tls: ServerTLS) -> None:
        self.tls = tls
        self.buffer = b""

    def next(self) -> bytes | None:
        """The next line with its CRLF, None when the client has gone."""
        while b"\n" not in self.buffer:
            try:
                data = self.tls.recv()
            except (ssl.SSLError, OSError):
                data = b""
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


class TestRealServer:
    """aiosmtpd with STARTTLS: every phase, the extensions, the TLS facts."""

    def test_phases_in_order(self, tls_server: SniServer, certs: Certs) -> None:
        """Banner, EHLO, STARTTLS, handshake, EHLO, QUIT: in order, none overlapping."""
        before = now_ms()
        conversation = talk(tls_server.server, env={"CAFILE": str(certs.cafile)})
        after = now_ms()
        assert conversation.error is None
        assert names(conversation) == TLS_PHASES
        previous_end = before
        for phase in conversation.phases:
            assert previous_end <= phase.start_ms <= phase.end_ms
            previous_end = phase.end_ms
        assert previous_end <= after

    def test_banner_and_keywords(self, tls_server: SniServer) -> None:
        """The banner, and the extensions before TLS (with STARTTLS) and after (without)."""
        conversation = talk(tls_server.server)
        assert conversation.banner is not None and conversation.banner.startswith("220 ")
        assert conversation.keywords_before is not None
        assert conversation.keywords_after is not None
        assert "STARTTLS" in conversation.keywords_before
        assert "STARTTLS" not in conversation.keywords_after
        assert "SIZE 67108864" in conversation.keywords_before
        assert "8BITMIME" in conversation.keywords_after

    def test_tls_facts(self, tls_server: SniServer) -> None:
        """Version, cipher, subject and names of the server's certificate; SNI is the name."""
        tls_server.sni.clear()
        conversation = talk(tls_server.server)
        tls = conversation.tls
        assert tls is not None
        assert tls.version in ("TLSv1.2", "TLSv1.3")
        assert tls.cipher
        assert tls.subject is not None and tls.subject.startswith("/O=mxf test/")
        assert tls.names == [f"DNS:{SERVER_NAME}"]
        assert tls.checked_name == SERVER_NAME
        assert tls_server.sni == [SERVER_NAME]

    def test_no_starttls(self, plain_server: AiosmtpdServer) -> None:
        """No STARTTLS offered: banner, EHLO and QUIT, no TLS phase, no error."""
        conversation = talk(plain_server)
        assert conversation.error is None
        assert names(conversation) == [BANNER, EHLO, QUIT]
        assert conversation.tls is None and conversation.keywords_after is None
        assert conversation.keywords_before is not None
        assert "STARTTLS" not in conversation.keywords_before
        assert "TLS: STARTTLS not offered" in render_text(conversation)


class TestVerdicts:
    """The certificate checked against the configured CAs and the system default store."""

    def test_verified_with_cafile(self, tls_server: SniServer, certs: Certs) -> None:
        """With the right CAFILE: verified, and not by the system default store."""
        tls = talk(tls_server.server, env={"CAFILE": str(certs.cafile)}).tls
        assert tls is not None
        assert tls.verified_with == f"CAFILE {certs.cafile}"
        assert (tls.verified, tls.verify_error) == (True, None)
        assert tls.verified_default is False

    def test_not_verified_without_cafile(self, tls_server: SniServer) -> None:
        """Without CAFILE: checked against the system default store, with OpenSSL's reason."""
        conversation = talk(tls_server.server)
        tls = conversation.tls
        assert conversation.error is None, "the handshake never verifies: the talk goes on"
        assert tls is not None
        assert tls.verified_with == DEFAULT_STORE
        assert (tls.verified, tls.verify_error) == (False, "unable to get local issuer certificate")
        assert tls.verified_default is False

    def test_wrong_name(self, tls_server: SniServer, certs: Certs) -> None:
        """A name the certificate does not carry: hostname mismatch, the talk goes on."""
        conversation = talk(
            tls_server.server, name="elsewhere.example.test", env={"CAFILE": str(certs.cafile)}
        )
        tls = conversation.tls
        assert tls is not None and conversation.error is None
        assert (tls.verified, tls.verify_error) == (False, "hostname mismatch")
        assert tls.checked_name == "elsewhere.example.test"

    def test_untrusted_certificate(self, certs: Certs) -> None:
        """A certificate from another CA: not verified with CAFILE, issuer not found."""
        server = SniServer(certs.server_context(untrusted=True))
        try:
            tls = talk(server.server, name=None, env={"CAFILE": str(certs.cafile)}).tls
        finally:
            server.close()
        assert tls is not None
        assert (tls.verified, tls.verify_error) == (False, "unable to get local issuer certificate")

    def test_intermediate_from_the_server(self, certs: Certs) -> None:
        """A chain through an intermediate the server sends verifies with the root alone."""
        intermediate = certs.ca.create_child_ca()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        intermediate.issue_cert(SERVER_NAME).configure_cert(context)
        server = SniServer(context)
        try:
            tls = talk(server.server, env={"CAFILE": str(certs.cafile)}).tls
        finally:
            server.close()
        assert tls is not None
        assert (tls.verified, tls.verify_error) == (True, None)

    def test_address_literal_checks_the_chain(self, tls_server: SniServer, certs: Certs) -> None:
        """No exchanger name: no SNI, and the chain alone is checked."""
        tls_server.sni.clear()
        tls = talk(tls_server.server, name=None, env={"CAFILE": str(certs.cafile)}).tls
        assert tls is not None
        assert tls.checked_name is None
        assert (tls.verified, tls.verify_error) == (True, None)
        assert tls_server.sni == [None]
        text = "\n".join(render_text(Conversation([], None, None, None, tls, None)))
        assert "(chain only: no name to check): yes" in text

    @pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
    def test_cadir_wins_over_cafile(
        self, tls_server: SniServer, certs: Certs, tmp_path: Path
    ) -> None:
        """CADIR (with its hash links) is used even when CAFILE is set, as by the TLS clients."""
        cadir = tmp_path / "cadir"
        cadir.mkdir()
        shutil.copy(certs.cafile, cadir / "ca.pem")
        subprocess.run(["openssl", "rehash", str(cadir)], check=True, capture_output=True)
        wrong = tmp_path / "other.pem"
        certs.other_ca.cert_pem.write_to_path(str(wrong))
        tls = talk(tls_server.server, env={"CADIR": str(cadir), "CAFILE": str(wrong)}).tls
        assert tls is not None
        assert tls.verified_with == f"CADIR {cadir}"
        assert (tls.verified, tls.verify_error) == (True, None)

    def test_unusable_store_is_not_checked(self, tls_server: SniServer, tmp_path: Path) -> None:
        """A CADIR that is no directory, a CAFILE that is no PEM: no verdict, and why."""
        junk = tmp_path / "junk.pem"
        junk.write_text("not a certificate\n")
        for env, why in (
            ({"CADIR": str(junk)}, f"not checked: CADIR {junk} is not a directory"),
            ({"CAFILE": str(junk)}, f"not checked: cannot load CAFILE {junk}"),
        ):
            conversation = talk(tls_server.server, env=env)
            assert conversation.tls is not None and conversation.error is None
            assert (conversation.tls.verified, conversation.tls.verify_error) == (None, why)
            assert conversation.tls.verified_default is False


class TestHostilePeers:
    """Whatever the peer does, ``converse`` returns an error and the phases so far."""

    def test_refused_banner(self) -> None:
        """554 banner: the error quotes it, QUIT is still sent, no EHLO."""

        def script(peer: Peer) -> None:
            peer.reply("554 5.7.1 no mail from you")
            peer.expect(b"QUIT")
            peer.reply("221 bye")
            wait_for_eof(peer)

        conversation, peer, _ = scripted(script)
        assert conversation.error == "banner: 554 5.7.1 no mail from you"
        assert conversation.banner == "554 5.7.1 no mail from you"
        assert names(conversation) == [BANNER, QUIT]
        assert conversation.keywords_before is None
        assert bytes(peer.received) == b"QUIT\r\n"

    def test_garbage_instead_of_a_reply(self) -> None:
        """An HTTP answer: not SMTP, quoted; nothing is sent at all."""

        def script(peer: Peer) -> None:
            peer.send(b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n")
            wait_for_eof(peer)

        conversation, peer, _ = scripted(script)
        assert conversation.error == "banner: not SMTP: 'HTTP/1.1 400 Bad Request'"
        assert names(conversation) == [BANNER]
        assert bytes(peer.received) == b""

    def test_ten_megabyte_line(self) -> None:
        """A 10 MB line: given up after 64 KiB, with bounded memory."""
        line = b"220-" + b"x" * (10 << 20)

        def script(peer: Peer) -> None:
            with contextlib.suppress(OSError):
                peer.send(line)
            with contextlib.suppress(OSError):  # small reads: Peer's own are 1 MiB
                while peer.sock.recv(4096):
                    pass

        tracemalloc.start()
        try:
            conversation, _, elapsed = scripted(script)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert conversation.error == f"banner: not SMTP: a line longer than {MAX_LINE} bytes"
        assert peak < 1 << 20
        assert elapsed < TIMEOUT

    def test_silence(self) -> None:
        """A server that says nothing: the banner times out after the timeout, 1 s."""
        conversation, _, elapsed = scripted(wait_for_eof, timeout=1)
        assert conversation.error == "banner: no complete reply within 1 s"
        assert names(conversation) == [BANNER]
        assert 0.9 <= elapsed < 3
        phase = conversation.phases[0]
        assert 900 <= phase.end_ms - phase.start_ms < 3000

    def test_dripping_banner(self) -> None:
        """A byte every 0.1 s never completes a line: the deadline is per reply, not per read."""

        def script(peer: Peer) -> None:
            with contextlib.suppress(OSError):
                for count in range(100):
                    peer.send(b"x" if count else b"2")
                    time.sleep(0.1)

        conversation, _, elapsed = scripted(script, timeout=1)
        assert conversation.error == "banner: no complete reply within 1 s"
        assert elapsed < 3

    def test_reset_mid_ehlo(self) -> None:
        """Half an EHLO reply, then a reset: the error names EHLO, the banner is kept."""

        def script(peer: Peer) -> None:
            peer.reply("220 mx.example.test ESMTP")
            peer.expect(b"EHLO " + HELO.encode())
            peer.send(b"250-mx.example.test\r\n250-PIPEL")
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.sock.close()

        conversation, _, _ = scripted(script)
        assert conversation.error == "EHLO: connection reset by peer"
        assert names(conversation) == [BANNER, EHLO]
        assert conversation.banner == "220 mx.example.test ESMTP"
        assert conversation.keywords_before is None

    def test_starttls_refused(self) -> None:
        """454 to STARTTLS: the error quotes it, QUIT follows in clear, no TLS facts."""

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply("454 4.7.0 TLS not available")
            peer.expect(b"QUIT")
            peer.reply("221 bye")
            wait_for_eof(peer)

        conversation, _, _ = scripted(script)
        assert conversation.error == "STARTTLS: 454 4.7.0 TLS not available"
        assert names(conversation) == [BANNER, EHLO, STARTTLS, QUIT]
        assert conversation.keywords_before == ["PIPELINING", "SIZE 1000", "STARTTLS"]
        assert conversation.tls is None

    def test_failed_handshake(self) -> None:
        """220 to STARTTLS, then clear text instead of TLS: a TLS error, no clear-text retry."""

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply("220 2.0.0 go ahead")
            assert peer.read_exact(1) == b"\x16", "a TLS handshake record"
            peer.send(b"500 this is not TLS\r\n")
            wait_for_eof(peer)

        conversation, peer, _ = scripted(script)
        assert conversation.error is not None
        assert conversation.error.startswith(f"{HANDSHAKE}: ")
        assert names(conversation) == [BANNER, EHLO, STARTTLS, HANDSHAKE]
        assert conversation.tls is None
        after = after_starttls(peer)
        assert after[:1] == b"\x16" and b"QUIT" not in after and b"EHLO" not in after

    def test_stalled_handshake(self) -> None:
        """A server that takes the ClientHello and never answers: the handshake times out."""

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply("220 2.0.0 go ahead")
            wait_for_eof(peer)

        conversation, _, elapsed = scripted(script, timeout=1)
        assert conversation.error == f"{HANDSHAKE}: not complete within 1 s"
        assert elapsed < 3

    def test_dripping_handshake(self, certs: Certs) -> None:
        """A real server's handshake sent a byte every 50 ms: cut off at 1 s in all."""
        context = certs.server_context()

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply("220 2.0.0 go ahead")
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            server = context.wrap_bio(incoming, outgoing, server_side=True)
            incoming.write(peer.sock.recv(65536))
            with contextlib.suppress(ssl.SSLWantReadError):
                server.do_handshake()
            flight = outgoing.read()
            with contextlib.suppress(OSError):
                for at in range(len(flight)):
                    peer.send(flight[at : at + 1])
                    time.sleep(0.05)

        conversation, _, elapsed = scripted(script, timeout=1)
        assert conversation.error == f"{HANDSHAKE}: not complete within 1 s"
        assert elapsed < 3

    def test_helo_after_refused_ehlo(self) -> None:
        """A 5xx to EHLO falls back to HELO, as mxf-remote-smtpc does: no extensions."""

        def script(peer: Peer) -> None:
            peer.reply("220 old.example.test SMTP")
            peer.expect(b"EHLO " + HELO.encode())
            peer.reply("502 5.5.2 what?")
            peer.expect(b"HELO " + HELO.encode())
            peer.reply("250 old.example.test")
            peer.expect(b"QUIT")
            peer.reply("221 bye")
            wait_for_eof(peer)

        conversation, _, _ = scripted(script)
        assert conversation.error is None
        assert names(conversation) == [BANNER, EHLO, "HELO", QUIT]
        assert conversation.keywords_before == []


class TestNeverMail:
    """The conversation never goes past EHLO: no MAIL, whatever the server offers."""

    def test_transcript_has_no_mail(self, certs: Certs) -> None:
        """After EHLO the client sends STARTTLS, EHLO over TLS and QUIT, and nothing else."""
        context = certs.server_context()
        commands: list[bytes] = []
        leftover: list[bytes] = []

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply("220 2.0.0 go ahead")
            tls = ServerTLS(peer.sock, context)
            tls.handshake()
            lines = TlsLines(tls)
            while (line := lines.next()) is not None:
                commands.append(line)
                if line.startswith(b"EHLO"):
                    tls.send(b"250-mx.example.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n")
                    tls.send(b"250-SIZE 1000\r\n250 8BITMIME\r\n")
                elif line == b"QUIT\r\n":
                    tls.send(b"221 bye\r\n")
                else:
                    tls.send(b"250 go on\r\n")  # would invite more, if anything came
            leftover.append(lines.buffer)

        conversation, peer, _ = scripted(script)
        assert conversation.error is None
        assert names(conversation) == TLS_PHASES
        clear = bytes(peer.received).split(b"STARTTLS\r\n", 1)[0]
        assert clear == b"EHLO " + HELO.encode() + b"\r\n"
        assert commands == [b"EHLO " + HELO.encode() + b"\r\n", b"QUIT\r\n"]
        assert leftover == [b""]

    def test_helohost_cannot_smuggle_a_command(self) -> None:
        """A helohost with CR LF in it is cut there: the server sees one EHLO line, no MAIL."""

        def script(peer: Peer) -> None:
            peer.reply("220 mx.example.test ESMTP")
            peer.expect(b"EHLO me.example.test")
            peer.reply("250 mx.example.test")
            peer.expect(b"QUIT")
            peer.reply("221 bye")
            wait_for_eof(peer)

        conversation, peer, _ = scripted(
            script, helohost="me.example.test\r\nMAIL FROM:<evil@example.test>"
        )
        assert conversation.error is None
        assert b"MAIL" not in bytes(peer.received)


class TestOutput:
    """``render_text`` and ``as_dict``, as the probe prints them."""

    def test_as_dict_is_json(self, tls_server: SniServer, certs: Certs) -> None:
        """The JSON form names every phase with its times and carries the TLS facts."""
        conversation = talk(tls_server.server, env={"CAFILE": str(certs.cafile)})
        data = json.loads(json.dumps(as_dict(conversation)))
        assert [p["phase"] for p in data["phases"]] == TLS_PHASES
        assert all(p["took_ms"] >= 0 for p in data["phases"])
        assert data["tls"]["verified"] is True
        assert data["tls"]["verified_with"] == f"CAFILE {certs.cafile}"
        assert data["tls"]["names"] == [f"DNS:{SERVER_NAME}"]
        assert "STARTTLS" in data["keywords_before_tls"]
        assert data["error"] is None

    def test_render_text(self, tls_server: SniServer, certs: Certs) -> None:
        """The text form: a row per phase, extensions, TLS, both verdicts, the outcome."""
        conversation = talk(tls_server.server, env={"CAFILE": str(certs.cafile)})
        lines = render_text(conversation)
        text = "\n".join(lines)
        for phase in TLS_PHASES:
            assert any(line.endswith(phase) for line in lines), phase
        assert f"Verified with CAFILE {certs.cafile} for {SERVER_NAME}: yes" in lines
        assert f"Verified with the {DEFAULT_STORE} for {SERVER_NAME}: no" in lines
        assert "Extensions after TLS: " in text
        assert lines[-1] == "Conversation complete."

    def test_render_error(self) -> None:
        """A conversation that ended early says how, in its last line."""

        def script(peer: Peer) -> None:
            peer.reply("421 4.3.2 going down")
            peer.expect(b"QUIT")
            peer.close()

        conversation, _, _ = scripted(script)
        assert render_text(conversation)[-1] == "Conversation ended: banner: 421 4.3.2 going down"
        assert as_dict(conversation)["error"] == "banner: 421 4.3.2 going down"


def test_socket_is_closed(tls_server: SniServer) -> None:
    """``converse`` closes the connection it was given, also when it became a TLS socket."""
    sock = socket.create_connection((tls_server.server.address, tls_server.server.port))
    fd = sock.fileno()
    before = os.readlink(f"/proc/self/fd/{fd}")
    converse(sock, server_name=None, helohost=HELO, timeout=TIMEOUT, environ={}, clock=now_ms)
    assert sock.fileno() == -1
    try:
        after = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        after = None
    assert after != before
