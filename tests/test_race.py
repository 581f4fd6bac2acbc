"""The race's timing rules (spec §5), pinned with a scripted world on a virtual clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mxf_remote.control import Control
from mxf_remote.destination import Destination
from mxf_remote.dispatch import Dispatched, dispatch
from mxf_remote.explain import explain_failure
from mxf_remote.knowledge import Answer
from mxf_remote.race import Fate, Lost, Won
from mxf_remote.report import DNS_TEMPORARY, NO_CONNECTION, WE_ARE_BEST_MX
from tests.scripted import (
    NODATA,
    QMTP,
    SILENT,
    SMTP,
    ScriptedConnector,
    ScriptedLookup,
    VirtualClockLoop,
    control,
    mx,
    ok,
    srv,
)

HOST = "example.test"


def race(
    dns: dict[tuple[str, str], tuple[float, Answer[Any]]],
    connector: ScriptedConnector,
    ctl: Control | None = None,
    local: frozenset[str] = frozenset(),
) -> tuple[Dispatched, float]:
    """Run resolution + race for HOST on a virtual clock; the result and the end time."""
    ctl = ctl or control()
    destination = Destination(HOST, ctl.usable_protocols)
    loop = VirtualClockLoop()
    try:
        result = loop.run_until_complete(
            dispatch(destination, ctl, ScriptedLookup(dns), local=local, connect=connector)
        )
        return result, round(loop.time(), 6)
    finally:
        loop.close()


def exchanger(
    name: str, *ipv4: str, ipv6: tuple[str, ...] = (), at: float = 0.0, ipv6_at: float | None = None
) -> dict[tuple[str, str], tuple[float, Answer[Any]]]:
    """Script lines for one exchanger's A and AAAA answers."""
    return {
        (name, "A"): (at, ok(*ipv4) if ipv4 else NODATA),
        (name, "AAAA"): (at if ipv6_at is None else ipv6_at, ok(*ipv6) if ipv6 else NODATA),
    }


class TestStagger:
    """Attempts start one connectdelay apart, or at once after a failure."""

    def test_attempts_start_one_connect_delay_apart(self) -> None:
        """Three addresses of one exchanger start at 0, 250 and 500 ms; the third wins."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            **exchanger("mx1", "10.0.0.1", "10.0.0.2", "10.0.0.3"),
        }
        connector = ScriptedConnector({("10.0.0.3", 25): (0.1, "ok")})
        result, end = race(dns, connector)
        assert connector.starts == [
            (0.0, "10.0.0.1", 25),
            (0.25, "10.0.0.2", 25),
            (0.5, "10.0.0.3", 25),
        ]
        assert isinstance(result.outcome, Won)
        assert result.outcome.attempt.address == "10.0.0.3"
        assert end == pytest.approx(0.6)

    def test_a_failed_attempt_starts_the_next_at_once(self) -> None:
        """A refused connection at 30 ms starts the next attempt at 30 ms, not 250 ms."""
        dns = {(HOST, "MX"): (0.0, mx((10, "mx1"))), **exchanger("mx1", "10.0.0.1", "10.0.0.2")}
        connector = ScriptedConnector(
            {("10.0.0.1", 25): (0.03, "refused"), ("10.0.0.2", 25): (0.01, "ok")}
        )
        result, end = race(dns, connector)
        assert connector.starts == [(0.0, "10.0.0.1", 25), (0.03, "10.0.0.2", 25)]
        assert isinstance(result.outcome, Won)
        assert end == pytest.approx(0.04)

    def test_connect_delay_comes_from_control(self) -> None:
        """With connectdelay 100 ms the second attempt starts at 100 ms."""
        dns = {(HOST, "MX"): (0.0, mx((10, "mx1"))), **exchanger("mx1", "10.0.0.1", "10.0.0.2")}
        connector = ScriptedConnector({("10.0.0.2", 25): (0.0, "ok")})
        race(dns, connector, control(delay=0.1))
        assert connector.starts == [(0.0, "10.0.0.1", 25), (0.1, "10.0.0.2", 25)]

    def test_a_silent_best_exchanger_costs_one_connect_delay(self) -> None:
        """Best MX silent, second MX answers in 1 ms: connected at 251 ms."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.0.0.1"),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.001, "ok")})
        result, end = race(dns, connector)
        assert connector.starts == [(0.0, "10.0.0.1", 25), (0.25, "10.0.0.2", 25)]
        assert isinstance(result.outcome, Won)
        assert result.outcome.attempt.exchanger == "mx2"
        assert end == pytest.approx(0.251)


