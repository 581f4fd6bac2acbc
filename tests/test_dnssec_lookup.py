"""Tests for mxf_remote/dnssec.py: the AD-aware lookup on real sockets.

Scripted servers (``ScriptDns``, tests/infra/scriptdns.py) spell each answer the test
needs -- AD on or off, a wrong ID first, TC=1, an EDE, a hostile extra record -- on
127.0.7.x inside the tests' private network namespace.  A real knot (``knot`` fixture,
``ZONES``) then checks that ``DnssecLookup`` and ``CaresLookup`` give the same records for
the same names (knot, being authoritative, never sets AD: neither answer is secure).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import pycares
import pytest

from mxf_remote.cares import MAX_CNAME_RESTARTS, NEGATIVE_TTL, CaresLookup
from mxf_remote.dnssec import DnssecLookup
from mxf_remote.knowledge import MX, SRV, TLSA, Answer, Status
from tests.infra.baddns import _question, name_wire
from tests.infra.knot import KnotServer, pick_free_port
from tests.infra.scriptdns import ScriptDns, frame, reply, rr

pytestmark = pytest.mark.usefixtures("netns")

A, CNAME, SOA, MX_T, TXT_T, AAAA, SRV_T, TLSA_T = 1, 5, 6, 15, 16, 28, 33, 52
ADDRESS_1 = socket.inet_aton("192.0.2.1")


def a_rr(owner: str, address: str = "192.0.2.1", ttl: int = 300) -> bytes:
    """An A record."""
    return rr(owner, A, socket.inet_aton(address), ttl=ttl)


def cname_rr(owner: str, target: str, ttl: int = 300) -> bytes:
    """A CNAME record."""
    return rr(owner, CNAME, name_wire(target.encode()), ttl=ttl)


def soa_rr(zone: str, ttl: int, minimum: int) -> bytes:
    """An SOA record with the given TTL and MINIMUM."""
    rdata = name_wire(f"ns.{zone}".encode()) + name_wire(f"host.{zone}".encode())
    return rr(zone, SOA, rdata + struct.pack("!5I", 1, 3600, 600, 86400, minimum), ttl=ttl)


def qname(query: bytes) -> str:
    """The name a query asks, lower case."""
    return _question(query)[2].decode()


def ask(
    servers: Sequence[str], *questions: tuple[str, str], timeout: float = 0.5, tries: int = 1
) -> tuple[list[Answer[Any]], DnssecLookup]:
    """Each question through one ``DnssecLookup`` on a fresh loop; the lookup, closed."""

    async def main() -> list[Answer[Any]]:
        lookup = DnssecLookup(list(servers), timeout=timeout, tries=tries)
        holder.append(lookup)
        try:
            return [await lookup(name, rtype) for name, rtype in questions]
        finally:
            await lookup.close()

    holder: list[DnssecLookup] = []
    answers = asyncio.run(asyncio.wait_for(main(), 30))
    return answers, holder[0]


def ask_one(script: Callable[[bytes, str], Any], name: str, rtype: str, **kw: Any) -> Answer[Any]:
    """One question to one scripted server."""
    with ScriptDns(script) as server:
        (answer,), _ = ask([server.nameserver], (name, rtype), **kw)
    return answer


class TestSecurity:
    """``secure`` is the AD bit of every response used."""

    @pytest.mark.parametrize("ad", [True, False])
    def test_the_ad_bit_makes_the_answer_secure(self, ad: bool) -> None:
        """AD=1: secure; AD=0: the same records, not secure."""
        answer = ask_one(lambda q, t: [reply(q, ad=ad, answers=[a_rr("h.test")])], "h.test", "A")
        assert answer == Answer(Status.OK, ("192.0.2.1",), secure=ad)

    def test_every_question_asks_with_ad_and_edns_without_do(self) -> None:
        """The query: RD=1, AD=1, CD=0, one OPT with 1232 octets and DO=0."""
        seen: list[bytes] = []

        def script(query: bytes, transport: str) -> list[bytes]:
            seen.append(query)
            return [reply(query, answers=[a_rr("h.test")])]

        ask_one(script, "h.test", "A")
        (query,) = seen
        flags = struct.unpack_from("!H", query, 2)[0]
        assert flags & 0x0100 and flags & 0x0020 and not flags & 0x0010
        assert struct.unpack_from("!HHHH", query, 4) == (1, 0, 0, 1)
        assert query.endswith(b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0))

    @pytest.mark.parametrize(("first_ad", "second_ad"), [(True, False), (False, True)])
    def test_a_chain_across_two_questions_is_secure_only_if_both_are(
        self, first_ad: bool, second_ad: bool
    ) -> None:
        """alias -> target (follow-up): AD on one response only -> not secure."""

        def script(query: bytes, transport: str) -> list[bytes]:
            if qname(query) == "alias.one.test":
                return [reply(query, ad=first_ad, answers=[cname_rr("alias.one.test", "t.two")])]
            return [reply(query, ad=second_ad, answers=[a_rr("t.two")])]

        assert ask_one(script, "alias.one.test", "A") == Answer(Status.OK, ("192.0.2.1",))

    def test_a_chain_across_two_secure_questions_is_secure(self) -> None:
        """alias -> target, both AD=1: secure, TTL the smallest of CNAME and record."""

        def script(query: bytes, transport: str) -> list[bytes]:
            if qname(query) == "alias.one.test":
                return [reply(query, ad=True, answers=[cname_rr("alias.one.test", "t.two", 9)])]
            return [reply(query, ad=True, answers=[a_rr("t.two", ttl=30)])]

        with ScriptDns(script) as server:
            (answer,), _ = ask([server.nameserver], ("Alias.One.Test.", "A"))
            asked = list(server.queries)
        assert answer == Answer(Status.OK, ("192.0.2.1",), secure=True)
        assert answer.ttl == 9
        assert answer.canonical == "t.two"  # DANE's TLSA base domain (RFC 7672 §2.2.2)
        assert asked == [(b"alias.one.test", A, "udp"), (b"t.two", A, "udp")]

    def test_a_secure_denial_is_secure(self) -> None:
        """NXDOMAIN with AD=1: a secure NXDOMAIN (DANE may rely on it)."""
        answer = ask_one(lambda q, t: [reply(q, rcode=3, ad=True)], "_25._tcp.x.test", "TLSA")
        assert answer == Answer(Status.NXDOMAIN, secure=True)


class TestRecords:
    """Records come out in the forms ``Answer`` holds, as ``CaresLookup`` gives them."""

    def test_every_type(self) -> None:
        """MX, SRV, A, AAAA, TLSA, TXT: names normalised, addresses canonical."""
        records = {
            MX_T: rr("h.test", MX_T, b"\0\x0a" + name_wire(b"MX1.Example.TEST")),
            SRV_T: rr("h.test", SRV_T, struct.pack("!HHH", 1, 2, 25) + name_wire(b"S.Test")),
            A: a_rr("h.test"),
            AAAA: rr("h.test", AAAA, socket.inet_pton(socket.AF_INET6, "2001:DB8:0::1")),
            TLSA_T: rr("h.test", TLSA_T, b"\3\1\1" + bytes(range(32))),
            TXT_T: rr("h.test", TXT_T, b"\5hello\0\6 world"),
        }

        def script(query: bytes, transport: str) -> list[bytes]:
            return [reply(query, answers=[records[_question(query)[3]]])]

        with ScriptDns(script) as server:
            answers, _ = ask(
                [server.nameserver],
                *[("h.test", rtype) for rtype in ("MX", "SRV", "A", "AAAA", "TLSA", "TXT")],
            )
        assert [answer.records for answer in answers] == [
            (MX(10, "mx1.example.test"),),
            (SRV(1, 2, 25, "s.test"),),
            ("192.0.2.1",),
            ("2001:db8::1",),
            (TLSA(3, 1, 1, bytes(range(32))),),
            (b"hello world",),
        ]

    def test_records_outside_the_chain_are_ignored(self) -> None:
        """Addresses for other names slipped into the answer are not used."""
        answer = ask_one(
            lambda q, t: [
                reply(
                    q,
                    answers=[
                        a_rr("victim.test", "203.0.113.66"),
                        cname_rr("h.test", "end.test"),
                        a_rr("h.test", "203.0.113.67"),  # beside its own CNAME: not the end
                        a_rr("end.test", "192.0.2.7"),
                        a_rr("other.test", "203.0.113.68"),
                    ],
                )
            ],
            "h.test",
            "A",
        )
        assert answer == Answer(Status.OK, ("192.0.2.7",))

    def test_only_injected_records_is_temporary(self) -> None:
        """An answer whose only records are for another name: broken DNS, TEMPFAIL (never
        the NODATA that would count as "no such record")."""
        answer = ask_one(
            lambda q, t: [reply(q, answers=[a_rr("victim.test", "203.0.113.66")])],
            "h.test",
            "A",
        )
        assert answer == Answer(Status.TEMPFAIL)

    def test_records_of_another_type_are_temporary(self) -> None:
        """A TXT record where an A was asked: broken DNS, TEMPFAIL, as with c-ares."""
        answer = ask_one(
            lambda q, t: [reply(q, answers=[rr("h.test", TXT_T, b"\2hi")])], "h.test", "A"
        )
        assert answer == Answer(Status.TEMPFAIL)


class TestNegative:
    """NXDOMAIN and NODATA, with RFC 2308 §5 TTLs from the SOA when it is there."""

    @pytest.mark.parametrize(("soa_ttl", "minimum"), [(30, 4), (4, 30)])
    def test_nxdomain_takes_the_smaller_of_soa_ttl_and_minimum(
        self, soa_ttl: int, minimum: int
    ) -> None:
        """NXDOMAIN with an SOA: TTL min(SOA TTL, MINIMUM) = 4."""
        answer = ask_one(
            lambda q, t: [reply(q, rcode=3, authority=[soa_rr("test", soa_ttl, minimum)])],
            "no.test",
            "A",
        )
        assert (answer.status, answer.ttl) == (Status.NXDOMAIN, 4)

    def test_nodata_with_an_soa(self) -> None:
        """NODATA with an SOA: its negative TTL."""
        answer = ask_one(
            lambda q, t: [reply(q, authority=[soa_rr("test", 300, 7)])], "h.test", "MX"
        )
        assert (answer.status, answer.ttl) == (Status.NODATA, 7)

    def test_without_soa_the_fixed_negative_ttl(self) -> None:
        """NXDOMAIN without an SOA: ``NEGATIVE_TTL``."""
        answer = ask_one(lambda q, t: [reply(q, rcode=3)], "no.test", "A")
        assert (answer.status, answer.ttl) == (Status.NXDOMAIN, NEGATIVE_TTL)

    def test_a_chain_bounds_the_negative_ttl(self) -> None:
        """CNAME TTL 5 -> a missing name whose SOA says 4000: TTL 5."""

        def script(query: bytes, transport: str) -> list[bytes]:
            if qname(query) == "h.test":
                return [reply(query, answers=[cname_rr("h.test", "gone.test", 5)])]
            return [reply(query, rcode=3, authority=[soa_rr("test", 4000, 4000)])]

        answer = ask_one(script, "h.test", "A")
        assert (answer.status, answer.ttl) == (Status.NXDOMAIN, 5)

    @pytest.mark.parametrize(
        "name",
        ["a b.test", "x" * 64 + ".test", ".".join(["abcdefg"] * 40) + ".test", "a..b.test"],
        ids=["space", "label-64", "name-over-255", "empty-label"],
    )
    def test_a_name_no_question_can_carry_is_nxdomain(self, name: str) -> None:
        """A name that cannot be put in a question: NXDOMAIN, nothing asked (as c-ares)."""
        with ScriptDns(lambda q, t: [reply(q, answers=[a_rr(qname(q))])]) as server:
            (answer,), _ = ask([server.nameserver], (name, "A"))
            assert server.queries == []
        assert answer.status is Status.NXDOMAIN


class TestFailures:
    """Anything else is TEMPFAIL, after the servers and tries; never an exception."""

    def test_servfail_keeps_its_extended_dns_error(self) -> None:
        """SERVFAIL with EDE 6 (a validator's bogus): TEMPFAIL; ``last_error`` says why."""
        with ScriptDns(lambda q, t: [reply(q, rcode=2, ede=[(6, b"DNSSEC Bogus")])]) as server:
            (answer,), lookup = ask([server.nameserver], ("bogus.test", "TLSA"), tries=2)
            assert len(server.queries) == 1  # a validator's verdict is not asked again
        assert answer == Answer(Status.TEMPFAIL)
        assert lookup.last_error is not None
        assert lookup.last_error.endswith("SERVFAIL EDE 6 (DNSSEC Bogus)")

    def test_servfail_is_final_never_asked_of_the_next_server(self) -> None:
        """A validating resolver says SERVFAIL (bogus); a second, non-validating one would
        answer the same forgery as merely insecure and switch DANE off: never asked."""
        bogus = ScriptDns(lambda q, t: [reply(q, rcode=2)])
        lenient = ScriptDns(
            lambda q, t: [reply(q, answers=[a_rr("h.test", "203.0.113.66")])],
            address="127.0.7.54",
        )
        with bogus, lenient:
            (answer,), _ = ask([bogus.nameserver, lenient.nameserver], ("h.test", "A"))
            assert lenient.queries == []
        assert answer == Answer(Status.TEMPFAIL)

    def test_a_dname_beside_its_cname_is_followed(self) -> None:
        """RFC 6672: a DNAME and the CNAME synthesized from it; the CNAME is the chain."""
        dname = rr("old.test", 39, name_wire(b"new.test"))
        cname = rr("h.old.test", 5, name_wire(b"h.new.test"))
        answer = ask_one(
            lambda q, t: [reply(q, answers=[dname, cname, a_rr("h.new.test", "192.0.2.7")])],
            "h.old.test",
            "A",
        )
        assert (answer.status, answer.records) == (Status.OK, ("192.0.2.7",))
        assert answer.canonical == "h.new.test"

    @pytest.mark.parametrize("rcode", [1, 4, 5, 16])
    def test_other_rcodes_are_temporary(self, rcode: int) -> None:
        """FORMERR, NOTIMP, REFUSED, an extended RCODE (BADVERS): TEMPFAIL."""
        assert ask_one(lambda q, t: [reply(q, rcode=rcode)], "h.test", "A") == Answer(
            Status.TEMPFAIL
        )

    def test_an_unreachable_server_is_temporary(self) -> None:
        """The only server's port is closed: TEMPFAIL."""
        port = pick_free_port(["127.0.7.1"])
        (answer,), lookup = ask([f"127.0.7.1:{port}"], ("h.test", "A"), timeout=5)
        assert answer == Answer(Status.TEMPFAIL)
        assert lookup.last_error is not None and "ConnectionRefused" in lookup.last_error

    def test_silence_then_the_second_server(self) -> None:
        """The first server says nothing: after its try, the second answers."""
        with (
            ScriptDns(lambda q, t: [], address="127.0.7.1") as silent,
            ScriptDns(lambda q, t: [reply(q, answers=[a_rr("h.test")])], address="127.0.7.2") as ok,
        ):
            (answer,), _ = ask([silent.nameserver, ok.nameserver], ("h.test", "A"), timeout=0.2)
            assert len(silent.queries) == len(ok.queries) == 1
        assert answer == Answer(Status.OK, ("192.0.2.1",))

    def test_tries_go_round_the_servers(self) -> None:
        """Two silent servers, three tries: each asked three times, then TEMPFAIL."""
        with (
            ScriptDns(lambda q, t: [], address="127.0.7.1") as one,
            ScriptDns(lambda q, t: [], address="127.0.7.2") as two,
        ):
            (answer,), _ = ask(
                [one.nameserver, two.nameserver], ("h.test", "A"), timeout=0.05, tries=3
            )
            assert len(one.queries) == len(two.queries) == 3
        assert answer == Answer(Status.TEMPFAIL)

    def test_a_malformed_answer_alone_is_temporary(self) -> None:
        """Garbage only: the try runs out, TEMPFAIL."""
        assert ask_one(lambda q, t: [b"\0" * 5], "h.test", "A", timeout=0.1) == Answer(
            Status.TEMPFAIL
        )

    def test_a_chain_loop_is_temporary(self) -> None:
        """a -> b -> a within one answer: TEMPFAIL."""
        answer = ask_one(
            lambda q, t: [
                reply(q, answers=[cname_rr("a.test", "b.test"), cname_rr("b.test", "a.test")])
            ],
            "a.test",
            "A",
        )
        assert answer == Answer(Status.TEMPFAIL)

    def test_a_chain_longer_than_the_restarts_allow_is_temporary(self) -> None:
        """Every answer a CNAME to the next name: TEMPFAIL after the restarts."""

        def script(query: bytes, transport: str) -> list[bytes]:
            name = qname(query)
            return [reply(query, answers=[cname_rr(name, "x" + name)])]

        with ScriptDns(script) as server:
            (answer,), _ = ask([server.nameserver], ("h.test", "A"))
            assert len(server.queries) == MAX_CNAME_RESTARTS + 1
        assert answer == Answer(Status.TEMPFAIL)


def _wrong(kind: str, query: bytes) -> bytes:
    """A datagram that is not the answer to ``query``, in one of several ways."""
    qid = _question(query)[0]
    good = [a_rr("h.test", "203.0.113.9")]
    other = name_wire(b"other.test") + struct.pack("!HH", A, 1)
    wrongs = {
        "id": lambda: reply(query, qid=qid ^ 1, answers=good),
        "name": lambda: reply(query, question=other, answers=good),
        "type": lambda: reply(query, question=name_wire(b"h.test") + b"\0\x1c\0\1"),
        "class": lambda: reply(query, question=name_wire(b"h.test") + b"\0\1\0\3"),
        "qr0": lambda: reply(query, flags=0x0100, answers=good),
        "opcode": lambda: reply(query, flags=0x8000 | (2 << 11), answers=good),
        "garbage": lambda: b"\xff" * 40,
    }
    return wrongs[kind]()


WRONG_KINDS = ["id", "name", "type", "class", "qr0", "opcode", "garbage"]


class TestNotTheAnswer:
    """A datagram that is not the answer is ignored; the right one still counts."""

    @pytest.mark.parametrize("kind", WRONG_KINDS)
    def test_ignored_before_the_answer(self, kind: str) -> None:
        """The wrong datagram first, then the answer: the answer's record only."""
        answer = ask_one(
            lambda q, t: [_wrong(kind, q), reply(q, answers=[a_rr("h.test")])], "h.test", "A"
        )
        assert answer == Answer(Status.OK, ("192.0.2.1",))

    @pytest.mark.parametrize("kind", WRONG_KINDS)
    def test_alone_it_is_no_answer(self, kind: str) -> None:
        """Only the wrong datagram: the try runs out, TEMPFAIL."""
        answer = ask_one(lambda q, t: [_wrong(kind, q)], "h.test", "A", timeout=0.1)
        assert answer == Answer(Status.TEMPFAIL)

    def test_the_echo_may_differ_in_case(self) -> None:
        """The question echoed in upper case (0x20 style): still the answer."""
        upper = name_wire(b"H.TEST") + struct.pack("!HH", A, 1)
        answer = ask_one(
            lambda q, t: [reply(q, question=upper, answers=[a_rr("h.test")])], "h.test", "A"
        )
        assert answer.status is Status.OK


class TestTcp:
    """TC=1 asks again over TCP."""

    def test_truncated_then_tcp(self) -> None:
        """TC=1 over UDP, the whole answer over TCP, AD=1 there: secure OK."""

        def script(query: bytes, transport: str) -> Any:
            if transport == "udp":
                return [reply(query, tc=True)]
            return frame(
                reply(query, ad=True, answers=[a_rr("h.test"), a_rr("h.test", "192.0.2.2")])
            )

        with ScriptDns(script) as server:
            (answer,), _ = ask([server.nameserver], ("h.test", "A"))
            assert [transport for _, _, transport in server.queries] == ["udp", "tcp"]
        assert answer == Answer(Status.OK, ("192.0.2.1", "192.0.2.2"), secure=True)

    def test_a_tcp_answer_cut_short_is_temporary(self) -> None:
        """The length prefix promises more than arrives before close: TEMPFAIL."""

        def script(query: bytes, transport: str) -> Any:
            if transport == "udp":
                return [reply(query, tc=True)]
            whole = frame(reply(query, answers=[a_rr("h.test")]))
            return whole[: len(whole) // 2]

        with ScriptDns(script) as server:
            (answer,), lookup = ask([server.nameserver], ("h.test", "A"))
        assert answer == Answer(Status.TEMPFAIL)
        assert lookup.last_error is not None and "EOFError" in lookup.last_error

    def test_a_tcp_answer_to_another_question_is_temporary(self) -> None:
        """Over TCP, a mismatched ID fails the try (nothing else can arrive there)."""

        def script(query: bytes, transport: str) -> Any:
            if transport == "udp":
                return [reply(query, tc=True)]
            return frame(_wrong("id", query))

        assert ask_one(script, "h.test", "A") == Answer(Status.TEMPFAIL)


class TestLifecycle:
    """Nothing outlives a call or ``close()`` (the hygiene fixture counts the fds)."""

    def test_close_stops_a_question_in_flight(self) -> None:
        """A question to a silent server, then ``close()``: the caller is cancelled."""

        async def main(nameserver: str) -> bool:
            lookup = DnssecLookup([nameserver], timeout=30)
            task = asyncio.ensure_future(lookup("h.test", "A"))
            await asyncio.sleep(0.05)
            await lookup.close()
            return task.cancelled()

        with ScriptDns(lambda q, t: []) as server:
            assert asyncio.run(main(server.nameserver))

    def test_an_ipv6_server_is_asked_over_ipv6(self) -> None:
        """``[::1]:port`` with nothing listening: a clean TEMPFAIL, no exception."""
        port = pick_free_port(["127.0.0.1"])
        (answer,), _ = ask([f"[::1]:{port}"], ("h.test", "A"))
        assert answer == Answer(Status.TEMPFAIL)


# -- against a real knot, side by side with c-ares -------------------------------------------

DIGEST = "952fac" + "00" * 29
ZONES = {
    "one.test": "\n".join(
        [
            "@ MX 10 MX1.One.Test.",
            "@ MX 20 mx2",
            "mx1 A 192.0.2.1",
            "mx1 A 192.0.2.2",
            "mx1 AAAA 2001:DB8:0:0:0:0:0:1",
            "_smtp._tcp SRV 0 5 2525 MX1.One.Test.",
            f"_25._tcp.mx1 TLSA 3 1 1 {DIGEST}",
            'txt TXT "v=STSv1; id=20261201;"',
            'split TXT "first " "" "second"',
            "local CNAME mx1",
            "alias CNAME target.two.test.",
        ]
    ),
    "two.test": "target A 192.0.2.9\n",
}

SIDE_BY_SIDE = [
    ("one.test", "MX"),
    ("mx1.one.test", "A"),
    ("mx1.one.test", "AAAA"),
    ("_smtp._tcp.one.test", "SRV"),
    ("txt.one.test", "TXT"),
    ("split.one.test", "TXT"),
    ("local.one.test", "A"),
    ("alias.one.test", "A"),
    ("nothere.one.test", "A"),
    ("mx1.one.test", "MX"),
    ("elsewhere.invalid", "A"),
]


@pytest.fixture(scope="module", autouse=True)
def pycares_shutdown_thread() -> None:
    """pycares' one daemon thread, started before any test's hygiene snapshot."""
    pycares.Channel().close()


@pytest.fixture(scope="module")
def uvloop() -> Any:
    """uvloop, warmed up before the hygiene snapshot (its first loop keeps a pipe)."""
    module = pytest.importorskip("uvloop")
    module.new_event_loop().close()
    return module


def cares_ask(nameservers: list[str], questions: Sequence[tuple[str, str]]) -> list[Answer[Any]]:
    """The same questions through ``CaresLookup``."""

    async def main() -> list[Answer[Any]]:
        lookup = CaresLookup(nameservers, asyncio.get_running_loop())
        try:
            return [await lookup(name, rtype) for name, rtype in questions]
        finally:
            await lookup.close()

    return asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.knot
class TestAgainstKnot:
    """The same names through both lookups: the same statuses, records and TTLs."""

    def test_the_same_answers_as_c_ares(self, knot: KnotServer) -> None:
        """MX, A, AAAA, SRV, TXT, chains, NXDOMAIN, NODATA, REFUSED: equal, none secure."""
        mine, _ = ask(knot.nameservers, *SIDE_BY_SIDE, timeout=2)
        theirs = cares_ask(knot.nameservers, SIDE_BY_SIDE)
        sort = lambda answer: (answer.status, sorted(answer.records, key=repr))  # noqa: E731
        assert [sort(a) for a in mine] == [sort(a) for a in theirs]
        assert not any(answer.secure for answer in mine + theirs)
        ok = [(m.ttl, t.ttl) for m, t in zip(mine, theirs, strict=True) if m.status is Status.OK]
        assert all(m == t for m, t in ok)
        assert mine[4].records == (b"v=STSv1; id=20261201;",)
        assert mine[5].records == (b"first second",)
        assert [a.status for a in mine[-3:]] == [Status.NXDOMAIN, Status.NODATA, Status.TEMPFAIL]

    def test_tlsa(self, knot: KnotServer) -> None:
        """TLSA, which c-ares' lookup does not ask: the zone's record, not secure."""
        (answer,), _ = ask(knot.nameservers, ("_25._tcp.mx1.one.test", "TLSA"))
        assert answer == Answer(Status.OK, (TLSA(3, 1, 1, bytes.fromhex(DIGEST)),))

    def test_knot_negative_answers_carry_the_soa_ttl(self, knot: KnotServer) -> None:
        """knot's NXDOMAIN has the SOA (minimum 60 in the test zones): its TTL."""
        (answer,), _ = ask(knot.nameservers, ("nothere.one.test", "A"))
        assert (answer.status, answer.ttl) == (Status.NXDOMAIN, 60)

    def test_on_uvloop(self, knot: KnotServer, uvloop: Any) -> None:
        """On uvloop (production's loop): the same answer, the sockets closed after."""

        async def main() -> Answer[Any]:
            lookup = DnssecLookup(knot.nameservers)
            try:
                return await lookup("mx1.one.test", "A")
            finally:
                await lookup.close()

        loop = uvloop.new_event_loop()
        try:
            answer = loop.run_until_complete(asyncio.wait_for(main(), 20))
        finally:
            loop.close()
        assert sorted(answer.records) == ["192.0.2.1", "192.0.2.2"]

    def test_truncation_from_knot_goes_over_tcp(self) -> None:
        """A zone knot answers with TC=1 over UDP (mod-noudp): the TCP answer is used."""
        with KnotServer(ZONES, noudp_zones=["one.test"], listen=["127.0.0.1"]) as server:
            (answer,), _ = ask(server.nameservers, ("mx1.one.test", "A"), timeout=2)
        assert sorted(answer.records) == ["192.0.2.1", "192.0.2.2"]


# -- against a validating resolver (unbound over a signing knotd) ----------------------------

SPKI = "952FACD1D72B71A83D61D2C7699221ADA0EEB7C919D18CE5D70D0D8EC4E8FF97"
DNSSEC_ZONES = {
    "test.": "",
    "dane.test.": f"""
@             MX    10 mx1
mx1           A     127.0.0.25
_25._tcp.mx1  TLSA  3 1 1 {SPKI}
_mta-sts      TXT   "v=STSv1; id=1;"
toplain       CNAME mx1.plain.test.
""",
    "bogus.test.": f"_25._tcp.mx1  TLSA  3 1 1 {SPKI}\nmx1 A 127.0.0.25\n",
    "plain.test.": "mx1 A 127.0.0.25\n",
}
DNSSEC_SIGNED = ["test.", "dane.test.", "bogus.test."]
DNSSEC_BROKEN_DS = ["bogus.test."]


@pytest.mark.knot
class TestAgainstAValidatingResolver:
    """unbound says AD=1 for secure data, SERVFAIL for bogus, AD=0 for insecure."""

    def test_secure_answers(self, dnssec_lab: Any) -> None:
        """MX, A, TLSA, TXT of a signed zone: secure."""
        answers, _ = ask(
            dnssec_lab.nameservers,
            ("dane.test", "MX"),
            ("mx1.dane.test", "A"),
            ("_25._tcp.mx1.dane.test", "TLSA"),
            ("_mta-sts.dane.test", "TXT"),
            timeout=2,
        )
        assert answers == [
            Answer(Status.OK, (MX(10, "mx1.dane.test"),), secure=True),
            Answer(Status.OK, ("127.0.0.25",), secure=True),
            Answer(Status.OK, (TLSA(3, 1, 1, bytes.fromhex(SPKI)),), secure=True),
            Answer(Status.OK, (b"v=STSv1; id=1;",), secure=True),
        ]

    def test_authenticated_denial_is_secure(self, dnssec_lab: Any) -> None:
        """NXDOMAIN and NODATA in a signed zone: secure."""
        answers, _ = ask(
            dnssec_lab.nameservers,
            ("_25._tcp.nosuch.dane.test", "TLSA"),
            ("mx1.dane.test", "AAAA"),
            timeout=2,
        )
        assert answers == [
            Answer(Status.NXDOMAIN, secure=True),
            Answer(Status.NODATA, secure=True),
        ]

    def test_bogus_is_temporary(self, dnssec_lab: Any) -> None:
        """A zone whose DS matches no key: SERVFAIL from the resolver, TEMPFAIL here."""
        (answer,), lookup = ask(
            dnssec_lab.nameservers, ("_25._tcp.mx1.bogus.test", "TLSA"), timeout=2
        )
        assert answer == Answer(Status.TEMPFAIL)
        assert lookup.last_error is not None and "SERVFAIL" in lookup.last_error

    def test_insecure_zone_and_chain_into_it(self, dnssec_lab: Any) -> None:
        """An unsigned zone, and a signed CNAME into it: the records, not secure."""
        answers, _ = ask(
            dnssec_lab.nameservers,
            ("mx1.plain.test", "A"),
            ("toplain.dane.test", "A"),
            timeout=2,
        )
        assert answers == [Answer(Status.OK, ("127.0.0.25",))] * 2
