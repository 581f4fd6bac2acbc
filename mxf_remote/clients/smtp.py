"""mxf-remote-smtpc: qmail-remote's SMTP conversation, as a UCSPI client.

mxf-remote connects, then execs us with the connection on fd 6 (read) and fd 7 (write),
the queued message on fd 0 and the report pipe on fds 1 and 2 (spec §6, §9).  We speak
RFC 5321 and print exactly what qmail-remote prints (notqmail ``qmail-remote.c``, whose
``smtp()`` this module follows step by step; contract §2.1).

The conversation, and where we differ from qmail-remote:

1. Greeting: anything but 220 is ``ZConnected to <ip> but greeting failed.`` -- also a
   554: once connected, djb defers rather than bounces (THOUGHTS §6).
2. ``EHLO helohost`` (qmail-remote says HELO).  A 5xx refusal falls back to ``HELO``, as
   RFC 5321 §3.2 allows for old servers; any other non-250 answer, or a refused HELO, is
   ``ZConnected to <ip> but my name was rejected.``
3. From the EHLO keywords we use PIPELINING (RFC 2920: MAIL, the RCPTs and DATA in one
   write, in groups of at most ``PIPELINE_GROUP`` commands so that neither side can fill
   its buffers and deadlock), SIZE (RFC 1870: the size of the CRLF wire form, bare CRs
   included, see ``Message.scan``) and 8BITMIME (RFC 6152: ``BODY=8BITMIME`` when the
   message has a byte above 127; without the extension, 8-bit data is sent as is, as
   qmail-remote always does), and SMTPUTF8 (RFC 6531: ``SMTPUTF8`` on MAIL when the
   sender or a recipient to be sent is UTF-8, and those addresses written unquoted as
   UTF-8, ``envelope.smtp_path``; without the extension, or for bytes that are not
   UTF-8, addresses go out as qmail-remote writes them).
3a. STARTTLS (RFC 3207), only under a UCSPI-TLS client (``SSLCTLFD`` set, spec §9):
   offered → ``STARTTLS``, on 220 ``Y`` to ``SSLCTLFD``, the environment block back,
   then ``SSLREADFD``/``SSLWRITEFD`` and EHLO again; not offered → ``SSLCTLFD`` closed
   and on in clear.  A refusal goes on in clear too, unless certificates are verified
   (``CAFILE``/``CADIR``): then it is ``ZConnected to <ip> but STARTTLS was refused.``.
   A failed handshake after 220 is ``ZTLS handshake with <ip> failed after STARTTLS.``
   -- never a fall-back to clear text.
   Under a TLS policy (``MXFTLSREQUIRED=dane`` or ``mta-sts``: mxf-remote found usable
   TLSA records, or an MTA-STS policy in ``enforce``) nothing goes in clear: STARTTLS not
   offered, refused, or no UCSPI-TLS client at all is a Z naming the policy; a failed
   handshake or certificate check is ``ZTLS with <ip> failed after STARTTLS: <reason>.``
   with the reason the engine put in its cut-short environment block (``MXFTLSFAILURE``).
   With ``MXFTLSRPT`` set, the TLS outcome goes to ``mxf_remote.tlsrpt`` at the end
   (``record_tls_outcome``), which can never fail the delivery.
3b. SMTP AUTH (RFC 4954), when the route mxf-remote followed has credentials
   (``control/authsenders``, or ``smtproutes`` with ``|user|password``; read here by
   ``credentials.find_credentials``, never passed in argv or the environment): only over
   TLS (STARTTLS done, or ``SSL_PROTOCOL`` from an implicit-TLS client), else a Z and no
   AUTH at all; the best mechanism offered (``sasl.py``); anything but 235 is a Z naming
   the relay -- a 5xx too: the credentials are the administrator's, never a bounce.
4. ``MAIL FROM:<sender>``: 4xx is Z, 5xx is D ``...but sender was rejected.``
5. ``RCPT TO:<recip>`` for each: ``r``, ``s`` (4xx) or ``h`` (5xx) per recipient, in
   argument order; no ``r`` at all is ``DGiving up on <ip>.``
6. ``DATA``: anything but 354 fails (qmail-remote accepts any code below 400 here; a
   250 to DATA is not SMTP).  The body is streamed from fd 0: see ``message.py`` for
   CRLF, bare CR and dot-stuffing.
7. After the final dot: 2xx is ``K<ip> accepted message.``; 3xx/4xx are Z and 5xx is
   D ``...failed after I sent the message.`` (qmail-remote takes any code below 400 for
   success); a dead connection is ``...Possible duplicate!``.
8. ``QUIT`` is written without waiting for its reply, and a failure to write it is
   ignored.  (qmail-remote reports a failed QUIT write as "connection died" even after
   a 250 to the message -- a deferral that would deliver the message twice.)

Replies are read line by line with a 64 KiB line cap and a 1000-line reply cap: a reply
without a three-digit code, or over those caps, is not SMTP and is a deferral, so a
hostile peer costs bounded memory.  Per qmail-remote, a multi-line reply takes its code
from the first line and its text is every line, CRs removed, at most 5000 bytes.
"""

