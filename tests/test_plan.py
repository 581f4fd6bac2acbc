"""Tests for mxf_remote/plan.py: the ordered plan of attempts (spec §4), pure and loop-free."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mxf_remote.control import Protocol, Route, parse_routes
from mxf_remote.destination import Destination, make_destination
from mxf_remote.knowledge import HARD, MX, SRV, Answer, Knowledge, Status, dns_name
from mxf_remote.plan import (
    MAX_ATTEMPTS,
    MAX_EXCHANGERS,
    Attempt,
    Facts,
    Plan,
    Target,
    Waiting,
    build_plan,
    is_null_mx,
    mxps_slice,
    order_mx_rfc5321,
    order_srv_rfc2782,
    protocols_for_slice,
    self_check_verdict,
    srv_declines_service,
    usable_exchangers,
    usable_srv_targets,
)


def protocol(
    service: str, port: int, mxps: int, *, implicit: bool = False, explicit: bool = False
) -> Protocol:
    """An installed protocol (program found) as read_control makes it."""
    tls = "/bin/tlsc" if implicit else "/bin/ucspitlsc" if explicit else None
    return Protocol(
        service,
        port,
        mxps,
        implicit,
        explicit,
        f"{service}c",
        program_path=f"/bin/{service}c",
        tls_client_path=tls,
    )


QMTPS = protocol("qmtps", 6209, -1, implicit=True)
QMTP = protocol("qmtp", 209, 1)
SMTP = protocol("smtp", 25, 0, explicit=True)
DEFAULT = (QMTPS, QMTP, SMTP)

LOCAL = frozenset({"0.0.0.0", "::", "127.0.0.1", "::1", "198.51.100.2", "2001:db8:ffff::2"})

PENDING: Answer[str] = Answer(Status.PENDING)
NXDOMAIN: Answer[str] = Answer(Status.NXDOMAIN)
NODATA: Answer[str] = Answer(Status.NODATA)
TEMPFAIL: Answer[str] = Answer(Status.TEMPFAIL)

HostValue = list[str] | tuple[Answer[str], Answer[str]]


def ok(*records: object) -> Answer[object]:
    """An OK answer with these records."""
    return Answer(Status.OK, tuple(records))


def status(kind: Status) -> Answer[object]:
    """An answer without records."""
    return Answer(kind)


def knowledge(
    *,
    mx: Answer[object] | None = None,
    srv: dict[str, Answer[object]] | None = None,
    hosts: dict[str, HostValue] | None = None,
    services: tuple[Protocol, ...] = DEFAULT,
) -> Knowledge:
    """Knowledge as the resolver leaves it.

    Every service's SRV answer is NXDOMAIN unless given; a host given as a list of
    addresses has OK answers for the families present and NODATA for the others; a host
    given as a pair has those (AAAA, A) answers.
    """
    result = Knowledge(mx=mx)  # type: ignore[arg-type]
    for p in services:
        result.srv[p.service] = Answer(Status.NXDOMAIN)
    result.srv.update(srv or {})  # type: ignore[arg-type]
    for name, value in (hosts or {}).items():
        if isinstance(value, tuple):
            result.ipv6[name], result.ipv4[name] = value
            continue
        ipv6 = tuple(a for a in value if ":" in a)
        ipv4 = tuple(a for a in value if ":" not in a)
        result.ipv6[name] = Answer(Status.OK, ipv6) if ipv6 else NODATA
        result.ipv4[name] = Answer(Status.OK, ipv4) if ipv4 else NODATA
    return result


def dns(host: str = "example.com", protocols: tuple[Protocol, ...] = DEFAULT) -> Destination:
    """A destination resolved through DNS."""
    return Destination(host, protocols)


Row = tuple[str, str, str, int] | str


def rows(plan: Plan) -> list[Row]:
    """The plan as (service, exchanger, address, port) rows and ``wait ...`` markers."""
    result: list[Row] = []
    for entry in plan.entries:
        if isinstance(entry, Waiting):
            result.append(f"wait {entry.lookup}")
        else:
            result.append((entry.protocol.service, entry.exchanger, entry.address, entry.port))
    return result


def waits(plan: Plan) -> list[Waiting]:
    """The Waiting markers of a plan."""
    return [e for e in plan.entries if isinstance(e, Waiting)]


class TestLiteral:
    """A host literal: every usable protocol at its default port, no DNS."""

    def test_every_protocol_at_default_port(self) -> None:
        """[1.2.3.4] is tried with QMTPS, QMTP and SMTP, in order, at 6209, 209 and 25."""
        destination = make_destination("[192.0.2.9]", DEFAULT, {})
        plan = build_plan(destination, Knowledge(), LOCAL)
        assert rows(plan) == [
            ("qmtps", "192.0.2.9", "192.0.2.9", 6209),
            ("qmtp", "192.0.2.9", "192.0.2.9", 209),
            ("smtp", "192.0.2.9", "192.0.2.9", 25),
        ]
        assert all(not a.named for a in plan.attempts)
        assert {a.source for a in plan.attempts} == {"literal"}
        assert {a.preference for a in plan.attempts} == {0}
        assert not plan.self_cut

    @pytest.mark.parametrize(
        ("host", "address"),
        [
            ("192.0.2.9", "192.0.2.9"),
            ("[IPv6:2001:DB8::9]", "2001:db8::9"),
            ("[2001:db8::9]", "2001:db8::9"),
        ],
    )
    def test_other_forms(self, host: str, address: str) -> None:
        """Bare and IPv6 literals are planned the same way, address canonical."""
        plan = build_plan(make_destination(host, DEFAULT, {}), Knowledge(), LOCAL)
        assert [(a.address, a.port) for a in plan.attempts] == [
            (address, 6209),
            (address, 209),
            (address, 25),
        ]

    def test_protocols_kept(self) -> None:
        """The attempts carry the protocol objects they were given."""
        plan = build_plan(make_destination("[192.0.2.9]", DEFAULT, {}), Knowledge(), LOCAL)
        assert [a.protocol for a in plan.attempts] == list(DEFAULT)

    def test_dns_knowledge_ignored(self) -> None:
        """Whatever DNS might say does not change a literal's plan."""
        destination = make_destination("[192.0.2.9]", (SMTP,), {})
        noisy = knowledge(mx=ok(MX(10, "mx.example")), hosts={"mx.example": ["192.0.2.10"]})
        assert rows(build_plan(destination, noisy, LOCAL)) == [
            ("smtp", "192.0.2.9", "192.0.2.9", 25)
        ]

    @pytest.mark.parametrize(
        "host",
        [
            "[127.0.0.1]",
            "127.0.0.1",
            "[0.0.0.0]",
            "[198.51.100.2]",
            "[::1]",
            "[IPv6:::ffff:127.0.0.1]",
        ],
    )
    def test_local_literal(self, host: str) -> None:
        """A literal naming this machine gives an empty plan with the self-cut flag."""
        plan = build_plan(make_destination(host, DEFAULT, {}), Knowledge(), LOCAL)
        assert plan.entries == ()
        assert plan.self_cut


