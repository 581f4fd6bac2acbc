"""Tests for mxf_remote/timeline.py: the MXF_TRACE events written from the dispatch's values.

Every ``Dispatched`` here is built by hand (queries, fates, outcome), so that each event's
name and fields are checked exactly, independently of resolution and the race.
"""

from __future__ import annotations

from typing import Any

import pytest

from mxf_remote.dispatch import Dispatched
from mxf_remote.knowledge import MX, SRV, Status
from mxf_remote.plan import Attempt, Facts, Plan
from mxf_remote.race import AttemptFate, Fate, Lost, Won
from mxf_remote.resolution import Query
from mxf_remote.timeline import MAX_RECORDS_SHOWN, describe_record, dispatch_events
from tests.scripted import QMTP, SMTP, FakeConnection

HOST = "example.test"
PLAN = Plan((), Facts("dns", HOST))
MX1 = Attempt(SMTP, "mx1.example.test", "192.0.2.1", 25, "mx", 10)
SRV1 = Attempt(QMTP, "srv1.example.test", "2001:db8::1", 2209, "srv", 0)


def query(
    name: str,
    rtype: str,
    sent: float,
    answered: float | None = None,
    *,
    status: Status = Status.PENDING,
    records: tuple[Any, ...] = (),
    error: str | None = None,
) -> Query:
    """A question as resolution records it."""
    made = Query(name, rtype, sent)
    made.answered, made.status, made.records, made.error = answered, status, records, error
    return made


def dispatched(
    *queries: Query,
    outcome: Won[FakeConnection] | Lost | None = None,
    delays_over: tuple[tuple[str, float], ...] = (),
    dns_expired_at: float | None = None,
) -> Dispatched[FakeConnection]:
    """A dispatch's values; by default a race lost with no attempt."""
    return Dispatched(outcome or Lost(), PLAN, queries, delays_over, dns_expired_at)


def won(*fates: AttemptFate, ended: float = 0.0) -> Won[FakeConnection]:
    """A won race; the winner is the first fate's attempt."""
    winner = fates[0].attempt
    return Won(winner, FakeConnection(winner.address, winner.port), fates, ended)


def where(attempt: Attempt) -> dict[str, Any]:
    """The fields every attempt event carries."""
    return {"address": attempt.address, "port": attempt.port}


