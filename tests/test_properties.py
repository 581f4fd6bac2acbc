"""Property tests (hypothesis) for the pure core: plan invariants, routes lookup, reports."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mxf_remote.addresses import interleave_families_rfc8305, is_ipv6, is_local
from mxf_remote.control import Protocol, Route, lookup_route, parse_routes
from mxf_remote.destination import Destination, make_destination
from mxf_remote.knowledge import MX, SRV, Answer, Knowledge, Status
from mxf_remote.plan import (
    MAX_ATTEMPTS,
    Plan,
    Waiting,
    build_plan,
    order_mx_rfc5321,
    order_srv_rfc2782,
)
from mxf_remote.report import (
    Report,
    bad_nameservers,
    cannot_run,
    control_error,
    internal_error,
    no_such_host,
    null_mx,
)

PLAN_SETTINGS = settings(max_examples=120, deadline=None)
SMALL_SETTINGS = settings(max_examples=100, deadline=None)


def protocol(service: str, port: int, mxps: int) -> Protocol:
    """An installed protocol."""
    return Protocol(service, port, mxps, False, False, service, program_path=f"/bin/{service}")


QMTPS = protocol("qmtps", 6209, -1)
QMTP = protocol("qmtp", 209, 1)
SMTP = protocol("smtp", 25, 0)
LMTP = protocol("lmtp", 24, 2)
SUBMISSION = protocol("submission", 587, 0)
PROTOCOL_SETS = [
    (QMTPS, QMTP, SMTP),
    (SMTP,),
    (QMTP, SMTP),
    (QMTPS, QMTP),
    (QMTPS, QMTP, SMTP, LMTP, SUBMISSION),
]
ALL_SERVICES = [p.service for p in PROTOCOL_SETS[-1]]

HOST = "example.com"
NAMES = ["a.example", "b.example", "c.example", "d.example", HOST]

LOCAL = frozenset({"0.0.0.0", "::", "127.0.0.1", "::1", "198.51.100.2", "2001:db8:ffff::2"})
LOCAL_V4 = ["127.0.0.1", "198.51.100.2", "0.0.0.0"]
LOCAL_V6 = ["::1", "::ffff:127.0.0.1", "2001:db8:ffff::2", "::"]
REMOTE_V4 = [f"192.0.2.{i}" for i in range(1, 9)]
REMOTE_V6 = [f"2001:db8::{i}" for i in range(1, 6)]
MANY_V4 = [f"10.0.{i // 200}.{i % 200 + 1}" for i in range(120)]

PREFERENCES = [0, 5, 10, 10, 20, 100, 12800, 12801, 12802, 12817, 13055, 13056, 65535]
FAILURES = [Status.PENDING, Status.NXDOMAIN, Status.NODATA, Status.TEMPFAIL]


def failed(kind: Status) -> Answer[str]:
    """An answer without records."""
    return Answer(kind)


def address_answer(pool: list[str], *, many: bool) -> st.SearchStrategy[Answer[str]]:
    """A lookup's answer: a failure, pending, or OK with addresses from ``pool``."""
    size = 100 if many else 4
    records = st.lists(st.sampled_from(pool), min_size=1, max_size=size, unique=True)
    return st.one_of(
        st.sampled_from(FAILURES).map(failed),
        records.map(lambda r: Answer(Status.OK, tuple(r))),
    )


@st.composite
def knowledges(draw: st.DrawFn, *, many: bool = False) -> Knowledge:
    """Any state of resolution for HOST: MX, SRV per service, AAAA/A per name."""
    known = Knowledge()
    rng = random.Random(draw(st.integers(0, 2**32)))
    mx_status = draw(st.sampled_from([Status.OK, Status.OK, *FAILURES]))
    if mx_status is Status.OK:
        exchange = st.sampled_from([*NAMES[:4], ""])
        records = draw(st.lists(st.builds(MX, st.sampled_from(PREFERENCES), exchange), max_size=6))
        known.mx = Answer(Status.OK, order_mx_rfc5321(records, rng))
    else:
        known.mx = Answer(mx_status)
    for service in ALL_SERVICES:
        srv_status = draw(st.sampled_from([Status.OK, *FAILURES]))
        if srv_status is Status.OK:
            record = st.builds(
                SRV,
                st.integers(0, 3),
                st.integers(0, 10),
                st.sampled_from([0, 25, 209, 2525]),
                st.sampled_from([*NAMES[:4], ""]),
            )
            srv_records = draw(st.lists(record, max_size=3))
            known.srv[service] = Answer(Status.OK, order_srv_rfc2782(srv_records, rng))
        else:
            known.srv[service] = Answer(srv_status)
    v4_pool = (MANY_V4 if many else REMOTE_V4) + LOCAL_V4
    v6_pool = REMOTE_V6 + LOCAL_V6
    for name in NAMES:  # the resolver asks every name an MX or SRV answer names
        known.ipv6[name] = draw(address_answer(v6_pool, many=False))
        known.ipv4[name] = draw(address_answer(v4_pool, many=many))
    return known


