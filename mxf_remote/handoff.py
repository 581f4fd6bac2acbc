"""The handoff: become the protocol client, with the connection on fds 6 and 7 (spec §6).

This runs after the event loop is closed, in the same process, and ends in ``execve``:
the client keeps our pid, which is the pid qmail-rspawn waits for, and its exit status
and reports are what rspawn sees.  What the client inherits is exactly what a UCSPI-TCP
client (tcpclient, s6-tcpclient) would give it:

* fds 6 (read) and 7 (write) are two descriptors of the connected socket, in blocking
  mode and inheritable; every other descriptor above 2 is closed.  fds 0, 1 and 2 are
  untouched, and fd 0 -- the queued message -- is never read or seeked: the client shares
  its file offset and must read it from 0;
* ``PROTO=TCP`` and ``TCPLOCALIP``/``TCPLOCALPORT``/``TCPREMOTEIP``/``TCPREMOTEPORT``
  (IPv6 compressed, no brackets, as s6-tcpclient writes them); every other UCSPI or
  UCSPI-TLS variable the caller may have had is removed (``SSL_*`` included: a stale
  ``SSL_PROTOCOL`` would tell the client its connection is encrypted), so none can leak in;
  ``MXFHOST`` and ``MXFPROTOCOL`` say which exchanger and protocol won, and
  ``MXFTLSVERIFY=1`` that ``CAFILE`` or ``CADIR`` is set (a caller's own value is removed);
* the winner's TLS policy (``tls_environment``): ``MXFDANE`` and ``MXFDANENAMES`` (the
  usable TLSA records and the names to check), ``MXFWEBPKI=1`` (MTA-STS ``enforce``),
  ``MXFTLSREQUIRED`` (``dane`` or ``mta-sts``: no clear text), ``MXFTLSRPT`` (what
  ``mxf-remote-smtpc`` records for TLS-RPT); the TLS clients and smtpc read them, as
  mxf-remote-ucspitlsc(8) and mxf-remote-smtpc(8) say.  A caller's own are removed;
* signals as qmail-rspawn gives them to qmail-remote: SIGPIPE ignored, every other signal
  at its default (Python itself ignores SIGXFSZ, and an embedding runtime may have set
  more), and the signal mask we inherited.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from mxf_remote.execclient import exec_client
from mxf_remote.output import finish
from mxf_remote.plan import Attempt
from mxf_remote.report import cannot_run

if TYPE_CHECKING:
    from mxf_remote.dispatch import Dispatched
    from mxf_remote.prelude import Prepared
from mxf_remote.tlspolicy import (
    DANE,
    DANE_UNAUTHENTICATED,
    MTA_STS,
    MTA_STS_TESTING,
    Requirement,
    StsView,
)

TLS_VERIFY_VARIABLE = "MXFTLSVERIFY"
"""Set to 1 when CAFILE or CADIR is: the TLS client verifies certificates, and a refused
STARTTLS is then a deferral (the TLS clients hide CAFILE/CADIR from the program)."""

MAX_TLSRPT_VARIABLE = 32 * 1024
"""Linux refuses an environment string over 128 KiB (MAX_ARG_STRLEN), and an MTA-STS policy
may be 64 KiB: past this, ``MXFTLSRPT`` carries the policy without its text."""

TLS_POLICY_VARIABLES = ("MXFDANE", "MXFDANENAMES", "MXFWEBPKI", "MXFTLSREQUIRED", "MXFTLSRPT")
"""What ``tls_environment`` may set: never inherited from the caller."""

REMOVED_VARIABLES = (
    *TLS_POLICY_VARIABLES,
    "TCPLOCALHOST",
    "TCPREMOTEHOST",
    "TCPREMOTEINFO",
    "SSLCTLFD",
    "SSLREADFD",
    "SSLWRITEFD",
    TLS_VERIFY_VARIABLE,
)
REMOVED_PREFIXES = ("TCP6", "SSL_")
OPENSSL_VARIABLES = ("SSL_CERT_DIR", "SSL_CERT_FILE")
"""OpenSSL's own settings (where the system's CAs are), not UCSPI-TLS session variables:
kept, so that the TLS client's WebPKI check (MTA-STS) trusts what the admin configured."""


def client_argv(
    attempt: Attempt, arguments: Sequence[str], requirement: Requirement | None = None
) -> list[str]:
    """``program host sender recip...``, wrapped in the protocol's TLS client if it has one.

    The TLS server name (``-k``) is the exchanger's, or under a TLS policy its first
    reference identifier: for DANE the TLSA base domain, which for an exchanger reached
    through a secure CNAME is the CNAME's target (RFC 7672 §2.2.2).
    """
    protocol = attempt.protocol
    assert protocol.program_path is not None
    argv = [protocol.program_path, *arguments]
    if protocol.tls_client_path is not None:
        server = requirement.names[0] if requirement and requirement.names else attempt.exchanger
        name = ["-k", server] if attempt.named else []
        argv = [protocol.tls_client_path, *name, "--", *argv]
    return argv