class TestQueries:
    """``query`` when sent; ``answer`` (and ``query_error``) when answered."""

    def test_a_question_and_its_mx_answer(self) -> None:
        """MX sent at 0, answered at 12.5 ms: records as ``[pref, name]``."""
        records = (MX(10, "mx1.example.test"), MX(20, "mx2.example.test"))
        events = dispatch_events(
            dispatched(query(HOST, "MX", 0.0, 12.5, status=Status.OK, records=records))
        )
        assert events == [
            {"t": 0.0, "event": "query", "name": HOST, "type": "MX"},
            {
                "t": 12.5,
                "event": "answer",
                "name": HOST,
                "type": "MX",
                "status": "ok",
                "records": [[10, "mx1.example.test"], [20, "mx2.example.test"]],
            },
        ]

    def test_srv_records_are_four_numbers_and_a_target(self) -> None:
        """SRV records as ``[prio, weight, port, target]``."""
        records = (SRV(0, 5, 2525, "srv1.example.test"), SRV(10, 0, 25, ""))
        name = f"_smtp._tcp.{HOST}"
        (_, answer) = dispatch_events(
            dispatched(query(name, "SRV", 1.0, 3.0, status=Status.OK, records=records))
        )
        assert answer["records"] == [[0, 5, 2525, "srv1.example.test"], [10, 0, 25, ""]]

    def test_addresses_are_strings(self) -> None:
        """A and AAAA records as the address strings."""
        addresses = ("2001:db8::1", "2001:db8::2")
        (_, answer) = dispatch_events(
            dispatched(query("mx1", "AAAA", 1.0, 2.0, status=Status.OK, records=addresses))
        )
        assert answer["records"] == ["2001:db8::1", "2001:db8::2"]

    def test_records_are_capped_at_16(self) -> None:
        """An answer with 40 records shows the first 16, in answer order."""
        records = tuple(MX(i, f"mx{i}") for i in range(40))
        capped = query(HOST, "MX", 0.0, 1.0, status=Status.OK, records=records)
        (_, answer) = dispatch_events(dispatched(capped))
        assert MAX_RECORDS_SHOWN == 16
        assert answer["records"] == [[i, f"mx{i}"] for i in range(16)]

    @pytest.mark.parametrize(
        ("status", "shown"),
        [
            (Status.NXDOMAIN, "nxdomain"),
            (Status.NODATA, "nodata"),
            (Status.TEMPFAIL, "tempfail"),
        ],
    )
    def test_a_failed_answer_has_its_status_and_no_records(
        self, status: Status, shown: str
    ) -> None:
        """NXDOMAIN, NODATA, TEMPFAIL: the status's value, an empty record list."""
        (_, answer) = dispatch_events(dispatched(query("mx1", "A", 0.0, 7.0, status=status)))
        assert answer == {
            "t": 7.0,
            "event": "answer",
            "name": "mx1",
            "type": "A",
            "status": shown,
            "records": [],
        }

    def test_a_raising_lookup_gives_query_error_then_answer(self) -> None:
        """A lookup that raised: ``query_error`` with the error, then the TEMPFAIL answer."""
        failed = query(HOST, "MX", 0.0, 0.5, status=Status.TEMPFAIL, error="RuntimeError('bug')")
        assert dispatch_events(dispatched(failed)) == [
            {"t": 0.0, "event": "query", "name": HOST, "type": "MX"},
            {
                "t": 0.5,
                "event": "query_error",
                "name": HOST,
                "type": "MX",
                "error": "RuntimeError('bug')",
            },
            {
                "t": 0.5,
                "event": "answer",
                "name": HOST,
                "type": "MX",
                "status": "tempfail",
                "records": [],
            },
        ]

    def test_an_unanswered_question_is_only_sent(self) -> None:
        """A question cut off by timeoutdns: ``query``, then ``dns_timeout``, no answer."""
        events = dispatch_events(dispatched(query(HOST, "MX", 0.0), dns_expired_at=5000.0))
        assert events == [
            {"t": 0.0, "event": "query", "name": HOST, "type": "MX"},
            {"t": 5000.0, "event": "dns_timeout"},
        ]

    def test_resolution_delay_over(self) -> None:
        """A held A answer released at 60 ms: ``resolution_delay_over`` naming the host."""
        events = dispatch_events(dispatched(delays_over=(("mx1", 60.0),)))
        assert events == [{"t": 60.0, "event": "resolution_delay_over", "name": "mx1"}]

    def test_describe_record(self) -> None:
        """MX, SRV and anything else (an address) as JSON shows them."""
        assert describe_record(MX(5, "a")) == [5, "a"]
        assert describe_record(SRV(1, 2, 3, "b")) == [1, 2, 3, "b"]
        assert describe_record("192.0.2.1") == "192.0.2.1"


END_EVENTS = [
    (Fate.FAILED, "attempt_failed", {"error": "ECONNREFUSED"}),
    (Fate.RUNNER_UP_CLOSED, "attempt_closed_runner_up", {}),
    (Fate.CUT_BY_SELF_CHECK, "attempt_cut_by_self_check", {}),
    (Fate.ABANDONED, "attempt_abandoned", {}),
    (Fate.TIMED_OUT, "attempt_abandoned", {}),
]


