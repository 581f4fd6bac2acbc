"""End to end with TLS: knot DNS -> mxf-remote -> TLS client -> protocol client -> real server.

The installed ``mxf-remote`` runs as qmail-rspawn would, with the DEFAULT protocols (no
``control/protocols``: ``qmtps:6209:-1:Y:N``, ``qmtp:209:1:N:N``, ``smtp:25:0:N:Y``) and
no s6-networking, so it finds ``mxf-remote-qmtpc``/``mxf-remote-smtpc`` beside itself and
wraps them in ``mxf-remote-tlsc``/``mxf-remote-ucspitlsc -k <exchanger>``.  Exchangers
listen on ports 25 and 6209 of 127.0.7.x and fd6d:7866::7xx in the session's private
network namespace: aiosmtpd with and without STARTTLS, Postfix with STARTTLS, a QMTPS
sink (TLS from the first byte), and a scripted server that accepts STARTTLS and then
breaks the handshake.  Certificates come from a trustme CA; ``CAFILE`` in mxf-remote's
environment turns verification on.  Each test checks the report bytes on fd 1 exactly,
nothing on fd 2, exit 0, and what arrived, byte for byte.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import tlskit
from tests.clientkit import postfix_binaries
from tests.infra.knot import KnotServer
from tests.infra.netns import listen_tcp
from tests.remotekit import Delivery, QmailHome, run_remote
from tests.tlskit import TIMEOUT, AiosmtpdServer, Certs

pytestmark = [pytest.mark.knot]

STARTTLS = "127.0.7.1"
PLAIN = "127.0.7.2"
BROKEN = "127.0.7.3"
WRONGNAME = "127.0.7.4"
POSTFIX = "127.0.7.5"
QMTPS = "fd6d:7866::706"

ZONE = f"""
starttls              MX    10 mx.tls
mx.tls                A     {STARTTLS}
plain                 MX    10 mx.plain
mx.plain              A     {PLAIN}
broken                MX    10 mx.broken
mx.broken             A     {BROKEN}
wrongname             MX    10 mx.wrongname
mx.wrongname          A     {WRONGNAME}
pf                    MX    10 mx.pf
mx.pf                 A     {POSTFIX}
qmtps                 MX    10 mx.qmtps
_qmtps._tcp.qmtps     SRV   0 0 6209 mx.qmtps
mx.qmtps              AAAA  {QMTPS}
"""
ZONES = {"mxf.test": ZONE}

SENDER = "alice@example.org"
RECIPIENTS = ("bob@example.org", "carol@example.org")
MESSAGE = (
    b"From: alice@example.org\nTo: bob@example.org\nDate: Wed, 25 Nov 2026 12:00:00 +0000\n"
    b"Message-ID: <tls@example.org>\nSubject: caf\xc3\xa9\n\n.\n..two\n.leading\nend\n"
)
SMTP_ACCEPTED = b"r\0r\0K%s accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"


def big_message() -> bytes:
    """A little over 10 MiB with dot lines and 8-bit bytes."""
    message = b"".join(
        b".dot %07d\n" % i if i % 7 == 0 else b"line %07d \xe9 %s\n" % (i, b"z" * 58)
        for i in range(162_000)
    )
    assert len(message) >= 10 << 20
    return message


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A trustme CA; its certificate is the CAFILE of the verifying tests."""
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def servers(certs: Certs) -> Iterator[dict[str, Any]]:
    """Every exchanger: aiosmtpd with STARTTLS, without, with a wrong name; the QMTPS sink;
    the server that breaks the handshake after its 220."""
    from tests.conftest import NETNS_PROBLEM

    if NETNS_PROBLEM is not None:
        pytest.skip(f"no private network namespace: {NETNS_PROBLEM}")
    made: dict[str, Any] = {}
    try:
        made["starttls"] = AiosmtpdServer(STARTTLS, 25, certs.named_context("mx.tls.mxf.test"))
        made["plain"] = AiosmtpdServer(PLAIN, 25, None)
        made["wrongname"] = AiosmtpdServer(WRONGNAME, 25, certs.named_context("somebody.else.test"))
        made["qmtps"] = tlskit.Server(
            tlskit.serve_qmtps, certs.named_context("mx.qmtps.mxf.test"), listen_tcp(QMTPS, 6209)
        )
        made["broken"] = tlskit.Server(serve_broken_starttls, None, listen_tcp(BROKEN, 25))
        yield made
    finally:
        for server in made.values():
            server.close()


