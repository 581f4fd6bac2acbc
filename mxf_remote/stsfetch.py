"""Fetching an MTA-STS policy (RFC 8461 §3.3): one HTTPS GET on the loop we already run.

Why not an HTTP library: ``http.client`` costs 12-15 ms of imports per delivery, urllib3,
httpx, requests and aiohttp 39-158 ms (dane-mta-sts.md §3), for features MTA-STS forbids
(redirects) or does not need (keep-alive, proxies, cookies).  The rules fit in one
coroutine over ``asyncio`` and ``ssl``, both already loaded by the dispatcher:

* connect to the addresses the caller resolved for ``mta-sts.<domain>`` (through c-ares,
  with the rest of the delivery's DNS), in order, port 443, until one takes the TLS
  handshake; an address that refuses, resets or fails the handshake passes the turn;
* TLS with ``server_hostname="mta-sts.<domain>"``: SNI, and the WebPKI name check of a
  CERT_REQUIRED context (a certificate failure is RFC 8460's ``sts-webpki-invalid``);
* ``GET /.well-known/mta-sts.txt HTTP/1.0`` with ``Host`` and ``Connection: close``:
  HTTP/1.0 so that no server may answer chunked, and the body ends at EOF (or at its
  ``Content-Length``, which must then be exact);
* only 200 will do: a 3xx is refused, never followed; the media type is ``text/plain``
  (parameters allowed);
* the body is at most ``max_bytes`` (64 KiB, as RFC 8461 §3.3 suggests): a larger
  ``Content-Length`` is refused before reading the body, and reading stops one byte past
  the limit;
* one ``timeout`` bounds the whole fetch, every address included; so that a silent
  address cannot eat it all, each address gets for its connect and handshake an equal
  share of what is left for it and those after it.

Everything else is ``sts-policy-fetch-error``.  Errors are values of ``FetchError``: the
caller turns them into "no new policy" and a TLS-RPT line, never a traceback.

The CA store (``default_context``): ``ssl.create_default_context()`` parses the whole CA
bundle, 22-28 ms of CPU per process; a ``capath`` directory is read lazily, one file per
issuer actually needed (0.13 ms).  So the capath wins when the system has one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PORT = 443
PATH = "/.well-known/mta-sts.txt"
MAX_HEAD_BYTES = 16 * 1024
"""The status line and the headers together; more is not a policy server."""

WEBPKI_INVALID = "sts-webpki-invalid"
FETCH_ERROR = "sts-policy-fetch-error"


class FetchError(Exception):
    """The policy could not be fetched: an RFC 8460 §4.3 result type and what happened."""

    def __init__(self, result_type: str, text: str) -> None:
        super().__init__(result_type, text)
        self.result_type = result_type
        self.text = text

    def __str__(self) -> str:
        return f"{self.result_type}: {self.text}"


def default_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A client context for policy hosts: certificate and name checked, system trust.

    The system's CAs as ``tls.context.load_system_anchors`` finds them: ``SSL_CERT_DIR``/
    ``SSL_CERT_FILE`` of ``environ`` (the delivery's environment, which in mxf-remoted is
    not the server's own; default ``os.environ``), the hashed directory preferred over the
    bundle file (see module doc).  OSError or ssl.SSLError when they cannot be read.
    """
    import os

    from mxf_remote.tls.context import load_system_anchors

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_system_anchors(context, os.environ if environ is None else environ)
    return context


async def fetch_policy(
    domain: str,
    addresses: Sequence[str],
    *,
    context: ssl.SSLContext,
    timeout: float,
    max_bytes: int = 65536,
) -> bytes:
    """The body of ``https://mta-sts.<domain>/.well-known/mta-sts.txt``, or FetchError."""
    host = f"mta-sts.{domain}"
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            return await _fetch_from_addresses(host, addresses, context, max_bytes, deadline)
    except TimeoutError:
        raise FetchError(FETCH_ERROR, f"no policy from {host} within {timeout:g} s") from None


