"""``mxf-remote-probe --conversation``: an SMTP conversation on the race winner, never MAIL.

After the race the probe hands its winning connection to ``converse``, which speaks to
the server the way ``swaks --show-time-lapse`` and ``posttls-finger`` do and times every
step with the probe's clock:

1. **banner**: the greeting, which must be 220;
2. **EHLO** *helohost* (``HELO`` after a 5xx, as mxf-remote-smtpc does): the extensions;
3. when STARTTLS is offered: **STARTTLS** (must be 220), the **TLS handshake** with the
   TLS clients' own settings (``tls.context.build_context``: TLS 1.2 at least; SNI = the
   exchanger's name when it has one) but *without* verification, so that the
   conversation goes on whatever the certificate, then **EHLO after TLS** (RFC 3207
   §4.2: the extensions again, clear-text input left over is dropped);
4. **QUIT**, and its reply.

``MAIL`` is never sent, nor any command but EHLO, HELO, STARTTLS and QUIT: the helohost
is cut at its first CR, LF or NUL, so not even a control file can smuggle one in.

Once the conversation is over, the server's certificate chain is checked offline against
a CA store: ``CADIR`` or else ``CAFILE`` from the environment when set (``CADIR`` wins,
as for the TLS clients), else the system default store -- ``verified_with`` says which
-- and against the system default store as well (``verified_default``), which tells
whether the configured CAs are needed. The name checked is the exchanger's
(``checked_name``); an exchanger without a name (an address literal) gets its chain
checked, as the TLS clients do without ``-k``. Python's ``ssl`` cannot verify a chain
outside a handshake, so the check (``tls/chaincheck.py``) calls OpenSSL's
``X509_verify_cert`` in the libcrypto the ``ssl`` module already has loaded (ctypes),
with the purpose (``ssl_server``), the verification flags and the host flags the TLS
clients' context uses: the verdict and the reason are OpenSSL's (``unable to get local
issuer certificate``, ``hostname mismatch``, ...). Without a usable libcrypto the
verdicts are None ("not checked").

Nothing the server does makes ``converse`` raise: a refusal, garbage, a line without end,
silence, a reset or a failed handshake ends the conversation with ``error`` (``PHASE:
what happened``) and the phases so far, the failed one last -- but after a refusal (a
reply with the wrong code), where QUIT is still sent and its reply read.  After anything
else the connection is simply closed.  Replies are read by mxf-remote-smtpc's own ``read_reply``,
with its caps (64 KiB per line, 1000 lines per reply, 5000 bytes of text kept, 100
keywords), through a socket reader of our own (the client's ``Connection`` reads fds with
``os.read``, which after STARTTLS would read ciphertext).  Time is bounded too: each
reply must be complete, the handshake done and each command written within ``timeout``
seconds -- a deadline per step, not per read, so a server dripping one byte at a time
costs ``timeout`` per step at most, six steps in all.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, cast

from mxf_remote.clients.fdio import READ_SIZE, ConnectionDied, LineTooLong
from mxf_remote.clients.smtp import MAX_KEYWORDS, MAX_LINE, NotSmtp, Reply, read_reply

if TYPE_CHECKING:
    import ssl

    from mxf_remote.clients.fdio import Connection

MAX_TEXT = 500
"""A server's words in ``error``: at most this many characters."""
MAX_CHAIN = 16
"""Certificates of the peer's chain handed to the verification."""
MAX_NAMES = 100
"""subjectAltNames kept from the certificate."""
MAX_NAME = 255
"""Characters kept of each subjectAltName."""

BANNER = "banner"
EHLO = "EHLO"
STARTTLS = "STARTTLS"
HANDSHAKE = "TLS handshake"
EHLO_TLS = "EHLO after TLS"
QUIT = "QUIT"
DEFAULT_STORE = "system default store"


class Phase(NamedTuple):
    """One step of the conversation: its name, and when it started and ended (ms)."""

    name: str
    start_ms: float
    end_ms: float


