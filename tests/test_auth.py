"""SMTP AUTH to relays: ``control/authsenders`` and ``smtproutes`` lines with ``|user|password``.

Hostile first: malformed credentials, passwords with ``:`` and ``|``, CRLF files -- and
no error text, report or process of the delivery ever shows the password.  Then the real
thing: aiosmtpd with an authenticator for every mechanism (PLAIN, LOGIN, CRAM-MD5 and
SCRAM-SHA-256 as handler mechanisms), smtpc under mxf-remote-ucspitlsc; scripted peers
for what no real server does on purpose (a wrong password, a relay without TLS, a server
whose SCRAM signature is wrong); and deliveries through the real ``mxf-remote``: the
sender's route beats the host's, and the password is in no ``/proc/<pid>/cmdline`` or
``environ`` while the delivery runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mxf_remote.clients import reports, sasl
from mxf_remote.control import (
    ControlError,
    Protocol,
    Route,
    lookup_sender_route,
    parse_route_value,
    parse_routes,
    read_control,
)
from mxf_remote.credentials import Credentials, find_credentials, split_value
from mxf_remote.destination import make_destination
from mxf_remote.prelude import Prepared, prepare
from tests import tlskit
from tests.clientkit import Peer, ScriptedServer, loopback_pair, make_home, reports_of
from tests.remotekit import QmailHome, run_remote
from tests.test_starttls import NAME, run_smtpc
from tests.tlskit import TIMEOUT, Certs

SECRET = "s3cr:et|pass"
"""The password of the tests: with a colon and a bar, as the format allows."""
USER = "relayuser"
SMTP = Protocol("smtp", 25, 0, False, True, "mxf-remote-smtpc", "/x/smtpc", "/x/ucspitlsc")
QMTP = Protocol("qmtp", 209, 1, False, False, "mxf-remote-qmtpc", "/x/qmtpc")


def accept_the_message(wire: Any) -> None:
    """MAIL, RCPT and DATA accepted, the message read to its dot, then QUIT and EOF."""
    wire.expect(b"MAIL FROM:<alice@example.org>")
    wire.send("250 ok")
    wire.expect(b"RCPT TO:<bob@example.org>")
    wire.send("250 ok")
    wire.expect(b"DATA")
    wire.send("354 go")
    while wire.line() != b".\r\n":
        pass
    wire.send("250 2.0.0 OK queued")
    wire.rest()


def b64(data: bytes) -> str:
    """Base64 text."""
    return base64.b64encode(data).decode()


SECRET_FORMS = (
    SECRET.encode(),
    b64(SECRET.encode()).encode(),
    b64(b"\0" + USER.encode() + b"\0" + SECRET.encode()).encode(),
)
"""The password as it could leak: as is, and base64 (alone and in a PLAIN response)."""


def assert_no_secret(data: bytes | str, *, user: bool = False) -> None:
    """``data`` shows the password in none of its forms (nor the user, when asked)."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    for form in SECRET_FORMS:
        assert form not in raw, f"the password leaked: {raw!r}"
    if user:
        assert USER.encode() not in raw and b64(USER.encode()).encode() not in raw


# -- parsing ---------------------------------------------------------------------------


