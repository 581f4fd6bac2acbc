"""Fetching MTA-STS policies (``mxf_remote.stsfetch``) from real HTTPS servers.

Each test runs real asyncio TLS servers on port 443 of 127.0.0.x (and ::1) inside the
session's private network namespace, with trustme certificates, and the fetcher on the
same event loop.  The servers are scripted per test: a correct policy host, and the ways
one goes wrong (redirects, 404, wrong media type, huge or endless bodies, stalls, chunked
answers, wrong or untrusted certificates).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from mxf_remote.mtasts import parse_policy
from mxf_remote.stsfetch import (
    FETCH_ERROR,
    WEBPKI_INVALID,
    FetchError,
    default_context,
    fetch_policy,
)
from tests.infra.netns import silence

pytestmark = pytest.mark.usefixtures("netns")

DOMAIN = "example.test"
HOST = f"mta-sts.{DOMAIN}"
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"
TESTING = POLICY.replace(b"enforce", b"testing")
REQUEST = (
    b"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: mta-sts.example.test\r\n"
    b"Connection: close\r\n\r\n"
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """The CA policy hosts' certificates come from."""
    return trustme.CA()


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """What the dispatcher would use, trusting the test CA only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return context


def server_context(ca: trustme.CA, name: str = HOST) -> ssl.SSLContext:
    """A server context with a certificate for ``name`` from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


def answer(head: bytes, body: bytes = b"", seen: list[bytes] | None = None) -> Handler:
    """A handler that reads the request (kept in ``seen``) and sends ``head`` + ``body``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if seen is not None:
                seen.append(request)
            writer.write(head + b"\r\n" + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return handle


def ok(body: bytes, content_type: bytes = b"text/plain", length: bool = True) -> bytes:
    """The head of a 200 answer."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head


async def serve(
    handlers: dict[str, Handler], contexts: dict[str, ssl.SSLContext]
) -> list[asyncio.Server]:
    """Start one TLS server on port 443 of each address."""
    servers = []
    for address, handler in handlers.items():
        servers.append(await asyncio.start_server(handler, address, 443, ssl=contexts[address]))
    return servers


async def fetch_with(
    handlers: dict[str, Handler],
    addresses: list[str],
    context: ssl.SSLContext,
    server_contexts: dict[str, ssl.SSLContext],
    *,
    timeout: float = 10.0,
    max_bytes: int = 65536,
) -> bytes | FetchError:
    """Serve with ``handlers``, fetch from ``addresses``: the body or the FetchError."""
    servers = await serve(handlers, server_contexts)
    try:
        return await fetch_policy(
            DOMAIN, addresses, context=context, timeout=timeout, max_bytes=max_bytes
        )
    except FetchError as error:
        return error
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
def run(ca: trustme.CA, client_context: ssl.SSLContext) -> Callable[..., bytes | FetchError]:
    """``run(handlers, addresses, **options)``: a fetch against servers with good certs."""

    def runner(
        handlers: dict[str, Handler],
        addresses: list[str] | None = None,
        contexts: dict[str, ssl.SSLContext] | None = None,
        **options: Any,
    ) -> bytes | FetchError:
        good = server_context(ca)
        server_contexts = dict.fromkeys(handlers, good) | (contexts or {})
        where = list(handlers) if addresses is None else addresses
        return asyncio.run(fetch_with(handlers, where, client_context, server_contexts, **options))

    return runner


Runner = Callable[..., "bytes | FetchError"]


class TestFetched:
    """Policies that are fetched."""

    def test_enforce_policy_and_the_request_sent(self, run: Runner) -> None:
        """An enforce policy comes back byte for byte after exactly one HTTP/1.0 GET."""
        seen: list[bytes] = []
        body = run({"127.0.0.41": answer(ok(POLICY), POLICY, seen)})
        assert body == POLICY
        assert parse_policy(body).mode == "enforce"
        assert seen == [REQUEST]

    def test_testing_policy_without_length_and_with_parameters(self, run: Runner) -> None:
        """No Content-Length (body to EOF) and ``text/plain; charset=utf-8`` are fine."""
        head = ok(TESTING, b"Text/Plain; charset=utf-8", length=False)
        assert run({"127.0.0.42": answer(head, TESTING)}) == TESTING

    def test_ipv6(self, run: Runner) -> None:
        """An IPv6 address is connected to as such."""
        assert run({"::1": answer(ok(POLICY), POLICY)}) == POLICY

    def test_first_address_refused_second_serves(self, run: Runner) -> None:
        """A refused address passes the turn to the next."""
        handlers = {"127.0.0.43": answer(ok(POLICY), POLICY)}
        assert run(handlers, ["127.0.0.44", "127.0.0.43"]) == POLICY

    def test_bad_certificate_first_good_second(self, run: Runner, ca: trustme.CA) -> None:
        """An address whose certificate fails passes the turn too."""
        handlers = {
            "127.0.0.45": answer(ok(POLICY), POLICY),
            "127.0.0.46": answer(ok(TESTING), TESTING),
        }
        contexts = {"127.0.0.45": server_context(ca, "mta-sts.other.test")}
        assert run(handlers, contexts=contexts) == TESTING