from __future__ import annotations

import os

from mxf_remote.clients import reports
from mxf_remote.clients.common import (
    Finished,
    check_arguments,
    check_network,
    qmail_home,
    read_helohost,
    read_timeout,
    remote_ip,
    run_guarded,
)
from mxf_remote.clients.envelope import path_problem, smtp_path, utf8_address
from mxf_remote.clients.fdio import Connection, ConnectionDied, LineTooLong, read_until_eof
from mxf_remote.clients.message import Message, MessageUnreadable, SmtpDataEncoder
from mxf_remote.ucspi import NETWORK_READ_FD, NETWORK_WRITE_FD

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import NoReturn

    from mxf_remote.credentials import Credentials

PROGRAM = "mxf-remote-smtpc"
MAX_LINE = 65536
MAX_REPLY_LINES = 1000
MAX_KEYWORDS = 100
PIPELINE_GROUP = 100
MAX_AUTH_STEPS = 4
"""334 challenges one AUTH exchange may take (SCRAM needs two)."""
MAX_ENV_BLOCK = 65536
"""The UCSPI-TLS environment block is a few hundred bytes; more is not an engine."""


class NotSmtp(Exception):
    """The peer's reply is not an SMTP reply; ``text`` is what it sent (capped)."""

    def __init__(self, text: bytes) -> None:
        super().__init__("not SMTP")
        self.text = text


class Reply:
    """One SMTP reply: the code, qmail-remote's text, and the EHLO keywords."""

    __slots__ = ("code", "keywords", "mechanisms", "text")

    def __init__(
        self, code: int, text: bytes, keywords: set[bytes], mechanisms: set[bytes] | None = None
    ) -> None:
        self.code = code
        self.text = text
        self.keywords = keywords
        self.mechanisms = mechanisms or set()
        """The SASL mechanisms of an EHLO reply's ``AUTH`` (or old ``AUTH=``) lines."""

    def first_line(self) -> bytes:
        """The text after the code on the first line (a 334's challenge)."""
        return self.text.partition(b"\n")[0][4:].strip()


def _is_reply_line(line: bytes) -> bool:
    """``DDD``, ``DDD text`` or ``DDD-text`` with a first digit 2..5 (RFC 5321 §4.2)."""
    return (
        len(line) >= 3
        and line[:3].isdigit()
        and line[0] in b"2345"
        and (len(line) == 3 or line[3] in b" -")
    )


def read_reply(connection: Connection) -> Reply:
    """The next reply; NotSmtp for garbage, ConnectionDied when the peer goes away."""
    text = bytearray()
    code = 0
    keywords: set[bytes] = set()
    mechanisms: set[bytes] = set()
    for number in range(MAX_REPLY_LINES):
        try:
            line = connection.read_line(MAX_LINE)
        except LineTooLong as error:
            text += error.start.replace(b"\r", b"")[: reports.HUGESMTPTEXT - len(text)]
            raise NotSmtp(bytes(text)) from None
        line = line.replace(b"\r", b"")
        if len(text) < reports.HUGESMTPTEXT:
            text += (line + b"\n")[: reports.HUGESMTPTEXT - len(text)]
        if not _is_reply_line(line):
            raise NotSmtp(bytes(text))
        if number == 0:
            code = int(line[:3])
        else:
            words = line[4:].upper().split()
            if words and len(keywords) < MAX_KEYWORDS:
                keywords.add(words[0][:64])
            if words and words[0][:5] in (b"AUTH", b"AUTH=") and len(mechanisms) < MAX_KEYWORDS:
                first = words[0][5:] if words[0][:5] == b"AUTH=" else b""
                mechanisms.update(m[:64] for m in [first, *words[1:MAX_KEYWORDS]] if m)
        if len(line) == 3 or line[3:4] == b" ":
            return Reply(code, bytes(text), keywords, mechanisms)
    raise NotSmtp(bytes(text))


