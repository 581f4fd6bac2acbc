"""STARTTLS in mxf-remote-smtpc under mxf-remote-ucspitlsc: real servers, real TLS, real processes.

smtpc runs the way mxf-remote leaves it with ``smtp:25:0:N:Y``: ``mxf-remote-ucspitlsc -k
NAME -- mxf-remote-smtpc host sender recip...`` with the connection on fds 6/7, the message
on fd 0 and the report pipe on fds 1 and 2.  The servers are aiosmtpd and Postfix with
STARTTLS (trustme certificates), and scripted peers for what no real server does on
purpose (a refusal, a broken handshake, injected clear text).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxf_remote.clients import reports
from tests import tlskit
from tests.clientkit import (
    Peer,
    client_command,
    free_port,
    loopback_pair,
    make_home,
    postfix_binaries,
    reports_of,
)
from tests.danekit import DanePki, Issued
from tests.tlskit import TIMEOUT, AiosmtpdServer, Certs

NAME = "mx.tls.test"
ARGS = ["example.org", "alice@example.org", "bob@example.org"]
MESSAGE = b"Received: (qmail 1 invoked by uid 0); today\nSubject: hi\n\n.\n..two\nhello\n"
ACCEPTED = b"r\0K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"


def run_smtpc(
    connection: socket.socket,
    home: str,
    *,
    message: bytes = MESSAGE,
    env: dict[str, str] | None = None,
    ucspi: bool = True,
    fds: dict[int, int] | None = None,
) -> tuple[int, bytes]:
    """smtpc (under ucspitlsc unless ``ucspi`` is False) on ``connection``; (status, fd 1+2)."""
    argv = [*client_command("mxf-remote-smtpc"), *ARGS]
    if ucspi:
        argv = [*tlskit.client_command("mxf-remote-ucspitlsc"), "-k", NAME, "--", *argv]
    environment = {
        "PATH": os.environ.get("PATH", os.defpath),
        "MXF_QMAIL": home,
        "PROTO": "TCP",
        "TCPREMOTEIP": "127.0.0.1",
        "TCPREMOTEPORT": "25",
        "MXFHOST": NAME,
        "MXFPROTOCOL": "smtp",
        **(env or {}),
    }
    connection.setblocking(True)
    with tempfile.TemporaryFile() as message_file:
        message_file.write(message)
        message_file.seek(0)
        proc = tlskit.launch(
            argv,
            {6: connection.fileno(), 7: connection.fileno(), **(fds or {})},
            environment,
            stdin=message_file.fileno(),
        )
    connection.close()
    try:
        output = tlskit.read_to_eof(proc)
        status = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()
    return status, output


def converse(script: object, home: str, **kwargs: object) -> tuple[tuple[int, bytes], Peer]:
    """smtpc under ucspitlsc against a scripted peer on a loopback connection."""
    with loopback_pair() as (client, server):
        peer = Peer(server, script)  # type: ignore[arg-type]
        with peer:
            result = run_smtpc(client, home, **kwargs)  # type: ignore[arg-type]
    return result, peer


def offer_starttls(peer: Peer) -> None:
    """Greeting, then an EHLO answer offering STARTTLS."""
    peer.reply("220 mx.tls.test ESMTP")
    peer.expect(b"EHLO me.example")
    peer.reply("250-mx.tls.test", "250-PIPELINING", "250 STARTTLS")


@pytest.fixture
def home(tmp_path: Path) -> str:
    """A qmail home with control/me only."""
    return make_home(str(tmp_path))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A trustme CA with its CAFILE."""
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[AiosmtpdServer]:
    """aiosmtpd offering STARTTLS with a certificate for NAME."""
    server = AiosmtpdServer("127.0.0.1", 0, certs.named_context(NAME))
    yield server
    server.close()


@pytest.fixture(scope="module")
def plain_server() -> Iterator[AiosmtpdServer]:
    """aiosmtpd without STARTTLS."""
    server = AiosmtpdServer("127.0.0.1", 0, None)
    yield server
    server.close()


def connect(server: AiosmtpdServer) -> socket.socket:
    """A fresh connection to ``server``."""
    return socket.create_connection((server.address, server.port), timeout=TIMEOUT)