class TestRoutes:
    """A routed host: exactly the routed protocols, to their relays, no self-check."""

    @staticmethod
    def routes(**tables: list[str]) -> dict[str, dict[bytes, Route | None]]:
        return {
            service: parse_routes(lines, f"{service}routes") for service, lines in tables.items()
        }

    def test_only_routed_protocols_in_protocol_order(self) -> None:
        """Routed protocols in control/protocols order, each to its relay; MX is ignored."""
        destination = make_destination(
            "example.com",
            DEFAULT,
            self.routes(smtp=[":relay-s.example"], qmtps=["example.com:relay-q.example"]),
        )
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            hosts={
                "relay-q.example": ["192.0.2.7", "2001:db8::7"],
                "relay-s.example": ["192.0.2.8"],
                "mx.example": ["192.0.2.10"],
            },
        )
        plan = build_plan(destination, known, LOCAL)
        assert rows(plan) == [
            ("qmtps", "relay-q.example", "2001:db8::7", 6209),
            ("qmtps", "relay-q.example", "192.0.2.7", 6209),
            ("smtp", "relay-s.example", "192.0.2.8", 25),
        ]
        assert {a.source for a in plan.attempts} == {"route"}
        assert all(a.named for a in plan.attempts)

    def test_relay_port(self) -> None:
        """relay:port replaces the protocol's default port."""
        destination = make_destination("example.com", DEFAULT, self.routes(smtp=[":relay:2525"]))
        plan = build_plan(destination, knowledge(hosts={"relay": ["192.0.2.8"]}), LOCAL)
        assert rows(plan) == [("smtp", "relay", "192.0.2.8", 2525)]

    @pytest.mark.parametrize(
        ("line", "address", "port"),
        [
            (":[192.0.2.50]:2525", "192.0.2.50", 2525),
            (":192.0.2.50", "192.0.2.50", 25),
            (":[2001:db8::25]:2526", "2001:db8::25", 2526),
            (":[IPv6:2001:DB8::25]", "2001:db8::25", 25),
        ],
    )
    def test_literal_relay(self, line: str, address: str, port: int) -> None:
        """A literal relay needs no DNS and names no host (no -k)."""
        destination = make_destination("example.com", DEFAULT, self.routes(smtp=[line]))
        plan = build_plan(destination, Knowledge(), LOCAL)
        assert rows(plan) == [("smtp", address, address, port)]
        (attempt,) = plan.attempts
        assert not attempt.named
        assert attempt.source == "route"

    def test_no_self_check(self) -> None:
        """Relays that are this machine are still tried (qmail's prefme = 300000)."""
        destination = make_destination(
            "example.com",
            DEFAULT,
            self.routes(qmtp=[":[127.0.0.1]"], smtp=[":localrelay"]),
        )
        known = knowledge(hosts={"localrelay": ["198.51.100.2", "::1"]})
        plan = build_plan(destination, known, LOCAL)
        assert rows(plan) == [
            ("qmtp", "127.0.0.1", "127.0.0.1", 209),
            ("smtp", "localrelay", "::1", 25),
            ("smtp", "localrelay", "198.51.100.2", 25),
        ]
        assert not plan.self_cut

    def test_relay_name_normalised(self) -> None:
        """A relay name is looked up lower-cased without a trailing dot."""
        destination = make_destination(
            "example.com", DEFAULT, self.routes(smtp=[":Relay.Example."])
        )
        plan = build_plan(destination, knowledge(hosts={"relay.example": ["192.0.2.8"]}), LOCAL)
        assert rows(plan) == [("smtp", "relay.example", "192.0.2.8", 25)]

    def test_pending_relay(self) -> None:
        """A relay whose addresses are outstanding is a Waiting marker."""
        destination = make_destination(
            "example.com", DEFAULT, self.routes(qmtp=[":slow"], smtp=[":fast"])
        )
        known = knowledge(hosts={"fast": ["192.0.2.8"]})
        assert rows(build_plan(destination, known, LOCAL)) == [
            "wait addresses of slow",
            ("smtp", "fast", "192.0.2.8", 25),
        ]

    def test_same_relay_twice(self) -> None:
        """Two protocols routed to the same address and port make one attempt."""
        destination = make_destination(
            "example.com", DEFAULT, self.routes(qmtp=[":relay:2525"], smtp=[":relay:2525"])
        )
        plan = build_plan(destination, knowledge(hosts={"relay": ["192.0.2.8"]}), LOCAL)
        assert rows(plan) == [("qmtp", "relay", "192.0.2.8", 2525)]