class TestAttempts:
    """``attempt`` when started, one end event per fate."""

    def test_an_attempt_that_won(self) -> None:
        """Started at 250 ms, won at 261 ms: ``attempt`` with everything, ``attempt_won``."""
        fate = AttemptFate(MX1, 250.0, 261.0, Fate.WON)
        assert dispatch_events(dispatched(outcome=won(fate, ended=261.0))) == [
            {
                "t": 250.0,
                "event": "attempt",
                "protocol": "smtp",
                "exchanger": "mx1.example.test",
                "address": "192.0.2.1",
                "port": 25,
                "source": "mx",
            },
            {"t": 261.0, "event": "attempt_won", **where(MX1), "protocol": "smtp"},
        ]

    def test_a_win_at_the_deadline_says_so(self) -> None:
        """WON_AT_DEADLINE: ``attempt_won`` with ``at_deadline: True`` (after its parking)."""
        fate = AttemptFate(SRV1, 0.0, 2000.0, Fate.WON_AT_DEADLINE, parked=10.0)
        events = dispatch_events(dispatched(outcome=won(fate, ended=2000.0)))
        assert events[1:] == [
            {"t": 10.0, "event": "attempt_waits_for_self_check", **where(SRV1)},
            {
                "t": 2000.0,
                "event": "attempt_won",
                **where(SRV1),
                "protocol": "qmtp",
                "at_deadline": True,
            },
        ]
        assert events[0]["protocol"] == "qmtp" and events[0]["source"] == "srv"

    @pytest.mark.parametrize(
        ("fate", "event", "extra"), END_EVENTS, ids=[fate.name for fate, _, _ in END_EVENTS]
    )
    def test_the_end_event_of_each_losing_fate(
        self, fate: Fate, event: str, extra: dict[str, Any]
    ) -> None:
        """Failed (with its error), runner-up closed, cut, abandoned, timed out: one event."""
        error = "ECONNREFUSED" if fate is Fate.FAILED else None
        fates = (AttemptFate(MX1, 0.0, 30.0, fate, error=error),)
        events = dispatch_events(dispatched(outcome=Lost(fates, ended=30.0)))
        assert [e["event"] for e in events] == ["attempt", event]
        assert events[1] == {"t": 30.0, "event": event, **where(MX1), **extra}

    def test_a_parked_attempt_waits_for_the_self_check(self) -> None:
        """Connected at 260 ms, cut at 1 s: ``attempt_waits_for_self_check`` at 260 ms."""
        fate = AttemptFate(MX1, 250.0, 1000.0, Fate.CUT_BY_SELF_CHECK, parked=260.0)
        events = dispatch_events(dispatched(outcome=Lost((fate,), ended=1000.0)))
        assert [(e["t"], e["event"]) for e in events] == [
            (250.0, "attempt"),
            (260.0, "attempt_waits_for_self_check"),
            (1000.0, "attempt_cut_by_self_check"),
        ]
        assert events[1] == {"t": 260.0, "event": "attempt_waits_for_self_check", **where(MX1)}

    def test_only_a_timed_out_lost_race_has_race_timeout(self) -> None:
        """``race_timeout`` at the end of a timed-out Lost; none when lost by failures or won."""
        timed_out = AttemptFate(MX1, 0.0, 1000.0, Fate.TIMED_OUT)
        events = dispatch_events(dispatched(outcome=Lost((timed_out,), True, 1000.0)))
        assert events[-1] == {"t": 1000.0, "event": "race_timeout"}
        failed = AttemptFate(MX1, 0.0, 3.0, Fate.FAILED, error="ECONNREFUSED")
        by_failures = dispatch_events(dispatched(outcome=Lost((failed,), False, 3.0)))
        at_deadline = AttemptFate(MX1, 0.0, 1000.0, Fate.WON_AT_DEADLINE, parked=5.0)
        won_late = dispatch_events(dispatched(outcome=won(at_deadline, ended=1000.0)))
        assert [e for e in by_failures + won_late if e["event"] == "race_timeout"] == []

    def test_a_timed_out_race_with_no_attempt(self) -> None:
        """Nothing ever started, timeoutconnect passed: only ``race_timeout``."""
        assert dispatch_events(dispatched(outcome=Lost((), True, 60000.0))) == [
            {"t": 60000.0, "event": "race_timeout"}
        ]

    def test_nothing_happened(self) -> None:
        """A dispatch with no question and no attempt: no event."""
        assert dispatch_events(dispatched()) == []