async def _fetch_from_addresses(
    host: str,
    addresses: Sequence[str],
    context: ssl.SSLContext,
    max_bytes: int,
    deadline: float,
) -> bytes:
    """Try each address in turn; the first that completes the handshake answers.

    A silent address must not eat the whole budget: each gets, for connect and handshake,
    an equal share of what is left for it and the addresses after it (the last, all).
    """
    loop = asyncio.get_running_loop()
    failures: list[FetchError] = []
    for index, address in enumerate(addresses):
        share = (deadline - loop.time()) / (len(addresses) - index)
        try:
            async with asyncio.timeout(share):
                reader, writer = await _connect(address, host, context)
        except FetchError as failure:
            failures.append(failure)
            continue
        except TimeoutError:
            if index == len(addresses) - 1:
                raise
            failures.append(FetchError(FETCH_ERROR, f"{host} at {address}: no answer"))
            continue
        try:
            return await _exchange(reader, writer, host, max_bytes)
        finally:
            writer.transport.abort()
    if not failures:
        raise FetchError(FETCH_ERROR, f"no address for {host}")
    webpki = [failure for failure in failures if failure.result_type == WEBPKI_INVALID]
    raise (webpki or failures)[-1]


async def _connect(
    address: str, host: str, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP to ``address`` port 443 and the TLS handshake for ``host``; FetchError if not."""
    family = _address_family(address)
    if family is None:
        raise FetchError(FETCH_ERROR, f"{address[:60]!r} is not an IP address")
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, (address, PORT))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname=host, limit=MAX_HEAD_BYTES
        )
    except ssl.SSLCertVerificationError as error:
        sock.close()
        reason = error.verify_message or error.reason or "certificate verification failed"
        raise FetchError(WEBPKI_INVALID, f"{host} at {address}: {reason}") from None
    except (OSError, EOFError) as error:  # ssl.SSLError is an OSError
        sock.close()
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise FetchError(FETCH_ERROR, f"{host} at {address}: {reason}") from None
    except BaseException:
        sock.close()
        raise


def _address_family(address: str) -> int | None:
    """AF_INET6 or AF_INET for a numeric address, None for anything else (no DNS here)."""
    for family in (socket.AF_INET6, socket.AF_INET):
        try:
            socket.inet_pton(family, address)
        except (OSError, ValueError):
            continue
        return family
    return None


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, max_bytes: int
) -> bytes:
    """Send the GET, check the answer's head, read the body."""
    request = f"GET {PATH} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    try:
        writer.write(request.encode("ascii"))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise FetchError(FETCH_ERROR, f"{host}: HTTP header too long") from None
        except asyncio.IncompleteReadError:
            raise FetchError(FETCH_ERROR, f"{host}: connection closed in the HTTP header") from None
        length = _check_head(head, host, max_bytes)
        return await _read_body(reader, host, max_bytes, length)
    except (OSError, EOFError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise FetchError(FETCH_ERROR, f"{host}: {reason}") from None


def _check_head(head: bytes, host: str, max_bytes: int) -> int | None:
    """Status 200, ``text/plain``, no transfer coding: the Content-Length if given."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        raise FetchError(FETCH_ERROR, f"{host}: not an HTTP answer: {lines[0][:60]!r}")
    if status[1] != "200":
        refused = " (redirects are not followed)" if status[1].startswith("3") else ""
        raise FetchError(FETCH_ERROR, f"{host}: HTTP status {status[1][:3]}{refused}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), []).append(value.strip(" \t"))
    types = headers.get("content-type", [])
    media = types[0].split(";", 1)[0].strip(" \t").lower() if len(types) == 1 else ""
    if media != "text/plain":
        shown = ", ".join(types)[:60] or "none"
        raise FetchError(FETCH_ERROR, f"{host}: media type {shown!r}, not text/plain")
    if "transfer-encoding" in headers:
        raise FetchError(FETCH_ERROR, f"{host}: transfer coding in an HTTP/1.0 answer")
    lengths = headers.get("content-length")
    if lengths is None:
        return None
    if len(set(lengths)) != 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
        raise FetchError(FETCH_ERROR, f"{host}: bad Content-Length")
    if len(lengths[0]) > 12 or int(lengths[0]) > max_bytes:
        raise FetchError(FETCH_ERROR, f"{host}: policy larger than {max_bytes} bytes")
    return int(lengths[0])


async def _read_body(
    reader: asyncio.StreamReader, host: str, max_bytes: int, length: int | None
) -> bytes:
    """The body to EOF (or ``length`` bytes), stopping one byte past ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    wanted = max_bytes + 1 if length is None else length
    while size < wanted:
        chunk = await reader.read(wanted - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > max_bytes:
        raise FetchError(FETCH_ERROR, f"{host}: policy larger than {max_bytes} bytes")
    if length is not None and size != length:
        raise FetchError(FETCH_ERROR, f"{host}: body shorter than its Content-Length")
    return b"".join(chunks)