@st.composite
def destinations(draw: st.DrawFn) -> Destination:
    """A DNS destination most of the time, sometimes a literal (local or not)."""
    protocols = draw(st.sampled_from(PROTOCOL_SETS))
    if draw(st.integers(0, 4)) == 0:
        address = draw(st.sampled_from(REMOTE_V4 + REMOTE_V6 + LOCAL_V4 + LOCAL_V6))
        host = f"[{address}]" if ":" in address or draw(st.booleans()) else address
        return make_destination(host, protocols, {})
    return Destination(draw(st.sampled_from([HOST, "Example.COM", "example.com."])), protocols)


def best_local_preference(known: Knowledge) -> int | None:
    """The best MX preference with one of our addresses known (qmail's prefme)."""
    if known.mx is None or known.mx.status is not Status.OK:
        return None
    best = None
    for record in known.mx.records:
        if not record.exchange:
            continue
        ipv6, ipv4 = known.address_answers(record.exchange)
        if any(is_local(a, LOCAL) for a in ipv6.records + ipv4.records) and (
            best is None or record.preference < best
        ):
            best = record.preference
    return best


class TestPlanInvariants:
    """Whatever DNS says, the plan keeps the spec §4 invariants."""

    @PLAN_SETTINGS
    @given(destination=destinations(), known=knowledges())
    def test_never_a_local_address(self, destination: Destination, known: Knowledge) -> None:
        """No attempt ever goes to an address of this machine (routes aside)."""
        plan = build_plan(destination, known, LOCAL)
        assert not any(is_local(a.address, LOCAL) for a in plan.attempts)

    @PLAN_SETTINGS
    @given(destination=destinations(), known=knowledges())
    def test_mx_preference_never_worse_first(
        self, destination: Destination, known: Knowledge
    ) -> None:
        """MX-sourced attempts come in non-decreasing preference order."""
        plan = build_plan(destination, known, LOCAL)
        preferences = [a.preference for a in plan.attempts if a.source == "mx"]
        assert preferences == sorted(preferences)

    @PLAN_SETTINGS
    @given(destination=destinations(), known=knowledges())
    def test_self_cut(self, destination: Destination, known: Knowledge) -> None:
        """No MX attempt has a preference at or above one of our exchangers' preference."""
        plan = build_plan(destination, known, LOCAL)
        cut = best_local_preference(known)
        if cut is not None and destination.literal is None:
            assert all(a.preference < cut for a in plan.attempts if a.source == "mx")

    @PLAN_SETTINGS
    @given(destination=destinations(), known=knowledges(many=True))
    def test_cap_and_no_repeat(self, destination: Destination, known: Knowledge) -> None:
        """At most 64 attempts, and no (address, port) twice."""
        plan = build_plan(destination, known, LOCAL)
        keys = [a.key for a in plan.attempts]
        assert len(keys) <= MAX_ATTEMPTS
        assert len(set(keys)) == len(keys)

    @PLAN_SETTINGS
    @given(destination=destinations(), known=knowledges())
    def test_no_waiting_when_answered(self, destination: Destination, known: Knowledge) -> None:
        """With no lookup outstanding the plan has no Waiting marker."""
        plan = build_plan(destination, known, LOCAL)
        if known.outstanding() == 0:
            assert not any(isinstance(e, Waiting) for e in plan.entries)

    @PLAN_SETTINGS
    @given(destination=destinations(), known=knowledges())
    def test_protocols_only_usable_ones(self, destination: Destination, known: Knowledge) -> None:
        """Attempts use only the destination's protocols, SRV ports aside at default ports."""
        plan = build_plan(destination, known, LOCAL)
        for attempt in plan.attempts:
            assert attempt.protocol in destination.protocols
            if attempt.source in ("mx", "implicit", "literal"):
                assert attempt.port == attempt.protocol.default_port

    @PLAN_SETTINGS
    @given(destination=destinations(), known=knowledges())
    def test_pure(self, destination: Destination, known: Knowledge) -> None:
        """Planning twice from the same knowledge gives the same plan."""
        assert build_plan(destination, known, LOCAL) == build_plan(destination, known, LOCAL)

    @SMALL_SETTINGS
    @given(known=knowledges())
    def test_no_local_means_no_cut(self, known: Knowledge) -> None:
        """With an empty local set nothing is cut."""
        plan: Plan = build_plan(Destination(HOST, PROTOCOL_SETS[0]), known, frozenset())
        assert not plan.self_cut