class TestSrv:
    """SRV targets come first, protocol by protocol, with the SRV port."""

    def test_srv_first_in_protocol_order(self) -> None:
        """QMTP's SRV targets, then SMTP's, then the MX exchangers."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={
                "smtp": ok(SRV(0, 0, 2525, "smtp-srv.example")),
                "qmtp": ok(SRV(0, 0, 2209, "qmtp-srv.example")),
            },
            hosts={
                "smtp-srv.example": ["192.0.2.25"],
                "qmtp-srv.example": ["192.0.2.29"],
                "mx.example": ["192.0.2.10"],
            },
        )
        plan = build_plan(dns(), known, LOCAL)
        assert rows(plan) == [
            ("qmtp", "qmtp-srv.example", "192.0.2.29", 2209),
            ("smtp", "smtp-srv.example", "192.0.2.25", 2525),
            ("smtp", "mx.example", "192.0.2.10", 25),
        ]
        assert [a.source for a in plan.attempts] == ["srv", "srv", "mx"]

    def test_records_in_answer_order(self) -> None:
        """SRV records are used in the order the resolver left them (RFC 2782 order)."""
        known = knowledge(
            mx=status(Status.NODATA),
            srv={
                "smtp": ok(
                    SRV(1, 0, 2526, "b.example"), SRV(5, 0, 2527, "c.example"), SRV(0, 0, 2525, "a")
                )
            },
            hosts={"a": ["192.0.2.1"], "b.example": ["192.0.2.2"], "c.example": ["192.0.2.3"]},
        )
        plan = build_plan(dns(), known, frozenset())
        assert [(a.exchanger, a.port, a.preference) for a in plan.attempts] == [
            ("b.example", 2526, 1),
            ("c.example", 2527, 5),
            ("a", 2525, 0),
        ]

    def test_lone_dot_drops_protocol_everywhere(self) -> None:
        """A lone SRV "." for smtp drops SMTP from the whole plan, MX included."""
        known = knowledge(
            mx=ok(MX(10, "mx10.example"), MX(12801, "mxps.example")),
            srv={"smtp": ok(SRV(0, 0, 25, ""))},
            hosts={"mx10.example": ["192.0.2.10"], "mxps.example": ["192.0.2.11"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("qmtp", "mxps.example", "192.0.2.11", 209),
        ]

    def test_lone_dot_drops_protocol_from_implicit_mx(self) -> None:
        """A protocol declined by SRV "." is not tried on the implicit MX either."""
        known = knowledge(
            mx=status(Status.NXDOMAIN),
            srv={"qmtps": ok(SRV(0, 0, 0, ""))},
            hosts={"example.com": ["192.0.2.5"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("qmtp", "example.com", "192.0.2.5", 209),
            ("smtp", "example.com", "192.0.2.5", 25),
        ]

    def test_every_protocol_declined(self) -> None:
        """When every protocol is declined nothing is planned."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={p.service: ok(SRV(0, 0, 0, "")) for p in DEFAULT},
            hosts={"mx.example": ["192.0.2.10"], "example.com": ["192.0.2.5"]},
        )
        assert build_plan(dns(), known, LOCAL).entries == ()

    def test_dot_among_others_skipped(self) -> None:
        """A "." among other SRV records is just skipped; the protocol stays."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={"smtp": ok(SRV(0, 0, 25, ""), SRV(1, 0, 2525, "b.example"))},
            hosts={"b.example": ["192.0.2.2"], "mx.example": ["192.0.2.10"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("smtp", "b.example", "192.0.2.2", 2525),
            ("smtp", "mx.example", "192.0.2.10", 25),
        ]

    def test_port_zero_skipped(self) -> None:
        """An SRV record with port 0 is not a target."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={"smtp": ok(SRV(0, 0, 0, "zero.example"), SRV(1, 0, 2525, "b.example"))},
            hosts={
                "zero.example": ["192.0.2.99"],
                "b.example": ["192.0.2.2"],
                "mx.example": ["192.0.2.10"],
            },
        )
        assert [a.exchanger for a in build_plan(dns(), known, LOCAL).attempts] == [
            "b.example",
            "mx.example",
        ]

    @pytest.mark.parametrize("kind", [Status.TEMPFAIL, Status.NXDOMAIN, Status.NODATA])
    def test_failed_srv_is_absent(self, kind: Status) -> None:
        """A failed SRV lookup (even a temporary one) just means no SRV records."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={"smtp": status(kind)},
            hosts={"mx.example": ["192.0.2.10"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [("smtp", "mx.example", "192.0.2.10", 25)]

    def test_srv_not_asked(self) -> None:
        """A protocol whose SRV was never asked simply has no SRV targets."""
        known = Knowledge(mx=Answer(Status.OK, (MX(10, "mx.example"),)))
        known.ipv6["mx.example"], known.ipv4["mx.example"] = (
            NODATA,
            Answer(Status.OK, ("192.0.2.10",)),
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [("smtp", "mx.example", "192.0.2.10", 25)]

    def test_srv_target_gets_only_its_protocol(self) -> None:
        """An SRV target is tried with its own protocol only, not the MXPS fallback."""
        known = knowledge(
            mx=status(Status.NODATA),
            srv={"qmtp": ok(SRV(0, 0, 209, "q.example"))},
            hosts={"q.example": ["192.0.2.9"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [("qmtp", "q.example", "192.0.2.9", 209)]

    def test_srv_target_for_slice_minus_one(self) -> None:
        """A protocol of slice -1 (QMTPS) is reached through SRV."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={"qmtps": ok(SRV(0, 0, 6209, "q.example"))},
            hosts={"q.example": ["192.0.2.9"], "mx.example": ["192.0.2.10"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("qmtps", "q.example", "192.0.2.9", 6209),
            ("smtp", "mx.example", "192.0.2.10", 25),
        ]


class TestSrvHelpers:
    """Small rules about SRV answers."""

    @pytest.mark.parametrize(
        ("records", "declines"),
        [
            ((SRV(0, 0, 0, ""),), True),
            ((SRV(0, 0, 25, ""),), True),
            ((SRV(0, 0, 25, ""), SRV(1, 0, 25, "a")), False),
            ((SRV(0, 0, 25, "a"),), False),
            ((), False),
        ],
    )
    def test_srv_declines_service(self, records: tuple[SRV, ...], declines: bool) -> None:
        """Only a single record with target "." declines the service."""
        assert srv_declines_service(records) is declines

    def test_usable_srv_targets(self) -> None:
        """Targets "." and port 0 are left out; order kept."""
        records = (SRV(0, 0, 25, ""), SRV(0, 0, 0, "z"), SRV(1, 0, 25, "b"), SRV(2, 0, 26, "a"))
        assert usable_srv_targets(records) == (SRV(1, 0, 25, "b"), SRV(2, 0, 26, "a"))

    def test_usable_srv_targets_bounded(self) -> None:
        """At most MAX_EXCHANGERS targets are resolved per answer."""
        records = tuple(SRV(0, 0, 25, f"t{i}") for i in range(MAX_EXCHANGERS + 5))
        assert usable_srv_targets(records) == records[:MAX_EXCHANGERS]


class TestOrderSrv:
    """RFC 2782: priority ascending, weighted random within a priority."""

    def test_priority_ascending(self) -> None:
        """Lower priority always comes first, whatever the weights and the seed."""
        records = [
            SRV(20, 100, 1, "c"),
            SRV(10, 0, 1, "b"),
            SRV(0, 1, 1, "a"),
            SRV(10, 50, 1, "b2"),
            SRV(30, 0, 1, "d"),
        ]
        for seed in range(50):
            ordered = order_srv_rfc2782(records, random.Random(seed))
            priorities = [r.priority for r in ordered]
            assert priorities == sorted(priorities)
            assert sorted(ordered, key=repr) == sorted(records, key=repr)

    def test_weighted_choice(self) -> None:
        """Weights 60 and 20: the heavier record comes first about three times in four."""
        heavy, light = SRV(0, 60, 1, "heavy"), SRV(0, 20, 1, "light")
        rng = random.Random(2782)
        first = Counter(order_srv_rfc2782([light, heavy], rng)[0].target for _ in range(2000))
        assert 0.70 < first["heavy"] / 2000 < 0.80

    def test_weight_proportions_three_way(self) -> None:
        """Weights 1, 2 and 7 give first places roughly in proportion."""
        records = [SRV(0, 1, 1, "one"), SRV(0, 2, 1, "two"), SRV(0, 7, 1, "seven")]
        rng = random.Random(5)
        first = Counter(order_srv_rfc2782(records, rng)[0].target for _ in range(3000))
        assert 0.62 < first["seven"] / 3000 < 0.78
        assert first["seven"] > first["two"] > first["one"]

    def test_zero_weights(self) -> None:
        """All weights zero: every record is kept, none is lost or repeated."""
        records = [SRV(0, 0, 1, "a"), SRV(0, 0, 1, "b"), SRV(0, 0, 1, "c")]
        for seed in range(20):
            ordered = order_srv_rfc2782(records, random.Random(seed))
            assert sorted(r.target for r in ordered) == ["a", "b", "c"]

    def test_zero_weight_rarely_first(self) -> None:
        """A zero-weight record beside weight 10 keeps a small chance (about 1/11) to lead."""
        records = [SRV(0, 10, 1, "heavy"), SRV(0, 0, 1, "zero")]
        rng = random.Random(11)
        first = Counter(order_srv_rfc2782(records, rng)[0].target for _ in range(2000))
        assert 0.04 < first["zero"] / 2000 < 0.15

    def test_deterministic_with_seed(self) -> None:
        """The same seed gives the same order."""
        records = [SRV(0, w, 1, f"t{w}") for w in (5, 10, 20, 40, 80)]
        one = order_srv_rfc2782(records, random.Random(99))
        two = order_srv_rfc2782(records, random.Random(99))
        assert one == two

    def test_varies_with_seed(self) -> None:
        """Different seeds give different orders within a priority."""
        records = [SRV(0, 10, 1, f"t{i}") for i in range(5)]
        orders = {order_srv_rfc2782(records, random.Random(seed)) for seed in range(30)}
        assert len(orders) > 1

    def test_empty(self) -> None:
        """No records, no order."""
        assert order_srv_rfc2782([], random.Random(0)) == ()

    def test_accepts_any_iterable(self) -> None:
        """A generator of records is fine."""
        ordered = order_srv_rfc2782((SRV(p, 0, 1, str(p)) for p in (3, 1, 2)), random.Random(0))
        assert [r.priority for r in ordered] == [1, 2, 3]


class TestOrderMx:
    """RFC 5321 §5.1: preference ascending, equal preferences in random order."""

    def test_ascending(self) -> None:
        """Records come out by preference, lowest first."""
        records = [MX(30, "c"), MX(10, "a"), MX(20, "b"), MX(0, "z")]
        ordered = order_mx_rfc5321(records, random.Random(1))
        assert [r.preference for r in ordered] == [0, 10, 20, 30]

    def test_ties_in_both_orders(self) -> None:
        """Equal preferences come out in both orders across seeds."""
        records = [MX(10, "a"), MX(10, "b")]
        seen = {
            tuple(r.exchange for r in order_mx_rfc5321(records, random.Random(seed)))
            for seed in range(40)
        }
        assert seen == {("a", "b"), ("b", "a")}

    def test_never_worse_before_better(self) -> None:
        """Whatever the seed, no record precedes one with a lower preference."""
        records = [MX(p, f"h{i}") for i, p in enumerate([20, 10, 20, 5, 10, 65535, 0, 5])]
        for seed in range(100):
            ordered = order_mx_rfc5321(records, random.Random(seed))
            preferences = [r.preference for r in ordered]
            assert preferences == sorted(preferences)
            assert sorted(ordered, key=repr) == sorted(records, key=repr)

    def test_deterministic_with_seed(self) -> None:
        """The same seed gives the same order."""
        records = [MX(10, c) for c in "abcdef"]
        assert order_mx_rfc5321(records, random.Random(7)) == order_mx_rfc5321(
            records, random.Random(7)
        )

    def test_empty(self) -> None:
        """No records, no order."""
        assert order_mx_rfc5321([], random.Random(0)) == ()


class TestMxps:
    """MXPS slices: preference 12800..13055 is slice p & 15, any other is slice 0."""

    @pytest.mark.parametrize(
        ("preference", "expected"),
        [
            (0, 0),
            (1, 0),
            (10, 0),
            (17, 0),
            (10000, 0),
            (12799, 0),
            (12800, 0),
            (12801, 1),
            (12802, 2),
            (12815, 15),
            (12816, 0),
            (12817, 1),
            (13041, 1),
            (13054, 14),
            (13055, 15),
            (13056, 0),
            (13057, 0),
            (65535, 0),
        ],
    )
    def test_mxps_slice(self, preference: int, expected: int) -> None:
        """The slice of an MX preference."""
        assert mxps_slice(preference) == expected

    @pytest.mark.parametrize(
        ("preference", "services"),
        [
            (10, ["smtp"]),
            (12800, ["smtp"]),
            (12801, ["qmtp", "smtp"]),
            (13041, ["qmtp", "smtp"]),
            (12802, ["smtp"]),
            (12815, ["smtp"]),
            (1, ["smtp"]),
        ],
    )
    def test_protocols_for_slice(self, preference: int, services: list[str]) -> None:
        """Slice 1 gets QMTP then SMTP; slice 0 and unserved slices get SMTP; never QMTPS."""
        assert [p.service for p in protocols_for_slice(preference, DEFAULT)] == services

    def test_two_slice_zero_protocols(self) -> None:
        """Every slice-0 protocol is used, in file order."""
        submission = protocol("submission", 587, 0)
        protocols = (SMTP, QMTP, submission)
        assert protocols_for_slice(10, protocols) == [SMTP, submission]
        assert protocols_for_slice(12801, protocols) == [QMTP, SMTP, submission]

    def test_other_slice_served(self) -> None:
        """A slice served by a configured protocol uses it, then the slice-0 ones."""
        lmtp = protocol("lmtp", 24, 2)
        protocols = (*DEFAULT, lmtp)
        assert protocols_for_slice(12802, protocols) == [lmtp, SMTP]
        assert protocols_for_slice(12818, protocols) == [lmtp, SMTP]
        assert protocols_for_slice(12801, protocols) == [QMTP, SMTP]

    def test_no_slice_zero_protocol(self) -> None:
        """Without a slice-0 protocol a slice-0 exchanger gets nothing."""
        assert protocols_for_slice(10, (QMTPS, QMTP)) == []
        assert protocols_for_slice(12801, (QMTPS, QMTP)) == [QMTP]

    def test_slice_one_exchanger_in_plan(self) -> None:
        """A slice-1 exchanger gets QMTP on 209 first, then SMTP on 25, same addresses."""
        known = knowledge(
            mx=ok(MX(12801, "mxps.example")),
            hosts={"mxps.example": ["192.0.2.1", "2001:db8::1"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("qmtp", "mxps.example", "2001:db8::1", 209),
            ("qmtp", "mxps.example", "192.0.2.1", 209),
            ("smtp", "mxps.example", "2001:db8::1", 25),
            ("smtp", "mxps.example", "192.0.2.1", 25),
        ]

    @pytest.mark.parametrize("preference", [0, 10, 12800, 12816, 12802, 13055, 13056])
    def test_slice_zero_exchanger_in_plan(self, preference: int) -> None:
        """Slice-0 (or unserved-slice) exchangers get only the slice-0 protocols."""
        known = knowledge(mx=ok(MX(preference, "mx.example")), hosts={"mx.example": ["192.0.2.1"]})
        assert rows(build_plan(dns(), known, LOCAL)) == [("smtp", "mx.example", "192.0.2.1", 25)]

    def test_slice_minus_one_never_from_mx(self) -> None:
        """QMTPS (slice -1) is never tried on an MX exchanger, whatever its preference."""
        exchangers = [MX(p, f"mx{p}") for p in (0, 10, 12800, 12801, 12815, 13055, 65535)]
        known = knowledge(
            mx=ok(*exchangers),
            hosts={
                f"mx{r.preference}": [f"192.0.2.{i}"] for i, r in enumerate(exchangers, start=1)
            },
        )
        services = {a.protocol.service for a in build_plan(dns(), known, LOCAL).attempts}
        assert services == {"qmtp", "smtp"}

    def test_mxps_sorted_after_normal_mx(self) -> None:
        """Normal preferences sort before MXPS ones, so their exchangers come first."""
        ordered = order_mx_rfc5321([MX(12801, "mxps"), MX(10000, "normal")], random.Random(0))
        known = knowledge(mx=ok(*ordered), hosts={"mxps": ["192.0.2.1"], "normal": ["192.0.2.2"]})
        assert [a.exchanger for a in build_plan(dns(), known, LOCAL).attempts] == [
            "normal",
            "mxps",
            "mxps",
        ]


class TestImplicitMx:
    """No MX records and no SRV target: the host itself, with every protocol."""

    @pytest.mark.parametrize(
        "mx",
        [status(Status.NXDOMAIN), status(Status.NODATA), ok()],
        ids=["nxdomain", "nodata", "empty"],
    )
    def test_every_protocol(self, mx: Answer[object]) -> None:
        """NXDOMAIN, NODATA or an empty MX answer: QMTPS, QMTP, SMTP to the host itself."""
        known = knowledge(mx=mx, hosts={"example.com": ["192.0.2.5"]})
        plan = build_plan(dns(), known, LOCAL)
        assert rows(plan) == [
            ("qmtps", "example.com", "192.0.2.5", 6209),
            ("qmtp", "example.com", "192.0.2.5", 209),
            ("smtp", "example.com", "192.0.2.5", 25),
        ]
        assert {(a.source, a.preference, a.named) for a in plan.attempts} == {("implicit", 0, True)}

    def test_host_name_normalised(self) -> None:
        """The host is looked up lower-cased and without a trailing dot."""
        known = knowledge(mx=status(Status.NXDOMAIN), hosts={"example.com": ["192.0.2.5"]})
        plan = build_plan(dns("Example.COM.", (SMTP,)), known, LOCAL)
        assert rows(plan) == [("smtp", "example.com", "192.0.2.5", 25)]

    def test_not_when_srv_target_exists(self) -> None:
        """An SRV target, even one without addresses yet, rules out the implicit MX."""
        known = knowledge(
            mx=status(Status.NXDOMAIN),
            srv={"qmtp": ok(SRV(0, 0, 209, "q.example"))},
            hosts={"example.com": ["192.0.2.5"], "q.example": (NXDOMAIN, NODATA)},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == []

    def test_only_srv_attempts_when_srv_target_exists(self) -> None:
        """With an SRV target and no MX, only the SRV attempts are planned."""
        known = knowledge(
            mx=status(Status.NODATA),
            srv={"smtp": ok(SRV(0, 0, 2525, "s.example"))},
            hosts={"example.com": ["192.0.2.5"], "s.example": ["192.0.2.6"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [("smtp", "s.example", "192.0.2.6", 2525)]

    @pytest.mark.parametrize(
        "records",
        [(SRV(0, 0, 0, "zero.example"),), (SRV(0, 0, 25, ""), SRV(0, 0, 0, "zero.example"))],
    )
    def test_unusable_srv_records_are_no_target(self, records: tuple[SRV, ...]) -> None:
        """SRV records with port 0 or "." among others are no target: implicit MX holds."""
        known = knowledge(
            mx=status(Status.NXDOMAIN),
            srv={"smtp": ok(*records)},
            hosts={"example.com": ["192.0.2.5"]},
        )
        assert [a.source for a in build_plan(dns(), known, LOCAL).attempts] == ["implicit"] * 3

    def test_null_mx(self) -> None:
        """A null MX gives no MX attempt and no implicit MX."""
        known = knowledge(mx=ok(MX(0, "")), hosts={"example.com": ["192.0.2.5"]})
        plan = build_plan(dns(), known, LOCAL)
        assert plan.entries == ()
        assert not plan.self_cut

    def test_null_mx_with_srv(self) -> None:
        """A null MX does not stop SRV targets."""
        known = knowledge(
            mx=ok(MX(0, "")),
            srv={"smtp": ok(SRV(0, 0, 2525, "s.example"))},
            hosts={"example.com": ["192.0.2.5"], "s.example": ["192.0.2.6"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [("smtp", "s.example", "192.0.2.6", 2525)]

    def test_null_target_among_others_skipped(self) -> None:
        """An MX "." among real exchangers is skipped, the others are used."""
        known = knowledge(
            mx=ok(MX(0, ""), MX(10, "mx.example")),
            hosts={"example.com": ["192.0.2.5"], "mx.example": ["192.0.2.10"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [("smtp", "mx.example", "192.0.2.10", 25)]

    def test_mx_tempfail(self) -> None:
        """A temporary MX failure gives neither MX nor implicit attempts (SRV stays)."""
        known = knowledge(
            mx=status(Status.TEMPFAIL),
            srv={"smtp": ok(SRV(0, 0, 2525, "s.example"))},
            hosts={"example.com": ["192.0.2.5"], "s.example": ["192.0.2.6"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [("smtp", "s.example", "192.0.2.6", 2525)]

    def test_mx_tempfail_alone(self) -> None:
        """A temporary MX failure without SRV gives an empty plan, not the host's A."""
        known = knowledge(mx=status(Status.TEMPFAIL), hosts={"example.com": ["192.0.2.5"]})
        assert build_plan(dns(), known, LOCAL).entries == ()

    def test_host_without_addresses(self) -> None:
        """No MX and no address for the host: nothing to plan."""
        known = knowledge(mx=status(Status.NXDOMAIN), hosts={"example.com": (NXDOMAIN, NXDOMAIN)})
        assert build_plan(dns(), known, LOCAL).entries == ()


class TestTargetOrder:
    """Within a target protocol-major; addresses interleaved IPv6 first."""

    def test_protocol_major(self) -> None:
        """All addresses for the first protocol, then all for the next."""
        known = knowledge(
            mx=status(Status.NXDOMAIN), hosts={"example.com": ["192.0.2.5", "192.0.2.6"]}
        )
        assert [
            (a.protocol.service, a.address) for a in build_plan(dns(), known, LOCAL).attempts
        ] == [
            ("qmtps", "192.0.2.5"),
            ("qmtps", "192.0.2.6"),
            ("qmtp", "192.0.2.5"),
            ("qmtp", "192.0.2.6"),
            ("smtp", "192.0.2.5"),
            ("smtp", "192.0.2.6"),
        ]

    def test_ipv6_first_interleaved(self) -> None:
        """AAAA and A answers are interleaved IPv6 first, answer order kept per family."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            hosts={
                "mx.example": (
                    Answer(Status.OK, ("2001:db8::b", "2001:db8::a")),
                    Answer(Status.OK, ("192.0.2.3", "192.0.2.1", "192.0.2.2")),
                )
            },
        )
        assert [a.address for a in build_plan(dns(), known, LOCAL).attempts] == [
            "2001:db8::b",
            "192.0.2.3",
            "2001:db8::a",
            "192.0.2.1",
            "192.0.2.2",
        ]

    def test_aaaa_failure_with_good_a(self) -> None:
        """A failed AAAA beside a good A still gives the A addresses."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            hosts={"mx.example": (TEMPFAIL, Answer(Status.OK, ("192.0.2.1",)))},
        )
        assert [a.address for a in build_plan(dns(), known, LOCAL).attempts] == ["192.0.2.1"]

    def test_exchangers_in_answer_order(self) -> None:
        """Exchangers follow the (already ordered) MX answer, all of one before the next."""
        known = knowledge(
            mx=ok(MX(10, "b.example"), MX(10, "a.example"), MX(20, "c.example")),
            hosts={
                "a.example": ["192.0.2.1", "2001:db8::1"],
                "b.example": ["192.0.2.2"],
                "c.example": ["192.0.2.3"],
            },
        )
        plan = build_plan(dns(), known, LOCAL)
        assert [(a.exchanger, a.address, a.preference) for a in plan.attempts] == [
            ("b.example", "192.0.2.2", 10),
            ("a.example", "2001:db8::1", 10),
            ("a.example", "192.0.2.1", 10),
            ("c.example", "192.0.2.3", 20),
        ]
        assert {a.source for a in plan.attempts} == {"mx"}

    def test_exchanger_without_addresses_skipped(self) -> None:
        """An exchanger whose lookups failed contributes nothing; the next is used."""
        known = knowledge(
            mx=ok(MX(10, "dead.example"), MX(20, "live.example")),
            hosts={"dead.example": (NXDOMAIN, TEMPFAIL), "live.example": ["192.0.2.3"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [("smtp", "live.example", "192.0.2.3", 25)]


class TestSelfCheck:
    """An address of this machine is never tried; our MX preference cuts worse ones."""

    def test_local_address_never_planned(self) -> None:
        """A local address of an SRV target is left out, its other address kept."""
        known = knowledge(
            mx=status(Status.NODATA),
            srv={"smtp": ok(SRV(0, 0, 25, "s.example"))},
            hosts={"s.example": ["198.51.100.2", "192.0.2.9", "::ffff:127.0.0.1"]},
        )
        plan = build_plan(dns(), known, LOCAL)
        assert [a.address for a in plan.attempts] == ["192.0.2.9"]
        assert plan.self_cut

    def test_srv_targets_not_cut_by_mx_preference(self) -> None:
        """The MX cut drops MX targets only; SRV targets elsewhere are kept."""
        known = knowledge(
            mx=ok(MX(10, "us.example")),
            srv={"smtp": ok(SRV(50, 0, 2525, "s.example"))},
            hosts={"us.example": ["198.51.100.2"], "s.example": ["192.0.2.9"]},
        )
        plan = build_plan(dns(), known, LOCAL)
        assert rows(plan) == [("smtp", "s.example", "192.0.2.9", 2525)]
        assert plan.self_cut

    def test_cut_at_our_preference(self) -> None:
        """An exchanger of ours at 20 drops every MX at 20 or worse, keeps those at 10."""
        known = knowledge(
            mx=ok(
                MX(10, "a.example"),
                MX(20, "c.example"),
                MX(20, "us.example"),
                MX(30, "d.example"),
            ),
            hosts={
                "a.example": ["192.0.2.1"],
                "c.example": ["192.0.2.3"],
                "us.example": ["192.0.2.9", "198.51.100.2"],
                "d.example": ["192.0.2.4"],
            },
        )
        plan = build_plan(dns(), known, LOCAL)
        assert rows(plan) == [("smtp", "a.example", "192.0.2.1", 25)]
        assert plan.self_cut

    def test_we_are_the_best(self) -> None:
        """Ours at the best preference: nothing is left."""
        known = knowledge(
            mx=ok(MX(10, "us.example"), MX(20, "b.example")),
            hosts={"us.example": ["2001:db8:ffff::2"], "b.example": ["192.0.2.3"]},
        )
        plan = build_plan(dns(), known, LOCAL)
        assert plan.entries == ()
        assert plan.self_cut

    def test_ipv4_mapped_local(self) -> None:
        """An IPv4-mapped form of a local address counts as local for the cut."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "us.example")),
            hosts={"a.example": ["192.0.2.1"], "us.example": ["::ffff:198.51.100.2"]},
        )
        assert [a.exchanger for a in build_plan(dns(), known, LOCAL).attempts] == ["a.example"]

    def test_mxps_cut(self) -> None:
        """The cut compares numeric preferences, MXPS ones included."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(12801, "us.example"), MX(12817, "b.example")),
            hosts={
                "a.example": ["192.0.2.1"],
                "us.example": ["127.0.0.1"],
                "b.example": ["192.0.2.3"],
            },
        )
        assert [a.exchanger for a in build_plan(dns(), known, LOCAL).attempts] == ["a.example"]

    def test_no_local_no_cut(self) -> None:
        """Without local addresses nothing is cut and the flag stays down."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "b.example")),
            hosts={"a.example": ["192.0.2.1"], "b.example": ["192.0.2.3"]},
        )
        plan = build_plan(dns(), known, LOCAL)
        assert len(plan.attempts) == 2
        assert not plan.self_cut

    @pytest.mark.parametrize(
        "addresses", [["127.0.0.1"], ["192.0.2.9", "198.51.100.2"], ["::1", "2001:db8::9"]]
    )
    def test_implicit_mx_to_us(self, addresses: list[str]) -> None:
        """An implicit MX to one of our addresses leaves an empty plan with self_cut."""
        known = knowledge(mx=status(Status.NXDOMAIN), hosts={"example.com": addresses})
        plan = build_plan(dns(), known, LOCAL)
        assert plan.entries == ()
        assert plan.self_cut

    def test_unspecified_address(self) -> None:
        """0.0.0.0 and :: are "us" (qmail's ipme has 0.0.0.0)."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "b.example")),
            hosts={"a.example": ["192.0.2.1"], "b.example": ["0.0.0.0"]},
        )
        plan = build_plan(dns(), known, LOCAL)
        assert [a.exchanger for a in plan.attempts] == ["a.example"]
        assert plan.self_cut


class TestDedupAndCap:
    """An (address, port) is tried once; at most 64 attempts."""

    def test_same_address_two_exchangers(self) -> None:
        """An address reached through two exchangers is tried once, with the first."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "b.example")),
            hosts={"a.example": ["192.0.2.1"], "b.example": ["192.0.2.1", "192.0.2.2"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("smtp", "a.example", "192.0.2.1", 25),
            ("smtp", "b.example", "192.0.2.2", 25),
        ]

    def test_same_address_other_port(self) -> None:
        """The same address on another port is another attempt (MXPS QMTP then SMTP)."""
        known = knowledge(mx=ok(MX(12801, "m")), hosts={"m": ["192.0.2.1"]})
        assert [a.key for a in build_plan(dns(), known, LOCAL).attempts] == [
            ("192.0.2.1", 209),
            ("192.0.2.1", 25),
        ]

    def test_srv_and_mx_same_endpoint(self) -> None:
        """An MX exchanger equal to an SRV target on the same port is not tried again."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={"smtp": ok(SRV(0, 0, 25, "mx.example"))},
            hosts={"mx.example": ["192.0.2.1"]},
        )
        plan = build_plan(dns(), known, LOCAL)
        assert [(a.source, a.key) for a in plan.attempts] == [("srv", ("192.0.2.1", 25))]

    def test_cap(self) -> None:
        """100 A records give exactly the first 64 attempts."""
        addresses = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(100)]
        known = knowledge(mx=ok(MX(10, "big.example")), hosts={"big.example": addresses})
        plan = build_plan(dns(), known, LOCAL)
        assert len(plan.attempts) == MAX_ATTEMPTS == 64
        assert [a.address for a in plan.attempts] == addresses[:64]

    def test_cap_across_protocols_and_targets(self) -> None:
        """The cap counts every attempt of the plan, across protocols and exchangers."""
        addresses = [f"10.0.0.{i}" for i in range(1, 31)]
        known = knowledge(mx=status(Status.NXDOMAIN), hosts={"example.com": addresses})
        plan = build_plan(dns(), known, LOCAL)
        assert len(plan.attempts) == 64
        assert [a.protocol.service for a in plan.attempts] == ["qmtps"] * 30 + ["qmtp"] * 30 + [
            "smtp"
        ] * 4

    def test_duplicates_do_not_count(self) -> None:
        """Dropped duplicates do not use up the cap."""
        shared = [f"10.0.0.{i}" for i in range(1, 41)]
        other = [f"10.0.1.{i}" for i in range(1, 41)]
        known = knowledge(
            mx=ok(MX(10, "a"), MX(20, "b"), MX(30, "c")),
            hosts={"a": shared, "b": shared, "c": other},
        )
        plan = build_plan(dns(), known, LOCAL)
        assert [a.address for a in plan.attempts] == shared + other[:24]


class TestWaiting:
    """Waiting markers stand exactly where an outstanding lookup's attempts will go."""

    def test_nothing_answered(self) -> None:
        """At the start: one marker per pending SRV, in protocol order, then MX."""
        known = knowledge(
            mx=status(Status.PENDING), srv={p.service: status(Status.PENDING) for p in DEFAULT}
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            "wait SRV _qmtps._tcp",
            "wait SRV _qmtp._tcp",
            "wait SRV _smtp._tcp",
            "wait MX",
        ]

    def test_pending_srv_in_place(self) -> None:
        """A pending SRV answer holds the place of its protocol, before later protocols."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={"qmtps": status(Status.PENDING), "qmtp": ok(SRV(0, 0, 209, "q.example"))},
            hosts={"q.example": ["192.0.2.9"], "mx.example": ["192.0.2.10"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            "wait SRV _qmtps._tcp",
            ("qmtp", "q.example", "192.0.2.9", 209),
            ("smtp", "mx.example", "192.0.2.10", 25),
        ]

    def test_pending_mx_after_srv(self) -> None:
        """A pending MX answer comes after every SRV attempt."""
        known = knowledge(
            mx=status(Status.PENDING),
            srv={"smtp": ok(SRV(0, 0, 2525, "s.example"))},
            hosts={"s.example": ["192.0.2.6"], "example.com": ["192.0.2.5"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("smtp", "s.example", "192.0.2.6", 2525),
            "wait MX",
        ]

    def test_pending_family_after_known_addresses(self) -> None:
        """An exchanger with A known and AAAA pending: a marker after each protocol block."""
        known = knowledge(
            mx=ok(MX(12801, "m.example")),
            hosts={"m.example": (PENDING, Answer(Status.OK, ("192.0.2.1", "192.0.2.2")))},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("qmtp", "m.example", "192.0.2.1", 209),
            ("qmtp", "m.example", "192.0.2.2", 209),
            "wait addresses of m.example",
            ("smtp", "m.example", "192.0.2.1", 25),
            ("smtp", "m.example", "192.0.2.2", 25),
            "wait addresses of m.example",
        ]

    def test_pending_exchanger_between_others(self) -> None:
        """A better exchanger still resolving holds its place before worse ones."""
        known = knowledge(
            mx=ok(MX(10, "slow.example"), MX(20, "fast.example")),
            hosts={"slow.example": (PENDING, PENDING), "fast.example": ["192.0.2.3"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            "wait addresses of slow.example",
            ("smtp", "fast.example", "192.0.2.3", 25),
        ]

    def test_pending_a_with_aaaa_known(self) -> None:
        """A held-back A answer (Resolution Delay) is a marker after the IPv6 addresses."""
        known = knowledge(
            mx=ok(MX(10, "m.example")),
            hosts={"m.example": (Answer(Status.OK, ("2001:db8::1",)), PENDING)},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            ("smtp", "m.example", "2001:db8::1", 25),
            "wait addresses of m.example",
        ]

    def test_pending_srv_target(self) -> None:
        """An SRV target still resolving is a marker in the SRV section."""
        known = knowledge(
            mx=ok(MX(10, "mx.example")),
            srv={"qmtp": ok(SRV(0, 0, 209, "q.example"))},
            hosts={"q.example": (PENDING, PENDING), "mx.example": ["192.0.2.10"]},
        )
        assert rows(build_plan(dns(), known, LOCAL)) == [
            "wait addresses of q.example",
            ("smtp", "mx.example", "192.0.2.10", 25),
        ]

    def test_pending_implicit_host(self) -> None:
        """The implicit MX host still resolving: one marker per protocol block."""
        known = knowledge(
            mx=status(Status.NXDOMAIN),
            hosts={"example.com": (PENDING, Answer(Status.OK, ("192.0.2.5",)))},
        )
        assert rows(build_plan(dns("example.com", (QMTP, SMTP)), known, LOCAL)) == [
            ("qmtp", "example.com", "192.0.2.5", 209),
            "wait addresses of example.com",
            ("smtp", "example.com", "192.0.2.5", 25),
            "wait addresses of example.com",
        ]

    @pytest.mark.parametrize("failure", [Status.TEMPFAIL, Status.NXDOMAIN, Status.NODATA])
    def test_failures_are_not_waited_for(self, failure: Status) -> None:
        """Answered lookups, failed ones included, leave no marker."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "b.example")),
            srv={"smtp": status(failure)},
            hosts={
                "a.example": (status(failure), status(failure)),  # type: ignore[dict-item]
                "b.example": (status(failure), Answer(Status.OK, ("192.0.2.3",))),  # type: ignore[dict-item]
                "example.com": (status(failure), status(failure)),  # type: ignore[dict-item]
            },
        )
        assert waits(build_plan(dns(), known, LOCAL)) == []

    def test_none_once_everything_answered(self) -> None:
        """A fully answered plan of every kind of target has no marker at all."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(12801, "b.example")),
            srv={
                "qmtps": ok(SRV(0, 10, 6209, "s.example")),
                "qmtp": status(Status.TEMPFAIL),
                "smtp": ok(SRV(0, 0, 25, "")),
            },
            hosts={
                "a.example": ["192.0.2.1", "2001:db8::1"],
                "b.example": ["192.0.2.2"],
                "s.example": ["2001:db8::5"],
                "example.com": ["192.0.2.5"],
            },
        )
        plan = build_plan(dns(), known, LOCAL)
        assert waits(plan) == []
        assert len(plan.attempts) == 2

    def test_literal_and_routes_never_wait_without_lookups(self) -> None:
        """A literal has no lookups, hence no marker."""
        plan = build_plan(make_destination("[192.0.2.9]", DEFAULT, {}), Knowledge(), LOCAL)
        assert waits(plan) == []


class TestPlanValues:
    """The plan's value types."""

    def test_attempt_key(self) -> None:
        """An attempt's identity is its (address, port)."""
        attempt = Attempt(SMTP, "mx", "192.0.2.1", 25, "mx", 10)
        assert attempt.key == ("192.0.2.1", 25)
        assert attempt.named

    def test_plan_attempts(self) -> None:
        """Plan.attempts drops the Waiting markers, order kept."""
        first = Attempt(SMTP, "a", "192.0.2.1", 25, "mx", 10)
        second = Attempt(SMTP, "b", "192.0.2.2", 25, "mx", 20)
        plan = Plan((first, Waiting("MX"), second), Facts("dns", "example.com"))
        assert plan.attempts == (first, second)
        assert not plan.self_cut

    @pytest.mark.parametrize(
        ("records", "null"),
        [
            ((MX(0, ""),), True),
            ((MX(10, ""),), True),
            ((MX(0, ""), MX(10, "a")), False),
            ((MX(0, "a"),), False),
            ((), False),
        ],
    )
    def test_is_null_mx(self, records: tuple[MX, ...], null: bool) -> None:
        """A null MX is a single record with target "."."""
        assert is_null_mx(records) is null

    def test_usable_exchangers(self) -> None:
        """Null targets are skipped and at most MAX_EXCHANGERS are kept."""
        records = (MX(0, ""), *(MX(10, f"m{i}") for i in range(MAX_EXCHANGERS + 3)))
        assert usable_exchangers(records) == records[1 : MAX_EXCHANGERS + 1]


class TestSelfCheckVerdict:
    """May a connected attempt win yet: only once no exchanger as good as it can be us."""

    @staticmethod
    def mx_attempt(exchanger: str, preference: int, address: str = "192.0.2.20") -> Attempt:
        return Attempt(SMTP, exchanger, address, 25, "mx", preference)

    @pytest.mark.parametrize("source", ["srv", "route", "literal"])
    def test_other_sources_always_may(self, source: str) -> None:
        """SRV, routed and literal attempts are never held back by the MX self-check."""
        known = knowledge(mx=ok(MX(0, "us.example")), hosts={"us.example": ["127.0.0.1"]})
        attempt = Attempt(SMTP, "x", "192.0.2.20", 25, source, 0)
        assert self_check_verdict(attempt, known, LOCAL) is True

    def test_better_exchanger_pending(self) -> None:
        """A better exchanger still resolving: not yet (None)."""
        known = knowledge(
            mx=ok(MX(10, "slow.example"), MX(20, "b.example")),
            hosts={"slow.example": (PENDING, PENDING), "b.example": ["192.0.2.20"]},
        )
        assert self_check_verdict(self.mx_attempt("b.example", 20), known, LOCAL) is None

    def test_better_exchanger_is_us(self) -> None:
        """A better exchanger that is us: never (False)."""
        known = knowledge(
            mx=ok(MX(10, "us.example"), MX(20, "b.example")),
            hosts={"us.example": (PENDING, Answer(Status.OK, ("127.0.0.1",)))},
        )
        assert self_check_verdict(self.mx_attempt("b.example", 20), known, LOCAL) is False

    def test_equal_exchanger_is_us(self) -> None:
        """An exchanger of the same preference that is us: never (qmail's cut is >=)."""
        known = knowledge(
            mx=ok(MX(20, "us.example"), MX(20, "b.example")),
            hosts={"us.example": ["198.51.100.2"], "b.example": ["192.0.2.20"]},
        )
        assert self_check_verdict(self.mx_attempt("b.example", 20), known, LOCAL) is False

    def test_worse_exchanger_irrelevant(self) -> None:
        """Worse exchangers, pending or us, do not hold a better one back."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "us.example"), MX(30, "slow.example")),
            hosts={
                "a.example": ["192.0.2.20"],
                "us.example": ["127.0.0.1"],
                "slow.example": (PENDING, PENDING),
            },
        )
        assert self_check_verdict(self.mx_attempt("a.example", 10), known, LOCAL) is True

    def test_everything_known(self) -> None:
        """Every exchanger as good is known and none is us: yes (True)."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "b.example")),
            hosts={"a.example": (NXDOMAIN, TEMPFAIL), "b.example": ["192.0.2.20"]},
        )
        assert self_check_verdict(self.mx_attempt("b.example", 20), known, LOCAL) is True

    def test_implicit_host_pending(self) -> None:
        """An implicit-MX attempt waits while the host has no known IPv4 address."""
        known = knowledge(
            mx=status(Status.NXDOMAIN),
            hosts={"example.com": (Answer(Status.OK, ("2001:db8::5",)), PENDING)},
        )
        attempt = Attempt(SMTP, "example.com", "2001:db8::5", 25, "implicit", 0)
        assert self_check_verdict(attempt, known, LOCAL) is None

    def test_known_ipv4_elsewhere_settles_a_pending_aaaa(self) -> None:
        """A known non-local A answer settles it, AAAA pending or not (qmail's IPv4 view)."""
        known = knowledge(
            mx=status(Status.NXDOMAIN),
            hosts={"example.com": (PENDING, Answer(Status.OK, ("192.0.2.5",)))},
        )
        attempt = Attempt(SMTP, "example.com", "192.0.2.5", 25, "implicit", 0)
        assert self_check_verdict(attempt, known, LOCAL) is True

    def test_a_nodata_with_aaaa_pending_waits(self) -> None:
        """No IPv4 address (NODATA) and the AAAA still out: not yet."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "b.example")),
            hosts={"a.example": (PENDING, NODATA), "b.example": ["192.0.2.20"]},
        )
        assert self_check_verdict(self.mx_attempt("b.example", 20), known, LOCAL) is None

    def test_implicit_host_is_us(self) -> None:
        """An implicit-MX host with one of our addresses: never."""
        known = knowledge(
            mx=status(Status.NXDOMAIN),
            hosts={"example.com": (Answer(Status.OK, ("::1",)), Answer(Status.OK, ("192.0.2.5",)))},
        )
        attempt = Attempt(SMTP, "example.com", "192.0.2.5", 25, "implicit", 0)
        assert self_check_verdict(attempt, known, LOCAL) is False

    def test_implicit_host_known(self) -> None:
        """An implicit-MX host fully known and not us: yes."""
        known = knowledge(mx=status(Status.NODATA), hosts={"example.com": ["192.0.2.5"]})
        attempt = Attempt(SMTP, "example.com", "192.0.2.5", 25, "implicit", 0)
        assert self_check_verdict(attempt, known, LOCAL) is True


class TestKnowledge:
    """The answer data the planner reads (knowledge.py)."""

    @pytest.mark.parametrize(
        ("name", "stored"),
        [
            ("Example.COM.", "example.com"),
            ("example.com", "example.com"),
            (".", ""),
            ("", ""),
            ("MX1.Example.Org", "mx1.example.org"),
        ],
    )
    def test_dns_name(self, name: str, stored: str) -> None:
        """Names are stored lower-cased without the trailing dot; "." is the empty name."""
        assert dns_name(name) == stored

    def test_never_asked_is_pending(self) -> None:
        """A name never asked reads as pending in both families."""
        ipv6, ipv4 = Knowledge().address_answers("x.example")
        assert ipv6.pending
        assert ipv4.pending

    @pytest.mark.parametrize(
        ("kind", "pending"),
        [
            (Status.PENDING, True),
            (Status.OK, False),
            (Status.NXDOMAIN, False),
            (Status.NODATA, False),
            (Status.TEMPFAIL, False),
        ],
    )
    def test_answer_pending(self, kind: Status, pending: bool) -> None:
        """Only a PENDING answer is pending."""
        assert Answer(kind).pending is pending

    def test_hard_statuses(self) -> None:
        """NXDOMAIN and NODATA are the hard failures; TEMPFAIL is not."""
        assert set(HARD) == {Status.NXDOMAIN, Status.NODATA}

    def test_outstanding(self) -> None:
        """Every started lookup without an answer counts once."""
        known = knowledge(
            mx=status(Status.PENDING),
            srv={"smtp": status(Status.PENDING), "qmtp": status(Status.TEMPFAIL)},
            hosts={"a": (PENDING, Answer(Status.OK, ("192.0.2.1",))), "b": (PENDING, PENDING)},
        )
        assert known.outstanding() == 5
        assert Knowledge().outstanding() == 0


class TestFacts:
    """The plan records what it decided, so that the report choice need not work it out."""

    def test_literal(self) -> None:
        """A literal: kind literal, the host as given, nothing else to say."""
        plan = build_plan(make_destination("[192.0.2.9]", DEFAULT, {}), Knowledge(), LOCAL)
        assert plan.facts == Facts("literal", "[192.0.2.9]")

    def test_mx_targets_with_their_address_state(self) -> None:
        """Each exchanger: addresses, temporarily unresolved, or hard-failed; preference kept."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "b.example"), MX(30, "c.example")),
            hosts={
                "a.example": ["192.0.2.1"],
                "b.example": (TEMPFAIL, NODATA),
                "c.example": (NXDOMAIN, NODATA),
            },
        )
        facts = build_plan(dns("Example.COM"), known, LOCAL).facts
        assert (facts.kind, facts.host, facts.mx) == ("dns", "Example.COM", Status.OK)
        assert facts.targets == (
            Target("a.example", "mx", 10, has_addresses=True, temporary=False, permanent=False),
            Target("b.example", "mx", 20, has_addresses=False, temporary=True, permanent=False),
            Target("c.example", "mx", 30, has_addresses=False, temporary=False, permanent=True),
        )
        assert not facts.self_cut and facts.cut_preference is None

    def test_exchangers_cut_by_the_self_check_are_still_facts(self) -> None:
        """We are MX 20: MX 20 and 30 leave the plan but stay in the facts, cut at 20."""
        known = knowledge(
            mx=ok(MX(10, "a.example"), MX(20, "us.example"), MX(30, "c.example")),
            hosts={
                "a.example": ["192.0.2.1"],
                "us.example": ["198.51.100.2"],
                "c.example": ["192.0.2.3"],
            },
        )
        plan = build_plan(dns(), known, LOCAL)
        assert [t.name for t in plan.facts.targets_from("mx")] == [
            "a.example",
            "us.example",
            "c.example",
        ]
        assert (plan.facts.self_cut, plan.facts.cut_preference) == (True, 20)
        assert {a.exchanger for a in plan.attempts} == {"a.example"}

    def test_srv_targets_declined_and_offered(self) -> None:
        """SRV targets come first; a lone "." declines its service; offered keeps the rest."""
        known = knowledge(
            mx=status(Status.NXDOMAIN),
            srv={
                "qmtps": ok(SRV(0, 0, 0, "")),
                "smtp": ok(SRV(5, 0, 2525, "s.example")),
            },
            hosts={"s.example": ["192.0.2.5"]},
        )
        facts = build_plan(dns(), known, LOCAL).facts
        assert facts.declined == frozenset({"qmtps"})
        assert facts.offered == ("qmtp", "smtp")
        assert facts.targets_from("srv") == (
            Target("s.example", "srv", 5, has_addresses=True, temporary=False, permanent=False),
        )
        assert facts.targets_from("implicit") == ()

    def test_implicit_mx(self) -> None:
        """No MX, no SRV target: the host itself is the one target, with its answers."""
        known = knowledge(mx=status(Status.NODATA), hosts={"example.com": (PENDING, NXDOMAIN)})
        facts = build_plan(dns(), known, LOCAL).facts
        assert facts.targets == (
            Target(
                "example.com", "implicit", 0, has_addresses=False, temporary=True, permanent=False
            ),
        )

    def test_null_mx_and_the_cap(self) -> None:
        """A lone MX 0 . is a null MX; 33 named exchangers are beyond the cap of 32."""
        null = build_plan(dns(), knowledge(mx=ok(MX(0, ""))), LOCAL).facts
        assert null.null_mx and not null.beyond_cap
        many = ok(*(MX(10, f"mx{i}.example") for i in range(MAX_EXCHANGERS + 1)))
        capped = build_plan(dns(), knowledge(mx=many), LOCAL).facts
        assert capped.beyond_cap and not capped.null_mx
        assert len(capped.targets_from("mx")) == MAX_EXCHANGERS

    def test_route_targets_name_the_first_relay(self) -> None:
        """Routed: the named relays are the targets; reports name the first relay as written."""
        routes = {
            "qmtp": parse_routes([":[192.0.2.50]"], "qmtproutes"),
            "smtp": parse_routes([":Relay.Example"], "smtproutes"),
        }
        known = knowledge(hosts={"relay.example": (NXDOMAIN, NXDOMAIN)})
        facts = build_plan(make_destination("example.com", DEFAULT, routes), known, LOCAL).facts
        assert (facts.kind, facts.host, facts.mx) == ("route", "[192.0.2.50]", None)
        assert facts.targets == (
            Target(
                "relay.example", "route", 0, has_addresses=False, temporary=False, permanent=True
            ),
        )