class TestAiosmtpd:
    """A real SMTP server with STARTTLS (aiosmtpd): TLS when offered, clear when not."""

    def test_delivery_over_starttls(self, tls_server: AiosmtpdServer, home: str) -> None:
        """STARTTLS offered: the message arrives over TLS, envelope and body byte for byte."""
        status, output = run_smtpc(connect(tls_server), home)
        assert (status, output) == (0, ACCEPTED)
        arrival = tls_server.arrival()
        assert arrival.tls in ("TLSv1.2", "TLSv1.3")
        assert (arrival.sender, arrival.recipients) == ("alice@example.org", ["bob@example.org"])
        assert arrival.content == MESSAGE.replace(b"\n", b"\r\n")

    def test_verified_name(self, tls_server: AiosmtpdServer, certs: Certs, home: str) -> None:
        """With CAFILE the certificate is checked for NAME, and a good one passes."""
        status, output = run_smtpc(connect(tls_server), home, env={"CAFILE": str(certs.cafile)})
        assert (status, output) == (0, ACCEPTED)
        assert tls_server.arrival().tls is not None

    def test_wrong_name_is_deferred(self, certs: Certs, home: str) -> None:
        """With CAFILE, a certificate for another name fails the handshake: Z, nothing sent."""
        server = AiosmtpdServer("127.0.0.1", 0, certs.named_context("elsewhere.test"))
        try:
            status, output = run_smtpc(connect(server), home, env={"CAFILE": str(certs.cafile)})
            assert (status, output) == (0, reports.tls_failed("127.0.0.1"))
            assert output == b"ZTLS handshake with 127.0.0.1 failed after STARTTLS. (#4.4.2)\n\0"
            assert server.no_arrival()
        finally:
            server.close()

    def test_untrusted_certificate_is_deferred(self, certs: Certs, home: str) -> None:
        """With CAFILE, a certificate from another CA fails the handshake: Z."""
        server = AiosmtpdServer("127.0.0.1", 0, certs.server_context(untrusted=True))
        try:
            status, output = run_smtpc(connect(server), home, env={"CAFILE": str(certs.cafile)})
            assert (status, output) == (0, reports.tls_failed("127.0.0.1"))
            assert server.no_arrival()
        finally:
            server.close()

    def test_unverified_without_cafile(self, certs: Certs, home: str) -> None:
        """Without CAFILE or CADIR, TLS is opportunistic: a wrong name still encrypts."""
        server = AiosmtpdServer("127.0.0.1", 0, certs.named_context("elsewhere.test"))
        try:
            assert run_smtpc(connect(server), home) == (0, ACCEPTED)
            assert server.arrival().tls is not None
        finally:
            server.close()

    def test_not_offered_goes_on_in_clear(self, plain_server: AiosmtpdServer, home: str) -> None:
        """No STARTTLS in the EHLO answer: SSLCTLFD closed, delivered in clear."""
        assert run_smtpc(connect(plain_server), home) == (0, ACCEPTED)
        arrival = plain_server.arrival()
        assert arrival.tls is None
        assert arrival.content == MESSAGE.replace(b"\n", b"\r\n")

    def test_no_tls_client_no_starttls(self, tls_server: AiosmtpdServer, home: str) -> None:
        """Without a UCSPI-TLS client (no SSLCTLFD) smtpc never sends STARTTLS."""
        assert run_smtpc(connect(tls_server), home, ucspi=False) == (0, ACCEPTED)
        assert tls_server.arrival().tls is None

    def test_ten_megabytes_over_tls(self, tls_server: AiosmtpdServer, home: str) -> None:
        """A 10 MB message with dot lines crosses STARTTLS byte for byte."""
        message = b"".join(
            b".dot %07d\n" % i if i % 7 == 0 else b"line %07d %s\n" % (i, b"z" * 60)
            for i in range(162_000)
        )
        assert len(message) >= 10 << 20
        assert run_smtpc(connect(tls_server), home, message=message) == (0, ACCEPTED)
        arrival = tls_server.arrival()
        assert arrival.tls is not None
        assert arrival.content == message.replace(b"\n", b"\r\n")