class TestParsing:
    """Both files' lines: good, with parts missing, with hostile passwords; masked errors."""

    @pytest.mark.parametrize(
        ("value", "route", "password"),
        [
            (
                "mx.authdomain.com:587|myuser|mypass",
                Route("mx.authdomain.com", 587, "myuser"),
                "mypass",
            ),
            ("relay.example.com:587|u|p", Route("relay.example.com", 587, "u"), "p"),
            ("relay|u|p", Route("relay", None, "u"), "p"),
            ("[2001:db8::25]:2525|u|p", Route("[2001:db8::25]", 2525, "u"), "p"),
            ("relay:26|u|" + SECRET, Route("relay", 26, "u"), SECRET),
            ("relay:26|u|a|b|c", Route("relay", 26, "u"), "a|b|c"),
            ("relay:26|u|:::", Route("relay", 26, "u"), ":::"),
        ],
    )
    def test_good_lines(self, value: str, route: Route, password: str) -> None:
        """The route without the password; the password, ``:`` and ``|`` included, apart."""
        parsed = parse_route_value("smtproutes", 1, value)
        assert parsed == route
        credentials = split_value("smtproutes", 1, value).credentials
        assert credentials is not None
        assert credentials.password == password.encode()
        if len(password) > 2:
            assert password not in repr(parsed)
            assert password not in repr(credentials) and password not in str(credentials)

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("relay:26|", "credentials without a password"),
            ("relay:26|" + USER, "credentials without a password"),
            ("relay:26||" + SECRET, "credentials without a user"),
            ("relay:26|" + USER + "|", "credentials with an empty password"),
            ("|" + USER + "|" + SECRET, "credentials without a relay"),
            ("relay:5x7|" + USER + "|" + SECRET, "'5x7' is not a whole number"),
            ("relay:99999|" + USER + "|" + SECRET, "99999 is outside 1..65535"),
            ("re lay|" + USER + "|" + SECRET, "contains blanks"),
            ("[2001:db8::25|" + USER + "|" + SECRET, "has [ without ]"),
            (":26|" + USER + "|" + SECRET, "a port without a relay"),
            ("relay|us er|" + SECRET, "the user contains blanks"),
            ("relay|" + USER + "|a\0" + SECRET, "NUL"),
        ],
    )
    def test_malformed_lines_are_masked(self, value: str, problem: str) -> None:
        """Every error names the problem and never the password (nor the user)."""
        for name in ("smtproutes", "authsenders"):
            with pytest.raises(ControlError) as caught:
                parse_routes([f"key.example:{value}"], name)
            detail = caught.value.detail()
            assert problem in detail and f"control/{name} line 1" in detail
            assert_no_secret(detail)
            assert_no_secret(str(caught.value))
            assert_no_secret(repr(caught.value))
            assert "a\0" not in detail and USER + "|" not in detail

    def test_the_bad_port_bug_is_gone(self) -> None:
        """The README.auth example was refused as a bad port, password printed; now fine."""
        table = parse_routes(["authdomain.com:mx.authdomain.com:587|myuser|mypass"], "smtproutes")
        assert table == {b"authdomain.com": Route("mx.authdomain.com", 587, "myuser")}
        assert "mypass" not in repr(table)

    def test_crlf_file_is_an_error_without_the_password(self, tmp_path: Path) -> None:
        """A CRLF file is refused by line, without its content, on both sides."""
        home = make_home(
            str(tmp_path),
            protocols="smtp:25:0:N:N:/bin/true\n",
            smtproutes=f"example.org:relay:26|{USER}|{SECRET}\r\n",
        )
        with pytest.raises(ControlError) as caught:
            read_control(home, "/nonexistent")
        assert "carriage return" in caught.value.detail()
        assert_no_secret(caught.value.detail())
        with pytest.raises(ControlError) as caught:
            find_credentials(home, "example.org", "a@b", "smtp", "relay")
        assert_no_secret(caught.value.detail())

    def test_authsenders_lookup_order(self) -> None:
        """The sender itself, then ``@domain``, then the empty key; any case; first decides."""
        table = parse_routes(
            [
                "info@example.com:exact:26|u|p",
                "@example.com:domain|u|p",
                ":default:587|u|p",
                "nobody@example.com:",
                "# comment:ignored",
            ],
            "authsenders",
        )
        assert lookup_sender_route(table, "info@example.com") == Route("exact", 26, "u")
        assert lookup_sender_route(table, "INFO@Example.COM") == Route("exact", 26, "u")
        assert lookup_sender_route(table, "other@example.com") == Route("domain", None, "u")
        assert lookup_sender_route(table, "a@sub.example.com") == Route("default", 587, "u")
        assert lookup_sender_route(table, "") == Route("default", 587, "u")
        assert lookup_sender_route(table, "nobody@example.com") is None  # an empty relay
        assert lookup_sender_route({}, "info@example.com") is None


class TestRouteChoice:
    """mxf-remote: authsenders (by sender) before smtproutes (by host)."""

    ROUTES: ClassVar[dict[str, dict[bytes, Route]]] = {
        "smtp": {b"example.org": Route("host-relay", 25, "h")}
    }
    SENDERS: ClassVar[dict[bytes, Route | None]] = {
        b"@example.net": Route("sender-relay", 587, "s"),
        b"x@example.net": None,
    }

    def test_sender_route_beats_host_route(self) -> None:
        """The sender's relay only, over smtp, even with a qmtp route for the host."""
        routes = {**self.ROUTES, "qmtp": {b"": Route("qmtp-relay", None)}}
        destination = make_destination(
            "example.org",
            (QMTP, SMTP),
            routes,
            sender="a@example.net",
            sender_routes=self.SENDERS,
        )
        assert [(r.protocol.service, r.written, r.port) for r in destination.relays] == [
            ("smtp", "sender-relay", 587)
        ]

    def test_no_sender_route_leaves_host_routes(self) -> None:
        """No key for the sender, or an empty relay: the host's routes decide."""
        for sender in ("a@example.com", "x@example.net"):
            destination = make_destination(
                "example.org", (SMTP,), self.ROUTES, sender=sender, sender_routes=self.SENDERS
            )
            assert [r.written for r in destination.relays] == ["host-relay"]

    def test_without_smtp_the_sender_route_is_not_used(self) -> None:
        """authsenders routes over SMTP; with no usable smtp protocol it cannot apply."""
        destination = make_destination(
            "example.org", (QMTP,), {}, sender="a@example.net", sender_routes=self.SENDERS
        )
        assert destination.relays == ()

    def test_prepare_takes_the_sender(self, tmp_path: Path) -> None:
        """The prelude gives the sender to the destination (the arguments' second)."""
        home = make_home(
            str(tmp_path),
            protocols="smtp:25:0:N:N:/bin/true\n",
            authsenders=f"@example.net:[192.0.2.25]:587|{USER}|{SECRET}\n",
            smtproutes="example.org:[192.0.2.26]\n",
        )
        environ = {"MXF_QMAIL": home}
        for sender, relay in (("a@example.net", "192.0.2.25"), ("a@example.com", "192.0.2.26")):
            prepared = prepare("example.org", environ, beside="/nonexistent", sender=sender)
            assert isinstance(prepared, Prepared)
            assert [r.literal for r in prepared.destination.relays] == [relay]
            assert_no_secret(repr(prepared))