class TestResolutionDelay:
    """RFC 8305 §3: an A answer waits up to 50 ms for a pending AAAA."""

    def test_aaaa_arriving_within_50ms_goes_first(self) -> None:
        """A at 10 ms, AAAA at 30 ms: the first attempt is IPv6, at 30 ms."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            **exchanger("mx1", "10.0.0.1", ipv6=("fd00::1",), at=0.01, ipv6_at=0.03),
        }
        connector = ScriptedConnector({("fd00::1", 25): (0.01, "ok")})
        race(dns, connector)
        assert connector.starts == [(0.03, "fd00::1", 25)]

    def test_late_aaaa_lets_ipv4_start_after_50ms(self) -> None:
        """A at 10 ms, AAAA at 200 ms: IPv4 starts at 60 ms, IPv6 joins at 310 ms."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            **exchanger("mx1", "10.0.0.1", ipv6=("fd00::1",), at=0.01, ipv6_at=0.2),
        }
        connector = ScriptedConnector()
        result, end = race(dns, connector, control(timeout=1.0))
        assert connector.starts == [(0.06, "10.0.0.1", 25), (0.31, "fd00::1", 25)]
        assert isinstance(result.outcome, Lost) and result.outcome.timed_out
        assert end == pytest.approx(1.06)

    def test_a_late_aaaa_does_not_hold_back_a_connected_ipv4_winner(self) -> None:
        """A at 10 ms, AAAA at 200 ms, IPv4 connects in 1 ms: won at 61 ms, not 200 ms."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            **exchanger("mx1", "10.0.0.1", ipv6=("fd00::1",), at=0.01, ipv6_at=0.2),
        }
        connector = ScriptedConnector({("10.0.0.1", 25): (0.001, "ok")})
        result, end = race(dns, connector, local=frozenset({"10.9.9.9"}))
        assert isinstance(result.outcome, Won) and result.outcome.attempt.address == "10.0.0.1"
        assert end == pytest.approx(0.061)

    def test_a_negative_aaaa_releases_ipv4_at_once(self) -> None:
        """A at 10 ms, AAAA NODATA at 20 ms: IPv4 starts at 20 ms."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            **exchanger("mx1", "10.0.0.1", at=0.01, ipv6_at=0.02),
        }
        connector = ScriptedConnector({("10.0.0.1", 25): (0.0, "ok")})
        race(dns, connector)
        assert connector.starts == [(0.02, "10.0.0.1", 25)]