class TestScriptedPeers:
    """What real servers do not do on purpose: refusals, broken handshakes, injection."""

    @pytest.mark.parametrize("code", ["454 4.7.0 TLS not available", "502 5.5.1 no"])
    def test_starttls_refused_goes_on_in_clear(self, home: str, code: str) -> None:
        """Refused without certificate verification: as if not offered, delivered in clear."""

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply(code)
            peer.expect(b"MAIL FROM:<alice@example.org>")
            peer.reply("250 ok")
            peer.expect(b"RCPT TO:<bob@example.org>")
            peer.reply("250 ok")
            peer.expect(b"DATA")
            peer.reply("354 go")
            assert peer.read_data() == MESSAGE.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
            peer.reply("250 2.0.0 OK queued")
            peer.expect(b"QUIT")

        (status, output), peer = converse(script, home)
        assert (status, output) == (0, ACCEPTED)
        assert bytes(peer.received).count(b"EHLO") == 1

    @pytest.mark.parametrize(
        ("code", "env"),
        [
            ("454 4.7.0 TLS not available", {"MXFTLSVERIFY": "1"}),
            ("502 5.5.1 no", {"MXFTLSVERIFY": "1"}),
            ("421 4.3.2 closing", {}),
        ],
    )
    def test_starttls_refused_is_deferred(self, home: str, code: str, env: dict[str, str]) -> None:
        """Refused with verification configured, or 421: Z with the text, no MAIL in clear."""

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply(code)
            peer.expect(b"QUIT")
            assert peer.read_to_eof(TIMEOUT) == b""

        (status, output), _ = converse(script, home, env=env)
        assert status == 0
        assert output == (
            b"ZConnected to 127.0.0.1 but STARTTLS was refused.\nRemote host said: "
            + code.encode()
            + b"\n\0"
        )

    def test_handshake_failure_after_220_is_deferred(self, home: str) -> None:
        """220 to STARTTLS, then no TLS: Z, and not one clear-text byte after STARTTLS."""

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply("220 2.0.0 go ahead")
            hello = peer.read_exact(1)
            assert hello == b"\x16", "a TLS handshake record"
            peer.send(b"500 this is not TLS\r\n")
            peer.read_to_eof(TIMEOUT)

        (status, output), peer = converse(script, home)
        assert (status, output) == (0, reports.tls_failed("127.0.0.1"))
        after = bytes(peer.received).split(b"STARTTLS\r\n", 1)[1]
        assert after[:1] == b"\x16"
        assert b"MAIL" not in after and b"QUIT" not in after and b"EHLO" not in after

    def test_peer_gone_after_220_is_deferred(self, home: str) -> None:
        """220 to STARTTLS and the connection closes: Z, never a clear-text retry."""

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply("220 2.0.0 go ahead")
            peer.close()

        (status, output), _ = converse(script, home)
        assert (status, output) == (0, reports.tls_failed("127.0.0.1"))

    def test_clear_text_after_220_is_discarded(self, certs: Certs, home: str) -> None:
        """Bytes sent in clear behind the 220 are dropped (RFC 3207 §4.2): EHLO again over TLS."""
        context = certs.named_context(NAME)

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.send(b"220 go ahead\r\n250-injected\r\n250 STARTTLS\r\n")
            tls = tlskit.ServerTLS(peer.sock, context)
            tls.handshake()
            lines = TlsLines(tls)
            assert lines.next() == b"EHLO me.example\r\n"
            tls.send(b"250-mx.tls.test\r\n250 8BITMIME\r\n")
            assert lines.next() == b"MAIL FROM:<alice@example.org>\r\n"
            tls.send(b"250 ok\r\n")
            assert lines.next() == b"RCPT TO:<bob@example.org>\r\n"
            tls.send(b"250 ok\r\n")
            assert lines.next() == b"DATA\r\n"
            tls.send(b"354 go\r\n")
            while lines.next() != b".\r\n":
                pass
            tls.send(b"250 ok over tls\r\n")
            assert lines.next() == b"QUIT\r\n"

        (status, output), _ = converse(script, home)
        assert (status, output) == (
            0,
            b"r\0K127.0.0.1 accepted message.\nRemote host said: 250 ok over tls\n\0",
        )