class TestFindCredentials:
    """The client's side of the same decision."""

    @pytest.fixture
    def home(self, tmp_path: Path) -> str:
        return make_home(
            str(tmp_path),
            authsenders=(
                f"boss@example.net:Sender-Relay.example.:587|boss|{SECRET}\n"
                "plain@example.net:plain-relay.example\n"
                "skip@example.net:\n"
            ),
            smtproutes=(
                f"example.org:host-relay.example:26|{USER}|{SECRET}\n"
                f".example.com:[2001:DB8::25]:26|{USER}|{SECRET}\n"
                "nocreds.example:host-relay.example\n"
            ),
        )

    def test_authsenders_first(self, home: str) -> None:
        """The sender's entry decides, for the relay it names (case, trailing dot)."""
        found = find_credentials(
            home, "example.org", "boss@example.net", "smtp", "sender-relay.example"
        )
        assert found == Credentials(b"boss", SECRET.encode(), "authsenders")
        # the sender's route without credentials: none, not the host's
        assert (
            find_credentials(home, "example.org", "plain@example.net", "smtp", "host-relay.example")
            is None
        )

    def test_host_route(self, home: str) -> None:
        """Otherwise smtproutes by host, for its relay; a literal by its address."""
        for sender in ("x@example.net", "skip@example.net"):
            found = find_credentials(home, "example.org", sender, "smtp", "host-relay.example")
            assert found == Credentials(USER.encode(), SECRET.encode(), "smtproutes")
        found = find_credentials(home, "a.example.com", "x@y", "smtp", "2001:db8::25")
        assert found is not None and found.source == "smtproutes"

    def test_never_to_another_exchanger(self, home: str) -> None:
        """An MX, another protocol, a route without credentials, no MXFHOST: none."""
        assert find_credentials(home, "example.org", "x@y", "smtp", "mx.example.org") is None
        assert (
            find_credentials(home, "example.org", "boss@example.net", "smtp", "host-relay.example")
            is None
        )
        assert find_credentials(home, "example.org", "x@y", "qmtp", "host-relay.example") is None
        assert (
            find_credentials(home, "nocreds.example", "x@y", "smtp", "host-relay.example") is None
        )
        assert find_credentials(home, "example.org", "x@y", "smtp", "") is None
        assert find_credentials(home, "example.org", "x@y", "../smtp", "host-relay.example") is None


# -- mechanisms, unit ------------------------------------------------------------------


