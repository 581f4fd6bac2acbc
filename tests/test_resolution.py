"""Tests for mxf_remote/resolution.py: what is asked when (spec §3), on a virtual clock.

``Resolution`` is driven directly, without the race: a scripted lookup answers after exact
delays, and the loop's clock only moves when it would sleep, so every question's ``sent``
and ``answered`` time is asserted to the millisecond.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from mxf_remote.control import Protocol, parse_routes
from mxf_remote.destination import Destination, make_destination
from mxf_remote.knowledge import Answer, Status
from mxf_remote.resolution import RESOLUTION_DELAY, Lookup, Resolution
from tests.scripted import (
    NODATA,
    QMTP,
    SERVFAIL,
    SILENT,
    SMTP,
    ScriptedLookup,
    VirtualClockLoop,
    mx,
    ok,
    protocol,
    srv,
)

HOST = "example.test"
Script = dict[tuple[str, str], tuple[float, Answer[Any]]]


def dns_destination(host: str = HOST, *protocols: Protocol) -> Destination:
    """A destination that goes to DNS (no routes, not a literal)."""
    destination = make_destination(host, protocols or (SMTP,), {})
    assert destination.literal is None and not destination.relays
    return destination


def routed(host: str, **routes: list[str]) -> Destination:
    """A destination routed by ``<service>routes`` lines, over QMTP and SMTP."""
    tables = {service: parse_routes(lines, f"{service}routes") for service, lines in routes.items()}
    return make_destination(host, (QMTP, SMTP), tables)


class Recorder:
    """The ``changed`` callback: when it was called, and what ``knowledge.ipv4`` held then."""

    def __init__(self, loop: VirtualClockLoop) -> None:
        self.loop = loop
        self.times: list[float] = []
        self.ipv4: list[dict[str, Answer[str]]] = []
        self.event = asyncio.Event()
        self.resolution: Resolution | None = None

    def __call__(self) -> None:
        assert self.resolution is not None
        self.times.append(round(self.loop.time() * 1000, 6))
        self.ipv4.append(dict(self.resolution.knowledge.ipv4))
        self.event.set()

    def ipv4_status(self, name: str) -> list[tuple[float, Status]]:
        """(ms, status of ``name``'s A answer as the planner saw it) at every change."""
        return [
            (t, seen[name].status)
            for t, seen in zip(self.times, self.ipv4, strict=True)
            if name in seen
        ]


class Run(NamedTuple):
    """One resolution driven until it was over (or stopped), then closed."""

    resolution: Resolution
    changes: Recorder
    over_at: float
    """ms on the virtual clock when the driver stopped waiting."""


Driver = Callable[[Resolution, Recorder], Coroutine[Any, Any, None]]


async def until_over(resolution: Resolution, changes: Recorder) -> None:
    """Wait for ``changed`` until no lookup is outstanding."""
    while not resolution.over:
        await changes.event.wait()
        changes.event.clear()


def resolve(
    destination: Destination,
    lookup: Lookup,
    *,
    timeout: float = 30.0,
    driver: Driver = until_over,
    resolution_delay: float = RESOLUTION_DELAY,
    dane: bool = False,
) -> Run:
    """Start a ``Resolution`` on a fresh virtual-clock loop, drive it, close it."""
    loop = VirtualClockLoop()
    changes = Recorder(loop)

    async def main() -> Run:
        resolution = Resolution(
            destination,
            lookup,
            timeout=timeout,
            changed=changes,
            resolution_delay=resolution_delay,
            dane=dane,
        )
        changes.resolution = resolution
        resolution.start()
        try:
            await driver(resolution, changes)
        finally:
            over_at = round(loop.time() * 1000, 6)
            await resolution.close()
        return Run(resolution, changes, over_at)

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def scripted(script: Script) -> ScriptedLookup:
    """The scripted lookup (unscripted questions get NXDOMAIN at once)."""
    return ScriptedLookup(script)


def asked(run: Run) -> list[tuple[str, str, float]]:
    """(name, type, sent ms) of every question, in the order asked."""
    return [(q.name, q.rtype, q.sent) for q in run.resolution.queries]


def delays_over(run: Run) -> list[tuple[str, float]]:
    """The Resolution Delay releases, times rounded to the nanosecond (0.01 + 0.05 != 0.06)."""
    return [(name, round(t, 6)) for name, t in run.resolution.delays_over]


class TestFirstFlight:
    """MX, each protocol's SRV, and the host's AAAA and A go out at once and together."""

    def test_every_first_question_is_sent_at_zero(self) -> None:
        """MX, SRV for QMTP and SMTP, AAAA and A of the host: all sent at t=0, in that order."""
        run = resolve(dns_destination(HOST, QMTP, SMTP), scripted({}))
        assert asked(run) == [
            (HOST, "MX", 0.0),
            (f"_qmtp._tcp.{HOST}", "SRV", 0.0),
            (f"_smtp._tcp.{HOST}", "SRV", 0.0),
            (HOST, "AAAA", 0.0),
            (HOST, "A", 0.0),
        ]

    def test_no_first_question_waits_for_a_silent_one(self) -> None:
        """Every first question silent: all five are still sent at t=0."""
        script: Script = {
            (HOST, "MX"): (SILENT, NODATA),
            (f"_qmtp._tcp.{HOST}", "SRV"): (SILENT, NODATA),
            (f"_smtp._tcp.{HOST}", "SRV"): (SILENT, NODATA),
            (HOST, "AAAA"): (SILENT, NODATA),
            (HOST, "A"): (SILENT, NODATA),
        }
        run = resolve(dns_destination(HOST, QMTP, SMTP), scripted(script), timeout=1.0)
        assert [q.sent for q in run.resolution.queries] == [0.0] * 5
        assert [q.answered for q in run.resolution.queries] == [None] * 5

    def test_the_host_is_asked_as_dns_stores_it(self) -> None:
        """``Example.TEST.`` is asked as ``example.test`` (lower case, no trailing dot)."""
        run = resolve(dns_destination("Example.TEST."), scripted({}))
        assert {name for name, _, _ in asked(run)} == {HOST, f"_smtp._tcp.{HOST}"}

    def test_answers_are_recorded_with_their_times(self) -> None:
        """MX at 30 ms: the query holds its status, records and answer time."""
        run = resolve(dns_destination(), scripted({(HOST, "MX"): (0.03, mx((10, "mx1")))}))
        query = run.resolution.queries[0]
        assert (query.name, query.rtype, query.sent, query.answered) == (HOST, "MX", 0.0, 30.0)
        assert query.status is Status.OK
        assert [r.exchange for r in query.records] == ["mx1"]
        assert query.error is None


class TestExchangers:
    """Each exchanger's AAAA and A start as soon as the answer naming it arrives."""

    def test_mx_exchangers_are_asked_the_moment_the_mx_answer_arrives(self) -> None:
        """MX at 30 ms naming mx1 and mx2: their AAAA and A are sent at exactly 30 ms."""
        script: Script = {(HOST, "MX"): (0.03, mx((10, "mx1"), (10, "mx2")))}
        run = resolve(dns_destination(), scripted(script))
        late = sorted(item for item in asked(run) if item[0].startswith("mx"))
        assert late == [
            ("mx1", "A", 30.0),
            ("mx1", "AAAA", 30.0),
            ("mx2", "A", 30.0),
            ("mx2", "AAAA", 30.0),
        ]

    def test_srv_targets_are_asked_the_moment_the_srv_answer_arrives(self) -> None:
        """SRV at 70 ms naming srv1: its AAAA then A are sent at 70 ms, not after the MX."""
        script: Script = {
            (HOST, "MX"): (0.5, mx((10, "mx1"))),
            (f"_smtp._tcp.{HOST}", "SRV"): (0.07, srv((0, 0, 2525, "srv1"))),
        }
        run = resolve(dns_destination(), scripted(script))
        assert [item for item in asked(run) if item[0] in ("srv1", "mx1")] == [
            ("srv1", "AAAA", 70.0),
            ("srv1", "A", 70.0),
            ("mx1", "AAAA", 500.0),
            ("mx1", "A", 500.0),
        ]

    def test_no_exchanger_waits_for_another(self) -> None:
        """mx1's lookups silent: mx2's A answered at 40 ms still fills the knowledge then."""
        script: Script = {
            (HOST, "MX"): (0.03, mx((10, "mx1"), (20, "mx2"))),
            ("mx1", "AAAA"): (SILENT, NODATA),
            ("mx1", "A"): (SILENT, NODATA),
            ("mx2", "AAAA"): (0.01, NODATA),
            ("mx2", "A"): (0.01, ok("10.0.0.2")),
        }
        run = resolve(dns_destination(), scripted(script), timeout=1.0)
        assert (40.0, Status.OK) in run.changes.ipv4_status("mx2")
        assert run.resolution.knowledge.ipv4["mx1"].status is Status.TEMPFAIL

    def test_a_name_named_twice_is_asked_once(self) -> None:
        """The host as its own MX, and an MX target also an SRV target: one AAAA and A each."""
        script: Script = {
            (HOST, "MX"): (0.01, mx((10, HOST), (20, "mx1"))),
            (f"_smtp._tcp.{HOST}", "SRV"): (0.02, srv((0, 0, 25, "mx1"))),
        }
        run = resolve(dns_destination(), scripted(script))
        address_questions = [(n, t) for n, t, _ in asked(run) if t in ("A", "AAAA")]
        assert sorted(address_questions) == [
            (HOST, "A"),
            (HOST, "AAAA"),
            ("mx1", "A"),
            ("mx1", "AAAA"),
        ]

    def test_unusable_targets_are_not_asked(self) -> None:
        """A null MX target, an SRV "." and an SRV port 0 target: nothing asked for them."""
        script: Script = {
            (HOST, "MX"): (0.0, mx((0, ""), (10, "mx1"))),
            (f"_smtp._tcp.{HOST}", "SRV"): (0.0, srv((0, 0, 0, ""), (1, 0, 0, "zero"))),
        }
        run = resolve(dns_destination(), scripted(script))
        names = {name for name, _, _ in asked(run)}
        assert names == {HOST, f"_smtp._tcp.{HOST}", "mx1"}

    def test_a_dotted_quad_mx_target_is_used_as_an_address_without_a_query(self) -> None:
        """MX 10 ``192.0.2.5`` (qmail's quirk): A is that address, AAAA NODATA, nothing asked."""
        script: Script = {(HOST, "MX"): (0.01, mx((10, "192.0.2.5")))}
        run = resolve(dns_destination(), scripted(script))
        assert all(name != "192.0.2.5" for name, _, _ in asked(run))
        knowledge = run.resolution.knowledge
        assert knowledge.ipv4["192.0.2.5"] == Answer(Status.OK, ("192.0.2.5",))
        assert knowledge.ipv6["192.0.2.5"] == Answer(Status.NODATA)

    def test_mx_and_srv_answers_are_kept_in_plan_order(self) -> None:
        """MX 20 before MX 10 in the answer: the knowledge holds them by preference."""
        script: Script = {(HOST, "MX"): (0.0, mx((20, "mx2"), (10, "mx1")))}
        run = resolve(dns_destination(), scripted(script))
        mx_answer = run.resolution.knowledge.mx
        assert mx_answer is not None
        assert [r.exchange for r in mx_answer.records] == ["mx1", "mx2"]


class TestResolutionDelay:
    """RFC 8305 §3: an A answer waits up to 50 ms for a pending AAAA answer."""

    def test_an_a_answer_is_held_50ms_for_a_late_aaaa(self) -> None:
        """A at 10 ms, AAAA at 200 ms: the planner sees the A answer at 60 ms, not before."""
        script: Script = {
            (HOST, "MX"): (0.0, NODATA),
            (HOST, "A"): (0.01, ok("192.0.2.1")),
            (HOST, "AAAA"): (0.2, ok("2001:db8::1")),
        }
        run = resolve(dns_destination(), scripted(script))
        assert run.changes.ipv4_status(HOST) == [
            (0.0, Status.PENDING),  # MX NODATA
            (0.0, Status.PENDING),  # SRV NXDOMAIN
            (10.0, Status.PENDING),  # A arrived, held
            (60.0, Status.OK),  # released
            (200.0, Status.OK),  # AAAA
        ]
        assert delays_over(run) == [(HOST, 60.0)]
        a_query = next(q for q in run.resolution.queries if q.rtype == "A")
        assert a_query.answered == 10.0

    def test_an_aaaa_answer_within_50ms_releases_the_a_answer_with_it(self) -> None:
        """A at 10 ms, AAAA at 30 ms: A released at 30 ms, no Resolution Delay entry."""
        script: Script = {
            (HOST, "MX"): (0.0, NODATA),
            (HOST, "A"): (0.01, ok("192.0.2.1")),
            (HOST, "AAAA"): (0.03, ok("2001:db8::1")),
        }
        run = resolve(dns_destination(), scripted(script))
        assert run.changes.ipv4_status(HOST)[2:] == [(10.0, Status.PENDING), (30.0, Status.OK)]
        assert run.resolution.delays_over == []
        assert run.over_at == 30.0

    def test_a_failed_aaaa_releases_the_a_answer_at_once(self) -> None:
        """A at 10 ms, AAAA SERVFAIL at 20 ms: A released at 20 ms."""
        script: Script = {
            (HOST, "MX"): (0.0, NODATA),
            (HOST, "A"): (0.01, ok("192.0.2.1")),
            (HOST, "AAAA"): (0.02, SERVFAIL),
        }
        run = resolve(dns_destination(), scripted(script))
        assert run.changes.ipv4_status(HOST)[2:] == [(10.0, Status.PENDING), (20.0, Status.OK)]
        assert run.resolution.delays_over == []

    def test_a_negative_a_answer_is_not_held(self) -> None:
        """A NODATA at 10 ms while AAAA is pending: the planner sees it at 10 ms."""
        script: Script = {
            (HOST, "MX"): (0.0, NODATA),
            (HOST, "A"): (0.01, NODATA),
            (HOST, "AAAA"): (0.2, ok("2001:db8::1")),
        }
        run = resolve(dns_destination(), scripted(script))
        assert (10.0, Status.NODATA) in run.changes.ipv4_status(HOST)
        assert run.resolution.delays_over == []

    def test_the_delay_is_a_setting(self) -> None:
        """resolution_delay 0.125 s: A at 10 ms is released at 135 ms."""
        script: Script = {
            (HOST, "MX"): (0.0, NODATA),
            (HOST, "A"): (0.01, ok("192.0.2.1")),
            (HOST, "AAAA"): (0.5, NODATA),
        }
        run = resolve(dns_destination(), scripted(script), resolution_delay=0.125)
        assert delays_over(run) == [(HOST, 135.0)]

    def test_timeoutdns_releases_a_held_a_answer(self) -> None:
        """A held (delay 10 s), AAAA silent, timeoutdns 1 s: A is OK, AAAA TEMPFAIL at 1 s."""
        script: Script = {
            (HOST, "MX"): (0.0, NODATA),
            (HOST, "A"): (0.01, ok("192.0.2.1")),
            (HOST, "AAAA"): (SILENT, NODATA),
        }
        run = resolve(dns_destination(), scripted(script), timeout=1.0, resolution_delay=10.0)
        knowledge = run.resolution.knowledge
        assert knowledge.ipv4[HOST] == Answer(Status.OK, ("192.0.2.1",))
        assert knowledge.ipv6[HOST] == Answer(Status.TEMPFAIL)
        assert run.resolution.expired_at == 1000.0
        assert run.resolution.delays_over == []


class TestTimeoutDns:
    """One ``timeoutdns`` deadline turns every outstanding lookup into a temporary failure."""

    def test_a_silent_mx_is_a_temporary_failure_at_timeoutdns(self) -> None:
        """MX silent, timeoutdns 5: expired at 5000 ms, MX TEMPFAIL, the query unanswered."""
        run = resolve(dns_destination(), scripted({(HOST, "MX"): (SILENT, NODATA)}), timeout=5)
        resolution = run.resolution
        assert resolution.expired_at == 5000.0
        assert resolution.expired
        assert resolution.knowledge.mx == Answer(Status.TEMPFAIL)
        assert resolution.over
        mx_query = resolution.queries[0]
        assert (mx_query.rtype, mx_query.answered) == ("MX", None)
        assert run.changes.times[-1] == 5000.0

    def test_every_kind_of_outstanding_lookup_expires(self) -> None:
        """SRV, an exchanger's AAAA and A all silent: each is TEMPFAIL after timeoutdns."""
        script: Script = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            (f"_smtp._tcp.{HOST}", "SRV"): (SILENT, NODATA),
            ("mx1", "AAAA"): (SILENT, NODATA),
            ("mx1", "A"): (SILENT, NODATA),
        }
        run = resolve(dns_destination(), scripted(script), timeout=2.0)
        knowledge = run.resolution.knowledge
        assert knowledge.srv["smtp"] == Answer(Status.TEMPFAIL)
        assert knowledge.address_answers("mx1") == (Answer(Status.TEMPFAIL),) * 2
        assert knowledge.mx is not None and knowledge.mx.status is Status.OK
        assert run.resolution.expired_at == 2000.0

    def test_timeoutdns_passing_after_everything_was_answered_is_no_expiry(self) -> None:
        """All answered at 0 ms, still open at 2 s past timeoutdns 1 s: nothing expired."""

        async def outlive_timeoutdns(resolution: Resolution, changes: Recorder) -> None:
            await until_over(resolution, changes)
            await asyncio.sleep(2.0)  # the race goes on; resolution is closed only after it

        run = resolve(dns_destination(), scripted({}), timeout=1.0, driver=outlive_timeoutdns)
        assert run.changes.times == [0.0, 0.0, 0.0, 0.0]
        assert run.resolution.expired_at is None

    def test_answers_in_time_do_not_expire(self) -> None:
        """Everything answered at once: no expiry recorded."""
        run = resolve(dns_destination(), scripted({}), timeout=1.0)
        assert run.resolution.expired_at is None
        assert not run.resolution.expired