def _descriptor(name: str) -> int:
    """The descriptor number in environment variable ``name``; -1 when unset or unusable."""
    value = os.environ.get(name, "")
    if not value.isdigit() or int(value) in (0, 1, 2, NETWORK_READ_FD, NETWORK_WRITE_FD):
        return -1
    return int(value)


def _ucspi_tls_descriptors() -> tuple[int, int, int] | None:
    """``(SSLCTLFD, SSLREADFD, SSLWRITEFD)`` under a UCSPI-TLS client, else None.

    A read or write descriptor that is missing or not open is -1: TLS cannot be used.
    """
    found = []
    for name in ("SSLCTLFD", "SSLREADFD", "SSLWRITEFD"):
        fd = _descriptor(name)
        if fd >= 0:
            try:
                os.fstat(fd)
            except OSError:
                fd = -1
        found.append(fd)
    if found[0] < 0:
        return None  # no UCSPI-TLS client (a stale SSLCTLFD names no open descriptor)
    return found[0], found[1], found[2]


def tls_verification_configured() -> bool:
    """True when the TLS client verifies certificates: ``CAFILE`` or ``CADIR`` is set.

    The TLS clients take both out of our environment (s6's ``-z``, their default), so
    mxf-remote passes the fact on as ``MXFTLSVERIFY=1`` (handoff.py).
    """
    return any(os.environ.get(name) for name in ("MXFTLSVERIFY", "CAFILE", "CADIR"))


_POLICY_LABELS = {"dane": "DANE", "mta-sts": "MTA-STS"}
STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
VALIDATION_FAILURE = "validation-failure"
_RESULT_TYPES = frozenset(
    (
        VALIDATION_FAILURE,
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
    )
)
"""The RFC 8460 §4.3 result types the engine may send; anything else is validation-failure."""


def required_tls_policy() -> str | None:
    """How reports name the policy that makes TLS mandatory (``MXFTLSREQUIRED``), or None.

    An unknown non-empty value still makes TLS mandatory (fail closed): a mistyped policy
    must not turn into clear text.
    """
    value = os.environ.get("MXFTLSREQUIRED", "")
    if not value:
        return None
    return _POLICY_LABELS.get(value.lower(), "TLS policy")


def record_tls_outcome(result: str, *, receiving_ip: str, reason: str) -> None:
    """Hand one session's TLS outcome to the TLS-RPT recorder; never fails the delivery."""
    try:
        from mxf_remote.tlsrpt import record_from_environment

        record_from_environment(
            os.environ,
            result,
            sending_ip=os.environ.get("TCPLOCALIP", ""),
            receiving_ip=receiving_ip,
            reason=reason,
        )
    except Exception:  # noqa: S110 - a report about TLS must never cost the message (nor a bug in it)
        pass


def _close(fd: int) -> None:
    try:  # noqa: SIM105 - contextlib costs an import at every start-up
        os.close(fd)
    except OSError:
        pass