class TestMechanisms:
    """The client side of each mechanism, against the RFCs' own computations."""

    def test_preference(self) -> None:
        assert sasl.choose({b"LOGIN", b"PLAIN"}) == b"PLAIN"
        assert sasl.choose({b"LOGIN", b"PLAIN", b"CRAM-MD5"}) == b"CRAM-MD5"
        assert sasl.choose({b"SCRAM-SHA-256", b"PLAIN", b"CRAM-MD5"}) == b"SCRAM-SHA-256"
        assert sasl.choose({b"GSSAPI", b"XOAUTH2"}) is None

    def test_scram_rfc7677_example(self) -> None:
        """RFC 7677 §3's exchange, byte for byte, the server signature verified."""
        scram = sasl.ScramSha256(b"user", b"pencil", nonce=b"rOprNGfwEbeRWgbNEkqO")
        assert scram.initial == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        final = scram.respond(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        )
        assert final == (
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        )
        assert scram.respond(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") == b""

    @pytest.mark.parametrize(
        "server_first",
        [
            b"r=someoneelse,s=AAAA,i=4096",
            b"r=NONCE,s=AAAA,i=4096",
            b"r=NONCEx,s=AAAA,i=0",
            b"r=NONCEx,s=AAAA,i=999999999",
            b"r=NONCEx,s=!!,i=4096",
            b"garbage",
            b"m=ext,r=NONCEx,s=AAAA,i=1",
        ],
    )
    def test_scram_hostile_server_first(self, server_first: bytes) -> None:
        scram = sasl.ScramSha256(b"u", b"p", nonce=b"NONCE")
        with pytest.raises(sasl.Abort):
            scram.respond(server_first)

    def test_scram_wrong_server_signature(self) -> None:
        scram = sasl.ScramSha256(b"u", b"p", nonce=b"NONCE")
        scram.respond(b"r=NONCEx,s=AAAA,i=1")
        with pytest.raises(sasl.Abort):
            scram.respond(b"v=" + base64.b64encode(b"x" * 32))

    def test_cram_md5_rfc2195_example(self) -> None:
        cram = sasl.CramMd5(b"tim", b"tanstaaftanstaaf")
        assert cram.respond(b"<1896.697170952@postoffice.reston.mci.net>") == (
            b"tim b913a602c7eda7a495b4e6e7334d3890"
        )


# -- servers ---------------------------------------------------------------------------

SCRAM_SALT = b"mxf-salt"
SCRAM_ITERATIONS = 4096


def scram_keys(password: bytes) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) the way a server keeps them."""
    salted = hashlib.pbkdf2_hmac("sha256", password, SCRAM_SALT, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


class AuthHandler:
    """aiosmtpd hooks: CRAM-MD5 and SCRAM-SHA-256 as handler mechanisms; every message kept."""

    def __init__(self, user: bytes, password: bytes) -> None:
        self.user = user
        self.password = password
        self.used: list[str] = []
        self.messages: list[tuple[str, list[str], Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), session.auth_data))
        return "250 2.0.0 OK queued"

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult

        self.used.append(mechanism)
        ok = (data.login, data.password) == (self.user, self.password)
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    async def auth_CRAM__MD5(self, server: Any, args: list[str]) -> Any:
        from aiosmtpd.smtp import MISSING, AuthResult

        challenge = b"<4711.1764072000@relay.auth.test>"
        response = await server.challenge_auth(challenge)
        if response is MISSING:
            return AuthResult(success=False, handled=True)
        self.used.append("CRAM-MD5")
        expected = self.user + b" " + hmac.new(self.password, challenge, "md5").hexdigest().encode()
        ok = hmac.compare_digest(response, expected)
        return AuthResult(success=ok, handled=False, auth_data=self.user if ok else None)

    async def auth_SCRAM__SHA__256(self, server: Any, args: list[str]) -> Any:
        from aiosmtpd.smtp import MISSING, AuthResult

        first = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth(b"")
        if first is MISSING or not first.startswith(b"n,,"):
            return AuthResult(success=False, handled=False)
        bare = first[3:]
        attributes = dict(part.split(b"=", 1) for part in bare.split(b","))
        nonce = attributes[b"r"] + b"server-nonce"
        server_first = b"r=%s,s=%s,i=%d" % (nonce, base64.b64encode(SCRAM_SALT), SCRAM_ITERATIONS)
        final = await server.challenge_auth(server_first)
        if final is MISSING:
            return AuthResult(success=False, handled=True)
        without_proof, _, proof_text = final.rpartition(b",p=")
        auth_message = bare + b"," + server_first + b"," + without_proof
        stored_key, server_key = scram_keys(self.password)
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        client_key = bytes(
            a ^ b for a, b in zip(base64.b64decode(proof_text), signature, strict=False)
        )
        self.used.append("SCRAM-SHA-256")
        ok = attributes[b"n"] == self.user and hashlib.sha256(client_key).digest() == stored_key
        if not ok:
            return AuthResult(success=False, handled=False)
        verifier = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        if await server.challenge_auth(b"v=" + base64.b64encode(verifier)) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=True, auth_data=self.user)


class AuthServer:
    """aiosmtpd with STARTTLS, AUTH required, over TLS only, some mechanisms left out."""

    MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256")

    def __init__(self, context: ssl.SSLContext, offer: tuple[str, ...], password: bytes) -> None:
        from aiosmtpd.controller import Controller

        from tests.infra.netns import listen_tcp

        self.handler = AuthHandler(USER.encode(), password)
        sock = listen_tcp("127.0.0.1", 0)
        self.port = sock.getsockname()[1]

        class SocketController(Controller):  # type: ignore[misc]
            def _create_server(self) -> Any:
                return self.loop.create_server(self._factory_invoker, sock=sock)

        self.controller = SocketController(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self.handler.authenticator,
            auth_exclude_mechanism=[m for m in self.MECHANISMS if m not in offer],
            ready_timeout=TIMEOUT,
        )
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A trustme CA."""
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def context(certs: Certs) -> ssl.SSLContext:
    """A server context for NAME, the relay smtpc is handed."""
    return certs.named_context(NAME)


def relay_home(tmp_path: Path, **control: str) -> str:
    """A qmail home whose smtproutes gives NAME (run_smtpc's MXFHOST) credentials."""
    control.setdefault("smtproutes", f"example.org:{NAME}:587|{USER}|{SECRET}\n")
    return make_home(str(tmp_path), **control)


def connect(port: int) -> Any:
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