class TlsLines:
    """Lines from a ``ServerTLS`` session."""

    def __init__(self, tls: tlskit.ServerTLS) -> None:
        self.tls = tls
        self.buffer = b""

    def next(self) -> bytes:
        """The next line with its CRLF."""
        while b"\n" not in self.buffer:
            data = self.tls.recv()
            assert data, "EOF before a line"
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


class TestUcspiTlsProtocol:
    """The UCSPI-TLS side of smtpc, seen from the control descriptor itself."""

    def test_declining_closes_sslctlfd_without_a_word(self, home: str) -> None:
        """STARTTLS not offered: smtpc closes SSLCTLFD without writing, then delivers."""
        ours, theirs = socket.socketpair()
        read_end, write_end = os.pipe()

        def script(peer: Peer) -> None:
            peer.reply("220 mx ESMTP")
            peer.expect(b"EHLO me.example")
            peer.reply("250 mx")
            assert peer.line() is not None
            peer.reply("250 ok")
            assert peer.line() is not None
            peer.reply("250 ok")
            peer.expect(b"DATA")
            peer.reply("354 go")
            assert peer.read_data() is not None
            peer.reply("250 2.0.0 OK queued")
            peer.expect(b"QUIT")

        env = {"SSLCTLFD": "8", "SSLREADFD": "9", "SSLWRITEFD": "10"}
        fds = {8: theirs.fileno(), 9: read_end, 10: write_end}
        try:
            with loopback_pair() as (client, server), Peer(server, script):
                result = run_smtpc(client, home, env=env, ucspi=False, fds=fds)
            theirs.close()
            ours.settimeout(TIMEOUT)
            assert ours.recv(10) == b""
        finally:
            for fd in (read_end, write_end):
                os.close(fd)
            ours.close()
            theirs.close()
        assert result == (0, ACCEPTED)

    def test_unusable_tls_descriptors_defer(self, home: str) -> None:
        """SSLCTLFD set but SSLREADFD/SSLWRITEFD not open, STARTTLS offered: Z #4.3.0."""
        ours, theirs = socket.socketpair()

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"QUIT")

        env = {"SSLCTLFD": "8", "SSLREADFD": "40", "SSLWRITEFD": "41"}
        try:
            with loopback_pair() as (client, server), Peer(server, script):
                result = run_smtpc(client, home, env=env, ucspi=False, fds={8: theirs.fileno()})
        finally:
            ours.close()
            theirs.close()
        assert result == (
            0,
            b"ZUnable to start TLS: SSLREADFD and SSLWRITEFD are not usable. (#4.3.0)\n\0",
        )