def _start_tls(control: int, timeout: float) -> tuple[bool, tuple[str, str] | None]:
    """UCSPI-TLS ``Y``: start the handshake and wait for the environment block.

    ``(True, None)`` once the engine has sent a complete block (the handshake succeeded);
    ``(False, failure)`` when the control descriptor fails, or reaches EOF (or a timeout)
    before the block ends -- the engine failed the handshake.  ``failure`` is ``(RFC 8460
    result type, reason)`` when the cut-short block is the engine's ``MXFTLSFAILURE``
    entry (under a policy), else None.  On success, ``(True, outcome)`` when the block
    carries ``SSL_MTASTS`` (the WebPKI verdict of MTA-STS ``testing``: what TLS-RPT records
    for the session), else ``(True, None)``; the other TLS parameters are not used.
    """
    from mxf_remote.tls.envblock import IncompleteBlock, parse_env_block, parse_failure

    try:
        written = os.write(control, b"Y")
    except OSError:
        written = 0
    block = read_until_eof(control, timeout, MAX_ENV_BLOCK) if written == 1 else None
    _close(control)
    if block is None:
        return False, None
    try:
        entries = parse_env_block(block)
    except IncompleteBlock:
        failure = parse_failure(block)
        if failure is not None and failure[0] not in _RESULT_TYPES:
            failure = (VALIDATION_FAILURE, failure[1])
        return False, failure
    except ValueError:
        return False, None
    for name, value in entries:
        if name == "SSL_MTASTS" and value:
            result, _, reason = value.partition(" ")
            known = result in _RESULT_TYPES or result == "success"
            return True, (result if known else VALIDATION_FAILURE, reason)
    return True, None