class TestAiosmtpd:
    """A real server requiring AUTH over TLS: every mechanism, the best one chosen."""

    @pytest.mark.parametrize("mechanism", AuthServer.MECHANISMS)
    def test_each_mechanism(self, mechanism: str, context: ssl.SSLContext, tmp_path: Path) -> None:
        server = AuthServer(context, (mechanism,), SECRET.encode())
        try:
            status, output = run_smtpc(connect(server.port), relay_home(tmp_path))
        finally:
            server.close()
        assert status == 0
        assert reports_of(output)[-1].startswith(b"K127.0.0.1 accepted message.")
        assert server.handler.used == [mechanism]
        assert server.handler.messages == [
            ("alice@example.org", ["bob@example.org"], USER.encode())
        ]
        assert_no_secret(output)

    def test_best_mechanism_first(self, context: ssl.SSLContext, tmp_path: Path) -> None:
        server = AuthServer(context, AuthServer.MECHANISMS, SECRET.encode())
        try:
            _status, output = run_smtpc(connect(server.port), relay_home(tmp_path))
        finally:
            server.close()
        assert reports_of(output)[-1].startswith(b"K127.0.0.1 accepted message.")
        assert server.handler.used == ["SCRAM-SHA-256"]

    @pytest.mark.parametrize("mechanism", AuthServer.MECHANISMS)
    def test_wrong_password_is_a_deferral(
        self, mechanism: str, context: ssl.SSLContext, tmp_path: Path
    ) -> None:
        """535 from a real server: Z naming the relay and the file, never D, no password."""
        server = AuthServer(context, (mechanism,), b"another password")
        try:
            status, output = run_smtpc(connect(server.port), relay_home(tmp_path))
        finally:
            server.close()
        assert status == 0
        assert output == reports.auth_rejected(
            "127.0.0.1",
            NAME,
            "smtproutes",
            mechanism,
            b"535 5.7.8 Authentication credentials invalid\n",
        )
        assert server.handler.messages == []
        assert_no_secret(output, user=True)


# -- scripted peers --------------------------------------------------------------------