@pytest.fixture(scope="module")
def postfix_tls(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Debian's Postfix offering STARTTLS with a certificate for NAME (skipped when absent)."""
    binaries = postfix_binaries()
    if binaries is None:
        pytest.skip("postfix is not installed (Debian package: postfix)")
    if os.geteuid() != 0:
        pytest.skip("postfix's master must start as root")
    directory = tmp_path_factory.mktemp("postfix-certs")
    directory.chmod(0o755)
    certfile, keyfile = certs.named_files(directory, NAME)
    server = tlskit.postfix_with_starttls(
        *binaries, free_port(), address="127.0.0.1", certfile=certfile, keyfile=keyfile
    )
    yield server
    server.stop()


class TestPostfix:
    """A real MTA with STARTTLS (Postfix 3.7, smtpd_tls_security_level = may)."""

    def test_delivery_over_starttls(self, postfix_tls: object, certs: Certs, home: str) -> None:
        """Verified TLS to Postfix: its Received line says TLS; envelope and content exact."""
        server = postfix_tls
        message = (
            b"From: alice@example.org\nTo: bob@example.org\n"
            b"Date: Wed, 25 Nov 2026 12:00:00 +0000\nMessage-ID: <2@example.org>\n"
            b"Subject: caf\xc3\xa9\n\n.\n..two\n.leading\nend\n"
        )
        connection = socket.create_connection(
            ("127.0.0.1", server.port),  # type: ignore[attr-defined]
            timeout=TIMEOUT,
        )
        status, output = run_smtpc(
            connection, home, message=message, env={"CAFILE": str(certs.cafile)}
        )
        assert status == 0
        first, last = reports_of(output)
        assert first == b"r\0"
        assert last.startswith(
            b"K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 Ok: queued as "
        )
        queue_id = last.split(b"queued as ")[1].rstrip(b"\n\0").decode()
        envelope, content = server.held(queue_id)  # type: ignore[attr-defined]
        assert "sender: alice@example.org\n" in envelope
        recipients = [
            line.split(": ", 1)[1]
            for line in envelope.splitlines()
            if line.startswith("recipient:")
        ]
        assert recipients == ["bob@example.org"]
        received, _, stored = content.partition(b"\nFrom: ")
        assert b"(using TLSv1." in received, received
        assert b"From: " + stored == message


@pytest.fixture(scope="module")
def dane_leaf(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    """A self-signed leaf for NAME (DANE-EE) from a danekit PKI."""
    return DanePki(tmp_path_factory.mktemp("dane")).self_signed("leaf", NAME)


@pytest.fixture(scope="module")
def dane_server(dane_leaf: Issued) -> Iterator[AiosmtpdServer]:
    """aiosmtpd offering STARTTLS with the self-signed DANE-EE leaf."""
    import ssl

    leaf = dane_leaf
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf.chain_path, leaf.key_path)
    server = AiosmtpdServer("127.0.0.1", 0, context)
    yield server
    server.close()


class TestTlsPolicy:
    """MXFTLSREQUIRED (DANE, MTA-STS): never clear text; the engine's reason in the report."""

    def test_dane_match_delivers_over_tls(
        self, dane_server: AiosmtpdServer, dane_leaf: Issued, home: str
    ) -> None:
        """A matching DANE-EE record: delivered over TLS, as without a policy."""
        record = dane_leaf.tlsa(3, 1, 1)
        env = {"MXFDANE": record, "MXFTLSREQUIRED": "dane"}
        assert run_smtpc(connect(dane_server), home, env=env) == (0, ACCEPTED)
        assert dane_server.arrival().tls is not None

    def test_dane_mismatch_is_deferred_with_reason(
        self, dane_server: AiosmtpdServer, home: str
    ) -> None:
        """No record matches: Z with the engine's reason, (#4.7.5), nothing delivered."""
        env = {"MXFDANE": "3 1 1 " + "ab" * 32, "MXFTLSREQUIRED": "dane"}
        status, output = run_smtpc(connect(dane_server), home, env=env)
        assert (status, output) == (
            0,
            b"ZTLS with 127.0.0.1 failed after STARTTLS: "
            b"DANE: no TLSA record matched the certificate. (#4.7.5)\n\0",
        )
        assert output == reports.tls_failed_because(
            "127.0.0.1", "DANE: no TLSA record matched the certificate"
        )
        assert dane_server.no_arrival()

    def test_malformed_records_are_deferred(self, dane_server: AiosmtpdServer, home: str) -> None:
        """A malformed MXFDANE: Z naming the configuration error, never clear text."""
        env = {"MXFDANE": "1 1 1 " + "ab" * 32, "MXFTLSREQUIRED": "dane"}
        status, output = run_smtpc(connect(dane_server), home, env=env)
        assert status == 0
        assert output.startswith(
            b"ZTLS with 127.0.0.1 failed after STARTTLS: TLS client configuration error: MXFDANE: "
        )
        assert output.endswith(b". (#4.7.5)\n\0")
        assert dane_server.no_arrival()

    @pytest.mark.parametrize(("policy", "label"), [("dane", b"DANE"), ("mta-sts", b"MTA-STS")])
    def test_not_offered_is_deferred(
        self, plain_server: AiosmtpdServer, home: str, policy: str, label: bytes
    ) -> None:
        """No STARTTLS offered under a policy: Z, no MAIL in clear."""
        env = {"MXFTLSREQUIRED": policy}
        assert run_smtpc(connect(plain_server), home, env=env) == (
            0,
            b"ZConnected to 127.0.0.1 but STARTTLS is not offered, and "
            + label
            + b" requires TLS. (#4.7.5)\n\0",
        )
        assert plain_server.no_arrival()

    def test_no_tls_client_is_deferred(self, tls_server: AiosmtpdServer, home: str) -> None:
        """Under a policy without a UCSPI-TLS client (no SSLCTLFD): Z, nothing in clear."""
        env = {"MXFTLSREQUIRED": "mta-sts"}
        assert run_smtpc(connect(tls_server), home, env=env, ucspi=False) == (
            0,
            b"ZTLS is required by MTA-STS but no TLS client is running. (#4.7.5)\n\0",
        )
        assert tls_server.no_arrival()

    def test_refused_is_deferred(self, home: str) -> None:
        """STARTTLS refused under a policy: Z with the server's text, QUIT, nothing else."""

        def script(peer: Peer) -> None:
            offer_starttls(peer)
            peer.expect(b"STARTTLS")
            peer.reply("454 4.7.0 TLS not available")
            peer.expect(b"QUIT")
            assert peer.read_to_eof(TIMEOUT) == b""

        (status, output), _ = converse(script, home, env={"MXFTLSREQUIRED": "dane"})
        assert (status, output) == (
            0,
            b"ZConnected to 127.0.0.1 but STARTTLS was refused, and DANE requires TLS. (#4.7.5)\n"
            b"Remote host said: 454 4.7.0 TLS not available\n\0",
        )

    def test_unknown_policy_still_requires_tls(
        self, plain_server: AiosmtpdServer, home: str
    ) -> None:
        """A value smtpc does not know still means TLS is required (fail closed)."""
        status, output = run_smtpc(connect(plain_server), home, env={"MXFTLSREQUIRED": "\x1bweird"})
        assert status == 0
        assert output == (
            b"ZConnected to 127.0.0.1 but STARTTLS is not offered, and TLS policy requires"
            b" TLS. (#4.7.5)\n\0"
        )
        assert plain_server.no_arrival()

    def test_hostile_engine_reason_is_sanitized(self) -> None:
        """The reason crosses a pipe: control bytes become ``?``, length is capped."""
        text = "DANE: bad\x1b[31m" + "x" * 1000
        output = reports.tls_failed_because("127.0.0.1", text)
        assert b"\x1b" not in output
        assert output.startswith(b"ZTLS with 127.0.0.1 failed after STARTTLS: DANE: bad?[31m")
        assert len(output) < 520

    def test_tlsrpt_garbage_never_costs_the_message(
        self, dane_server: AiosmtpdServer, dane_leaf: Issued, home: str
    ) -> None:
        """A garbage MXFTLSRPT: the TLS-RPT hook fails quietly, the message is delivered."""
        record = dane_leaf.tlsa(3, 1, 1)
        env = {"MXFDANE": record, "MXFTLSREQUIRED": "dane", "MXFTLSRPT": "{not json"}
        assert run_smtpc(connect(dane_server), home, env=env) == (0, ACCEPTED)
        assert dane_server.arrival().tls is not None


class TestTlsRptHook:
    """record_tls_outcome: hands the outcome on, and never lets the recorder fail a delivery."""

    def test_passes_the_outcome_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The recorder gets the environment, the result, both addresses and the reason."""
        import types

        from mxf_remote.clients import smtp

        calls: list[tuple[object, ...]] = []
        fake = types.ModuleType("mxf_remote.tlsrpt")
        fake.record_from_environment = lambda *args, **kwargs: calls.append((args, kwargs))  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "mxf_remote.tlsrpt", fake)
        monkeypatch.setenv("TCPLOCALIP", "192.0.2.1")
        smtp.record_tls_outcome("validation-failure", receiving_ip="192.0.2.9", reason="DANE: x")
        assert len(calls) == 1
        args, kwargs = calls[0]
        assert args[0] is os.environ and args[1] == "validation-failure"
        assert kwargs == {
            "sending_ip": "192.0.2.1",
            "receiving_ip": "192.0.2.9",
            "reason": "DANE: x",
        }

    def test_a_failing_recorder_is_swallowed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A recorder that raises (or a module that cannot be imported) changes nothing."""
        import types

        from mxf_remote.clients import smtp

        def explode(*args: object, **kwargs: object) -> None:
            raise OSError("disk full")

        fake = types.ModuleType("mxf_remote.tlsrpt")
        fake.record_from_environment = explode  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "mxf_remote.tlsrpt", fake)
        smtp.record_tls_outcome("success", receiving_ip="192.0.2.9", reason="")
        monkeypatch.setitem(sys.modules, "mxf_remote.tlsrpt", None)  # ImportError
        smtp.record_tls_outcome("success", receiving_ip="192.0.2.9", reason="")