class TestLookupErrors:
    """A lookup that raises (a resolver bug) must not leave a question pending."""

    def test_a_raising_lookup_is_a_temporary_failure_with_the_error_kept(self) -> None:
        """MX lookup raises RuntimeError at once: MX TEMPFAIL, query.error holds its repr."""
        base = scripted({})

        async def lookup(name: str, rtype: str) -> Answer[Any]:
            if rtype == "MX":
                raise RuntimeError("resolver bug")
            return await base(name, rtype)

        run = resolve(dns_destination(), lookup)
        assert run.resolution.knowledge.mx == Answer(Status.TEMPFAIL)
        mx_query = run.resolution.queries[0]
        assert mx_query.error == "RuntimeError('resolver bug')"
        assert (mx_query.status, mx_query.answered) == (Status.TEMPFAIL, 0.0)
        assert all(q.error is None for q in run.resolution.queries[1:])
        assert run.resolution.over


class TestRoutesAndLiterals:
    """A routed host asks only for its relays' addresses; a literal asks nothing."""

    def test_only_the_relays_addresses_are_asked(self) -> None:
        """SMTP routed to Relay.Example.NET, QMTP to a literal: only the relay's AAAA and A."""
        destination = routed(
            HOST, smtp=[f"{HOST}:Relay.Example.NET:2525"], qmtp=[f"{HOST}:[192.0.2.7]"]
        )
        run = resolve(destination, scripted({}))
        assert asked(run) == [("relay.example.net", "AAAA", 0.0), ("relay.example.net", "A", 0.0)]
        knowledge = run.resolution.knowledge
        assert knowledge.mx is None
        assert knowledge.srv == {}

    def test_two_protocols_routed_to_one_relay_ask_for_it_once(self) -> None:
        """QMTP and SMTP both routed to relay.example.net: one AAAA and one A."""
        destination = routed(HOST, smtp=[":relay.example.net"], qmtp=[":relay.example.net:2209"])
        run = resolve(destination, scripted({}))
        assert [(n, t) for n, t, _ in asked(run)] == [
            ("relay.example.net", "AAAA"),
            ("relay.example.net", "A"),
        ]

    def test_a_literal_relay_asks_nothing(self) -> None:
        """Every relay a literal: no question, resolution over at once."""
        destination = routed(HOST, smtp=[":[192.0.2.7]"], qmtp=[":[2001:db8::7]:2209"])
        run = resolve(destination, scripted({}))
        assert run.resolution.queries == []
        assert run.resolution.over
        assert run.over_at == 0.0

    def test_a_literal_destination_asks_nothing(self) -> None:
        """``[192.0.2.9]``: no question, no knowledge, over at once."""
        destination = make_destination("[192.0.2.9]", (SMTP,), {})
        run = resolve(destination, scripted({}))
        assert run.resolution.queries == []
        knowledge = run.resolution.knowledge
        assert (knowledge.mx, knowledge.srv, knowledge.ipv4, knowledge.ipv6) == (None, {}, {}, {})
        assert run.changes.times == []


