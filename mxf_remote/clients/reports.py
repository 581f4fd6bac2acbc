"""Every report the protocol clients print, in one place.

A report is a letter, a text ending in LF, and one NUL (``output.report_bytes``).  The
texts are qmail-remote's SMTP-phase texts byte for byte (notqmail ``qmail-remote.c``;
qmail-remote-contract.md §2.1), where qmail-remote has one:

* ``quit()`` texts: letter, ``<ip>`` inside a fixed sentence, ``.\\n``, then -- when the
  peer said something -- ``Remote host said: `` and the reply lines (CRs removed, NUL as
  ``?``, at most 5000 bytes: HUGESMTPTEXT).  When the 5000 bytes cut a line, we add the
  LF qmail would have left out, so that every text ends in exactly one LF.  ``<ip>`` is
  printed as qmail's ``outsafe()`` prints it (``output.outsafe``: bytes outside 33..126
  as ``?``).
* recipient reports ``r``/``h``/``s``; ``DGiving up on <ip>.`` carries no reply text
  (qmail-remote already printed it in the last recipient report).

Texts of our own, where qmail-remote has none (the wording follows its style):

* ``ZConnected to <ip> but the remote host did not talk proper SMTP. (#4.5.0)`` for a
  reply that is not SMTP (no three-digit code, a line over 64 KiB, an endless reply);
  after the final dot ``... proper SMTP. Possible duplicate! (#4.5.0)``.
* ``ZRecipient did not talk proper QMTP. (#4.3.0)`` (spec §9; s/qmail's text plus the
  period the spec adds); once the whole package is out, ``... proper QMTP. Possible
  duplicate! (#4.3.0)``, as SMTP after the final dot.
* ``ZNo network connection on descriptors 6 and 7. (#4.3.0)``: the client was not run
  under a UCSPI client.
* ``Zmxf-remote-smtpc internal error: TYPE: MESSAGE (#4.3.0)`` (spec §7).
* sender / recipient containing CR or LF, or with a domain that would end the path
  (``envelope.path_problem``): never sent (it would inject commands).
* STARTTLS (UCSPI-TLS): ``ZConnected to <ip> but STARTTLS was refused.`` with the
  server's reply; ``ZTLS handshake with <ip> failed after STARTTLS. (#4.4.2)`` when the
  server said 220 but no TLS session came of it (we never fall back to clear text then);
  ``ZUnable to start TLS: SSLREADFD and SSLWRITEFD are not usable. (#4.3.0)`` for a
  broken UCSPI-TLS client.
* TLS required by a policy (``MXFTLSREQUIRED=dane`` or ``mta-sts``, set by mxf-remote for
  DANE and MTA-STS ``enforce``): ``ZConnected to <ip> but STARTTLS is not offered, and
  DANE requires TLS. (#4.7.5)`` (``MTA-STS`` for mta-sts), the same with ``STARTTLS was
  refused`` and the server's reply, ``ZTLS is required by DANE but no TLS client is
  running. (#4.7.5)``; a failed check with the engine's reason: ``ZTLS with <ip> failed
  after STARTTLS: <reason>. (#4.7.5)`` (reason through ``printable_ascii``, at most 400).
* SMTP AUTH to a relay (``control/authsenders``, ``smtproutes`` with ``|user|password``):
  ``ZConnected to <ip> but <relay> offers no TLS: the credentials of control/<file> are
  never sent in clear. (#4.7.0)``; ``ZConnected to <ip> but <relay> offers no AUTH
  mechanism I can use for the credentials of control/<file>.
  (#4.7.0)``; ``ZConnected to <ip> but <relay> rejected the
  credentials of control/<file> (AUTH <mechanism>).`` with the server's reply -- a Z
  also for a 5xx: the credentials are the administrator's configuration, never the
  message's fault.  No report names the user or the password.
"""

from __future__ import annotations

from mxf_remote.output import outsafe, printable_ascii, report_bytes

HUGESMTPTEXT = 5000
"""qmail-remote keeps at most this many bytes of the peer's reply text."""

MAX_INTERNAL_ERROR = 400


def remote_said(text: bytes) -> bytes:
    """``Remote host said: TEXT`` ending in LF; empty when the peer said nothing."""
    if not text:
        return b""
    text = text[:HUGESMTPTEXT]
    if not text.endswith(b"\n"):
        text += b"\n"
    return b"Remote host said: " + text


def _quit(letter: str, prefix: bytes, ip: str, suffix: bytes, text: bytes = b"") -> bytes:
    """qmail-remote's ``quit(prepend, append)``: the message report."""
    return report_bytes(letter, prefix + outsafe(ip) + suffix + b".\n" + remote_said(text))


# -- the run itself -------------------------------------------------------------------