class TlsFacts(NamedTuple):
    """What the TLS handshake gave, and the verdicts on the server's certificate."""

    version: str | None
    """``TLSv1.3``, ``TLSv1.2``."""
    cipher: str | None
    """OpenSSL's name of the cipher suite."""
    subject: str | None
    """The end-entity certificate's subject, ``/O=Example/CN=mx.example``; None when the
    server sent none or it is not DER."""
    names: list[str]
    """Its subjectAltNames: ``DNS:mx.example``, ``IP:192.0.2.25``, ``email:...``, ``URI:...``."""
    checked_name: str | None
    """The name (or address) the certificate was checked for; None: the chain only."""
    verified_with: str
    """The store of the main verdict: ``CADIR dir``, ``CAFILE file`` or ``system default
    store``."""
    verified: bool | None
    """Chain and name verified against ``verified_with``; None when it could not be checked."""
    verify_error: str | None
    """Why not (OpenSSL's words), or why it was not checked; None when verified."""
    verified_default: bool | None
    """The same check against the system default store (without CAFILE/CADIR)."""


class Conversation(NamedTuple):
    """Everything ``converse`` saw, as plain data."""

    phases: list[Phase]
    """Every step started, in order.  With ``error``, the last one is the one that failed,
    or the QUIT sent after a refusal."""
    banner: str | None
    """The greeting as sent (lines joined by LF), None when none came."""
    keywords_before: list[str] | None
    """The EHLO extensions in clear, each with its parameters (``SIZE 10240000``); empty
    after HELO; None when EHLO (or HELO) was not answered with 250."""
    keywords_after: list[str] | None
    """The EHLO extensions over TLS; None without TLS."""
    tls: TlsFacts | None
    """None unless the handshake succeeded."""
    error: str | None
    """What ended the conversation early (``PHASE: what happened``); None when it went to
    the end (QUIT answered with 2xx)."""


# ---------------------------------------------------------------------------------------
# The conversation


def converse(
    sock: socket.socket,
    *,
    server_name: str | None,
    helohost: str,
    timeout: float,
    environ: Mapping[str, str],
    clock: Callable[[], float],
) -> Conversation:
    """Banner, EHLO, STARTTLS when offered, EHLO, QUIT on the connected ``sock``; never MAIL.

    ``sock`` is taken over and closed before returning (after STARTTLS it lives on inside
    the TLS socket).  ``server_name`` is the exchanger's name (SNI and the name checked),
    None for an address literal; ``timeout`` bounds each step in seconds; ``environ``
    gives CAFILE/CADIR; ``clock`` gives the phases' times in milliseconds.
    """
    session = _Session(sock, helohost=helohost, timeout=timeout, clock=clock)
    try:
        session.run(server_name, environ)
    finally:
        session.close()
    tls = None
    if session.handshake is not None:
        tls = _tls_facts(session.handshake, server_name, environ)
    return Conversation(
        phases=session.phases,
        banner=session.banner,
        keywords_before=session.keywords_before,
        keywords_after=session.keywords_after,
        tls=tls,
        error=session.error,
    )


class _Ended(Exception):
    """The conversation is over early; ``_Session.error`` says why."""


class _Handshake(NamedTuple):
    """What the TLS socket told us, kept for the checks after the conversation."""

    version: str | None
    cipher: str | None
    chain: list[bytes]