class TestChangedAndClose:
    """``changed`` on every answer; ``close`` leaves nothing of resolution on the loop."""

    def test_changed_is_called_on_each_answer(self) -> None:
        """Answers at 0, 0, 0, 0, 30, 40 and 45 ms: one ``changed`` call at each."""
        script: Script = {
            (HOST, "MX"): (0.03, mx((10, "mx1"))),
            ("mx1", "AAAA"): (0.015, NODATA),
            ("mx1", "A"): (0.01, ok("10.0.0.1")),
        }
        run = resolve(dns_destination(), scripted(script))
        answered = sorted(q.answered for q in run.resolution.queries if q.answered is not None)
        assert run.changes.times == answered == [0.0, 0.0, 0.0, 30.0, 40.0, 45.0]

    def test_close_leaves_no_task_or_timer(self) -> None:
        """Closed at 20 ms (MX silent, an A answer held): no task, timer or later change."""
        script: Script = {
            (HOST, "MX"): (SILENT, NODATA),
            (HOST, "A"): (0.01, ok("192.0.2.1")),
            (HOST, "AAAA"): (SILENT, NODATA),
        }
        lookup = scripted(script)
        leftovers: dict[str, Any] = {}

        async def close_at_20ms(resolution: Resolution, changes: Recorder) -> None:
            await asyncio.sleep(0.02)
            assert resolution.knowledge.ipv4[HOST].pending  # held for the Resolution Delay
            await resolution.close()
            loop = asyncio.get_running_loop()
            leftovers["tasks"] = asyncio.all_tasks() - {asyncio.current_task()}
            leftovers["timers"] = [
                h
                for h in loop._scheduled  # type: ignore[attr-defined]
                if not h.cancelled()
            ]
            calls = len(changes.times)
            await asyncio.sleep(60)  # past timeoutdns and the Resolution Delay
            leftovers["later_calls"] = len(changes.times) - calls

        run = resolve(dns_destination(), lookup, timeout=5.0, driver=close_at_20ms)
        assert leftovers == {"tasks": set(), "timers": [], "later_calls": 0}
        assert run.resolution.expired_at is None
        assert run.resolution.delays_over == []
        assert run.resolution.knowledge.mx == Answer(Status.PENDING)