def usage() -> bytes:
    """Fewer than three arguments."""
    return report_bytes("D", b"I (qmail-remote) was invoked improperly. (#5.3.5)\n")


def control_files(detail: str | None = None) -> bytes:
    """A control file cannot be used; ``detail`` names file, line and problem (spec §2)."""
    text = b"Unable to read control files. (#4.3.0)\n"
    if detail:
        text += detail.encode("utf-8", "surrogateescape").replace(b"\n", b" ") + b"\n"
    return report_bytes("Z", text)


def no_network() -> bytes:
    """fds 6 and 7 are not open: we were not run by mxf-remote or a UCSPI client."""
    return report_bytes("Z", b"No network connection on descriptors 6 and 7. (#4.3.0)\n")


def unreadable_message() -> bytes:
    """fd 0 cannot be read."""
    return report_bytes("Z", b"Unable to read message. (#4.3.0)\n")


def partial_final_line() -> bytes:
    """The message's last line has no line end (SMTP only)."""
    return report_bytes("D", b"SMTP cannot transfer messages with partial final lines. (#5.6.2)\n")


def internal_error(program: str, error: BaseException) -> bytes:
    """Anything unexpected: deferred, never a traceback (spec §7)."""
    message = " ".join(str(error).split())[:MAX_INTERNAL_ERROR]
    text = f"{program} internal error: {type(error).__name__}: {message} (#4.3.0)\n"
    return report_bytes("Z", text.encode("utf-8", "backslashreplace"))


def connection_died(ip: str, *, critical: bool) -> bytes:
    """Read or write failed, or timed out; ``critical`` once the final dot is on its way."""
    duplicate = b"Possible duplicate! " if critical else b""
    return report_bytes(
        "Z", b"Connected to " + outsafe(ip) + b" but connection died. " + duplicate + b"(#4.4.2)\n"
    )


# -- SMTP -----------------------------------------------------------------------------


def greeting_failed(ip: str, text: bytes) -> bytes:
    """The greeting was not 220."""
    return _quit("Z", b"Connected to ", ip, b" but greeting failed", text)


def name_rejected(ip: str, text: bytes) -> bytes:
    """EHLO and HELO (or a non-5xx EHLO refusal) were not 250."""
    return _quit("Z", b"Connected to ", ip, b" but my name was rejected", text)


def sender_rejected(letter: str, ip: str, text: bytes) -> bytes:
    """MAIL got 4xx (Z) or 5xx (D)."""
    return _quit(letter, b"Connected to ", ip, b" but sender was rejected", text)


def recipient_accepted() -> bytes:
    """RCPT got 2xx/3xx (or QMTP said K): a bare ``r``, as qmail-remote prints it."""
    return report_bytes("r", b"")


def recipient_rejected(letter: str, ip: str, text: bytes) -> bytes:
    """RCPT got 5xx (``h``) or 4xx (``s``)."""
    return report_bytes(letter, outsafe(ip) + b" does not like recipient.\n" + remote_said(text))


def giving_up(ip: str) -> bytes:
    """No recipient was accepted."""
    return _quit("D", b"Giving up on ", ip, b"")


def data_failed(letter: str, ip: str, text: bytes) -> bytes:
    """DATA got 4xx/5xx (or anything but 354)."""
    return _quit(letter, b"", ip, b" failed on DATA command", text)


def after_data_failed(letter: str, ip: str, text: bytes) -> bytes:
    """The reply after the final dot was 4xx/5xx."""
    return _quit(letter, b"", ip, b" failed after I sent the message", text)


def accepted(ip: str, text: bytes) -> bytes:
    """The message is delivered to every ``r`` recipient."""
    return _quit("K", b"", ip, b" accepted message", text)


def not_smtp(ip: str, text: bytes, *, critical: bool) -> bytes:
    """The peer's reply is not SMTP."""
    duplicate = b"Possible duplicate! " if critical else b""
    return report_bytes(
        "Z",
        b"Connected to "
        + outsafe(ip)
        + b" but the remote host did not talk proper SMTP. "
        + duplicate
        + b"(#4.5.0)\n"
        + remote_said(text),
    )


def starttls_refused(ip: str, text: bytes) -> bytes:
    """STARTTLS was offered, sent, and answered with anything but 220."""
    return _quit("Z", b"Connected to ", ip, b" but STARTTLS was refused", text)


def tls_failed(ip: str) -> bytes:
    """220 to STARTTLS, then no TLS session: handshake, certificate or engine failure."""
    return report_bytes(
        "Z", b"TLS handshake with " + outsafe(ip) + b" failed after STARTTLS. (#4.4.2)\n"
    )


MAX_TLS_REASON = 400
"""Characters of the TLS engine's reason a report keeps."""