class TestOrderingProperties:
    """RFC 2782, RFC 5321 and RFC 8305 orderings keep every element and their rules."""

    @SMALL_SETTINGS
    @given(
        records=st.lists(
            st.builds(SRV, st.integers(0, 5), st.integers(0, 100), st.just(25), st.text("ab")),
            max_size=8,
        ),
        seed=st.integers(0, 2**32),
    )
    def test_srv(self, records: list[SRV], seed: int) -> None:
        """A permutation of the records, priorities ascending."""
        ordered = order_srv_rfc2782(records, random.Random(seed))
        assert sorted(ordered, key=repr) == sorted(records, key=repr)
        assert [r.priority for r in ordered] == sorted(r.priority for r in records)

    @SMALL_SETTINGS
    @given(
        records=st.lists(st.builds(MX, st.integers(0, 65535), st.text("ab")), max_size=8),
        seed=st.integers(0, 2**32),
    )
    def test_mx(self, records: list[MX], seed: int) -> None:
        """A permutation of the records, preferences ascending."""
        ordered = order_mx_rfc5321(records, random.Random(seed))
        assert sorted(ordered, key=repr) == sorted(records, key=repr)
        assert [r.preference for r in ordered] == sorted(r.preference for r in records)

    @SMALL_SETTINGS
    @given(addresses=st.lists(st.sampled_from(REMOTE_V4 + REMOTE_V6), unique=True, max_size=12))
    def test_interleave(self, addresses: list[str]) -> None:
        """IPv6 first, families alternate while both last, order within a family kept."""
        mixed = interleave_families_rfc8305(addresses)
        ipv6 = [a for a in addresses if is_ipv6(a)]
        ipv4 = [a for a in addresses if not is_ipv6(a)]
        assert sorted(mixed) == sorted(addresses)
        assert [a for a in mixed if is_ipv6(a)] == ipv6
        assert [a for a in mixed if not is_ipv6(a)] == ipv4
        both = 2 * min(len(ipv6), len(ipv4))
        assert [is_ipv6(a) for a in mixed[:both]] == [True, False] * (both // 2)


LABELS = st.sampled_from(["a", "b", "c", "A", "B"])
HOSTS = st.lists(LABELS, min_size=1, max_size=4).map(".".join)


def reference_lookup(lines: list[str], host: str) -> Route | None:
    """qmail's smtproutes rule, restated plainly (contract §3.6)."""
    table: dict[str, str] = {}
    for line in lines:
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        table[key.lower()] = value  # the last line for a key wins
    name = host.lower()
    candidates = [name] + [name[i:] for i, c in enumerate(name) if c == "."] + [""]
    for candidate in candidates:
        if candidate in table:
            value = table[candidate]
            if not value:
                return None
            relay, _, port = value.partition(":")
            return Route(relay, int(port) if port else None)
    return None


@st.composite
def routes_lines(draw: st.DrawFn, host: str) -> list[str]:
    """Lines of a routes file whose keys are often the host, its suffixes or the default."""
    suffixes = [host[i:] for i, c in enumerate(host) if c == "."]
    key = st.one_of(
        st.sampled_from([host, host.upper(), *suffixes, "", ".c", ".a.b"]),
        HOSTS,
        HOSTS.map(lambda h: "." + h),
    )
    value = st.one_of(
        st.just(""),
        st.sampled_from(["r1", "r2", "relay.example"]),
        st.builds("{}:{}".format, st.sampled_from(["r1", "r2"]), st.integers(1, 65535)),
    )
    line = st.one_of(
        st.builds("{}:{}".format, key, value),
        st.sampled_from(["# comment:x", "", "nocolon"]),
    )
    return draw(st.lists(line, max_size=8))


class TestRoutesProperty:
    """The routes lookup is qmail's rule."""

    @settings(max_examples=200, deadline=None)
    @given(data=st.data(), host=HOSTS)
    def test_matches_reference(self, data: st.DataObject, host: str) -> None:
        """parse_routes + lookup_route agree with the plain restatement of qmail's rule."""
        lines = data.draw(routes_lines(host))
        assert lookup_route(parse_routes(lines, "smtproutes"), host) == reference_lookup(
            lines, host
        )


class TestReportProperty:
    """Every report encoding ends in exactly one NUL and has no other NUL."""

    @staticmethod
    def check(rep: Report) -> None:
        encoded = rep.encode()
        assert encoded.endswith(b"\0")
        assert encoded.count(b"\0") == 1
        assert rep.text.endswith(b"\n")

    @SMALL_SETTINGS
    @given(text=st.text())
    def test_made_reports(self, text: str) -> None:
        """Reports built from any host, detail, program or message are well-formed."""
        for rep in (
            no_such_host(text),
            null_mx(text),
            control_error(text),
            bad_nameservers(text),
            cannot_run(text, text),
            internal_error(RuntimeError(text)),
        ):
            self.check(rep)

    @SMALL_SETTINGS
    @given(letter=st.sampled_from(["Z", "D", "K", "r", "h", "s"]), text=st.binary())
    def test_any_text(self, letter: str, text: bytes) -> None:
        """Report.encode makes any text NUL-free and adds the one NUL."""
        encoded = Report(letter, text).encode()
        assert encoded.endswith(b"\0")
        assert encoded.count(b"\0") == 1
        assert len(encoded) == len(text) + 2

    @SMALL_SETTINGS
    @given(host=st.text())
    def test_host_lines(self, host: str) -> None:
        """A host can never add a line or a NUL to #5.1.2 or #5.1.10."""
        assert no_such_host(host).text.count(b"\n") == 1
        assert null_mx(host).text.count(b"\n") == 1
        assert control_error(host).text.count(b"\n") == 2