class TestSlowLookups:
    """An outstanding lookup holds later attempts back for at most connectdelay."""

    def test_slow_best_exchanger_lookup_holds_the_next_for_one_delay(self) -> None:
        """mx1's addresses take 1 s: mx2 starts at 250 ms, mx1 joins when known at 1 s."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.0.0.1", at=1.0),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector()
        race(dns, connector, control(timeout=3.0))
        assert connector.starts == [(0.25, "10.0.0.2", 25), (1.0, "10.0.0.1", 25)]

    def test_late_attempts_join_ahead_of_later_ones(self) -> None:
        """mx1 known at 300 ms starts at 500 ms, before mx2's second address (750 ms)."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.0.0.1", at=0.3),
            **exchanger("mx2", "10.0.0.2", "10.0.0.3"),
        }
        connector = ScriptedConnector()
        race(dns, connector, control(timeout=2.0))
        assert connector.starts[:3] == [
            (0.25, "10.0.0.2", 25),
            (0.5, "10.0.0.1", 25),
            (0.75, "10.0.0.3", 25),
        ]

    def test_a_slow_srv_answer_holds_mx_attempts_back(self) -> None:
        """SRV at 600 ms: the MX attempt goes at 250 ms, the SRV target at 600 ms."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            **exchanger("mx1", "10.0.0.1"),
            ("_smtp._tcp." + HOST, "SRV"): (0.6, srv((0, 0, 2525, "srv1"))),
            **exchanger("srv1", "10.0.0.9"),
        }
        connector = ScriptedConnector({("10.0.0.9", 2525): (0.01, "ok")})
        result, _ = race(dns, connector)
        assert connector.starts == [(0.25, "10.0.0.1", 25), (0.6, "10.0.0.9", 2525)]
        assert isinstance(result.outcome, Won) and result.outcome.attempt.source == "srv"

    def test_mxps_fallback_to_smtp_on_the_same_host(self) -> None:
        """Slice-1 exchanger: QMTP on 209 first, SMTP on 25 one delay later."""
        dns = {(HOST, "MX"): (0.0, mx((12801, "mx1"))), **exchanger("mx1", "10.0.0.1")}
        connector = ScriptedConnector(
            {("10.0.0.1", 209): (0.0, "refused"), ("10.0.0.1", 25): (0.002, "ok")}
        )
        result, _ = race(dns, connector, control(QMTP, SMTP))
        assert connector.starts == [(0.0, "10.0.0.1", 209), (0.0, "10.0.0.1", 25)]
        assert isinstance(result.outcome, Won) and result.outcome.attempt.protocol is SMTP


class TestSelfCheck:
    """A connection to a worse exchanger never wins before we know we are not better."""

    def test_a_worse_exchanger_waits_until_the_better_ones_are_known(self) -> None:
        """MX 20 connects at 260 ms but wins only at 1 s, when MX 10 proves not to be us."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.0.0.1", at=1.0),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.01, "ok")})
        result, end = race(dns, connector, local=frozenset({"10.9.9.9"}))
        assert isinstance(result.outcome, Won) and result.outcome.attempt.exchanger == "mx2"
        assert end == pytest.approx(1.0)

    def test_a_connection_to_a_worse_exchanger_than_us_is_dropped(self) -> None:
        """MX 10 turns out (at 1 s) to be us: the open MX 20 connection is closed, #5.4.6."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.9.9.9", at=1.0),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.01, "ok")})
        result, end = race(dns, connector, local=frozenset({"10.9.9.9"}))
        assert isinstance(result.outcome, Lost)
        assert [c.closed for c in connector.made] == [True]
        assert result.outcome.started == {("10.0.0.2", 25)}
        report = explain_failure(result.plan, result.outcome)
        assert report == WE_ARE_BEST_MX
        assert end == pytest.approx(1.0)


class TestSelfCheckAtDeadline:
    """At the deadline, better exchangers still being looked up count as temporary failures.

    qmail-remote skips an MX target whose A lookup soft-fails and delivers to the next
    one; so a parked connection is not thrown away when timeoutconnect ends the race.
    """

    LOCAL = frozenset({"10.9.9.9"})

    @pytest.mark.parametrize("mx1_at", [5.0, SILENT], ids=["late", "never"])
    def test_a_parked_winner_wins_at_the_deadline(self, mx1_at: float) -> None:
        """MX 10's addresses late or never, MX 20 connected at 260 ms: MX 20 wins at 2.25 s."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.0.0.1", at=mx1_at),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.01, "ok")})
        result, end = race(dns, connector, control(timeout=2.0), local=self.LOCAL)
        assert connector.starts == [(0.25, "10.0.0.2", 25)]
        assert isinstance(result.outcome, Won) and result.outcome.attempt.exchanger == "mx2"
        assert end == pytest.approx(0.25 + 2.0)
        assert [c.closed for c in connector.made] == [False]
        assert [(f.attempt.address, f.fate, f.end) for f in result.outcome.fates] == [
            ("10.0.0.2", Fate.WON_AT_DEADLINE, 2250.0)
        ]

    def test_the_earliest_parked_connection_wins_and_the_others_are_closed(self) -> None:
        """MX 30 connects at 760 ms, MX 20 at 1 s, MX 10 silent: MX 30 wins at 2.25 s."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"), (30, "mx3"))),
            **exchanger("mx1", "10.0.0.1", at=SILENT),
            **exchanger("mx2", "10.0.0.2"),
            **exchanger("mx3", "10.0.0.3"),
        }
        connector = ScriptedConnector(
            {("10.0.0.2", 25): (0.75, "ok"), ("10.0.0.3", 25): (0.01, "ok")}
        )
        result, end = race(dns, connector, control(timeout=2.0), local=self.LOCAL)
        assert connector.starts == [(0.25, "10.0.0.2", 25), (0.75, "10.0.0.3", 25)]
        assert isinstance(result.outcome, Won) and result.outcome.attempt.exchanger == "mx3"
        assert end == pytest.approx(2.25)
        assert [(c.address, c.closed) for c in connector.made] == [
            ("10.0.0.3", False),
            ("10.0.0.2", True),
        ]

    def test_a_better_exchanger_found_to_be_us_before_the_deadline_still_cuts(self) -> None:
        """MX 10 is us, known at 1 s (before the 2.25 s deadline): MX 20 is closed, #5.4.6."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.9.9.9", at=1.0),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.01, "ok")})
        result, end = race(dns, connector, control(timeout=2.0), local=self.LOCAL)
        assert isinstance(result.outcome, Lost)
        assert [c.closed for c in connector.made] == [True]
        report = explain_failure(result.plan, result.outcome)
        assert report == WE_ARE_BEST_MX
        assert end == pytest.approx(1.0)

    def test_a_forbidden_connection_is_cut_even_while_a_better_lookup_is_out(self) -> None:
        """MX 10 silent, MX 15 is us (known at 1 s): MX 20 is closed, #4.1.2 at 2.25 s."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (15, "mx15"), (20, "mx2"))),
            **exchanger("mx1", "10.0.0.1", at=SILENT),
            **exchanger("mx15", "10.9.9.9", at=1.0),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.01, "ok")})
        result, end = race(dns, connector, control(timeout=2.0), local=self.LOCAL)
        assert isinstance(result.outcome, Lost) and result.outcome.timed_out
        assert [c.closed for c in connector.made] == [True]
        assert end == pytest.approx(2.25)
        report = explain_failure(result.plan, result.outcome)
        assert report == DNS_TEMPORARY


class TestBudget:
    """One timeoutconnect budget, one timeoutdns budget."""

    def test_the_race_is_lost_when_timeoutconnect_passes(self) -> None:
        """Everything silent, timeoutconnect 2: lost at 2 s, #4.4.1."""
        dns = {(HOST, "MX"): (0.0, mx((10, "mx1"))), **exchanger("mx1", "10.0.0.1", "10.0.0.2")}
        result, end = race(dns, ScriptedConnector(), control(timeout=2.0))
        assert isinstance(result.outcome, Lost) and result.outcome.timed_out
        assert end == pytest.approx(2.0)
        report = explain_failure(result.plan, result.outcome)
        assert report == NO_CONNECTION

    def test_the_budget_counts_from_the_first_start_not_from_dns(self) -> None:
        """MX answered at 1 s, timeoutconnect 2: the race ends at 3 s."""
        dns = {(HOST, "MX"): (1.0, mx((10, "mx1"))), **exchanger("mx1", "10.0.0.1")}
        _, end = race(dns, ScriptedConnector(), control(timeout=2.0))
        assert end == pytest.approx(3.0)

    def test_unanswered_dns_ends_at_timeoutdns_as_a_temporary_failure(self) -> None:
        """An MX query never answered, timeoutdns 5: over at 5 s with #4.1.2."""
        dns = {(HOST, "MX"): (SILENT, mx((10, "mx1")))}
        result, end = race(dns, ScriptedConnector(), control(dns=5.0))
        assert end == pytest.approx(5.0)
        assert isinstance(result.outcome, Lost) and not result.outcome.started
        report = explain_failure(result.plan, result.outcome)
        assert report == DNS_TEMPORARY

    def test_all_refused_ends_the_race_without_waiting(self) -> None:
        """Every address refuses: the race is lost as soon as the last one fails."""
        dns = {(HOST, "MX"): (0.0, mx((10, "mx1"))), **exchanger("mx1", "10.0.0.1", "10.0.0.2")}
        connector = ScriptedConnector(
            {("10.0.0.1", 25): (0.001, "refused"), ("10.0.0.2", 25): (0.001, "refused")}
        )
        result, end = race(dns, connector)
        assert isinstance(result.outcome, Lost) and not result.outcome.timed_out
        assert [reason for _, reason in result.outcome.failures] == ["ECONNREFUSED"] * 2
        assert end == pytest.approx(0.002)