def tls_environment(
    requirement: Requirement, *, sts: StsView, domain: str, spool: str | None
) -> dict[str, str]:
    """The variables that carry the winner's TLS policy to its clients.

    ``spool``: the ``control/mtasts`` directory, where smtpc records the session for
    TLS-RPT (nothing is recorded without it, or without a policy).
    """
    env: dict[str, str] = {}
    kind = requirement.kind
    if kind in (DANE, DANE_UNAUTHENTICATED):
        env["MXFTLSREQUIRED"] = "dane"
        if requirement.records:
            env["MXFDANE"] = ";".join(record.text() for record in requirement.records)
            env["MXFDANENAMES"] = " ".join(requirement.names)
        policy: dict[str, object] = {
            "policy-type": "tlsa",
            "policy-string": [record.text() for record in requirement.records],
            "policy-domain": domain,
        }
    elif kind in (MTA_STS, MTA_STS_TESTING):
        if kind == MTA_STS:
            env["MXFTLSREQUIRED"] = "mta-sts"
            env["MXFWEBPKI"] = "1"
        else:  # testing: no check that could fail, a verdict for TLS-RPT
            env["MXFWEBPKI"] = "report"
        from mxf_remote.stsflow import sts_policy_json

        policy = sts_policy_json(sts)
    else:
        return env
    if spool:
        from mxf_remote.tlsrpt import policy_variable

        mx = requirement.names[0] if requirement.names else ""
        value = policy_variable(spool, policy, mx)
        if len(value) > MAX_TLSRPT_VARIABLE:  # a huge policy: report it by type and domain
            value = policy_variable(spool, {**policy, "policy-string": [], "mx-host": []}, mx)
        env["MXFTLSRPT"] = value
    return env


def tls_environment_of(dispatched: Dispatched[Any], prepared: Prepared) -> dict[str, str]:
    """The winner's TLS policy variables (``handoff.tls_environment``)."""
    if not dispatched.requirement.kind:
        return {}
    from mxf_remote.cares import ascii_name

    domain = ascii_name(prepared.destination.name)  # TLS-RPT names domains by A-labels
    return tls_environment(
        dispatched.requirement,
        sts=dispatched.sts,
        domain=domain if isinstance(domain, str) else prepared.destination.name,
        spool=prepared.control.mtasts,
    )


def client_environment(
    environ: Mapping[str, str],
    attempt: Attempt,
    local: tuple[str, int],
    remote: tuple[str, int],
    tls: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The caller's environment with the UCSPI-TCP variables of this connection.

    ``tls``: the winner's TLS policy variables (``tls_environment``).
    """
    env = {
        key: value
        for key, value in environ.items()
        if key in OPENSSL_VARIABLES
        or (key not in REMOVED_VARIABLES and not key.startswith(REMOVED_PREFIXES))
    }
    env.update(
        PROTO="TCP",
        TCPLOCALIP=local[0],
        TCPLOCALPORT=str(local[1]),
        TCPREMOTEIP=remote[0],
        TCPREMOTEPORT=str(remote[1]),
        MXFHOST=attempt.exchanger,
        MXFPROTOCOL=attempt.protocol.service,
    )
    if environ.get("CAFILE") or environ.get("CADIR"):
        env[TLS_VERIFY_VARIABLE] = "1"
    env.update(tls or {})
    return env


def _peer_addresses(sock: socket.socket) -> tuple[tuple[str, int], tuple[str, int]]:
    local = sock.getsockname()
    remote = sock.getpeername()
    return (local[0], local[1]), (remote[0], remote[1])


def hand_off(
    sock: socket.socket,
    attempt: Attempt,
    arguments: Sequence[str],
    *,
    environ: Mapping[str, str],
    inherited_mask: set[int | signal.Signals],
    tls: Mapping[str, str] | None = None,
    requirement: Requirement | None = None,
) -> NoReturn:
    """Exec the protocol client of ``attempt`` on ``sock``; a failed exec is a Z report.

    ``tls``: the winner's TLS policy variables (``tls_environment``); ``requirement`` the
    policy itself (its first name is the TLS server name)."""
    argv = client_argv(attempt, arguments, requirement)
    try:
        local, remote = _peer_addresses(sock)
    except OSError as error:  # the peer reset the connection between connect and now
        finish(cannot_run(argv[0], f"connection lost before exec: {error.strerror}").encode())
    env = client_environment(environ, attempt, local, remote, tls)
    exec_client(sock.detach(), argv, env, inherited_mask)
