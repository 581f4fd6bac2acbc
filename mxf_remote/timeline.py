"""The dispatch as trace events, written from the outcome and the questions asked.

The trace is an output, never an input: resolution records every question
(``resolution.Query``) and the race ends with one ``AttemptFate`` per attempt; this
module spells those values as the JSON events of ``MXF_TRACE`` (one object per event,
``t`` in milliseconds since the process started, the clock the dispatch was given).
Nothing reads these events back to find out what happened -- the probe renders the same
values directly.

The event names and fields are an interface (benchmarks and admins' scripts read
them): ``query``, ``query_error``, ``answer``, ``resolution_delay_over``,
``dns_timeout``, ``attempt`` (``source_address`` when it was bound to
``control/outgoingip`` or ``outgoingip6``, ``behind`` when mxf-remoted's connection history moved it
behind its siblings), ``attempt_waits_for_self_check``, ``attempt_failed``,
``attempt_won`` (``at_deadline`` when it won because timeoutconnect ran out),
``attempt_closed_runner_up``, ``attempt_cut_by_self_check``, ``attempt_abandoned``,
``race_timeout``.  An ``answer`` a cache gave (``mxf-remoted``'s) has ``cached: true``.
"""

from __future__ import annotations

from typing import Any

from mxf_remote.dispatch import Dispatched
from mxf_remote.knowledge import MX, SRV
from mxf_remote.race import AttemptFate, Fate, Lost

MAX_RECORDS_SHOWN = 16

_END_EVENTS = {
    Fate.WON: "attempt_won",
    Fate.WON_AT_DEADLINE: "attempt_won",
    Fate.FAILED: "attempt_failed",
    Fate.RUNNER_UP_CLOSED: "attempt_closed_runner_up",
    Fate.CUT_BY_SELF_CHECK: "attempt_cut_by_self_check",
    Fate.CUT_BY_TLS_POLICY: "attempt_cut_by_tls_policy",
    Fate.ABANDONED: "attempt_abandoned",
    Fate.TIMED_OUT: "attempt_abandoned",
}


def describe_record(record: object) -> object:
    """A record as JSON shows it: MX ``[pref, name]``, SRV ``[prio, weight, port, target]``."""
    if isinstance(record, MX):
        return [record.preference, record.exchange]
    if isinstance(record, SRV):
        return [record.priority, record.weight, record.port, record.target]
    return record


def dispatch_events(dispatched: Dispatched[Any]) -> list[dict[str, Any]]:
    """Every event of the dispatch, in time order."""
    events: list[dict[str, Any]] = []

    def add(t: float, kind: str, **fields: Any) -> None:
        events.append({"t": round(t, 3), "event": kind, **fields})

    for query in dispatched.queries:
        add(query.sent, "query", name=query.name, type=query.rtype)
        if query.answered is None:
            continue
        if query.error is not None:
            add(query.answered, "query_error", name=query.name, type=query.rtype,
                error=query.error)  # fmt: skip
        add(
            query.answered,
            "answer",
            name=query.name,
            type=query.rtype,
            status=query.status.value,
            records=[describe_record(r) for r in query.records[:MAX_RECORDS_SHOWN]],
            **({"cached": True} if query.cached else {}),
        )
    for name, t in dispatched.delays_over:
        add(t, "resolution_delay_over", name=name)
    if dispatched.dns_expired_at is not None:
        add(dispatched.dns_expired_at, "dns_timeout")
    for fate in dispatched.outcome.fates:
        behind = fate.attempt.key in dispatched.plan.facts.behind
        source = dispatched.sources.for_address(fate.attempt.address)
        events.extend(_attempt_events(fate, behind=behind, source_address=source))
    outcome = dispatched.outcome
    if isinstance(outcome, Lost) and outcome.timed_out:
        add(outcome.ended, "race_timeout")
    events.sort(key=lambda event: event["t"])
    return events


def _attempt_events(
    fate: AttemptFate, *, behind: bool, source_address: str | None = None
) -> list[dict[str, Any]]:
    attempt = fate.attempt
    where = {"address": attempt.address, "port": attempt.port}
    start: dict[str, Any] = {
        "t": round(fate.start, 3),
        "event": "attempt",
        "protocol": attempt.protocol.service,
        "exchanger": attempt.exchanger,
        **where,
        "source": attempt.source,
    }
    if source_address is not None:
        start["source_address"] = source_address  # control/outgoingip or outgoingip6
    if behind:
        start["behind"] = True  # the connection history put it behind its siblings
    events: list[dict[str, Any]] = [start]
    if fate.parked is not None:
        events.append(
            {"t": round(fate.parked, 3), "event": "attempt_waits_for_self_check", **where}
        )
    end: dict[str, Any] = {"t": round(fate.end, 3), "event": _END_EVENTS[fate.fate], **where}
    if fate.fate in (Fate.WON, Fate.WON_AT_DEADLINE):
        end = {**end, "protocol": attempt.protocol.service}
        if fate.fate is Fate.WON_AT_DEADLINE:
            end["at_deadline"] = True
    elif fate.fate is Fate.FAILED:
        end["error"] = fate.error
    events.append(end)
    return events