class SmtpSession:
    """One delivery over one connection: the steps of the module doc."""

    def __init__(
        self,
        connection: Connection,
        *,
        ip: str,
        helohost: bytes,
        message: Message,
        sender: bytes,
        recipients: list[bytes],
        credentials: Credentials | None = None,
        relay: str = "",
    ) -> None:
        self.connection = connection
        self.ip = ip
        self.helohost = helohost
        self.message = message
        self.sender = sender
        self.recipients = recipients
        self.reports: list[bytes] = []
        self.accepted = False
        """True once a recipient is accepted (``r``)."""
        self.critical = False
        """True from the final dot until its reply: a dead connection may duplicate."""
        self.credentials = credentials
        """SMTP AUTH credentials for this relay (``credentials.find_credentials``)."""
        self.relay = relay
        """The relay as mxf-remote handed it (``MXFHOST``), for the AUTH reports."""
        self.mechanisms: set[bytes] = set()
        """The AUTH mechanisms of the last EHLO reply."""
        self.tls = False
        """True once STARTTLS has switched the conversation to TLS."""
        self.tls_outcome: tuple[str, str] | None = None
        """``(RFC 8460 result type or "success", reason)`` once TLS was decided."""

    def run(self) -> bytes:
        """Deliver; every report, ready for fd 1 (and the TLS outcome to TLS-RPT)."""
        report = self._run()
        if self.tls_outcome is not None and os.environ.get("MXFTLSRPT"):
            result, reason = self.tls_outcome
            record_tls_outcome(result, receiving_ip=self.ip, reason=reason)
        return report

    def _run(self) -> bytes:
        try:
            self._converse()
        except Finished as finished:
            return b"".join(self.reports) + finished.data
        except ConnectionDied:
            return self._with(reports.connection_died(self.ip, critical=self.critical))
        except NotSmtp as error:
            return self._with(reports.not_smtp(self.ip, error.text, critical=self.critical))
        except MessageUnreadable:
            return self._with(reports.unreadable_message())
        raise AssertionError("_converse always finishes")  # pragma: no cover

    def _with(self, report: bytes) -> bytes:
        return b"".join(self.reports) + report

    def _quit(self, report: bytes) -> NoReturn:
        """qmail-remote's ``quit()``: QUIT without waiting, then the message report."""
        self.connection.write_nowait(b"QUIT\r\n")
        raise Finished(report)

    def _reply(self) -> Reply:
        return read_reply(self.connection)

    def _converse(self) -> None:
        greeting = self._reply()
        if greeting.code != 220:
            self._quit(reports.greeting_failed(self.ip, greeting.text))
        keywords = self._after_hello(self._hello())
        if self.credentials is not None:
            self._authenticate(self.credentials)
        smtputf8 = b"SMTPUTF8" in keywords and self._has_utf8_address()
        self._envelope(
            self._mail_command(keywords, smtputf8=smtputf8),
            pipelining=b"PIPELINING" in keywords,
            smtputf8=smtputf8,
        )
        self._data()
        final = self._reply()
        self.critical = False
        if final.code >= 500:
            self._quit(reports.after_data_failed("D", self.ip, final.text))
        if final.code >= 300:
            self._quit(reports.after_data_failed("Z", self.ip, final.text))
        self._quit(reports.accepted(self.ip, final.text))

    def _hello(self) -> set[bytes]:
        """EHLO, HELO after a 5xx; the EHLO keywords (none after HELO)."""
        self.connection.write(b"EHLO " + self.helohost + b"\r\n")
        reply = self._reply()
        self.mechanisms = reply.mechanisms
        if reply.code == 250:
            return reply.keywords
        self.mechanisms = set()
        if reply.code >= 500:
            self.connection.write(b"HELO " + self.helohost + b"\r\n")
            reply = self._reply()
            if reply.code == 250:
                return set()
        self._quit(reports.name_rejected(self.ip, reply.text))

    def _without_tls_client(self, policy: str | None) -> None:
        """No UCSPI-TLS client: fine in clear, or under implicit TLS; else a Z."""
        if os.environ.get("SSL_PROTOCOL"):
            self.tls_outcome = ("success", "")  # implicit TLS, checked by its client
            return
        self.tls_outcome = (STARTTLS_NOT_SUPPORTED, "no TLS client")
        if policy is not None:
            self._quit(reports.tls_required_without_client(policy))

    def _after_hello(self, keywords: set[bytes]) -> set[bytes]:
        """STARTTLS under a UCSPI-TLS client (spec §9); the keywords to go on with.

        Without ``SSLCTLFD`` there is no TLS to start.  With it: STARTTLS not offered
        closes ``SSLCTLFD``, which tells the TLS client we go on in clear (opportunistic
        TLS).  Offered: STARTTLS, and on 220 ``Y`` to the control descriptor, the
        environment block back once the handshake is done, then ``SSLREADFD`` and
        ``SSLWRITEFD`` instead of fds 6/7 and EHLO again (RFC 3207 §4.2: forget what the
        server said before TLS).  Once STARTTLS is on its way there is no going back to
        clear text: a failed handshake is a deferral, never a downgrade.

        A refusal (4xx/5xx to STARTTLS, no handshake started) is a deferral only when
        the admin configured certificate verification (``tls_verification_configured``)
        or the server is closing (421).  Otherwise TLS is opportunistic, as Postfix's
        ``may`` level: refused is treated as not offered and the delivery goes on in
        clear -- deferring would retry into the same refusal until queuelifetime and
        then bounce a message a clear-text MTA would have delivered.
        """
        policy = required_tls_policy()
        descriptors = _ucspi_tls_descriptors()
        if descriptors is None:
            self._without_tls_client(policy)
            return keywords
        control, tls_read, tls_write = descriptors
        if b"STARTTLS" not in keywords or tls_read < 0 or tls_write < 0:
            _close(control)  # declined: the TLS client's engine exits, we stay in clear
            if b"STARTTLS" in keywords:
                self._quit(reports.tls_unusable())
            # recorded under MTA-STS testing too, where it is the news (RFC 8460 §4.3.1)
            self.tls_outcome = (STARTTLS_NOT_SUPPORTED, "STARTTLS not offered")
            if policy is not None:
                self._quit(reports.starttls_not_offered_but_required(self.ip, policy))
            return keywords
        self.connection.write(b"STARTTLS\r\n")
        reply = self._reply()
        if reply.code != 220:
            _close(control)
            self.tls_outcome = (STARTTLS_NOT_SUPPORTED, "STARTTLS refused")
            if policy is not None:
                self._quit(reports.starttls_refused_but_required(self.ip, policy, reply.text))
            if reply.code == 421 or tls_verification_configured():
                self._quit(reports.starttls_refused(self.ip, reply.text))
            return keywords  # opportunistic: refused is as good as not offered
        # fds 6/7 now belong to the engine, which shares their file description: leave
        # them blocking as the handoff gave them, and never write to them again.
        self.connection.restore_blocking()
        started, failure = _start_tls(control, self.connection.timeout)
        if not started:
            if failure is None:
                self.tls_outcome = (VALIDATION_FAILURE, "TLS handshake failed")
                raise Finished(reports.tls_failed(self.ip))
            self.tls_outcome = failure
            raise Finished(reports.tls_failed_because(self.ip, failure[1]))
        self.tls_outcome = failure or ("success", "")  # testing: what enforcing would find
        for fd in (NETWORK_READ_FD, NETWORK_WRITE_FD):
            _close(fd)
        self.connection.switch(tls_read, tls_write)
        self.tls = True
        return self._hello()

    def _authenticate(self, credentials: Credentials) -> None:
        """SMTP AUTH (RFC 4954) with the best mechanism offered, over TLS only.

        TLS is STARTTLS done here (``self.tls``) or implicit TLS: under mxf-remote-tlsc or
        s6-tlsc the environment has ``SSL_PROTOCOL`` (mxf-remote's handoff removes every
        ``SSL_`` variable it inherited, so only the TLS client can have set it).  Without
        TLS, or without a mechanism we speak, nothing is sent: a Z.  Any reply but 235 at
        the end is a Z naming the relay, a 5xx too -- a wrong password is the
        administrator's to fix, never a reason to bounce the message.
        """
        if not self.tls and not os.environ.get("SSL_PROTOCOL"):
            self._quit(reports.auth_needs_tls(self.ip, self.relay, credentials.source))
        from mxf_remote.clients import sasl

        name = sasl.choose(self.mechanisms)
        if name is None:
            self._quit(reports.auth_unavailable(self.ip, self.relay, credentials.source))
        from base64 import b64decode, b64encode

        mechanism = sasl.start(name, credentials.user, credentials.password)
        command = b"AUTH " + name
        if mechanism.initial is not None:
            command += b" " + (b64encode(mechanism.initial) or b"=")
        self.connection.write(command + b"\r\n")
        for _ in range(MAX_AUTH_STEPS):
            reply = self._reply()
            if reply.code != 334:
                break
            try:
                response = mechanism.respond(b64decode(reply.first_line(), validate=True))
            except (sasl.Abort, ValueError):
                self.connection.write(b"*\r\n")  # RFC 4954 §4: cancel
                reply = self._reply()
                if reply.code == 235:  # accepted anyway: a server we cannot verify
                    reply.code = 535
                break
            self.connection.write(b64encode(response) + b"\r\n")
        else:
            self.connection.write(b"*\r\n")
            reply = self._reply()
            reply.code = 535
        if reply.code != 235:
            source = credentials.source
            self._quit(
                reports.auth_rejected(self.ip, self.relay, source, name.decode(), reply.text)
            )

    def _has_utf8_address(self) -> bool:
        """True when the sender or a recipient that will be sent is UTF-8 (RFC 6531)."""
        return utf8_address(self.sender) or any(
            utf8_address(recipient) and path_problem(recipient) is None
            for recipient in self.recipients
        )

    def _mail_command(self, keywords: set[bytes], *, smtputf8: bool) -> bytes:
        """``MAIL FROM:<sender>`` with SIZE and BODY when the server offers them, and
        SMTPUTF8 when ``smtputf8`` (offered, and an address needs it)."""
        parameters = b""
        if b"SIZE" in keywords or b"8BITMIME" in keywords:
            size, eight_bit = self.message.scan()
            if b"SIZE" in keywords:
                parameters += b" SIZE=%d" % size
            if b"8BITMIME" in keywords and eight_bit:
                parameters += b" BODY=8BITMIME"
        if smtputf8:
            parameters += b" SMTPUTF8"
        path = smtp_path(self.sender, smtputf8=smtputf8)
        return b"MAIL FROM:<" + path + b">" + parameters + b"\r\n"

    def _envelope(self, mail: bytes, *, pipelining: bool, smtputf8: bool) -> None:
        """MAIL, RCPTs, DATA -- one at a time, or pipelined in groups.

        A recipient that cannot be written into a command (``envelope.path_problem``: CR
        or LF, or a domain that would end the path) is never sent; it gets an ``h``
        report in its turn, as if the server had refused it.
        """
        steps: list[tuple[str, bytes]] = [("MAIL", mail)]
        """Each step's kind and its command (for ``BAD``, why nothing is sent)."""
        for recipient in self.recipients:
            problem = path_problem(recipient)
            if problem is not None:
                steps.append(("BAD", problem.encode()))
            else:
                path = smtp_path(recipient, smtputf8=smtputf8)
                steps.append(("RCPT", b"RCPT TO:<" + path + b">\r\n"))
        if not any(kind == "RCPT" for kind, _ in steps):
            self.reports.extend(reports.bad_recipient(why.decode()) for _, why in steps[1:])
            self._quit(reports.giving_up(self.ip))
        steps.append(("DATA", b"DATA\r\n"))
        group_size = PIPELINE_GROUP if pipelining else 1
        start = 0
        while start < len(steps):
            group = steps[start : start + group_size]
            start += len(group)
            if group[0][0] == "DATA" and not self.accepted:
                self._quit(reports.giving_up(self.ip))  # qmail-remote sends no DATA then
            self.connection.write(b"".join(command for kind, command in group if kind != "BAD"))
            for kind, detail in group:
                self._answer(kind, detail)

    def _answer(self, kind: str, detail: bytes) -> None:
        """Read and judge the reply to one envelope step (none for a BAD recipient)."""
        if kind == "MAIL":
            reply = self._reply()
            if reply.code >= 400:
                letter = "D" if reply.code >= 500 else "Z"
                self._quit(reports.sender_rejected(letter, self.ip, reply.text))
        elif kind == "BAD":
            self.reports.append(reports.bad_recipient(detail.decode()))
        elif kind == "RCPT":
            self.reports.append(self._recipient_report(self._reply()))
        else:
            if not self.accepted:
                self._quit(reports.giving_up(self.ip))
            self._data_reply()

    def _recipient_report(self, reply: Reply) -> bytes:
        if reply.code >= 500:
            return reports.recipient_rejected("h", self.ip, reply.text)
        if reply.code >= 400:
            return reports.recipient_rejected("s", self.ip, reply.text)
        self.accepted = True
        return reports.recipient_accepted()

    def _data_reply(self) -> None:
        reply = self._reply()
        if reply.code == 354:
            return
        letter = "D" if reply.code >= 500 else "Z"
        self._quit(reports.data_failed(letter, self.ip, reply.text))

    def _data(self) -> None:
        """The body, dot-stuffed with CRLF line ends, then the final dot.

        The last chunk of the body goes out in the same write as the final dot: written
        apart, the dot would wait in Nagle's buffer for the server's delayed ACK of the
        body (40 ms on Linux) before the server even sees the end of the message.
        """
        encoder = SmtpDataEncoder()
        held = b""
        for chunk in self.message.chunks():
            if held:
                self.connection.write(held)
            held = encoder.encode(chunk)
        tail = encoder.finish()
        if not encoder.complete:
            # The file changed under us since the check in main: no dot, no QUIT.
            raise Finished(reports.partial_final_line())
        self.critical = True
        self.connection.write(held + tail + b".\r\n")


