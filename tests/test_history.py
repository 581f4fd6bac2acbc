"""Tests for mxf_remote/history.py: qmail's tcpto rules, per (address, port), in memory."""

from __future__ import annotations

from typing import Any

import pytest

from mxf_remote.destination import Destination
from mxf_remote.dispatch import dispatch
from mxf_remote.history import MAX_ENTRIES, PENALTY, TOLERANCE, History
from mxf_remote.plan import Attempt
from mxf_remote.race import AttemptFate, Fate, Won
from tests.scripted import (
    SMTP,
    ScriptedConnector,
    ScriptedLookup,
    VirtualClockLoop,
    control,
    mx,
    ok,
)

ADDRESS = "192.0.2.1"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fate(kind: Fate, address: str = ADDRESS, error: str | None = None) -> AttemptFate:
    """One attempt to ``address``:25 that ended as ``kind``."""
    return AttemptFate(Attempt(SMTP, "mx", address, 25, "mx", 10), 0.0, 1.0, kind, error)


@pytest.fixture
def clock() -> Clock:
    """The history's clock."""
    return Clock()


@pytest.fixture
def history(clock: Clock) -> History:
    """An empty history on the hand-moved clock."""
    return History(clock)


def fail_twice(
    history: History, clock: Clock, kind: Fate = Fate.TIMED_OUT, error: str | None = None
) -> None:
    """Two failures, TOLERANCE apart (the second counts)."""
    history.learn([fate(kind, error=error)])
    clock.now += TOLERANCE
    history.learn([fate(kind, error=error)])


class TestRules:
    """tcpto's rules, for IPv4 and IPv6, per port."""

    def test_one_timeout_is_no_penalty(self, history: History) -> None:
        """One silent attempt: remembered, not penalized."""
        history.learn([fate(Fate.TIMED_OUT)])
        assert history.records()[(ADDRESS, 25)].failures == 1
        assert not history.penalized(ADDRESS, 25)

    def test_a_second_timeout_two_minutes_later_penalizes(
        self, history: History, clock: Clock
    ) -> None:
        """Two timeouts TOLERANCE apart: penalized on that port only."""
        fail_twice(history, clock)
        assert history.penalized(ADDRESS, 25)
        assert not history.penalized(ADDRESS, 587)

    def test_timeouts_within_two_minutes_count_once(self, history: History, clock: Clock) -> None:
        """A second timeout sooner than TOLERANCE is the same silence: not counted."""
        history.learn([fate(Fate.TIMED_OUT)])
        clock.now += TOLERANCE - 1
        history.learn([fate(Fate.TIMED_OUT)])
        assert not history.penalized(ADDRESS, 25)

    @pytest.mark.parametrize("error", ["ETIMEDOUT", "ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH"])
    def test_connect_errors_that_count(self, history: History, clock: Clock, error: str) -> None:
        """Timed out, refused (as s/qmail), unreachable: they count."""
        fail_twice(history, clock, Fate.FAILED, error)
        assert history.penalized(ADDRESS, 25)

    def test_other_errors_do_not_count(self, history: History, clock: Clock) -> None:
        """A local error (EMFILE) says nothing about the address."""
        fail_twice(history, clock, Fate.FAILED, "EMFILE")
        assert history.records() == {}

    @pytest.mark.parametrize(
        "kind", [Fate.WON, Fate.WON_AT_DEADLINE, Fate.RUNNER_UP_CLOSED, Fate.CUT_BY_SELF_CHECK]
    )
    def test_a_success_forgets(self, history: History, clock: Clock, kind: Fate) -> None:
        """A completed handshake, whatever became of it, clears the address."""
        fail_twice(history, clock)
        history.learn([fate(kind)])
        assert not history.penalized(ADDRESS, 25) and history.records() == {}

    def test_an_abandoned_attempt_says_nothing(self, history: History, clock: Clock) -> None:
        """Abandoned (another won) neither counts nor clears."""
        fail_twice(history, clock)
        history.learn([fate(Fate.ABANDONED)])
        assert history.penalized(ADDRESS, 25)

    def test_the_penalty_expires(self, history: History, clock: Clock) -> None:
        """PENALTY seconds after the last failure, the address takes its place again."""
        fail_twice(history, clock)
        clock.now += PENALTY - 1
        assert history.penalized(ADDRESS, 25)
        clock.now += 1
        assert not history.penalized(ADDRESS, 25)

    def test_ipv6(self, history: History, clock: Clock) -> None:
        """IPv6 addresses are remembered as IPv4 ones are."""
        history.learn([fate(Fate.TIMED_OUT, "2001:db8::1")])
        clock.now += TOLERANCE
        history.learn([fate(Fate.TIMED_OUT, "2001:db8::1")])
        assert history.penalized("2001:db8::1", 25)

    def test_bounded(self, history: History, clock: Clock) -> None:
        """At most MAX_ENTRIES addresses; the oldest failures are forgotten first."""
        for n in range(MAX_ENTRIES + 10):
            history.learn([fate(Fate.TIMED_OUT, f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")])
            clock.now += 0.001
        records = history.records()
        assert len(records) == MAX_ENTRIES
        assert ("10.0.0.0", 25) not in records and ("10.0.16.9", 25) in records


class TestInTheRace:
    """A penalized address goes behind its siblings: tried later, never dropped."""

    def race(self, penalized: Any) -> tuple[Any, ScriptedConnector]:
        """MX with a silent and a good address, on the virtual clock."""
        dns = {
            ("example.test", "MX"): (0.0, mx((10, "mx1"))),
            ("mx1", "A"): (0.0, ok("192.0.2.1", "192.0.2.2")),
            ("mx1", "AAAA"): (0.0, ok()),
        }
        connector = ScriptedConnector({("192.0.2.2", 25): (0.001, "ok")})
        loop = VirtualClockLoop()
        try:
            result = loop.run_until_complete(
                dispatch(
                    Destination("example.test", (SMTP,)),
                    control(),
                    ScriptedLookup(dns),
                    local=frozenset(),
                    connect=connector,
                    penalized=penalized,
                )
            )
        finally:
            loop.close()
        return result, connector

    def test_without_history_the_silent_address_costs_a_connect_delay(self) -> None:
        """No history: 192.0.2.1 first, the good sibling at 250 ms."""
        _, connector = self.race(None)
        assert connector.starts == [(0.0, "192.0.2.1", 25), (0.25, "192.0.2.2", 25)]

    def test_a_penalized_address_goes_behind(self, history: History, clock: Clock) -> None:
        """192.0.2.1 penalized: its sibling starts at once and wins at 1 ms; the plan says so."""
        fail_twice(history, clock)
        result, connector = self.race(history.penalized)
        assert connector.starts == [(0.0, "192.0.2.2", 25)]
        assert isinstance(result.outcome, Won)
        assert result.plan.facts.behind == (("192.0.2.1", 25),)
        assert [a.address for a in result.plan.attempts] == ["192.0.2.2", "192.0.2.1"]


def test_the_snapshot_is_what_the_probe_shows(history: History, clock: Clock) -> None:
    """Address, port, failures, seconds since the last, and the penalty, as JSON."""
    fail_twice(history, clock)
    clock.now += 5
    assert history.snapshot() == [
        {"address": ADDRESS, "port": 25, "failures": 2, "seconds_ago": 5.0, "penalized": True}
    ]