@pytest.mark.usefixtures("silent_hosts")
class TestSilentAddresses:
    """Addresses that drop the SYN: the budget is shared, not eaten by the first."""

    def test_silent_first_address_leaves_time_for_the_second(self, run: Runner) -> None:
        """With two addresses the silent first gets half the budget; the second serves."""
        silence("127.0.0.54", 443)
        handlers = {"127.0.0.55": answer(ok(POLICY), POLICY)}
        assert run(handlers, ["127.0.0.54", "127.0.0.55"], timeout=1.0) == POLICY

    def test_all_silent_is_a_timeout(self, run: Runner) -> None:
        """Every address silent: the fetch ends at ``timeout`` with a fetch error."""
        silence("127.0.0.54", 443)
        silence("127.0.0.56", 443)
        outcome = run({}, ["127.0.0.54", "127.0.0.56"], timeout=0.4)
        assert isinstance(outcome, FetchError) and outcome.result_type == FETCH_ERROR
        assert "within 0.4 s" in outcome.text


class TestRefused:
    """Answers that are not a policy: ``sts-policy-fetch-error`` unless the certificate fails."""

    def assert_error(self, outcome: bytes | FetchError, kind: str, text: str) -> None:
        assert isinstance(outcome, FetchError), outcome
        assert outcome.result_type == kind
        assert text in outcome.text

    def test_redirect_not_followed(self, run: Runner) -> None:
        """A 301 is refused, never followed."""
        seen: list[bytes] = []
        head = b"HTTP/1.1 301 Moved\r\nLocation: https://127.0.0.48/\r\nContent-Length: 0\r\n"
        outcome = run({"127.0.0.47": answer(head, b"", seen)})
        self.assert_error(outcome, FETCH_ERROR, "HTTP status 301 (redirects are not followed)")
        assert len(seen) == 1

    def test_not_found(self, run: Runner) -> None:
        """404 is a fetch error."""
        head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        self.assert_error(run({"127.0.0.47": answer(head, b"no")}), FETCH_ERROR, "status 404")

    @pytest.mark.parametrize(
        "head",
        [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plainx\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n",
        ],
    )
    def test_wrong_media_type(self, run: Runner, head: bytes) -> None:
        """Anything but one ``text/plain`` Content-Type is refused."""
        self.assert_error(run({"127.0.0.47": answer(head, POLICY)}), FETCH_ERROR, "media type")

    def test_chunked_refused(self, run: Runner) -> None:
        """A chunked answer to an HTTP/1.0 request is refused."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        body = b"%x\r\n" % len(POLICY) + POLICY + b"\r\n0\r\n\r\n"
        self.assert_error(run({"127.0.0.47": answer(head, body)}), FETCH_ERROR, "transfer coding")

    def test_short_body(self, run: Runner) -> None:
        """A body shorter than its Content-Length (a cut connection) is refused."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 500\r\n"
        self.assert_error(run({"127.0.0.47": answer(head, POLICY)}), FETCH_ERROR, "shorter")

    @pytest.mark.parametrize("value", [b"-1", b"1e3", b"99999999999999999999", b"10, 20"])
    def test_bad_content_length(self, run: Runner, value: bytes) -> None:
        """A Content-Length that is not one plain number within the limit is refused."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + value + b"\r\n"
        outcome = run({"127.0.0.47": answer(head, POLICY)})
        assert isinstance(outcome, FetchError) and outcome.result_type == FETCH_ERROR

    def test_announced_oversize_refused_before_the_body(self, run: Runner) -> None:
        """A Content-Length above ``max_bytes`` is refused from the head alone."""
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 70000\r\n"
        outcome = run({"127.0.0.47": answer(head, POLICY)})
        self.assert_error(outcome, FETCH_ERROR, "larger than 65536 bytes")

    def test_endless_body_stops_past_the_limit(self, run: Runner) -> None:
        """A server streaming without end is cut one byte past ``max_bytes``: the fetch ends
        with "too large" (reading it all would never end, and would time out instead)."""

        async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(ok(b"", length=False) + b"\r\n")
                while True:
                    writer.write(b"mx: x.example.test\n" * 1000)
                    await writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        outcome = run({"127.0.0.47": endless}, max_bytes=1000, timeout=30.0)
        self.assert_error(outcome, FETCH_ERROR, "larger than 1000 bytes")

    def test_long_header_refused(self, run: Runner) -> None:
        """A head that never ends (16 KiB and more) is refused."""
        head = ok(POLICY) + b"X-Junk: " + b"a" * 20000 + b"\r\n"
        self.assert_error(run({"127.0.0.47": answer(head, POLICY)}), FETCH_ERROR, "too long")

    def test_not_http(self, run: Runner) -> None:
        """A server that answers something else than HTTP is refused."""
        head = b"SSH-2.0-OpenSSH\r\n"
        self.assert_error(run({"127.0.0.47": answer(head)}), FETCH_ERROR, "not an HTTP answer")

    def test_stall_after_handshake_times_out(self, run: Runner) -> None:
        """A server that takes the handshake and the request but never answers: the one
        ``timeout`` ends the fetch."""

        async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read()  # until the client gives up
            except OSError:
                pass
            finally:
                writer.close()

        outcome = run({"127.0.0.47": stall}, timeout=0.5)
        self.assert_error(outcome, FETCH_ERROR, "within 0.5 s")

    def test_nothing_listening(self, run: Runner) -> None:
        """Every address refused: a fetch error naming the last."""
        outcome = run({}, ["127.0.0.50", "127.0.0.51"])
        self.assert_error(outcome, FETCH_ERROR, "127.0.0.51")

    @pytest.mark.parametrize("address", ["mta-sts.example.test", "", "127.0.0.1:443", "::1%lo0"])
    def test_not_an_address(self, run: Runner, address: str) -> None:
        """A name or anything not a numeric address is never resolved: a fetch error."""
        self.assert_error(run({}, [address]), FETCH_ERROR, "not an IP address")

    def test_no_addresses(self, run: Runner) -> None:
        """No address at all: a fetch error."""
        self.assert_error(run({}, []), FETCH_ERROR, "no address")

    def test_certificate_for_another_name(self, run: Runner, ca: trustme.CA) -> None:
        """A trusted certificate for another name is ``sts-webpki-invalid``."""
        contexts = {"127.0.0.47": server_context(ca, "mx.example.test")}
        outcome = run({"127.0.0.47": answer(ok(POLICY), POLICY)}, contexts=contexts)
        self.assert_error(outcome, WEBPKI_INVALID, "Hostname mismatch")

    def test_untrusted_ca(self, run: Runner) -> None:
        """A certificate from a CA not trusted is ``sts-webpki-invalid``."""
        contexts = {"127.0.0.47": server_context(trustme.CA())}
        outcome = run({"127.0.0.47": answer(ok(POLICY), POLICY)}, contexts=contexts)
        self.assert_error(outcome, WEBPKI_INVALID, "unable to get local issuer certificate")

    def test_webpki_failure_wins_over_refusals(self, run: Runner) -> None:
        """When no address serves, a certificate failure at any of them is what is reported."""
        contexts = {"127.0.0.47": server_context(trustme.CA())}
        handlers = {"127.0.0.47": answer(ok(POLICY), POLICY)}
        outcome = run(handlers, ["127.0.0.47", "127.0.0.52"], contexts=contexts)
        assert isinstance(outcome, FetchError) and outcome.result_type == WEBPKI_INVALID


class TestDefaultContext:
    """The production context: verification on, trust from the system's paths."""

    def test_verifies(self) -> None:
        """CERT_REQUIRED and host name checking."""
        context = default_context()
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname

    @pytest.fixture
    def cert_dir(self, ca: trustme.CA, tmp_path: Path) -> Iterator[Path]:
        """A hashed CA directory holding the test CA, as SSL_CERT_DIR (no SSL_CERT_FILE)."""
        openssl = "/usr/bin/openssl"
        if not os.access(openssl, os.X_OK):
            pytest.skip("openssl is needed to hash the CA directory")
        pem = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(pem))
        digest = subprocess.run(
            [openssl, "x509", "-hash", "-noout", "-in", str(pem)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        directory = tmp_path / "certs"
        directory.mkdir()
        (directory / f"{digest}.0").write_bytes(pem.read_bytes())
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SSL_CERT_DIR", str(directory))
            patch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
            yield directory

    def test_prefers_the_lazy_capath(self, cert_dir: Path, ca: trustme.CA) -> None:
        """With a CA directory, nothing is loaded up front, and the fetch verifies through it."""
        context = default_context()
        assert context.cert_store_stats()["x509"] == 0
        good = server_context(ca)
        handlers = {"127.0.0.53": answer(ok(POLICY), POLICY)}
        outcome = asyncio.run(fetch_with(handlers, ["127.0.0.53"], context, {"127.0.0.53": good}))
        assert outcome == POLICY