def deliver(argv: list[str]) -> bytes:
    """The whole run: arguments, control files, message checks, the conversation."""
    sender, recipients = check_arguments(argv)
    home = qmail_home()
    helohost = read_helohost(home)
    timeout = read_timeout(home)
    check_network()
    try:
        message = Message(0)
        partial = message.has_partial_final_line()
    except MessageUnreadable:
        return reports.unreadable_message()
    if partial:
        return reports.partial_final_line()
    problem = path_problem(sender)
    if problem is not None:
        return reports.bad_sender(problem)
    relay = os.environ.get("MXFHOST", "")
    credentials = read_credentials(home, argv[1], argv[2], relay)
    connection = Connection(NETWORK_READ_FD, NETWORK_WRITE_FD, timeout)
    session = SmtpSession(
        connection,
        ip=remote_ip(),
        helohost=helohost,
        message=message,
        sender=sender,
        recipients=recipients,
        credentials=credentials,
        relay=relay,
    )
    return session.run()


def read_credentials(home: str, host: str, sender: str, relay: str) -> Credentials | None:
    """The AUTH credentials for the route mxf-remote followed (``MXFPROTOCOL``,
    ``MXFHOST``), read from the control files here, never passed to us; the report for a
    malformed line never shows the password (``credentials.py``)."""
    from mxf_remote.controlfile import ControlError
    from mxf_remote.credentials import find_credentials

    try:
        return find_credentials(home, host, sender, os.environ.get("MXFPROTOCOL", ""), relay)
    except ControlError as error:
        raise Finished(reports.control_files(error.detail())) from None


def main() -> NoReturn:
    """Entry point of ``mxf-remote-smtpc host sender recip...``."""
    run_guarded(PROGRAM, deliver)


if __name__ == "__main__":
    main()
