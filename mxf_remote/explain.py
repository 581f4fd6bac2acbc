"""Why nothing connected: the failed race turned into exactly one report (spec §3).

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
"""

from __future__ import annotations

from mxf_remote.addresses import parse_literal
from mxf_remote.control import Protocol
from mxf_remote.knowledge import HARD, MX, Answer, Knowledge, Status
from mxf_remote.plan import (
    MAX_EXCHANGERS,
    Destination,
    Plan,
    declined_services,
    is_null_mx,
    relay_name,
    usable_exchangers,
    usable_srv_targets,
)
from mxf_remote.report import (
    DNS_TEMPORARY,
    NO_CONNECTION,
    NO_EXCHANGER_ADDRESS,
    SERVICE_DECLINED,
    WE_ARE_BEST_MX,
    Report,
    no_such_host,
    null_mx,
)


def explain_failure(
    destination: Destination,
    knowledge: Knowledge,
    plan: Plan,
    started: frozenset[tuple[str, int]] = frozenset(),
) -> Report:
    """The one report for a race that produced no connection.

    ``started`` holds the (address, port) of every attempt the race made.
    """
    if started and (not plan.self_cut or any(a.key in started for a in plan.attempts)):
        return NO_CONNECTION
    if destination.literal is not None:
        return WE_ARE_BEST_MX if plan.self_cut else NO_CONNECTION
    if destination.routes:
        return _explain_routes(destination, knowledge)
    return _explain_dns(destination, knowledge, plan)


def _any_temporary(answers: list[Answer[object]]) -> bool:
    return any(a.status in (Status.TEMPFAIL, Status.PENDING) for a in answers)


def _address_answers(knowledge: Knowledge, names: list[str]) -> list[Answer[object]]:
    answers: list[Answer[object]] = []
    for name in names:
        answers.extend(knowledge.address_answers(name))
    return answers


def _explain_routes(destination: Destination, knowledge: Knowledge) -> Report:
    relays = [
        relay_name(route.relay)
        for _, route in destination.routes
        if parse_literal(route.relay) is None
    ]
    answers = _address_answers(knowledge, relays)
    if _any_temporary(answers):
        return DNS_TEMPORARY
    if relays and all(a.status in HARD for a in answers):
        return no_such_host(destination.routes[0][1].relay)
    return NO_CONNECTION


def _srv_targets(knowledge: Knowledge, offered: list[Protocol]) -> list[str]:
    targets = []
    for protocol in offered:
        answer = knowledge.srv.get(protocol.service)
        if answer is not None and answer.status is Status.OK:
            targets += [record.target for record in usable_srv_targets(answer.records)]
    return targets


def _unresolved_temporarily(knowledge: Knowledge, names: list[str]) -> bool:
    """True when one of ``names`` got no address and one of its lookups failed for now."""
    for name in names:
        ipv6, ipv4 = knowledge.address_answers(name)
        if not (ipv6.records or ipv4.records) and _any_temporary([ipv6, ipv4]):
            return True
    return False


def _explain_self_cut(destination: Destination, knowledge: Knowledge, plan: Plan) -> Report:
    """We are listed: #5.4.6, unless a better exchanger might exist but failed to resolve.

    Lookups that cannot change the answer (a worse exchanger, the host's own addresses
    when MX records exist, the other family of an exchanger that has addresses) are
    ignored, as qmail-remote ignores them.
    """
    mx = knowledge.mx
    if mx is None or mx.status is not Status.OK:  # a literal, or an implicit MX to us
        return WE_ARE_BEST_MX
    better = [
        record.exchange
        for record in usable_exchangers(mx.records)
        if plan.cut_preference is None or record.preference < plan.cut_preference
    ]
    targets = _srv_targets(knowledge, list(destination.protocols))
    if _unresolved_temporarily(knowledge, better + targets):
        return DNS_TEMPORARY
    return WE_ARE_BEST_MX


def _explain_dns(destination: Destination, knowledge: Knowledge, plan: Plan) -> Report:
    if plan.self_cut:
        return _explain_self_cut(destination, knowledge, plan)
    mx = knowledge.mx
    if mx is None or mx.status in (Status.TEMPFAIL, Status.PENDING):
        return DNS_TEMPORARY
    declined = declined_services(knowledge)
    offered = [p for p in destination.protocols if p.service not in declined]
    if not offered:
        return SERVICE_DECLINED
    targets = _srv_targets(knowledge, offered)
    if mx.status is Status.OK and is_null_mx(mx.records) and not targets:
        return null_mx(destination.host)
    targets += [record.exchange for record in usable_exchangers(mx.records)]
    if not targets and not mx.records:
        host = relay_name(destination.host)
        answers = _address_answers(knowledge, [host])
        if _any_temporary(answers):
            return DNS_TEMPORARY
        if all(a.status in HARD for a in answers):
            return no_such_host(destination.host)
        return NO_CONNECTION
    answers = _address_answers(knowledge, targets)
    if any(a.status is Status.OK for a in answers):
        return NO_CONNECTION
    if _any_temporary(answers) or _beyond_the_cap(knowledge, offered):
        return DNS_TEMPORARY
    return NO_EXCHANGER_ADDRESS


def _beyond_the_cap(knowledge: Knowledge, offered: list[Protocol]) -> bool:
    """True when an MX or SRV answer named more exchangers than are resolved."""
    answers = [knowledge.srv.get(p.service) for p in offered] + [knowledge.mx]
    return any(
        answer is not None
        and answer.status is Status.OK
        and sum(1 for r in answer.records if (r.exchange if isinstance(r, MX) else r.target))
        > MAX_EXCHANGERS
        for answer in answers
    )