class TestOneWinner:
    """Exactly one connection survives."""

    def test_two_connections_completing_together_leave_one_winner(self) -> None:
        """Both attempts complete at 300 ms: one wins, the other is closed."""
        dns = {(HOST, "MX"): (0.0, mx((10, "mx1"))), **exchanger("mx1", "10.0.0.1", "10.0.0.2")}
        connector = ScriptedConnector(
            {("10.0.0.1", 25): (0.3, "ok"), ("10.0.0.2", 25): (0.05, "ok")}
        )
        result, _ = race(dns, connector)
        assert isinstance(result.outcome, Won)
        assert len(connector.made) == 2
        winner = result.outcome.connection
        assert [c.closed for c in connector.made if c is not winner] == [True]
        assert not any(c.closed for c in connector.made if c is winner)

    def test_attempts_still_running_are_abandoned_when_one_wins(self) -> None:
        """The winner at 260 ms stops the silent attempt; no third attempt starts."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            **exchanger("mx1", "10.0.0.1", "10.0.0.2", "10.0.0.3"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.01, "ok")})
        result, end = race(dns, connector)
        assert [s[1] for s in connector.starts] == ["10.0.0.1", "10.0.0.2"]
        assert end == pytest.approx(0.26)
        assert isinstance(result.outcome, Won)


class TestFates:
    """The outcome says, per attempt, when it started and ended and why (ms, virtual clock)."""

    def test_failed_abandoned_and_won(self) -> None:
        """Refused at 3 ms, silent until the win, won at 18 ms: three fates, exact times."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            **exchanger("mx1", "10.0.0.1", "10.0.0.2", "10.0.0.3"),
        }
        connector = ScriptedConnector(
            {("10.0.0.1", 25): (0.003, "refused"), ("10.0.0.3", 25): (0.01, "ok")}
        )
        result, _ = race(dns, connector, control(delay=0.005))
        assert isinstance(result.outcome, Won)
        assert [
            (f.attempt.address, round(f.start, 6), round(f.end, 6), f.fate, f.error)
            for f in result.outcome.fates
        ] == [
            ("10.0.0.1", 0.0, 3.0, Fate.FAILED, "ECONNREFUSED"),
            ("10.0.0.2", 3.0, 18.0, Fate.ABANDONED, None),
            ("10.0.0.3", 8.0, 18.0, Fate.WON, None),
        ]
        assert result.outcome.ended == pytest.approx(18.0)

    def test_timed_out(self) -> None:
        """Nothing answers within timeoutconnect 1 s: both attempts timed out at 1000 ms."""
        dns = {(HOST, "MX"): (0.0, mx((10, "mx1"))), **exchanger("mx1", "10.0.0.1", "10.0.0.2")}
        result, _ = race(dns, ScriptedConnector(), control(timeout=1.0))
        assert isinstance(result.outcome, Lost) and result.outcome.timed_out
        assert [(f.start, f.end, f.fate) for f in result.outcome.fates] == [
            (0.0, 1000.0, Fate.TIMED_OUT),
            (250.0, 1000.0, Fate.TIMED_OUT),
        ]

    def test_runner_up_closed(self) -> None:
        """Two handshakes complete in the same instant: one won, the other runner-up closed."""
        dns = {(HOST, "MX"): (0.0, mx((10, "mx1"))), **exchanger("mx1", "10.0.0.1", "10.0.0.2")}
        connector = ScriptedConnector(
            {("10.0.0.1", 25): (0.3, "ok"), ("10.0.0.2", 25): (0.05, "ok")}
        )
        result, _ = race(dns, connector)
        assert isinstance(result.outcome, Won)
        fates = sorted((f.fate.value, f.end) for f in result.outcome.fates)
        assert fates == [("runner-up closed", 300.0), ("won", 300.0)]
        winner = next(f for f in result.outcome.fates if f.fate is Fate.WON)
        assert winner.attempt == result.outcome.attempt

    def test_parked_then_cut_by_the_self_check(self) -> None:
        """MX 20 connects at 260 ms, waits, and is cut at 1 s when MX 10 turns out to be us."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.9.9.9", at=1.0),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.01, "ok")})
        result, _ = race(dns, connector, local=frozenset({"10.9.9.9"}))
        assert isinstance(result.outcome, Lost)
        (fate,) = result.outcome.fates
        assert (fate.start, fate.parked, fate.end, fate.fate) == (
            250.0,
            260.0,
            1000.0,
            Fate.CUT_BY_SELF_CHECK,
        )
        assert result.outcome.failures == ((fate.attempt, "self-check"),)

    def test_parked_then_won(self) -> None:
        """MX 20 connects at 260 ms and wins at 1 s, when MX 10 proves not to be us."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
            **exchanger("mx1", "10.0.0.1", at=1.0),
            **exchanger("mx2", "10.0.0.2"),
        }
        connector = ScriptedConnector({("10.0.0.2", 25): (0.01, "ok")})
        result, _ = race(dns, connector, local=frozenset({"10.9.9.9"}))
        assert isinstance(result.outcome, Won)
        assert [(f.attempt.address, f.parked, f.end, f.fate) for f in result.outcome.fates] == [
            ("10.0.0.2", 260.0, 1000.0, Fate.WON),
        ]


class TestTheLoopIsAPhase:
    """The virtual-clock loop refuses to close over leftovers, so every test above checks it."""

    def test_a_timer_left_behind_fails_the_close(self) -> None:
        """A timer still armed when the loop closes is an AssertionError."""
        loop = VirtualClockLoop()
        loop.call_later(5.0, lambda: None)
        with pytest.raises(AssertionError, match="timers"):
            loop.close()

    def test_a_task_left_behind_fails_the_close(self) -> None:
        """A task still pending when the loop closes is an AssertionError (and is cancelled)."""
        loop = VirtualClockLoop()

        async def forever() -> None:
            await loop.create_future()

        task = loop.create_task(forever())
        loop.run_until_complete(asyncio.sleep(0))
        with pytest.raises(AssertionError, match="tasks"):
            loop.close()
        assert task.cancelled() or task.cancelling()