class Wire:
    """A scripted relay's side of the conversation, in clear then in TLS, with a transcript."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.tls: tlskit.ServerTLS | None = None
        self.buffer = b""
        self.transcript: list[bytes] = []

    def send(self, *lines: str) -> None:
        data = b"".join(line.encode() + b"\r\n" for line in lines)
        self.transcript += [b"S: " + line.encode() for line in lines]
        if self.tls is not None:
            self.tls.send(data)
        else:
            self.peer.send(data)

    def line(self) -> bytes:
        if self.tls is None:
            line = self.peer.line()
            assert line is not None, "EOF"
        else:
            while b"\n" not in self.buffer:
                data = self.tls.recv()
                assert data, "EOF"
                self.buffer += data
            line, _, self.buffer = self.buffer.partition(b"\n")
            line += b"\n"
        self.transcript.append(b"C: " + line.rstrip(b"\r\n"))
        return line

    def expect(self, wanted: bytes) -> None:
        line = self.line()
        assert line == wanted + b"\r\n", f"expected {wanted!r}, got {line!r}"

    def starttls(self, context: ssl.SSLContext) -> None:
        self.expect(b"STARTTLS")
        self.send("220 2.0.0 go ahead")
        self.tls = tlskit.ServerTLS(self.peer.sock, context)
        self.tls.handshake()
        self.transcript.append(b"   (TLS handshake)")

    def rest(self) -> bytes:
        """Everything the client sends until it closes (QUIT and EOF)."""
        data = b""
        while True:
            try:
                chunk = self.tls.recv() if self.tls is not None else self.peer.read_to_eof(TIMEOUT)
            except ssl.SSLError:
                break
            if not chunk:
                break
            data += chunk
            if self.tls is None:
                break
        self.transcript += [b"C: " + line for line in data.split(b"\r\n") if line]
        return data

    def text(self) -> str:
        return "\n".join(line.decode("utf-8", "backslashreplace") for line in self.transcript)


def greet(wire: Wire, context: ssl.SSLContext | None, auth: str = "PLAIN LOGIN") -> None:
    """Greeting and EHLO; STARTTLS and EHLO again when ``context``; AUTH offered."""
    wire.send("220 relay.auth.test ESMTP")
    wire.expect(b"EHLO me.example")
    if context is None:
        wire.send("250-relay.auth.test", f"250-AUTH {auth}", "250 8BITMIME")
        return
    wire.send("250-relay.auth.test", "250-PIPELINING", "250 STARTTLS")
    wire.starttls(context)
    wire.expect(b"EHLO me.example")
    wire.send("250-relay.auth.test", "250-PIPELINING", f"250 AUTH {auth}")


def scripted(script: Callable[[Wire], None], home: str, **kwargs: Any) -> tuple[int, bytes, Wire]:
    """smtpc (under ucspitlsc unless ucspi=False) against ``script``; status, output, wire."""
    wires: list[Wire] = []

    def run(peer: Peer) -> None:
        wire = Wire(peer)
        wires.append(wire)
        script(wire)

    with loopback_pair() as (client, server), Peer(server, run):
        status, output = run_smtpc(client, home, **kwargs)
    return status, output, wires[0]


TRANSCRIPTS: dict[str, str] = {}
"""Wire transcripts of the scripted AUTH cases (printed with ``-s``)."""


def keep(name: str, wire: Wire) -> None:
    TRANSCRIPTS[name] = wire.text()
    if os.environ.get("MXF_SHOW_TRANSCRIPTS"):
        print(f"\n--- {name}\n{wire.text()}")


class TestScriptedPeers:
    """What no real server does on purpose."""

    def test_wrong_password_535(self, context: ssl.SSLContext, tmp_path: Path) -> None:
        def script(wire: Wire) -> None:
            greet(wire, context)
            line = wire.line()
            assert line == b"AUTH PLAIN " + SECRET_FORMS[2] + b"\r\n"
            wire.send("535 5.7.8 Authentication credentials invalid")
            wire.rest()

        status, output, wire = scripted(script, relay_home(tmp_path))
        keep("wrong password (535)", wire)
        assert (status, output) == (
            0,
            reports.auth_rejected(
                "127.0.0.1",
                NAME,
                "smtproutes",
                "PLAIN",
                b"535 5.7.8 Authentication credentials invalid\n",
            ),
        )
        assert output.startswith(b"ZConnected to 127.0.0.1 but mx.tls.test rejected")
        assert (
            b"MAIL FROM" not in "\n".join(TRANSCRIPTS["wrong password (535)"].splitlines()).encode()
        )

    def test_temporary_failure_454(self, context: ssl.SSLContext, tmp_path: Path) -> None:
        def script(wire: Wire) -> None:
            greet(wire, context, auth="LOGIN")
            wire.expect(b"AUTH LOGIN")
            wire.send("334 " + b64(b"Username:"))
            wire.expect(b64(USER.encode()).encode())
            wire.send("334 " + b64(b"Password:"))
            wire.expect(b64(SECRET.encode()).encode())
            wire.send("454 4.7.0 Temporary authentication failure")
            wire.rest()

        _status, output, wire = scripted(script, relay_home(tmp_path))
        keep("temporary failure (454)", wire)
        assert output == reports.auth_rejected(
            "127.0.0.1",
            NAME,
            "smtproutes",
            "LOGIN",
            b"454 4.7.0 Temporary authentication failure\n",
        )
        assert output.startswith(b"Z")

    @pytest.mark.parametrize("ucspi", [True, False])
    def test_relay_without_tls_gets_no_credentials(self, ucspi: bool, tmp_path: Path) -> None:
        """No STARTTLS offered (or no TLS client at all): Z, and no AUTH on the wire."""

        def script(wire: Wire) -> None:
            greet(wire, None)
            wire.rest()

        status, output, wire = scripted(script, relay_home(tmp_path), ucspi=ucspi)
        keep(f"relay without STARTTLS (ucspi={ucspi})", wire)
        assert (status, output) == (0, reports.auth_needs_tls("127.0.0.1", NAME, "smtproutes"))
        sent = b"\n".join(line for line in wire.transcript if line.startswith(b"C: "))
        assert b"AUTH" not in sent and b"MAIL" not in sent
        assert sent == b"C: EHLO me.example\nC: QUIT"
        assert_no_secret(sent, user=True)
        assert_no_secret(output, user=True)

    def test_starttls_refused_gets_no_credentials(self, tmp_path: Path) -> None:
        """STARTTLS refused (opportunistic TLS would go on in clear): still no AUTH."""

        def script(wire: Wire) -> None:
            wire.send("220 relay.auth.test ESMTP")
            wire.expect(b"EHLO me.example")
            wire.send("250-relay.auth.test", "250-AUTH PLAIN", "250 STARTTLS")
            wire.expect(b"STARTTLS")
            wire.send("454 4.7.0 TLS not available")
            wire.rest()

        _status, output, wire = scripted(script, relay_home(tmp_path))
        assert output == reports.auth_needs_tls("127.0.0.1", NAME, "smtproutes")
        assert_no_secret(b"\n".join(wire.transcript), user=True)

    def test_implicit_tls_allows_auth(self, tmp_path: Path) -> None:
        """Under an implicit-TLS client (SSL_PROTOCOL set) AUTH needs no STARTTLS."""

        def script(wire: Wire) -> None:
            greet(wire, None, auth="CRAM-MD5 PLAIN")
            wire.expect(b"AUTH CRAM-MD5")
            challenge = b"<1.2@relay.auth.test>"
            wire.send("334 " + b64(challenge))
            digest = hmac.new(SECRET.encode(), challenge, "md5").hexdigest()
            wire.expect(b64(f"{USER} {digest}".encode()).encode())
            wire.send("235 2.7.0 ok")
            accept_the_message(wire)

        _status, output, wire = scripted(
            script, relay_home(tmp_path), ucspi=False, env={"SSL_PROTOCOL": "TLSv1.3"}
        )
        keep("implicit TLS, CRAM-MD5", wire)
        assert (
            reports_of(output)[-1]
            == b"K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )

    def test_no_usable_mechanism(self, context: ssl.SSLContext, tmp_path: Path) -> None:
        def script(wire: Wire) -> None:
            greet(wire, context, auth="GSSAPI XOAUTH2")
            wire.rest()

        _status, output, _wire = scripted(script, relay_home(tmp_path))
        assert output == reports.auth_unavailable("127.0.0.1", NAME, "smtproutes")

    def test_scram_server_that_does_not_know_the_password(
        self, context: ssl.SSLContext, tmp_path: Path
    ) -> None:
        """A wrong server signature: the client cancels with ``*``; Z."""

        def script(wire: Wire) -> None:
            greet(wire, context, auth="SCRAM-SHA-256 PLAIN")
            line = wire.line()
            assert line.startswith(b"AUTH SCRAM-SHA-256 ")
            first = base64.b64decode(line.split()[2])
            nonce = first.split(b"r=")[1] + b"x"
            wire.send("334 " + b64(b"r=" + nonce + b",s=" + base64.b64encode(b"salt") + b",i=4096"))
            wire.line()  # the client's proof
            wire.send("334 " + b64(b"v=" + base64.b64encode(b"\0" * 32)))
            wire.expect(b"*")
            wire.send("501 5.7.0 Auth aborted")
            wire.rest()

        _status, output, wire = scripted(script, relay_home(tmp_path))
        keep("SCRAM with a wrong server signature", wire)
        assert output == reports.auth_rejected(
            "127.0.0.1", NAME, "smtproutes", "SCRAM-SHA-256", b"501 5.7.0 Auth aborted\n"
        )

    def test_authsenders_beat_smtproutes(self, context: ssl.SSLContext, tmp_path: Path) -> None:
        """The sender's credentials, not the host route's."""
        home = relay_home(
            tmp_path, authsenders=f"alice@example.org:{NAME}:587|boss|sender-{SECRET}\n"
        )

        def script(wire: Wire) -> None:
            greet(wire, context, auth="PLAIN")
            wire.expect(b"AUTH PLAIN " + b64(b"\0boss\0sender-" + SECRET.encode()).encode())
            wire.send("535 5.7.8 no")
            wire.rest()

        _status, output, wire = scripted(script, home)
        keep("authsenders beats smtproutes", wire)
        assert output == reports.auth_rejected(
            "127.0.0.1", NAME, "authsenders", "PLAIN", b"535 5.7.8 no\n"
        )

    def test_malformed_line_in_the_client_is_masked(self, tmp_path: Path) -> None:
        home = relay_home(tmp_path, smtproutes=f"example.org:{NAME}:587||{SECRET}\n")
        _status, output, _ = scripted(lambda wire: None, home)
        assert output.startswith(
            b"ZUnable to read control files. (#4.3.0)\ncontrol/smtproutes line 1:"
        )
        assert_no_secret(output)


# -- through mxf-remote ----------------------------------------------------------------


def relay_script(
    context: ssl.SSLContext, accepted: dict[int, bytes], pause: Callable[[], None] | None = None
) -> Callable[[Peer, tuple[str, int]], None]:
    """A ScriptedServer relay: STARTTLS, AUTH PLAIN (any credentials, kept by port), a
    pause after it when asked, then the message."""

    def script(peer: Peer, where: tuple[str, int]) -> None:
        wire = Wire(peer)
        greet(wire, context, auth="PLAIN")
        line = wire.line()
        accepted[where[1]] = base64.b64decode(line.split()[2])
        wire.send("235 2.7.0 ok")
        if pause is not None:
            pause()
        accept_the_message(wire)

    return script


def remote_home(tmp_path: Path, ports: tuple[int, ...], **control: str) -> QmailHome:
    """A home for mxf-remote: SMTP with STARTTLS (mxf-remote-ucspitlsc) only."""
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control("protocols", "smtp:25:0:N:Y:mxf-remote-smtpc\n")
    qmail.control("me", "me.example\n")
    qmail.control("timeoutconnect", "10\n")
    qmail.control("timeoutremote", "30\n")
    for name, text in control.items():
        qmail.control(name, text)
    return qmail


@pytest.fixture
def relays(context: ssl.SSLContext) -> Iterator[tuple[ScriptedServer, dict[int, bytes], list[Any]]]:
    """Two scripted relays on 127.0.0.1 (two ports); the credentials each got."""
    from tests.clientkit import free_port

    accepted: dict[int, bytes] = {}
    pauses: list[Any] = []

    def pause() -> None:
        for hook in pauses:
            hook()

    server = ScriptedServer(relay_script(context, accepted, pause))
    ports = (free_port(), free_port())
    for port in ports:
        server.listen("127.0.0.1", port)
    server.ports = ports  # type: ignore[attr-defined]
    yield server, accepted, pauses
    server.close()


class TestThroughMxfRemote:
    """Real deliveries: ``mxf-remote`` plans the route, smtpc finds the credentials."""

    def test_authsenders_beat_smtproutes(self, relays: Any, tmp_path: Path) -> None:
        server, accepted, _ = relays
        host_port, sender_port = server.ports
        qmail = remote_home(
            tmp_path,
            server.ports,
            smtproutes=f"example.org:127.0.0.1:{host_port}|hostuser|host-{SECRET}\n",
            authsenders=f"@example.org:127.0.0.1:{sender_port}|{USER}|{SECRET}\n",
        )
        delivery = run_remote(
            qmail,
            "example.org",
            env={},
            sender="alice@example.org",
            recipients=("bob@example.org",),
        )
        server.check()
        assert delivery.stdout.endswith(
            b"K127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )
        assert accepted == {sender_port: b"\0" + USER.encode() + b"\0" + SECRET.encode()}
        assert_no_secret(delivery.stdout + delivery.stderr + repr(delivery.trace).encode())
        # another sender: the host's route, with its credentials
        accepted.clear()
        delivery = run_remote(
            qmail,
            "example.org",
            env={},
            sender="alice@example.com",
            recipients=("bob@example.org",),
        )
        assert accepted == {host_port: b"\0hostuser\0host-" + SECRET.encode()}

    def test_bad_route_line_is_masked_in_the_report(self, tmp_path: Path) -> None:
        """The README.auth line with a typo: Z #4.3.0 naming the line, never the password."""
        qmail = remote_home(
            tmp_path, (), smtproutes=f"example.org:relay.example:58x7|{USER}|{SECRET}\n"
        )
        delivery = run_remote(qmail, "example.org", env={})
        assert delivery.stdout == (
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/smtproutes line 1: '58x7' is not a whole number of (port)\n\0"
        )
        assert_no_secret(delivery.stdout + delivery.stderr, user=True)
        for event in delivery.trace:
            assert_no_secret(repr(event), user=True)

    def test_password_in_no_process(self, relays: Any, tmp_path: Path) -> None:
        """While the relay holds the delivery after AUTH, no process's argv or environment
        shows the password (every process on the machine is scanned)."""
        server, accepted, pauses = relays
        qmail = remote_home(
            tmp_path,
            server.ports,
            smtproutes=f"example.org:127.0.0.1:{server.ports[0]}|{USER}|{SECRET}\n",
        )
        authenticated, scanned = threading.Event(), threading.Event()

        def hold() -> None:
            authenticated.set()
            assert scanned.wait(TIMEOUT)

        pauses.append(hold)
        results: list[Any] = []
        runner = threading.Thread(
            target=lambda: results.append(
                run_remote(
                    qmail,
                    "example.org",
                    env={},
                    sender="alice@example.org",
                    recipients=("bob@example.org",),
                )
            )
        )
        runner.start()
        try:
            assert authenticated.wait(TIMEOUT), "the relay never saw AUTH"
            seen = scan_processes()
        finally:
            scanned.set()
            runner.join(TIMEOUT)
        server.check()
        # the delivery's processes were there to scan (the TLS client and smtpc on the cold
        # path; the launcher, with its TLS in mxf-remoted, on the warm path)
        delivery = [cmdline for cmdline in seen.values() if b"alice@example.org" in cmdline]
        assert any(b"mxf-remote" in cmdline for cmdline in delivery), seen
        assert results and results[0].stdout.endswith(
            b"accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"
        )
        assert accepted == {server.ports[0]: b"\0" + USER.encode() + b"\0" + SECRET.encode()}


