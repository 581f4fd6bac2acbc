"""Which TLS each attempt must get: DANE (RFC 7672) and MTA-STS (RFC 8461), as values.

Pure, like the planner: a ``Verdict`` from the knowledge (DNS answers, with their DNSSEC
status) and what is known of the destination's MTA-STS policy.  The planner drops what
is refused, the race closes a refused connection, and the handoff turns the winner's
``Requirement`` into the environment the TLS client and ``mxf-remote-smtpc`` read.

**DANE**, per exchanger and port, as RFC 7672 and Postfix decide it (reference §6.1):

===================================================  ===================================
DNS outcome                                          verdict
===================================================  ===================================
the address's own A/AAAA answer is not secure        no DANE (the TLSA, if any, is moot)
TLSA still outstanding                               wait (the race goes on; the handoff
                                                     waits, within ``timeoutdns``)
TLSA failed (SERVFAIL: bogus, or no answer)          refused: "TLSA lookup error" (#4.7.5)
TLSA secure, a usable record (usage 2/3, selector    TLS mandatory, the certificate
0/1, matching type 0/1/2)                            checked against the records
TLSA secure, no usable record                        TLS mandatory, not authenticated
TLSA insecure, NXDOMAIN or NODATA                    no DANE
===================================================  ===================================

An insecure MX answer does not switch DANE off for a host whose addresses and TLSA are
secure (RFC 7672 §2.2.1 allows it; Postfix does it by default).  The security of the
*address* decides, per attempt: an address from an insecure AAAA answer gets no DANE even
if the host's A answer is secure, because an attacker could have written it.

**No downgrade through the race.**  mxf-remote races QMTP (clear text) and QMTPS beside
SMTP; RFC 7672 and 8461 only know SMTP.  An exchanger whose SMTP is protected must not be
reached by a protocol without STARTTLS (which could not carry the check), or the race
itself would strip the protection: such attempts are refused, and while the exchanger's
TLSA is outstanding they wait (a ``Waiting`` marker in the plan) instead of racing.

**MTA-STS** (only for exchangers found through DNS: MX, SRV, the implicit MX; a relay of
``smtproutes`` is the admin's choice): ``enforce`` refuses exchangers that match no
``mx:`` pattern and every protocol without STARTTLS, and makes TLS mandatory and
WebPKI-verified for the exchanger's name; ``testing`` delivers as today and records the
outcome for TLS-RPT; ``none`` (or no policy) does nothing.  Where DANE applies it wins
(RFC 8461 §2: MTA-STS must not override a failing DANE check).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from mxf_remote.addresses import IPV6, family_of
from mxf_remote.knowledge import TLSA, Answer, Knowledge, Status

if TYPE_CHECKING:
    from mxf_remote.mtasts import Policy
    from mxf_remote.plan import Attempt

DANE = "dane"
DANE_UNAUTHENTICATED = "dane-unauthenticated"
MTA_STS = "mta-sts"
MTA_STS_TESTING = "mta-sts-testing"

DIGEST_LENGTHS = {1: 32, 2: 64}
"""Matching type → the length of its association data (SHA-256, SHA-512)."""
MAX_FULL_DATA = 16384
"""Matching type 0 (the certificate or key itself): longer is not used (the TLS client
takes no more, ``tls.dane.MAX_RECORD_BYTES``, and the environment has its limits)."""
MAX_RECORDS = 16
"""Usable records passed on at most (an RRset of more is cut, in the order given)."""


class Requirement(NamedTuple):
    """What the TLS client must enforce for one attempt; ``kind`` empty: nothing new."""

    kind: str = ""
    """``dane``, ``dane-unauthenticated``, ``mta-sts``, ``mta-sts-testing`` or empty."""
    records: tuple[TLSA, ...] = ()
    """``dane``: the usable TLSA records."""
    names: tuple[str, ...] = ()
    """The reference identifiers (the TLSA base domain, or the MX host for MTA-STS)."""

    @property
    def mandatory(self) -> bool:
        """TLS is required: no clear text, whatever the server offers."""
        return self.kind in (DANE, DANE_UNAUTHENTICATED, MTA_STS)


NO_REQUIREMENT = Requirement()


class Wait(NamedTuple):
    """The verdict depends on an answer still to come (a TLSA, the MTA-STS policy)."""

    what: str


class Refusal(NamedTuple):
    """The attempt must not carry the message."""

    text: str
    """A sentence for the report (``... (#4.7.5)`` is added by the report)."""
    policy: str
    """``tlsa`` or ``sts``: which policy refuses."""
    result_type: str = ""
    """The RFC 8460 result type to record for TLS-RPT; empty: nothing to record."""


Verdict = Requirement | Wait | Refusal


class StsView(NamedTuple):
    """What is known of the destination's MTA-STS policy (``stsflow.StsFlow.view``)."""

    state: str = "off"
    """``off`` (MTA-STS not configured, or not asked), ``pending``, ``none`` (no policy
    applies) or ``policy``."""
    domain: str = ""
    policy: Policy | None = None
    source: str = ""
    """Where ``policy`` came from: ``cache``, ``fetched``, ``stale cache``; for ``none``,
    why (``no TXT record``, the fetch error...)."""


def usable_tlsa(records: Iterable[TLSA]) -> tuple[TLSA, ...]:
    """The records RFC 7672 §3.1.3 lets SMTP use: DANE-TA(2) and DANE-EE(3) only,
    selectors 0/1, matching types 0/1/2 with data of the right length."""
    return tuple(
        record
        for record in records
        if record.usage in (2, 3)
        and record.selector in (0, 1)
        and record.mtype in (0, 1, 2)
        and len(record.data) == DIGEST_LENGTHS.get(record.mtype, len(record.data))
        and 0 < len(record.data) <= MAX_FULL_DATA
    )[:MAX_RECORDS]


def carries_tls(attempt: Attempt) -> bool:
    """The attempt's protocol can carry a checked TLS session: SMTP with STARTTLS."""
    return attempt.protocol.explicit_tls


def address_is_secure(knowledge: Knowledge, name: str, address: str) -> bool:
    """``address`` came from a DNSSEC-secure A or AAAA answer for ``name``."""
    ipv6, ipv4 = knowledge.address_answers(name)
    answer = ipv6 if family_of(address) == IPV6 else ipv4
    return answer.secure and address in answer.records


def dane_for_tlsa(answer: Answer[TLSA], name: str, port: int) -> Verdict | None:
    """The DANE verdict of one TLSA answer; None when DANE does not apply."""
    if answer.pending:
        return Wait(f"TLSA of {name}")
    if answer.status is Status.TEMPFAIL:
        return Refusal(f"TLSA lookup error for {name}:{port}", "tlsa", "dnssec-invalid")
    if answer.status is not Status.OK or not answer.secure:
        return None
    usable = usable_tlsa(answer.records)
    if usable:
        return Requirement(DANE, usable, (name,))
    return Requirement(DANE_UNAUTHENTICATED, (), (name,))


def dane_for_host(knowledge: Knowledge, name: str, port: int) -> Verdict | None:
    """DANE's verdict for ``name``:``port``, its secure CNAME target first (RFC 7672 §2.2.2).

    When the exchanger's addresses came through a secure CNAME chain, the TLSA records at
    the chain's end are the ones that count, with both names as reference identifiers
    (the target first: it is the TLSA base domain, and the SNI); when the target has no
    TLSA records, those of the exchanger's own name are used.
    """
    target = knowledge.aliases.get(name)
    if target is not None:
        at_target = knowledge.tlsa.get((target, port))
        if at_target is not None:
            verdict = dane_for_tlsa(at_target, target, port)
            if isinstance(verdict, Requirement):
                return verdict._replace(names=(target, name))
            if verdict is not None:
                return verdict
    answer = knowledge.tlsa.get((name, port))
    return None if answer is None else dane_for_tlsa(answer, name, port)


def dane_verdict(attempt: Attempt, knowledge: Knowledge) -> Verdict | None:
    """DANE's verdict on ``attempt``; None when DANE does not apply to it."""
    name = attempt.exchanger
    if not attempt.named or not address_is_secure(knowledge, name, attempt.address):
        return None
    if carries_tls(attempt):
        return dane_for_host(knowledge, name, attempt.port)
    hosts = {name, knowledge.aliases.get(name)}
    for (host, port), answer in knowledge.tlsa.items():
        if host not in hosts:
            continue
        verdict = dane_for_tlsa(answer, host, port)
        if isinstance(verdict, Wait):
            return verdict
        if verdict is not None:
            return Refusal(
                f"{name} is protected by DANE, so only SMTP with STARTTLS may reach it",
                "tlsa",
            )
    return None


def sts_verdict(attempt: Attempt, sts: StsView) -> Verdict:
    """MTA-STS's verdict on ``attempt`` (nothing for relays and literals)."""
    if sts.state in ("off", "none") or attempt.source not in ("mx", "srv", "implicit"):
        return NO_REQUIREMENT
    if sts.state == "pending" or sts.policy is None:
        return Wait("MTA-STS policy")
    from mxf_remote.mtasts import mx_matches

    policy = sts.policy
    names = (attempt.exchanger,)
    if policy.mode == "testing":
        return Requirement(MTA_STS_TESTING, (), names)
    if policy.mode != "enforce":
        return NO_REQUIREMENT
    if not mx_matches(policy, attempt.exchanger):
        return Refusal(
            f"{attempt.exchanger} is not an MX host of the MTA-STS policy of {sts.domain}",
            "sts",
        )
    if not carries_tls(attempt):
        return Refusal(f"the MTA-STS policy of {sts.domain} allows only SMTP with STARTTLS", "sts")
    return Requirement(MTA_STS, (), names)


def verdict(attempt: Attempt, knowledge: Knowledge, sts: StsView) -> Verdict:
    """DANE's verdict where DANE applies (it wins, RFC 8461 §2), else MTA-STS's."""
    dane = dane_verdict(attempt, knowledge)
    if dane is not None:
        return dane  # waiting too: the TLSA may yet make DANE apply, and then it wins
    return sts_verdict(attempt, sts)