class TestOrder:
    """All events of a dispatch, in time order, times in ms to three decimals."""

    def test_a_whole_dispatch_in_time_order(self) -> None:
        """Queries, a Resolution Delay, attempts, a timeout and the race's end, interleaved."""
        records = (MX(10, "mx1.example.test"),)
        queries = (
            query(HOST, "MX", 0.0, 5.0, status=Status.OK, records=records),
            query(HOST, "A", 0.0, 2.0, status=Status.NXDOMAIN),
            query("mx1.example.test", "AAAA", 5.0),
            query("mx1.example.test", "A", 5.0, 8.0, status=Status.OK, records=("192.0.2.1",)),
        )
        fates = (
            AttemptFate(MX1, 58.0, 1058.0, Fate.TIMED_OUT),
            AttemptFate(SRV1, 90.0, 95.0, Fate.FAILED, error="ENETUNREACH"),
        )
        events = dispatch_events(
            dispatched(
                *queries,
                outcome=Lost(fates, True, 1058.0),
                delays_over=(("mx1.example.test", 58.0),),
                dns_expired_at=1000.0,
            )
        )
        assert [(e["t"], e["event"], e.get("name", e.get("address"))) for e in events] == [
            (0.0, "query", HOST),
            (0.0, "query", HOST),
            (2.0, "answer", HOST),
            (5.0, "answer", HOST),
            (5.0, "query", "mx1.example.test"),
            (5.0, "query", "mx1.example.test"),
            (8.0, "answer", "mx1.example.test"),
            (58.0, "resolution_delay_over", "mx1.example.test"),
            (58.0, "attempt", "192.0.2.1"),
            (90.0, "attempt", "2001:db8::1"),
            (95.0, "attempt_failed", "2001:db8::1"),
            (1000.0, "dns_timeout", None),
            (1058.0, "attempt_abandoned", "192.0.2.1"),
            (1058.0, "race_timeout", None),
        ]
        assert [e["t"] for e in events] == sorted(e["t"] for e in events)

    def test_times_are_rounded_to_three_decimals(self) -> None:
        """Query, answer, delay, timeout and attempt times: milliseconds to 3 decimals."""
        fate = AttemptFate(MX1, 250.00000000000003, 260.12349, Fate.FAILED, error="ECONNREFUSED")
        events = dispatch_events(
            dispatched(
                query(HOST, "A", 0.0004, 12.3456789, status=Status.NODATA),
                outcome=Lost((fate,), True, 9999.99951),
                delays_over=((HOST, 60.00000000000001),),
                dns_expired_at=5000.0004999,
            )
        )
        assert [e["t"] for e in events] == [
            0.0,
            12.346,
            60.0,
            250.0,
            260.123,
            5000.0,
            10000.0,
        ]

    def test_every_event_starts_with_t_and_event(self) -> None:
        """Each event's first two fields are ``t`` and ``event`` (a JSON line reads so)."""
        fate = AttemptFate(MX1, 1.0, 2.0, Fate.FAILED, error="ECONNREFUSED", parked=None)
        events = dispatch_events(
            dispatched(
                query(HOST, "MX", 0.0, 0.5, status=Status.TEMPFAIL, error="OSError()"),
                outcome=Lost((fate,), True, 3.0),
                delays_over=((HOST, 1.5),),
                dns_expired_at=2.5,
            )
        )
        assert len(events) == 8
        assert all(list(e)[:2] == ["t", "event"] for e in events)


class TestCachedAnswers:
    """An answer a cache gave (mxf-remoted's DNS cache) says so; a fresh one is unchanged."""

    def test_a_cached_answer_has_cached_true(self) -> None:
        """A cached NXDOMAIN at 0.1 ms: the ``answer`` event ends with ``cached: true``."""
        hit = query(f"_qmtp._tcp.{HOST}", "SRV", 0.0, 0.1, status=Status.NXDOMAIN)
        hit.cached = True
        (_, answer) = dispatch_events(dispatched(hit))
        assert answer == {
            "t": 0.1,
            "event": "answer",
            "name": f"_qmtp._tcp.{HOST}",
            "type": "SRV",
            "status": "nxdomain",
            "records": [],
            "cached": True,
        }

    def test_a_fresh_answer_has_no_cached_field(self) -> None:
        """An answer from DNS: no ``cached`` field at all (the event is as it always was)."""
        fresh = query(HOST, "A", 0.0, 3.0, status=Status.OK, records=("192.0.2.1",))
        (_, answer) = dispatch_events(dispatched(fresh))
        assert "cached" not in answer
        assert not fresh.cached


def test_an_attempt_moved_behind_by_the_history_says_so() -> None:
    """An attempt the connection history moved behind its siblings: ``behind`` on its event."""
    from mxf_remote.dispatch import Dispatched
    from mxf_remote.plan import Attempt, Facts, Plan
    from mxf_remote.race import AttemptFate, Fate, Lost
    from tests.scripted import SMTP

    moved = Attempt(SMTP, "mx", "192.0.2.1", 25, "mx", 10)
    other = Attempt(SMTP, "mx", "192.0.2.2", 25, "mx", 10)
    plan = Plan((other, moved), Facts("dns", "x", behind=(("192.0.2.1", 25),)))
    fates = tuple(AttemptFate(a, 0.0, 1.0, Fate.FAILED, "ECONNREFUSED") for a in (other, moved))
    events = [e for e in dispatch_events(Dispatched(Lost(fates), plan)) if e["event"] == "attempt"]
    assert [(e["address"], e.get("behind")) for e in events] == [
        ("192.0.2.2", None),
        ("192.0.2.1", True),
    ]