def scan_processes() -> dict[int, bytes]:
    """Every process's cmdline; AssertionError when a cmdline or environ holds the password."""
    seen: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{name}", "rb") as file:
                    data = file.read()
            except OSError:
                continue
            for form in SECRET_FORMS:
                assert form not in data, f"the password is in /proc/{entry}/{name}: {data[:200]!r}"
            if name == "cmdline":
                seen[int(entry)] = data
    return seen


# -- the manual page -------------------------------------------------------------------


def test_reports_are_documented() -> None:
    """mxf-remote-smtpc(8)'s DIAGNOSTICS shows every AUTH report, placeholders in italics."""
    from tests.test_manpages import MAN, needs_mandoc, render, section, squeeze

    if needs_mandoc.args[0]:
        pytest.skip("mandoc is not installed")
    diagnostics = squeeze(section(render(MAN / "mxf-remote-smtpc.8"), "DIAGNOSTICS"))
    made = [
        reports.auth_needs_tls("ip", "relay", "file"),
        reports.auth_unavailable("ip", "relay", "file"),
        reports.auth_rejected("ip", "relay", "file", "mechanism", b""),
    ]
    for report in made:
        assert squeeze(report.rstrip(b"\0").decode()) in diagnostics


def test_the_shared_module_is_lean() -> None:
    """smtpc imports credentials.py at every delivery: no typing, asyncio, ssl or socket."""
    from tests.importkit import modules_loaded_by

    loaded = modules_loaded_by("mxf_remote.credentials")
    assert not loaded & {"typing", "asyncio", "ssl", "socket", "mxf_remote.control"}, loaded


def test_the_probe_shows_the_route_and_user_never_the_password(tmp_path: Path) -> None:
    """mxf-remote-probe --sender: the authsenders route with its user; no password anywhere."""
    import json
    import subprocess
    import sys

    home = tmp_path / "qmail"
    (home / "control").mkdir(parents=True)
    (home / "control" / "protocols").write_text("smtp:25:0:N:N:/bin/true\n")
    (home / "control" / "authsenders").write_text(
        "boss@example.org:[127.0.0.9]:2525|boss|pw-s3cr3t\n"
    )
    probe = Path(sys.executable).with_name("mxf-remote-probe")
    env = {"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(home)}
    text = subprocess.run(
        [str(probe), "--sender", "boss@example.org", "example.com"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert "route: smtp to [127.0.0.9] port 2525, AUTH as boss" in text.stdout
    as_json = subprocess.run(
        [str(probe), "--json", "--sender", "boss@example.org", "example.com"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    routes = json.loads(as_json.stdout)["settings"]["routes"]
    assert routes == [{"protocol": "smtp", "relay": "[127.0.0.9]", "port": 2525, "user": "boss"}]
    assert "pw-s3cr3t" not in text.stdout + text.stderr + as_json.stdout + as_json.stderr
