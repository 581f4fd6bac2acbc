"""Why nothing connected: the failed race turned into exactly one report (spec §3).

A pure decision table over two values: the final plan's ``Facts`` (what the planner
decided, and what DNS said about every exchanger it considered) and the ``Lost``
outcome (which attempts were made).  Nothing here looks at DNS answers or planning
rules again.

If the race started an attempt, the answer is ``#4.4.1`` (retry later) -- unless the
self-check later cut every attempt that was made (we turned out to be a better
exchanger than all of them).  Otherwise the reason is in what DNS said, and the choice
of letter follows qmail-remote where it has a rule and "when in doubt, Z" where it does
not:

* a self-check that removed everything is #5.4.6, unless a lookup that might have found
  a better exchanger failed temporarily;
* a temporary MX failure is #4.1.2;
* a null MX with no SRV target is #5.1.10;
* exchangers (MX or SRV targets) without a single address: #4.1.2 if any of their
  lookups failed temporarily, or if there were more exchangers than we resolve (the
  ones never asked about might have addresses), #5.4.4 if all failed hard;
* no exchanger at all (implicit MX) and the host has no address: #4.1.2 or #5.1.2;
* for a routed host, the same about the relays, naming the relay.

Whenever exchangers *did* have addresses but no attempt was planned (for example every
protocol their MXPS slice allows is uninstalled), the report is #4.4.1: the mail waits
for the administrator rather than bouncing.

DANE and MTA-STS come first: when their policy refused attempts (``Facts.refused``) and
nothing else was tried -- every attempt started was then cut by the policy -- the report
names the first refusal, ``Sorry, TLSA lookup error for mx.example.org:25. (#4.7.5)``.
Had other attempts been made and failed, the failure to connect is the news (#4.4.1).
"""

from __future__ import annotations

from mxf_remote.plan import Facts, Plan, Target
from mxf_remote.race import Fate, Lost
from mxf_remote.report import (
    DNS_TEMPORARY,
    NO_CONNECTION,
    NO_EXCHANGER_ADDRESS,
    SERVICE_DECLINED,
    WE_ARE_BEST_MX,
    Report,
    no_such_host,
    null_mx,
    tls_policy_refused,
)


def explain_failure(plan: Plan, outcome: Lost) -> Report:
    """The one report for a race that produced no connection."""
    facts = plan.facts
    if facts.refused and all(f.fate is Fate.CUT_BY_TLS_POLICY for f in outcome.fates):
        return tls_policy_refused(facts.refused[0][1].text)
    started = outcome.started
    if started and (not facts.self_cut or any(a.key in started for a in plan.attempts)):
        return NO_CONNECTION
    if facts.kind == "literal":
        return WE_ARE_BEST_MX if facts.self_cut else NO_CONNECTION
    if facts.kind == "route":
        return _explain_routes(facts)
    if facts.self_cut:
        return _explain_self_cut(facts)
    return _explain_dns(facts)


def _explain_routes(facts: Facts) -> Report:
    relays = facts.targets_from("route")
    if any(t.temporary for t in relays):
        return DNS_TEMPORARY
    if relays and all(t.permanent for t in relays):
        return no_such_host(facts.host)
    return NO_CONNECTION


def _unresolved_temporarily(targets: tuple[Target, ...]) -> bool:
    """True when one of ``targets`` got no address and one of its lookups failed for now."""
    return any(not t.has_addresses and t.temporary for t in targets)


def _explain_self_cut(facts: Facts) -> Report:
    """We are listed: #5.4.6, unless a better exchanger might exist but failed to resolve.

    Lookups that cannot change the answer (a worse exchanger, the host's own addresses
    when MX records exist, the other family of an exchanger that has addresses) are
    ignored, as qmail-remote ignores them.
    """
    if not facts.mx_answered:  # an implicit MX to us
        return WE_ARE_BEST_MX
    better = tuple(
        t
        for t in facts.targets_from("mx")
        if facts.cut_preference is None or t.preference < facts.cut_preference
    )
    if _unresolved_temporarily(better + facts.targets_from("srv")):
        return DNS_TEMPORARY
    return WE_ARE_BEST_MX


def _explain_dns(facts: Facts) -> Report:
    if facts.mx_unknown:
        return DNS_TEMPORARY
    if not facts.offered:
        return SERVICE_DECLINED
    if facts.null_mx and not facts.targets_from("srv"):
        return null_mx(facts.host)
    implicit = facts.targets_from("implicit")
    if implicit:
        if any(t.temporary for t in implicit):
            return DNS_TEMPORARY
        if all(t.permanent for t in implicit):
            return no_such_host(facts.host)
        return NO_CONNECTION
    exchangers = facts.targets_from("srv", "mx")
    if any(t.has_addresses for t in exchangers):
        return NO_CONNECTION
    if any(t.temporary for t in exchangers) or facts.beyond_cap:
        return DNS_TEMPORARY
    return NO_EXCHANGER_ADDRESS
