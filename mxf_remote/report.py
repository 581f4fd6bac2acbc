"""Every report text ``mxf-remote`` itself can print, and nothing else.

mxf-remote prints a report only when it cannot hand the delivery to a protocol client.
The texts are qmail-remote's, byte for byte, where qmail-remote has one
(qmail-remote-contract.md §2); the others follow its style: one letter (Z temporary, D
permanent), a sentence, a ``(#x.y.z)`` status, and a final LF.  ``output.report_bytes``
adds the single NUL.

The rule for choosing the letter is "when in doubt, Z": a D is printed only for the
permanent situations spec §3/§7 names.
"""

from __future__ import annotations

from typing import NamedTuple

from mxf_remote.output import outsafe, printable_ascii, report_bytes


class Report(NamedTuple):
    """One message report: ``letter`` is ``Z`` or ``D``; ``text`` ends in LF."""

    letter: str
    text: bytes

    def encode(self) -> bytes:
        """The bytes qmail-rspawn reads: letter, text, one NUL (NULs in text become ``?``)."""
        return report_bytes(self.letter, self.text)


def _one_line(text: str) -> bytes:
    """An explanation squeezed onto one log-safe line (no LF, no NUL, bounded)."""
    return printable_ascii(text.encode("utf-8", "surrogateescape")[:900])


USAGE = Report("D", b"I (qmail-remote) was invoked improperly. (#5.3.5)\n")
NO_HOME = Report("Z", b"Unable to switch to home directory. (#4.3.0)\n")
NO_PROTOCOL = Report("Z", b"No usable mail protocol is installed (control/protocols). (#4.3.0)\n")
DNS_TEMPORARY = Report("Z", b"Sorry, I couldn't find any host by that name. (#4.1.2)\n")
NO_EXCHANGER_ADDRESS = Report(
    "D", b"Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n"
)
WE_ARE_BEST_MX = Report(
    "D",
    b"Sorry. Although I'm listed as a best-preference MX or A for that host,\n"
    b"it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n",
)
NO_CONNECTION = Report("Z", b"Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n")
SERVICE_DECLINED = Report(
    "Z",
    b"Sorry, every mail protocol I know is declined by the domain's SRV records. (#4.4.1)\n",
)
NO_MESSAGE = Report("Z", b"Unable to read message. (#4.3.0)\n")
NO_RESOURCES = Report("Z", b"System resources temporarily unavailable. (#4.3.0)\n")


def no_such_host(host: str) -> Report:
    """NXDOMAIN/NODATA everywhere: the host (or relay) named in qmail-remote's words."""
    return Report("D", b"Sorry, I couldn't find any host named " + outsafe(host) + b". (#5.1.2)\n")


def null_mx(host: str) -> Report:
    """RFC 7505: the domain publishes a single ``MX 0 .``."""
    return Report("D", b"Sorry, " + outsafe(host) + b" does not accept mail (null MX). (#5.1.10)\n")


def tls_policy_refused(reason: str) -> Report:
    """DANE or MTA-STS refused every exchanger the race could have used (#4.7.5, as Postfix
    defers "TLSA lookup error"): the admin's policy or the domain's DNS, never a bounce."""
    return Report("Z", b"Sorry, " + _one_line(reason) + b". (#4.7.5)\n")


def control_error(detail: str) -> Report:
    """A control file is unreadable or malformed; ``detail`` names file, line, problem."""
    return Report("Z", b"Unable to read control files. (#4.3.0)\n" + _one_line(detail) + b"\n")


def family_not_allowed(family: str) -> Report:
    """``control/addressfamilies`` forbids the family of the host literal (or of every
    literal relay): ``family`` is ``IPv4`` or ``IPv6``.  An admin's setting, so Z."""
    return Report(
        "Z",
        b"Sorry, control/addressfamilies does not allow "
        + _one_line(family)
        + b" for this host. (#4.3.0)\n",
    )


def bad_nameservers(detail: str) -> Report:
    """``MXF_NAMESERVERS`` or ``/etc/resolv.conf`` names no usable server."""
    return Report("Z", b"Unable to set up DNS: " + _one_line(detail) + b". (#4.3.0)\n")


def server_gone(reason: str) -> Report:
    """mxf-remoted took the delivery, then went away or said something we cannot use."""
    return Report(
        "Z", b"The mxf-remoted server gave no usable answer: " + _one_line(reason) + b". (#4.3.0)\n"
    )


def cannot_run(program: str, reason: str) -> Report:
    """``execv`` of the protocol program (or its TLS client) failed."""
    return Report(
        "Z", b"Unable to run " + _one_line(program) + b": " + _one_line(reason) + b". (#4.3.0)\n"
    )


def internal_error(error: BaseException) -> Report:
    """Anything unexpected: a deferral that names the exception, never a traceback."""
    return Report(
        "Z",
        b"mxf-remote internal error: "
        + _one_line(type(error).__name__)
        + b": "
        + _one_line(str(error))
        + b" (#4.3.0)\n",
    )