@pytest.fixture(scope="module")
def postfix(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's Postfix on 127.0.7.5:25 offering STARTTLS for mx.pf.mxf.test (skipped when
    it is not installed)."""
    from tests.conftest import NETNS_PROBLEM

    if NETNS_PROBLEM is not None:
        pytest.skip(f"no private network namespace: {NETNS_PROBLEM}")
    binaries = postfix_binaries()
    if binaries is None:
        pytest.skip("postfix is not installed (Debian package: postfix)")
    if os.geteuid() != 0:
        pytest.skip("postfix's master must start as root")
    directory = tmp_path_factory.mktemp("postfix-certs")
    directory.chmod(0o755)
    certfile, keyfile = certs.named_files(directory, "mx.pf.mxf.test")
    server = tlskit.postfix_with_starttls(
        *binaries, 25, address=POSTFIX, certfile=certfile, keyfile=keyfile
    )
    yield server
    server.stop()


def serve_broken_starttls(server: tlskit.Server, conn: socket.socket) -> dict[str, Any]:
    """Offer STARTTLS, say 220 to it, then answer the ClientHello with clear text."""
    reader = conn.makefile("rb")
    with reader:
        conn.sendall(b"220 mx.broken.mxf.test ESMTP\r\n")
        ehlo = reader.readline()
        conn.sendall(b"250-mx.broken.mxf.test\r\n250 STARTTLS\r\n")
        command = reader.readline()
        conn.sendall(b"220 2.0.0 go ahead\r\n")
        hello = reader.read(1)
        conn.sendall(b"500 5.5.1 this is not TLS\r\n")
        rest = b""
        try:
            while chunk := reader.read1(65536):
                rest += chunk
        except OSError:
            pass
    return {"ehlo": ehlo, "command": command, "hello": hello, "rest": rest}


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """A qmail home with control/me and nothing else: default protocols, default TLS
    clients (/package/net/s6-networking is absent)."""
    assert not os.path.exists("/package/net/s6-networking/command")
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control("me", "me.example\n")
    return qmail


def deliver(
    home: QmailHome,
    host: str,
    knot: KnotServer,
    *,
    message: bytes = MESSAGE,
    cafile: Path | None = None,
) -> Delivery:
    """One delivery through the real mxf-remote (CAFILE in its environment if given)."""
    env = dict(knot.env)
    if cafile is not None:
        env["CAFILE"] = str(cafile)
    return run_remote(
        home, host, env=env, sender=SENDER, recipients=RECIPIENTS, message=message, timeout=120
    )


def assert_clean(delivery: Delivery, report: bytes) -> None:
    """Exactly ``report`` on fd 1, nothing on fd 2, exit 0."""
    assert (delivery.stdout, delivery.stderr, delivery.returncode) == (report, b"", 0)


def assert_smtp_arrival(server: AiosmtpdServer, message: bytes, *, tls: bool) -> None:
    """The one message ``server`` took: envelope, CRLF content, and TLS or not."""
    arrival = server.arrival()
    assert (arrival.sender, arrival.recipients) == (SENDER, list(RECIPIENTS))
    assert arrival.content == message.replace(b"\n", b"\r\n")
    if tls:
        assert arrival.tls in ("TLSv1.2", "TLSv1.3")
    else:
        assert arrival.tls is None
    assert server.no_arrival()


@pytest.mark.usefixtures("netns")
class TestStarttls:
    """SMTP with the default ``smtp:25:0:N:Y``: STARTTLS when offered, clear when not."""

    def test_delivered_over_starttls(
        self, home: QmailHome, knot: KnotServer, servers: dict[str, Any], certs: Certs
    ) -> None:
        """STARTTLS offered, certificate verified for the MX name: delivered over TLS."""
        delivery = deliver(home, "starttls.mxf.test", knot, cafile=certs.cafile)
        assert_clean(delivery, SMTP_ACCEPTED % STARTTLS.encode())
        assert_smtp_arrival(servers["starttls"], MESSAGE, tls=True)

    def test_without_starttls_delivered_in_clear(
        self, home: QmailHome, knot: KnotServer, servers: dict[str, Any]
    ) -> None:
        """A server without STARTTLS gets the message in clear (opportunistic TLS)."""
        delivery = deliver(home, "plain.mxf.test", knot)
        assert_clean(delivery, SMTP_ACCEPTED % PLAIN.encode())
        assert_smtp_arrival(servers["plain"], MESSAGE, tls=False)

    def test_handshake_failure_after_starttls_is_deferred(
        self, home: QmailHome, knot: KnotServer, servers: dict[str, Any]
    ) -> None:
        """220 to STARTTLS, then no TLS: Z, and nothing more in clear on the connection."""
        delivery = deliver(home, "broken.mxf.test", knot)
        assert_clean(
            delivery,
            b"ZTLS handshake with %s failed after STARTTLS. (#4.4.2)\n\0" % BROKEN.encode(),
        )
        seen = servers["broken"].result()
        assert (seen["ehlo"], seen["command"]) == (b"EHLO me.example\r\n", b"STARTTLS\r\n")
        assert seen["hello"] == b"\x16"
        assert b"MAIL" not in seen["rest"] and b"EHLO" not in seen["rest"]

    def test_wrong_name_with_cafile_is_deferred(
        self, home: QmailHome, knot: KnotServer, servers: dict[str, Any], certs: Certs
    ) -> None:
        """CAFILE set and a certificate for another name: Z, and no message arrives."""
        delivery = deliver(home, "wrongname.mxf.test", knot, cafile=certs.cafile)
        assert_clean(
            delivery,
            b"ZTLS handshake with %s failed after STARTTLS. (#4.4.2)\n\0" % WRONGNAME.encode(),
        )
        assert servers["wrongname"].no_arrival()

    def test_wrong_name_without_cafile_is_encrypted(
        self, home: QmailHome, knot: KnotServer, servers: dict[str, Any]
    ) -> None:
        """Without CAFILE the same server gets the message, still over TLS (not verified)."""
        delivery = deliver(home, "wrongname.mxf.test", knot)
        assert_clean(delivery, SMTP_ACCEPTED % WRONGNAME.encode())
        assert_smtp_arrival(servers["wrongname"], MESSAGE, tls=True)

    def test_ten_megabytes_over_starttls(
        self, home: QmailHome, knot: KnotServer, servers: dict[str, Any], certs: Certs
    ) -> None:
        """A 10 MiB message crosses STARTTLS byte for byte."""
        message = big_message()
        delivery = deliver(home, "starttls.mxf.test", knot, message=message, cafile=certs.cafile)
        assert_clean(delivery, SMTP_ACCEPTED % STARTTLS.encode())
        assert_smtp_arrival(servers["starttls"], message, tls=True)


@pytest.mark.usefixtures("netns")
class TestPostfix:
    """A real MTA offering STARTTLS (Postfix 3.7, smtpd_tls_security_level = may)."""

    def test_delivered_over_starttls(
        self, home: QmailHome, knot: KnotServer, postfix: Any, certs: Certs
    ) -> None:
        """Verified STARTTLS into Postfix: its Received line names TLS; content exact."""
        delivery = deliver(home, "pf.mxf.test", knot, cafile=certs.cafile)
        assert (delivery.stderr, delivery.returncode) == (b"", 0)
        prefix = (
            b"r\0r\0K"
            + POSTFIX.encode()
            + b" accepted message.\nRemote host said: 250 2.0.0 Ok: queued as "
        )
        assert delivery.stdout.startswith(prefix)
        assert delivery.stdout.endswith(b"\n\0")
        queue_id = delivery.stdout[len(prefix) : -2].decode()
        assert queue_id.isalnum()
        envelope, content = postfix.held(queue_id)
        assert f"sender: {SENDER}\n" in envelope
        recipients = [
            line.split(": ", 1)[1]
            for line in envelope.splitlines()
            if line.startswith("recipient:")
        ]
        assert recipients == list(RECIPIENTS)
        received, _, stored = content.partition(b"\nFrom: ")
        assert b"(using TLSv1." in received, received
        assert b"From: " + stored == MESSAGE


@pytest.mark.usefixtures("netns")
class TestQmtps:
    """QMTP over TLS from the first byte (``qmtps:6209:-1:Y:N``) through mxf-remote-tlsc."""

    def test_delivered_over_qmtps(
        self, home: QmailHome, knot: KnotServer, servers: dict[str, Any], certs: Certs
    ) -> None:
        """The SRV target's QMTPS port wins; SNI is the exchanger; the package is exact."""
        delivery = deliver(home, "qmtps.mxf.test", knot, cafile=certs.cafile)
        assert_clean(
            delivery,
            b"r\0r\0K%s accepted message.\nRemote host said: queued over TLSv1.3\n\0"
            % QMTPS.encode(),
        )
        seen = servers["qmtps"].result(TIMEOUT)
        assert seen["message"] == b"\n" + MESSAGE
        assert (seen["sender"], seen["recipients"]) == (
            SENDER.encode(),
            [r.encode() for r in RECIPIENTS],
        )
        assert seen["sni"] == "mx.qmtps.mxf.test"

    def test_ten_megabytes_over_qmtps(
        self, home: QmailHome, knot: KnotServer, servers: dict[str, Any]
    ) -> None:
        """A 10 MiB message goes through the implicit-TLS pump byte for byte."""
        message = big_message()
        delivery = deliver(home, "qmtps.mxf.test", knot, message=message)
        assert_clean(
            delivery,
            b"r\0r\0K%s accepted message.\nRemote host said: queued over TLSv1.3\n\0"
            % QMTPS.encode(),
        )
        seen = servers["qmtps"].result(TIMEOUT)
        assert seen["message"] == b"\n" + message