class _Lines:
    """Lines from a socket (plain or TLS) for ``read_reply``, each reply within a deadline.

    ``read_reply`` needs nothing of a ``Connection`` but ``read_line(limit)``, raising
    fdio's ``LineTooLong`` and ``ConnectionDied``.  The buffer holds at most ``limit`` +
    ``READ_SIZE`` bytes.
    """

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.deadline = 0.0
        self.too_long = False

    def start(self) -> None:
        """A new reply: a new deadline."""
        self.deadline = time.monotonic() + self.timeout
        self.too_long = False

    def read_line(self, limit: int) -> bytes:
        """The next line without its LF; LineTooLong after ``limit`` bytes without one."""
        scanned = 0
        while True:
            end = self.buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line
            scanned = len(self.buffer)
            if scanned > limit:
                self.too_long = True
                raise LineTooLong(bytes(self.buffer[:limit]))
            self._fill()

    def _fill(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectionDied(f"no complete reply within {self.timeout:g} s")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(READ_SIZE)
        except TimeoutError:
            raise ConnectionDied(f"no complete reply within {self.timeout:g} s") from None
        except OSError as error:
            raise ConnectionDied(_describe(error)) from None
        if not data:
            raise ConnectionDied("connection closed by the server")
        self.buffer += data


class _Session:
    """One conversation; ``run`` fills in the attributes, ``close`` closes the socket."""

    def __init__(
        self, sock: socket.socket, *, helohost: str, timeout: float, clock: Callable[[], float]
    ) -> None:
        self.sockets = [sock]
        self.lines = _Lines(sock, timeout)
        self.timeout = timeout
        self.clock = clock
        self.helohost = _one_line(helohost).encode("utf-8", "surrogateescape")
        self.phases: list[Phase] = []
        self.current = BANNER
        self.banner: str | None = None
        self.keywords_before: list[str] | None = None
        self.keywords_after: list[str] | None = None
        self.handshake: _Handshake | None = None
        self.error: str | None = None

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def run(self, server_name: str | None, environ: Mapping[str, str]) -> None:
        """The whole conversation; every way the server can end it becomes ``error``."""
        try:
            self._converse(server_name, environ)
        except _Ended:
            pass
        except NotSmtp as error:
            if self.lines.too_long:
                self.error = f"{self.current}: not SMTP: a line longer than {MAX_LINE} bytes"
            else:
                shown = _shown(error.text.split(b"\n", 1)[0])
                self.error = f"{self.current}: not SMTP: {shown!r}"
        except ConnectionDied as error:
            self.error = f"{self.current}: {error}"
        except TimeoutError:
            self.error = f"{self.current}: not complete within {self.timeout:g} s"
        except (OSError, ValueError) as error:  # resets, TLS errors, an unusable SNI name
            self.error = f"{self.current}: {_describe(error)}"

    def _converse(self, server_name: str | None, environ: Mapping[str, str]) -> None:
        greeting = self._step(BANNER, None)
        self.banner = _shown(greeting.text.rstrip(b"\n"))
        if greeting.code != 220:
            self._refused(greeting)
        hello = self._hello(EHLO)
        self.keywords_before = _extensions(hello)
        if b"STARTTLS" in hello.keywords:
            self._start_tls(server_name, environ)
            self.keywords_after = _extensions(self._hello(EHLO_TLS))
        reply = self._step(QUIT, b"QUIT\r\n")
        if not 200 <= reply.code < 300:
            self.error = f"{QUIT}: {_reply_text(reply)}"

    def _step(self, name: str, command: bytes | None) -> Reply:
        """Send ``command`` (if any) and read the reply, as the phase ``name``."""
        self.current = name
        start = self.clock()
        try:
            if command is not None:
                self._send(command)
            self.lines.start()
            return read_reply(cast("Connection", self.lines))
        finally:
            self.phases.append(Phase(name, start, self.clock()))

    def _send(self, command: bytes) -> None:
        sock = self.lines.sock
        sock.settimeout(self.timeout)
        sock.sendall(command)

    def _refused(self, reply: Reply) -> NoReturn:
        """A reply with the wrong code: note it, QUIT politely, and end."""
        self.error = f"{self.current}: {_reply_text(reply)}"
        with contextlib.suppress(NotSmtp, ConnectionDied, OSError):
            self._step(QUIT, b"QUIT\r\n")  # the error that matters is already noted
        raise _Ended

    def _hello(self, name: str) -> Reply:
        """EHLO, HELO after a 5xx (as mxf-remote-smtpc); the accepted reply."""
        reply = self._step(name, b"EHLO " + self.helohost + b"\r\n")
        if reply.code == 250:
            return reply
        if reply.code >= 500:
            reply = self._step(name.replace(EHLO, "HELO"), b"HELO " + self.helohost + b"\r\n")
            if reply.code == 250:
                return Reply(reply.code, reply.text, set())
        self._refused(reply)

    def _start_tls(self, server_name: str | None, environ: Mapping[str, str]) -> None:
        """STARTTLS, then the handshake without verification; the socket becomes TLS."""
        reply = self._step(STARTTLS, b"STARTTLS\r\n")
        if reply.code != 220:
            self._refused(reply)
        self.lines.buffer.clear()  # RFC 3207 §4.2: nothing sent in clear counts after this
        self.current = HANDSHAKE
        start = self.clock()
        try:
            tls = self._handshake(server_name, environ)
        finally:
            self.phases.append(Phase(HANDSHAKE, start, self.clock()))
        self.lines.sock = tls
        cipher = tls.cipher()
        self.handshake = _Handshake(tls.version(), cipher[0] if cipher else None, _chain(tls))

    def _handshake(self, server_name: str | None, environ: Mapping[str, str]) -> ssl.SSLSocket:
        from mxf_remote.tls.context import ConfigError

        try:
            context = _handshake_context(server_name, environ)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        tls = context.wrap_socket(
            self.lines.sock,
            server_hostname=_sni(server_name),
            do_handshake_on_connect=False,
        )
        self.sockets.append(tls)
        tls.settimeout(self.timeout)  # a deadline for the whole handshake (CPython's _ssl)
        tls.do_handshake()
        return tls


def _one_line(text: str) -> str:
    """``text`` up to its first CR, LF or NUL: one command line, never two."""
    for stop in ("\r", "\n", "\0"):
        text = text.split(stop, 1)[0]
    return text


def _shown(raw: bytes) -> str:
    """A server's bytes as text: UTF-8 where valid, control characters but LF as ``?``."""
    text = raw.decode("utf-8", "replace")
    return "".join("?" if (ord(c) < 32 and c != "\n") or ord(c) == 127 else c for c in text)


def _reply_text(reply: Reply) -> str:
    """A reply on one line (its lines joined by `` / ``), at most ``MAX_TEXT`` characters."""
    text = " / ".join(_shown(reply.text.rstrip(b"\n")).split("\n"))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _extensions(reply: Reply) -> list[str]:
    """The EHLO reply's extension lines (keyword and parameters), in the server's order.

    From the reply text, which ``read_reply`` keeps to 5000 bytes: a line cut there is
    left out, and at most ``MAX_KEYWORDS`` are kept.
    """
    lines = reply.text.split(b"\n")[1:-1]  # the greeting line; what follows the last LF
    found = [_shown(line[4:]).strip() for line in lines]
    return [f for f in found if f][:MAX_KEYWORDS]


def _describe(error: BaseException) -> str:
    """An exception in a few words: OpenSSL's reason for TLS errors, strerror for others."""
    import ssl

    if isinstance(error, ssl.SSLError):
        if error.reason:
            return str(error.reason).lower().replace("_", " ")
        text = str(error.strerror or error)
        return text.partition(" (_ssl.c:")[0]
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[:1].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


def _sni(server_name: str | None) -> str | None:
    """The name to send as SNI (RFC 6066: no trailing dot), None for no name."""
    if server_name is None:
        return None
    return server_name.rstrip(".") or None


def _handshake_context(server_name: str | None, environ: Mapping[str, str]) -> ssl.SSLContext:
    """The TLS clients' context (``build_context``), with verification off."""
    from mxf_remote.tls.context import build_context
    from mxf_remote.tls.options import Options

    options = Options()
    options.verify = False
    options.servername = _sni(server_name)
    return build_context(options, dict(environ))


def _chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The peer's chain as sent (DER), end-entity first; at least the end entity."""
    import ssl

    leaf = tls.getpeercert(binary_form=True)
    getter = getattr(tls, "get_unverified_chain", None)  # public from Python 3.13: DER
    if getter is None:  # 3.10 to 3.12: on the _ssl object, _ssl.Certificate items
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    chain: list[bytes] = []
    if getter is not None:
        for item in getter() or []:
            if isinstance(item, bytes):
                chain.append(item)
            else:
                chain.append(item.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
    if leaf and (not chain or chain[0] != leaf):
        chain.insert(0, leaf)
    return chain[:MAX_CHAIN]


# ---------------------------------------------------------------------------------------
# The certificate: subject, names, verdicts


def _tls_facts(
    handshake: _Handshake, server_name: str | None, environ: Mapping[str, str]
) -> TlsFacts:
    from mxf_remote.tls.certinfo import DERError, subject_alt_names, subject_oneline
    from mxf_remote.tls.chaincheck import check_chain

    subject: str | None = None
    names: list[str] = []
    if handshake.chain:
        try:
            subject = subject_oneline(handshake.chain[0])
            names = subject_alt_names(handshake.chain[0], limit=MAX_NAMES, longest=MAX_NAME)
        except (DERError, IndexError, ValueError):
            subject, names = None, []
    name = _sni(server_name)
    cadir = environ.get("CADIR", "")
    cafile = environ.get("CAFILE", "")
    store: tuple[str, str] | None = None
    if cadir:
        store = ("CADIR", cadir)
    elif cafile:
        store = ("CAFILE", cafile)
    verified, why = check_chain(handshake.chain, name, store)
    verified_default = verified if store is None else check_chain(handshake.chain, name, None)[0]
    return TlsFacts(
        version=handshake.version,
        cipher=handshake.cipher,
        subject=subject,
        names=names,
        checked_name=name,
        verified_with=DEFAULT_STORE if store is None else f"{store[0]} {store[1]}",
        verified=verified,
        verify_error=why,
        verified_default=verified_default,
    )


# ---------------------------------------------------------------------------------------
# Output


def _ms(value: float) -> str:
    return f"{value:.1f}"


def _verdict(verified: bool | None, why: str | None) -> str:
    if verified:
        return "yes"
    if verified is None:
        return why or "not checked"
    return f"no ({why})" if why else "no"


def render_text(conversation: Conversation) -> list[str]:
    """The human-readable lines: phases with times, banner, extensions, TLS, the outcome."""
    rows = [
        [_ms(p.start_ms), _ms(p.end_ms), _ms(p.end_ms - p.start_ms), p.name]
        for p in conversation.phases
    ]
    header = ["start", "end", "took", "phase"]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i == 3 else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = ["Conversation (ms since the probe started; MAIL is never sent)"]
    out += [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if conversation.banner is not None:
        banner = conversation.banner.split("\n")
        out.append("Banner: " + banner[0])
        out += ["        " + more for more in banner[1:]]
    if conversation.keywords_before is not None:
        out.append("Extensions: " + (", ".join(conversation.keywords_before) or "(none)"))
    if conversation.keywords_after is not None:
        out.append("Extensions after TLS: " + (", ".join(conversation.keywords_after) or "(none)"))
    tls = conversation.tls
    if tls is not None:
        out.append(f"TLS: {tls.version or '?'}, cipher {tls.cipher or '?'}")
        out.append(f"Certificate subject: {tls.subject or '(none or unreadable)'}")
        out.append("Certificate names: " + (", ".join(tls.names) or "(none)"))
        what = f"for {tls.checked_name}" if tls.checked_name else "(chain only: no name to check)"
        store = "the " + DEFAULT_STORE if tls.verified_with == DEFAULT_STORE else tls.verified_with
        out.append(f"Verified with {store} {what}: {_verdict(tls.verified, tls.verify_error)}")
        if tls.verified_with != DEFAULT_STORE:
            out.append(
                f"Verified with the {DEFAULT_STORE} {what}: " + _verdict(tls.verified_default, None)
            )
    elif conversation.keywords_before is not None and not any(
        k.split(None, 1)[0].upper() == "STARTTLS" for k in conversation.keywords_before
    ):
        out.append("TLS: STARTTLS not offered")
    if conversation.error is None:
        out.append("Conversation complete.")
    else:
        out.append(f"Conversation ended: {conversation.error}")
    return out


def as_dict(conversation: Conversation) -> dict[str, Any]:
    """The JSON form."""
    tls = conversation.tls
    return {
        "phases": [
            {
                "phase": p.name,
                "start_ms": round(p.start_ms, 3),
                "end_ms": round(p.end_ms, 3),
                "took_ms": round(p.end_ms - p.start_ms, 3),
            }
            for p in conversation.phases
        ],
        "banner": conversation.banner,
        "keywords_before_tls": conversation.keywords_before,
        "keywords_after_tls": conversation.keywords_after,
        "tls": None if tls is None else tls._asdict(),
        "error": conversation.error,
    }