STARTTLS_SMTP = protocol("smtp", 25, 0, explicit=True)


class TestTlsa:
    """``control/dane`` on: TLSA beside each exchanger's addresses, in the same flight."""

    def test_asked_the_moment_the_mx_answer_names_the_exchanger(self) -> None:
        lookup = scripted(
            {
                (HOST, "MX"): (0.010, mx((10, "mx1.example.test"))),
                ("mx1.example.test", "A"): (0.002, ok("192.0.2.1")),
                ("_25._tcp.mx1.example.test", "TLSA"): (0.004, NODATA),
            }
        )
        run = resolve(dns_destination(HOST, QMTP, STARTTLS_SMTP), lookup, dane=True)
        later = [(name, rtype, sent) for name, rtype, sent in asked(run) if sent > 0]
        assert sorted(later) == [
            ("_25._tcp.mx1.example.test", "TLSA", 10.0),
            ("mx1.example.test", "A", 10.0),
            ("mx1.example.test", "AAAA", 10.0),
        ]  # QMTP has no STARTTLS: no TLSA for port 209
        assert run.resolution.knowledge.tlsa == {("mx1.example.test", 25): NODATA}

    def test_not_asked_without_dane_or_without_starttls(self) -> None:
        lookup = scripted({(HOST, "MX"): (0.010, mx((10, "mx1.example.test")))})
        for destination, dane in (
            (dns_destination(HOST, STARTTLS_SMTP), False),
            (dns_destination(HOST, SMTP), True),
        ):
            run = resolve(destination, lookup, dane=dane)
            assert all(rtype != "TLSA" for _, rtype, _ in asked(run))

    def test_the_implicit_mx_gets_the_host_s_tlsa(self) -> None:
        lookup = scripted({(HOST, "MX"): (0.010, NODATA)})
        run = resolve(dns_destination(HOST, STARTTLS_SMTP), lookup, dane=True)
        assert (f"_25._tcp.{HOST}", "TLSA", 10.0) in asked(run)

    def test_an_unanswered_tlsa_becomes_a_temporary_failure_at_timeoutdns(self) -> None:
        lookup = scripted(
            {
                (HOST, "MX"): (0.010, mx((10, "mx1.example.test"))),
                ("_25._tcp.mx1.example.test", "TLSA"): (SILENT, NODATA),
            }
        )
        run = resolve(dns_destination(HOST, STARTTLS_SMTP), lookup, timeout=2.0, dane=True)
        assert run.over_at == 2000.0
        assert run.resolution.knowledge.tlsa[("mx1.example.test", 25)] == SERVFAIL

    def test_a_secure_cname_target_gets_its_tlsa_asked_too(self) -> None:
        """RFC 7672 §2.2.2: mx1's A came through a secure CNAME to mx.provider.test."""
        through_cname = Answer(Status.OK, ("192.0.2.1",), secure=True, canonical="mx.provider.test")
        lookup = scripted(
            {
                (HOST, "MX"): (0.010, mx((10, "mx1.example.test"))),
                ("mx1.example.test", "A"): (0.002, through_cname),
                ("_25._tcp.mx1.example.test", "TLSA"): (0.004, NODATA),
                ("_25._tcp.mx.provider.test", "TLSA"): (0.004, NODATA),
            }
        )
        run = resolve(dns_destination(HOST, STARTTLS_SMTP), lookup, dane=True)
        assert ("_25._tcp.mx.provider.test", "TLSA", 12.0) in asked(run)
        assert run.resolution.knowledge.aliases == {"mx1.example.test": "mx.provider.test"}

    def test_an_insecure_cname_target_is_not_followed(self) -> None:
        through_cname = Answer(Status.OK, ("192.0.2.1",), canonical="mx.provider.test")
        lookup = scripted(
            {
                (HOST, "MX"): (0.010, mx((10, "mx1.example.test"))),
                ("mx1.example.test", "A"): (0.002, through_cname),
            }
        )
        run = resolve(dns_destination(HOST, STARTTLS_SMTP), lookup, dane=True)
        assert all(name != "_25._tcp.mx.provider.test" for name, _, _ in asked(run))
        assert run.resolution.knowledge.aliases == {}