def _policy_requires(label: str) -> bytes:
    return b", and " + printable_ascii(label.encode("ascii", "replace")) + b" requires TLS."


def starttls_not_offered_but_required(ip: str, label: str) -> bytes:
    """A TLS policy (DANE, MTA-STS) applies and the server does not offer STARTTLS."""
    return report_bytes(
        "Z",
        b"Connected to "
        + outsafe(ip)
        + b" but STARTTLS is not offered"
        + _policy_requires(label)
        + b" (#4.7.5)\n",
    )


def starttls_refused_but_required(ip: str, label: str, text: bytes) -> bytes:
    """A TLS policy applies and the server refused STARTTLS (its reply follows)."""
    return report_bytes(
        "Z",
        b"Connected to "
        + outsafe(ip)
        + b" but STARTTLS was refused"
        + _policy_requires(label)
        + b" (#4.7.5)\n"
        + remote_said(text),
    )


def tls_required_without_client(label: str) -> bytes:
    """A TLS policy applies and we do not run under a UCSPI-TLS client (no SSLCTLFD)."""
    name = printable_ascii(label.encode("ascii", "replace"))
    return report_bytes(
        "Z", b"TLS is required by " + name + b" but no TLS client is running. (#4.7.5)\n"
    )


def tls_failed_because(ip: str, reason: str) -> bytes:
    """220 to STARTTLS, then the engine's reason for failing (a policy's check)."""
    text = printable_ascii(reason.encode("utf-8", "replace"))[:MAX_TLS_REASON].rstrip(b". ")
    return report_bytes(
        "Z", b"TLS with " + outsafe(ip) + b" failed after STARTTLS: " + text + b". (#4.7.5)\n"
    )


def tls_unusable() -> bytes:
    """SSLCTLFD is set but SSLREADFD/SSLWRITEFD are not open descriptors."""
    return report_bytes(
        "Z", b"Unable to start TLS: SSLREADFD and SSLWRITEFD are not usable. (#4.3.0)\n"
    )


def auth_needs_tls(ip: str, relay: str, source: str) -> bytes:
    """Credentials for this relay, and neither STARTTLS nor implicit TLS: no AUTH sent."""
    return report_bytes(
        "Z",
        b"Connected to "
        + outsafe(ip)
        + b" but "
        + outsafe(relay)
        + b" offers no TLS: the credentials of control/"
        + source.encode()
        + b" are never sent in clear. (#4.7.0)\n",
    )


def auth_unavailable(ip: str, relay: str, source: str) -> bytes:
    """Credentials for this relay, over TLS, and no AUTH mechanism we speak offered."""
    return report_bytes(
        "Z",
        b"Connected to "
        + outsafe(ip)
        + b" but "
        + outsafe(relay)
        + b" offers no AUTH mechanism I can use for the credentials of control/"
        + source.encode()
        + b". (#4.7.0)\n",
    )


def auth_rejected(ip: str, relay: str, source: str, mechanism: str, text: bytes) -> bytes:
    """AUTH failed (4xx, 5xx or a broken exchange): Z, the administrator's configuration."""
    return _quit(
        "Z",
        b"Connected to ",
        ip,
        b" but "
        + outsafe(relay)
        + b" rejected the credentials of control/"
        + source.encode()
        + b" (AUTH "
        + mechanism.encode()
        + b")",
        text,
    )


def bad_sender(problem: str) -> bytes:
    """The sender cannot be put in a MAIL command; ``problem`` says why (``envelope``)."""
    return report_bytes("D", f"Sorry, the sender address {problem}. (#5.1.7)\n".encode())


def bad_recipient(problem: str) -> bytes:
    """A recipient cannot be put in a RCPT command; ``problem`` says why (``envelope``)."""
    return report_bytes("h", f"Sorry, the recipient address {problem}. (#5.1.3)\n".encode())


# -- QMTP -----------------------------------------------------------------------------


def not_qmtp(*, critical: bool) -> bytes:
    """A response that is not a netstring starting with K, Z or D.

    ``critical`` once the whole package is out: the server may have taken the message,
    as after SMTP's final dot.
    """
    duplicate = b"Possible duplicate! " if critical else b""
    return report_bytes("Z", b"Recipient did not talk proper QMTP. " + duplicate + b"(#4.3.0)\n")


def qmtp_text(description: bytes) -> bytes:
    """A QMTP description as report text: bytes below 32 or above 126 as ``?``, then LF.

    An empty description stays empty (no ``Remote host said:`` line then).  The rule is
    ``printable_ascii``, not the ``outsafe`` that ``<ip>`` gets: a description is prose,
    and its spaces (byte 32) stay spaces.
    """
    if not description:
        return b""
    return printable_ascii(description[:HUGESMTPTEXT]) + b"\n"
