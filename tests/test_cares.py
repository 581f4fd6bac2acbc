"""Tests for mxf_remote/cares.py: real c-ares asking a real DNS server, answers as statuses.

Served by a real knot (``KnotServer``, tests/infra/knot.py) with zones written here, and
by ``BadDns`` (tests/infra/baddns.py) where an answer must be spelt in a way knot would
not serve.  knot follows a CNAME only inside its own zone, so a CNAME into another zone it
serves is an unfinished chain, exactly what a resolver meets at a zone's edge; each hop of
the chains below crosses between two zones for that reason.  ``_chain_end`` is also tested
on its own, with stand-in records.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pycares
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxf_remote.cares import _CARES_HARD, MAX_CNAME_RESTARTS, CaresLookup, _chain_end, ascii_name
from mxf_remote.knowledge import MX, SRV, Answer, Status
from tests.infra import dnswire
from tests.infra.baddns import BadDns, name_wire
from tests.infra.knot import KnotServer, pick_free_port

pytestmark = pytest.mark.knot

ONE, TWO = "one.test", "two.test"


def hop(prefix: str, index: int) -> str:
    """The ``index``-th name of a chain whose hops alternate between the two zones."""
    return f"{prefix}{index}.{ONE if index % 2 == 0 else TWO}"


def chain(prefix: str, hops: int, end: str) -> dict[str, list[str]]:
    """Zone lines for ``prefix0 -> prefix1 -> ... -> prefix<hops>`` (CNAMEs), then ``end``."""
    lines: dict[str, list[str]] = {ONE: [], TWO: []}
    for index in range(hops):
        zone = ONE if index % 2 == 0 else TWO
        lines[zone].append(f"{hop(prefix, index)}. CNAME {hop(prefix, index + 1)}.")
    last_zone = ONE if hops % 2 == 0 else TWO
    lines[last_zone].append(f"{hop(prefix, hops)}. {end}")
    return lines


def zones() -> dict[str, str]:
    """The zones every test here is served from."""
    one = [
        "@ MX 10 MX1.One.Test.",
        "@ MX 20 mx2",
        "mx1 A 192.0.2.1",
        "mx1 A 192.0.2.2",
        "mx1 AAAA 2001:DB8:0:0:0:0:0:1",
        "mx1 AAAA 2001:db8:0:0:1:0:0:1",
        "mapped AAAA ::FFFF:192.0.2.3",
        "_smtp._tcp SRV 0 5 2525 MX1.One.Test.",
        "_smtp._tcp SRV 10 0 25 mx2",
        "_qmtp._tcp SRV 0 0 0 .",
        "nullmx MX 0 .",
        'txtonly TXT "no address here"',
        # An alias into the other zone: knot answers with the CNAME alone.
        f"alias CNAME target.{TWO}.",
        # An alias inside this zone (knot follows it), then into the other zone.
        "inzone1 CNAME inzone2",
        f"inzone2 CNAME target.{TWO}.",
        # An alias knot finishes itself.
        "local CNAME mx1",
        # An alias to a name that does not exist.
        f"dangling CNAME missing.{TWO}.",
        # A loop within one zone (one answer), and one across the zones (follow-ups).
        "loopa CNAME loopb",
        "loopb CNAME loopa",
        f"cross CNAME cross.{TWO}.",
    ]
    two = [
        "target A 192.0.2.9",
        "target MX 5 Mx.Two.Test.",
        f"cross CNAME cross.{ONE}.",
    ]
    for lines in (
        chain("ok", MAX_CNAME_RESTARTS, "A 192.0.2.10"),
        chain("long", MAX_CNAME_RESTARTS + 1, "A 192.0.2.11"),
    ):
        one += lines[ONE]
        two += lines[TWO]
    return {ONE: "\n".join(one), TWO: "\n".join(two), "wild.test": "* A 192.0.2.99\n"}


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotServer]:
    """One knotd serving one.test, two.test and wild.test; broken.test is SERVFAIL."""
    with KnotServer(zones(), servfail_zones=["broken.test"]) as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def pycares_shutdown_thread() -> None:
    """Start pycares' one daemon thread (on the first channel closed) before any test.

    The hygiene check allows that thread, but only after waiting 2 s for it to end; made
    here, before the first test's snapshot, it costs the first test nothing.
    """
    pycares.Channel().close()


@pytest.fixture(scope="module")
def uvloop() -> Any:
    """uvloop, warmed up: its first loop opens a pipe kept for the whole process.

    Made here, before the per-test hygiene check takes its snapshot of descriptors, so
    that this one-time pipe is not reported as a descriptor the test left open.
    """
    module = pytest.importorskip("uvloop")
    module.new_event_loop().close()
    return module


Question = tuple[str, str]


def ask(nameservers: list[str], *questions: Question) -> list[Answer[Any]]:
    """Ask each question through one ``CaresLookup`` on a fresh asyncio loop, then close it."""
    return _run(nameservers, questions, asyncio.new_event_loop)


def _run(
    nameservers: list[str],
    questions: tuple[Question, ...],
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> list[Answer[Any]]:
    async def main() -> list[Answer[Any]]:
        lookup = CaresLookup(nameservers, asyncio.get_running_loop())
        try:
            return [await lookup(name, rtype) for name, rtype in questions]
        finally:
            await lookup.close()

    async def bounded() -> list[Answer[Any]]:
        return await asyncio.wait_for(main(), 20)

    loop = new_loop()
    try:
        return loop.run_until_complete(bounded())
    finally:
        loop.close()


def ask_one(nameservers: list[str], name: str, rtype: str) -> Answer[Any]:
    """One question's answer."""
    (answer,) = ask(nameservers, (name, rtype))
    return answer


class TestAnswers:
    """Records come back in our own types, names normalised, addresses canonical."""

    def test_mx(self, knot: KnotServer) -> None:
        """MX: (preference, exchange) with the exchange lower case, no trailing dot."""
        answer = ask_one(knot.nameservers, ONE, "MX")
        assert answer.status is Status.OK
        assert sorted(answer.records) == [MX(10, "mx1.one.test"), MX(20, "mx2.one.test")]

    def test_srv(self, knot: KnotServer) -> None:
        """SRV: (priority, weight, port, target) with the target normalised."""
        answer = ask_one(knot.nameservers, f"_smtp._tcp.{ONE}", "SRV")
        assert answer.status is Status.OK
        assert sorted(answer.records) == [
            SRV(0, 5, 2525, "mx1.one.test"),
            SRV(10, 0, 25, "mx2.one.test"),
        ]

    def test_a(self, knot: KnotServer) -> None:
        """A: dotted quads."""
        answer = ask_one(knot.nameservers, f"mx1.{ONE}", "A")
        assert (answer.status, sorted(answer.records)) == (Status.OK, ["192.0.2.1", "192.0.2.2"])

    def test_aaaa_is_canonical(self, knot: KnotServer) -> None:
        """AAAA written long and in upper case: the compressed lower-case spelling."""
        answer = ask_one(knot.nameservers, f"mx1.{ONE}", "AAAA")
        assert answer.status is Status.OK
        assert sorted(answer.records) == ["2001:db8::1", "2001:db8::1:0:0:1"]

    def test_an_ipv4_mapped_aaaa_stays_ipv6(self, knot: KnotServer) -> None:
        """AAAA ``::ffff:192.0.2.3``: kept as that IPv6 address, not turned into IPv4."""
        answer = ask_one(knot.nameservers, f"mapped.{ONE}", "AAAA")
        assert answer == Answer(Status.OK, ("::ffff:192.0.2.3",))

    def test_the_question_may_be_upper_case_with_a_trailing_dot(self, knot: KnotServer) -> None:
        """``ONE.TEST.`` is answered like ``one.test``."""
        answer = ask_one(knot.nameservers, "ONE.TEST.", "MX")
        assert sorted(answer.records) == [MX(10, "mx1.one.test"), MX(20, "mx2.one.test")]

    def test_null_mx_and_srv_dot_have_empty_targets(self, knot: KnotServer) -> None:
        """``MX 0 .`` and ``SRV 0 0 0 .``: the target is the empty name."""
        null_mx, srv_dot = ask(
            knot.nameservers, (f"nullmx.{ONE}", "MX"), (f"_qmtp._tcp.{ONE}", "SRV")
        )
        assert null_mx == Answer(Status.OK, (MX(0, ""),))
        assert srv_dot == Answer(Status.OK, (SRV(0, 0, 0, ""),))

    def test_names_in_answers_are_normalised_whatever_the_server_sends(self) -> None:
        """A server spelling targets in mixed case: MX and SRV targets come out lower case."""
        records = {
            b"up.example.test": [
                ("MX", struct.pack("!H", 10) + name_wire(b"MX1.Example.TEST")),
                ("SRV", struct.pack("!HHH", 1, 2, 2525) + name_wire(b"Srv.EXAMPLE.test")),
                ("A", socket.inet_aton("192.0.2.4")),
                ("AAAA", socket.inet_pton(socket.AF_INET6, "2001:db8::4")),
            ]
        }
        with BadDns("answer", address="127.0.0.1", records=records) as server:
            answers = ask(
                [f"127.0.0.1:{server.port}"],
                ("UP.Example.Test", "MX"),
                ("up.example.test", "SRV"),
                ("up.example.test", "A"),
                ("up.example.test", "AAAA"),
            )
        assert answers == [
            Answer(Status.OK, (MX(10, "mx1.example.test"),)),
            Answer(Status.OK, (SRV(1, 2, 2525, "srv.example.test"),)),
            Answer(Status.OK, ("192.0.2.4",)),
            Answer(Status.OK, ("2001:db8::4",)),
        ]

    def test_on_uvloop(self, knot: KnotServer, uvloop: Any) -> None:
        """On uvloop (production's loop) the answers are the same."""
        (answer,) = _run(knot.nameservers, ((f"mx1.{ONE}", "A"),), uvloop.new_event_loop)
        assert (answer.status, sorted(answer.records)) == (Status.OK, ["192.0.2.1", "192.0.2.2"])


class TestFailures:
    """DNS failures are statuses: hard (NXDOMAIN, NODATA) or temporary, never exceptions."""

    def test_nxdomain(self, knot: KnotServer) -> None:
        """A name that does not exist: NXDOMAIN."""
        assert ask_one(knot.nameservers, f"nothere.{ONE}", "A") == Answer(Status.NXDOMAIN)

    def test_nodata(self, knot: KnotServer) -> None:
        """A name with records, none of the type asked: NODATA."""
        assert ask_one(knot.nameservers, f"txtonly.{ONE}", "A") == Answer(Status.NODATA)
        assert ask_one(knot.nameservers, f"mx1.{ONE}", "MX") == Answer(Status.NODATA)

    def test_servfail_is_temporary(self, knot: KnotServer) -> None:
        """SERVFAIL: TEMPFAIL."""
        assert ask_one(knot.nameservers, "mx.broken.test", "MX") == Answer(Status.TEMPFAIL)

    def test_refused_is_temporary(self, knot: KnotServer) -> None:
        """A name outside every zone (knot says REFUSED): TEMPFAIL, not NXDOMAIN."""
        assert ask_one(knot.nameservers, "elsewhere.invalid", "A") == Answer(Status.TEMPFAIL)

    def test_an_unreachable_server_is_temporary(self) -> None:
        """The only server's port is closed: TEMPFAIL, at once."""
        port = pick_free_port(["127.0.0.1"])
        started = time.monotonic()
        answer = ask_one([f"127.0.0.1:{port}"], f"mx1.{ONE}", "A")
        assert answer == Answer(Status.TEMPFAIL)
        assert time.monotonic() - started < 5

    def test_answers_of_the_wrong_type_are_temporary(self) -> None:
        """Every question answered with a TXT record: TEMPFAIL (broken DNS), not NODATA."""
        with BadDns("wrong-type", address="127.0.0.1") as server:
            answers = ask(
                [f"127.0.0.1:{server.port}"], ("wrong.example.test", "A"), ("wrong.test", "MX")
            )
        assert answers == [Answer(Status.TEMPFAIL)] * 2

    @pytest.mark.parametrize(
        "name",
        [
            "a b.wild.test",
            "x" * 300 + ".wild.test",
            "x" * 64 + ".wild.test",
            ".".join(["abcdefg"] * 40) + ".wild.test",
            "a..b.wild.test",
            ".wild.test",
            "\udcff.wild.test",
        ],
        ids=[
            "space",
            "label-300",
            "label-64",
            "name-over-255",
            "empty-label",
            "leading-dot",
            "raw-byte",
        ],
    )
    def test_a_name_c_ares_refuses_is_nxdomain(self, knot: KnotServer, name: str) -> None:
        """A name that cannot be put in a question (wild.test answers any other): NXDOMAIN."""
        assert ask_one(knot.nameservers, name, "A") == Answer(Status.NXDOMAIN)

    def test_the_wildcard_answers_the_names_that_can_be_asked(self, knot: KnotServer) -> None:
        """The control: a 63-byte label under wild.test is asked and answered."""
        answer = ask_one(knot.nameservers, "x" * 63 + ".wild.test", "A")
        assert answer == Answer(Status.OK, ("192.0.2.99",))

    def test_the_hard_error_codes_are_c_ares_own(self) -> None:
        """``_CARES_HARD`` spells pycares' ENOTFOUND, ENODATA and EBADNAME numbers."""
        assert _CARES_HARD == {
            pycares.errno.ARES_ENOTFOUND: Status.NXDOMAIN,
            pycares.errno.ARES_ENODATA: Status.NODATA,
            pycares.errno.ARES_EBADNAME: Status.NXDOMAIN,
        }


class TestCnameChains:
    """An unfinished CNAME chain is followed; a loop or an endless chain is temporary."""

    def test_knot_leaves_the_cross_zone_chain_unfinished(self, knot: KnotServer) -> None:
        """The premise: knot's answer for alias.one.test holds the CNAME and nothing else."""
        reply = dnswire.query_udp("127.0.0.1", knot.port, f"alias.{ONE}", "A")
        assert [(r.type_name, r.data) for r in reply.answers] == [("CNAME", f"target.{TWO}")]

    def test_a_chain_into_another_zone_is_followed(self, knot: KnotServer) -> None:
        """alias.one.test CNAME target.two.test: its A and MX records are found."""
        a_answer, mx_answer = ask(knot.nameservers, (f"alias.{ONE}", "A"), (f"alias.{ONE}", "MX"))
        assert a_answer == Answer(Status.OK, ("192.0.2.9",))
        assert mx_answer == Answer(Status.OK, (MX(5, "mx.two.test"),))

    def test_a_chain_partly_inside_one_answer_is_followed(self, knot: KnotServer) -> None:
        """Two CNAMEs in knot's answer, the second into the other zone: followed to its end."""
        answer = ask_one(knot.nameservers, f"inzone1.{ONE}", "A")
        assert answer == Answer(Status.OK, ("192.0.2.9",))

    def test_a_chain_knot_finishes_needs_no_follow_up(self, knot: KnotServer) -> None:
        """local CNAME mx1 in one zone: the records in knot's answer are used."""
        answer = ask_one(knot.nameservers, f"local.{ONE}", "A")
        assert (answer.status, sorted(answer.records)) == (Status.OK, ["192.0.2.1", "192.0.2.2"])

    def test_the_end_of_the_chain_decides_a_hard_failure(self, knot: KnotServer) -> None:
        """Chain to a missing name: NXDOMAIN; to a name without the type: NODATA."""
        dangling, no_aaaa = ask(
            knot.nameservers, (f"dangling.{ONE}", "A"), (f"alias.{ONE}", "AAAA")
        )
        assert dangling == Answer(Status.NXDOMAIN)
        assert no_aaaa == Answer(Status.NODATA)

    def test_a_loop_within_one_answer_is_temporary(self, knot: KnotServer) -> None:
        """loopa CNAME loopb CNAME loopa (one zone, one answer): TEMPFAIL."""
        assert ask_one(knot.nameservers, f"loopa.{ONE}", "A") == Answer(Status.TEMPFAIL)

    def test_a_loop_across_follow_up_questions_is_temporary(self, knot: KnotServer) -> None:
        """cross.one.test -> cross.two.test -> cross.one.test, a hop per answer: TEMPFAIL."""
        assert ask_one(knot.nameservers, f"cross.{ONE}", "MX") == Answer(Status.TEMPFAIL)

    def test_a_chain_of_the_maximum_length_is_followed(self, knot: KnotServer) -> None:
        """MAX_CNAME_RESTARTS hops, one per answer: the address at its end is found."""
        answer = ask_one(knot.nameservers, hop("ok", 0), "A")
        assert answer == Answer(Status.OK, ("192.0.2.10",))

    def test_a_chain_longer_than_the_maximum_is_temporary(self, knot: KnotServer) -> None:
        """MAX_CNAME_RESTARTS + 1 hops, one per answer: TEMPFAIL, not an endless chase."""
        assert ask_one(knot.nameservers, hop("long", 0), "A") == Answer(Status.TEMPFAIL)

    def test_the_follow_up_asks_for_the_end_of_the_chain(self) -> None:
        """A mixed-case CNAME target: the follow-up asks its normalised name, once."""
        records = {
            b"start.example.test": [("CNAME", name_wire(b"Target.EXAMPLE.test."))],
            b"target.example.test": [("A", socket.inet_aton("192.0.2.5"))],
        }
        with BadDns("answer", address="127.0.0.1", records=records) as server:
            answer = ask_one([f"127.0.0.1:{server.port}"], "start.example.test", "A")
            asked = [(name, qtype) for name, qtype, _ in server.queries]
        assert answer == Answer(Status.OK, ("192.0.2.5",))
        assert asked == [(b"start.example.test", 1), (b"target.example.test", 1)]

    def test_a_self_referencing_cname_is_temporary(self) -> None:
        """``self CNAME self``: TEMPFAIL after one question."""
        records = {b"self.example.test": [("CNAME", name_wire(b"SELF.example.test"))]}
        with BadDns("answer", address="127.0.0.1", records=records) as server:
            answer = ask_one([f"127.0.0.1:{server.port}"], "self.example.test", "A")
            count = len(server.queries)
        assert answer == Answer(Status.TEMPFAIL)
        assert count == 1


class Data(NamedTuple):
    """A CNAME record's data, as pycares gives it."""

    cname: str


class Record(NamedTuple):
    """A stand-in for a pycares answer record."""

    type: int
    name: str
    data: object


class Result(NamedTuple):
    """A stand-in for a pycares DNSResult."""

    answer: list[Record]


def cname(owner: str, target: str) -> Record:
    """A CNAME record."""
    return Record(pycares.QUERY_TYPE_CNAME, owner, Data(target))


def a_record(owner: str) -> Record:
    """An A record (data irrelevant to the chain)."""
    return Record(pycares.QUERY_TYPE_A, owner, object())


def chain_end(records: list[Record], name: str, seen: set[str] | None = None) -> str | None:
    """``_chain_end`` with the ``seen`` set ``CaresLookup`` starts with: the asked name."""
    return _chain_end(Result(records), name, {name.rstrip(".").lower()} if seen is None else seen)


class TestChainEnd:
    """``_chain_end`` alone: where an answer's CNAME chain from the asked name ends."""

    def test_no_cname_is_the_name_itself(self) -> None:
        """An empty answer (NODATA): the asked name, normalised."""
        assert chain_end([], "Host.Example.") == "host.example"

    def test_a_chain_ends_in_another_name(self) -> None:
        """a -> b -> c, records in any order and case: ``c``; b and c are now seen."""
        seen = {"a.example"}
        records = [cname("B.example.", "C.Example."), cname("a.example", "b.example")]
        assert chain_end(records, "a.example", seen) == "c.example"
        assert seen == {"a.example", "b.example", "c.example"}

    def test_a_chain_with_records_at_its_end_still_ends_there(self) -> None:
        """a -> b with an A record for b (asked for another type): ``b``."""
        assert chain_end([cname("a", "b"), a_record("b")], "a") == "b"

    def test_a_loop_within_one_answer(self) -> None:
        """a -> b -> a: None (a loop)."""
        assert chain_end([cname("a", "b"), cname("b", "a")], "a") is None

    def test_a_loop_away_from_the_start(self) -> None:
        """a -> b -> c -> b: None."""
        records = [cname("a", "b"), cname("b", "c"), cname("c", "b")]
        assert chain_end(records, "a") is None

    def test_a_name_aliased_to_itself(self) -> None:
        """a -> A. (itself, other spelling): None."""
        assert chain_end([cname("a", "A.")], "a") is None

    def test_a_loop_across_follow_up_questions(self) -> None:
        """a -> b in one answer, then b -> a in the next: None, through the shared ``seen``."""
        seen = {"a"}
        assert chain_end([cname("a", "b")], "a", seen) == "b"
        assert chain_end([cname("b", "a")], "b", seen) is None

    def test_only_records_of_another_type(self) -> None:
        """An answer with only an A record for the name (another type was asked): None."""
        assert chain_end([a_record("a")], "a") is None

    def test_records_of_another_type_after_an_alias_are_not_a_failure(self) -> None:
        """a -> b, and an A record for a too: the chain's end ``b`` still counts."""
        assert chain_end([a_record("a"), cname("a", "b")], "a") == "b"


TTL1, TTL2 = "ttl1.test", "ttl2.test"
TTL_ZONES = {
    TTL1: "\n".join(
        [
            "$TTL 30",
            f"@ 30 SOA ns.{TTL1}. hostmaster.{TTL1}. 1 3600 600 86400 4",
            "@ 30 NS ns.invalid.",
            "@ 40 MX 10 host",
            "host 20 A 192.0.2.1",
            "short 7 CNAME host",
            "long 90 CNAME host",
            f"cross 9 CNAME target.{TTL2}.",
            f"crosslong 50 CNAME target.{TTL2}.",
            'txtonly 30 TXT "no address here"',
            "nodata 25 CNAME txtonly",
            f"dangling 5 CNAME missing.{TTL2}.",
        ]
    ),
    TTL2: "target 30 A 192.0.2.9\n",
}


@pytest.fixture(scope="module")
def ttl_knot() -> Iterator[KnotServer]:
    """One knotd serving zones whose TTLs differ record by record; broken.test is SERVFAIL."""
    with KnotServer(TTL_ZONES, servfail_zones=["broken.test"]) as server:
        yield server


class TestTtls:
    """Every answer carries its TTL: the smallest of the records and CNAMEs it came from."""

    def test_a_positive_answer_has_its_records_ttl(self, ttl_knot: KnotServer) -> None:
        """host A (TTL 20) and the zone's MX (TTL 40): those TTLs, fresh from knot."""
        a_answer, mx_answer = ask(ttl_knot.nameservers, (f"host.{TTL1}", "A"), (TTL1, "MX"))
        assert (a_answer.records, a_answer.ttl) == (("192.0.2.1",), 20)
        assert (mx_answer.records, mx_answer.ttl) == ((MX(10, f"host.{TTL1}"),), 40)
        assert not a_answer.cached and not mx_answer.cached

    def test_a_chain_in_one_answer_gives_its_smallest_ttl(self, ttl_knot: KnotServer) -> None:
        """CNAME 7 -> A 20: TTL 7; CNAME 90 -> A 20: TTL 20."""
        short, long = ask(ttl_knot.nameservers, (f"short.{TTL1}", "A"), (f"long.{TTL1}", "A"))
        assert (short.records, short.ttl) == (("192.0.2.1",), 7)
        assert (long.records, long.ttl) == (("192.0.2.1",), 20)

    def test_a_chain_across_follow_ups_gives_its_smallest_ttl(self, ttl_knot: KnotServer) -> None:
        """CNAME 9 (then a follow-up) -> A 30: TTL 9; CNAME 50 -> A 30: TTL 30.

        Each on a channel of its own: c-ares' own cache would answer the second follow-up
        with the TTL it has left.
        """
        cross = ask_one(ttl_knot.nameservers, f"cross.{TTL1}", "A")
        crosslong = ask_one(ttl_knot.nameservers, f"crosslong.{TTL1}", "A")
        assert (cross.records, cross.ttl) == (("192.0.2.9",), 9)
        assert (crosslong.records, crosslong.ttl) == (("192.0.2.9",), 30)

    def test_knot_sends_the_soa_with_a_negative_answer(self, ttl_knot: KnotServer) -> None:
        """The premise: knot's NXDOMAIN and NODATA carry the SOA, negative TTL 4 (RFC 2308)."""
        for name in (f"nothere.{TTL1}", f"txtonly.{TTL1}"):
            reply = dnswire.query_udp("127.0.0.1", ttl_knot.port, name, "A")
            assert [(r.type_name, r.ttl) for r in reply.authority] == [("SOA", 4)]

    def test_a_negative_answer_gets_the_fixed_negative_ttl(self, ttl_knot: KnotServer) -> None:
        """NXDOMAIN and NODATA: c-ares hides their SOA, so NEGATIVE_TTL (60 s), not 4."""
        from mxf_remote.cares import NEGATIVE_TTL

        nxdomain, nodata = ask(
            ttl_knot.nameservers, (f"nothere.{TTL1}", "A"), (f"txtonly.{TTL1}", "A")
        )
        assert (nxdomain.status, nxdomain.ttl) == (Status.NXDOMAIN, NEGATIVE_TTL)
        assert (nodata.status, nodata.ttl) == (Status.NODATA, NEGATIVE_TTL)
        assert NEGATIVE_TTL == 60

    def test_the_soa_beside_a_chain_gives_the_negative_ttl(self, ttl_knot: KnotServer) -> None:
        """CNAME 25 -> a name without A, SOA beside the CNAME: NODATA with TTL 4."""
        reply = dnswire.query_udp("127.0.0.1", ttl_knot.port, f"nodata.{TTL1}", "A")
        assert [(r.type_name, r.ttl) for r in reply.authority] == [("SOA", 4)]
        answer = ask_one(ttl_knot.nameservers, f"nodata.{TTL1}", "A")
        assert (answer.status, answer.ttl) == (Status.NODATA, 4)

    def test_a_short_chain_bounds_a_negative_ttl(self, ttl_knot: KnotServer) -> None:
        """CNAME 5 -> a missing name (a follow-up): NXDOMAIN with TTL 5, not 60."""
        answer = ask_one(ttl_knot.nameservers, f"dangling.{TTL1}", "A")
        assert (answer.status, answer.ttl) == (Status.NXDOMAIN, 5)

    def test_a_temporary_failure_has_no_ttl(self, ttl_knot: KnotServer) -> None:
        """SERVFAIL: TEMPFAIL with no TTL (nothing to keep)."""
        answer = ask_one(ttl_knot.nameservers, "mx.broken.test", "MX")
        assert (answer.status, answer.ttl) == (Status.TEMPFAIL, None)

    def test_the_ttl_does_not_make_answers_differ(self, ttl_knot: KnotServer) -> None:
        """An answer equals the same status and records without a TTL (and hashes alike)."""
        answer = ask_one(ttl_knot.nameservers, f"host.{TTL1}", "A")
        plain = Answer(Status.OK, ("192.0.2.1",))
        assert answer.ttl == 20
        assert [answer == plain, answer != plain] == [True, False]
        assert hash(answer) == hash(plain)
        assert answer != Answer(Status.OK, ("192.0.2.2",), ttl=20)


class Soa(NamedTuple):
    """A SOA record's data, as far as ``_soa_negative_ttl`` reads it."""

    minimum: int


class AuthorityRecord(NamedTuple):
    """A stand-in for a pycares authority record."""

    type: int
    ttl: int
    data: object


class WithAuthority(NamedTuple):
    """A stand-in for a pycares DNSResult with an authority section."""

    authority: list[AuthorityRecord]


def soa_negative_ttl(authority: list[AuthorityRecord]) -> int | None:
    """``cares._soa_negative_ttl`` of a result with this authority section."""
    from mxf_remote.cares import _soa_negative_ttl

    return _soa_negative_ttl(WithAuthority(authority))


class TestSoaNegativeTtl:
    """``_soa_negative_ttl`` alone: RFC 2308 §5's min(SOA TTL, SOA MINIMUM)."""

    @pytest.mark.parametrize(("ttl", "minimum", "expected"), [(300, 60, 60), (30, 3600, 30)])
    def test_the_smaller_of_ttl_and_minimum(self, ttl: int, minimum: int, expected: int) -> None:
        """SOA TTL 300 / MINIMUM 60: 60; SOA TTL 30 / MINIMUM 3600: 30."""
        soa = AuthorityRecord(pycares.QUERY_TYPE_SOA, ttl, Soa(minimum))
        ns = AuthorityRecord(pycares.QUERY_TYPE_NS, 1, object())
        assert soa_negative_ttl([ns, soa]) == expected

    def test_no_soa_is_none(self) -> None:
        """An authority section without SOA: None (the TTL is not known)."""
        ns = AuthorityRecord(pycares.QUERY_TYPE_NS, 1, object())
        assert soa_negative_ttl([ns]) is None


def unassigned_code_point() -> str:
    """A code point this Python's Unicode database does not assign (found, not assumed)."""
    import unicodedata

    return next(
        chr(cp) for cp in range(0x3FFFD, 0x30000, -1) if unicodedata.category(chr(cp)) == "Cn"
    )


class TestAsciiName:
    """``ascii_name``: the name c-ares is asked, IDNA 2008 A-labels for labels not ASCII."""

    @pytest.mark.parametrize(
        "name", ["example.org", "EXAMPLE.ORG.", "_smtp._tcp.x", "a b.x", "", ".", "xn--zz"]
    )
    def test_ascii_passes_unchanged(self, name: str) -> None:
        """An ASCII name, however odd, is left to c-ares exactly as given."""
        assert ascii_name(name) == name

    @pytest.mark.parametrize(
        ("name", "asked"),
        [
            ("fa\u00df.example", "xn--fa-hia.example"),
            ("FA\u00df.EXAMPLE", "xn--fa-hia.example"),
            ("FA\u1e9e.example", "xn--fa-hia.example"),
            ("b\u00fccher.example.", "xn--bcher-kva.example."),
            ("_smtp._tcp.B\u00fccher.example", "_smtp._tcp.xn--bcher-kva.example"),
            ("\u4f8b\u5b50.\u7528\u6237", "xn--fsqu00a.xn--zouo53b"),
            ("stra\u00dfe\u3002example", "xn--strae-oqa.example"),
            ("\uff26\uff21\u00df\uff0eexample", "xn--fa-hia.example"),
            ("cafe\u0301.example", "xn--caf-dma.example"),
            ("p\u0430ypal.example", "xn--pypal-4ve.example"),
            ("\u05d0\u05d1.example", "xn--4dbc.example"),
            ("fa\u00df..example", "xn--fa-hia..example"),
        ],
        ids=[
            "sharp-s",
            "upper-case",
            "capital-sharp-s",
            "trailing-dot",
            "srv-labels",
            "cjk",
            "ideographic-full-stop",
            "full-width",
            "decomposed",
            "mixed-scripts",
            "rtl",
            "empty-label-left-to-c-ares",
        ],
    )
    def test_a_labels_by_idna_2008(self, name: str, asked: str) -> None:
        """UTS #46 mapping, non-transitional: ß stays ß (not IDNA 2003's ss), case folds."""
        assert ascii_name(name) == asked

    def test_not_idna_2003(self) -> None:
        """The premise: IDNA 2003 (Python's codec, pycares without idna) says fass."""
        assert "fa\u00df.example".encode("idna") == b"fass.example"
        assert ascii_name("fa\u00df.example") == "xn--fa-hia.example"

    @pytest.mark.parametrize(
        "name",
        [
            "caf\udce9.example",
            "\udcff",
            "\u00e9" * 60 + ".example",
            "\u00e9" * 300 + ".example",
            "\u00e9." * 600 + "example",
            "a\u05d0.example",
            "\u0627\u0661\u06f1.example",
            "a\u200db.example",
            "\u0301a.example",
            "i\u2764.ws",
            "\U0001f600.example",
            "ab--\u00fc.example",
            "-\u00fc.example",
            "\u00ad",
            "\u00ad.\u00ad",
            "\ufdd0.example",
            "\U0010ffff.example",
        ],
        ids=[
            "invalid-utf8",
            "invalid-utf8-alone",
            "a-label-over-63",
            "label-300",
            "name-over-1024",
            "bidi-ltr-label-with-rtl",
            "contexto-mixed-digits",
            "contextj-joiner",
            "leading-combining-mark",
            "disallowed-symbol",
            "emoji",
            "hyphens-3-4",
            "leading-hyphen",
            "ignorable-only",
            "ignorable-labels",
            "noncharacter",
            "last-noncharacter",
        ],
    )
    def test_a_name_no_idn_can_be_is_nxdomain(self, name: str) -> None:
        """Not UTF-8, or not IDNA 2008 (bidi, joiners, lengths, disallowed): NXDOMAIN."""
        assert ascii_name(name) is Status.NXDOMAIN

    def test_an_unknown_code_point_is_temporary(self) -> None:
        """A code point this Python's Unicode does not know yet: TEMPFAIL, never a bounce."""
        assert ascii_name(f"a{unassigned_code_point()}.example") is Status.TEMPFAIL

    @given(st.text(max_size=300))
    def test_never_raises(self, name: str) -> None:
        """Any string at all: an ASCII name or a status, never an exception."""
        asked = ascii_name(name)
        assert isinstance(asked, Status) or asked.isascii()

    def test_idna_is_imported_only_for_a_name_not_ascii(self) -> None:
        """A fresh interpreter: no idna after CaresLookup and an ASCII name; then it loads."""
        code = (
            "import asyncio, sys\n"
            "from mxf_remote.cares import CaresLookup, ascii_name\n"
            "async def main():\n"
            "    lookup = CaresLookup(['127.0.0.1:9'], asyncio.get_running_loop())\n"
            "    print('idna' in sys.modules, ascii_name('example.org'), 'idna' in sys.modules)\n"
            "    print(ascii_name('fa\\u00df.example'), 'idna' in sys.modules)\n"
            "    await lookup.close()\n"
            "asyncio.run(main())\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
        )
        assert completed.stdout == "False example.org False\nxn--fa-hia.example True\n"


IDN, IDN2 = "idn.test", "idn2.test"
IDN_ZONES = {
    IDN: "\n".join(
        [
            "xn--fa-hia A 192.0.2.20",
            "xn--fa-hia MX 10 xn--mx-cja",
            "xn--mx-cja A 192.0.2.23",
            "fass A 192.0.2.21",  # IDNA 2003's spelling of faß: must never be asked
            "fass MX 10 fass",
            f"xn--caf-dma CNAME xn--fa-hia.{IDN2}.",
        ]
    ),
    IDN2: "xn--fa-hia A 192.0.2.22\n",
    "wild.test": "* A 192.0.2.99\n",
}


@pytest.fixture(scope="module")
def idn_knot() -> Iterator[KnotServer]:
    """One knotd serving idn.test and idn2.test (A-labels only) and a wildcard zone."""
    with KnotServer(IDN_ZONES) as server:
        yield server


class TestIdnThroughKnot:
    """International names asked of a real knot: by their IDNA 2008 A-labels."""

    def test_sharp_s_is_asked_as_its_a_label(self, idn_knot: KnotServer) -> None:
        """faß.idn.test: the A and MX of xn--fa-hia, not those of fass (IDNA 2003)."""
        a_answer, mx_answer = ask(
            idn_knot.nameservers, (f"fa\u00df.{IDN}", "A"), ("FA\u00df.IDN.TEST.", "MX")
        )
        assert a_answer == Answer(Status.OK, ("192.0.2.20",))
        assert mx_answer == Answer(Status.OK, (MX(10, f"xn--mx-cja.{IDN}"),))

    def test_an_exchanger_given_in_unicode(self, idn_knot: KnotServer) -> None:
        """mxé.idn.test (a relay, an MX target as a person writes it): its address."""
        assert ask_one(idn_knot.nameservers, f"mx\u00e9.{IDN}", "A") == Answer(
            Status.OK, ("192.0.2.23",)
        )

    def test_a_chain_from_an_idn_is_followed(self, idn_knot: KnotServer) -> None:
        """café.idn.test CNAME into the other zone: followed, in A-label form, to its end."""
        answer = ask_one(idn_knot.nameservers, f"caf\u00e9.{IDN}", "A")
        assert answer == Answer(Status.OK, ("192.0.2.22",))

    def test_the_wildcard_answers_a_converted_name(self, idn_knot: KnotServer) -> None:
        """The control: café.wild.test is asked (as xn--caf-dma) and answered."""
        answer = ask_one(idn_knot.nameservers, "caf\u00e9.wild.test", "A")
        assert answer == Answer(Status.OK, ("192.0.2.99",))

    @pytest.mark.parametrize(
        "name",
        [
            "caf\udce9.wild.test",
            "\u00e9" * 60 + ".wild.test",
            "a\u05d0.wild.test",
            "i\u2764.wild.test",
            "fa\u00df..wild.test",
            "\u00e9." * 130 + "wild.test",
        ],
        ids=["invalid-utf8", "label-too-long", "bidi", "disallowed", "empty-label", "name-254"],
    )
    def test_a_name_no_idn_can_be_is_nxdomain(self, idn_knot: KnotServer, name: str) -> None:
        """Under a wildcard that answers anything asked: NXDOMAIN, so never asked."""
        assert ask_one(idn_knot.nameservers, name, "A") == Answer(Status.NXDOMAIN)

    def test_an_unknown_code_point_is_temporary(self, idn_knot: KnotServer) -> None:
        """A code point this Python does not know, under the wildcard: TEMPFAIL."""
        name = f"a{unassigned_code_point()}.wild.test"
        assert ask_one(idn_knot.nameservers, name, "A") == Answer(Status.TEMPFAIL)

    def test_the_question_on_the_wire(self) -> None:
        """What reaches the server for faß.example.test: xn--fa-hia.example.test, once."""
        records = {b"xn--fa-hia.example.test": [("A", socket.inet_aton("192.0.2.5"))]}
        with BadDns("answer", address="127.0.0.1", records=records) as server:
            answer = ask_one([f"127.0.0.1:{server.port}"], "Fa\u00df.example.test", "A")
            asked = [(name, qtype) for name, qtype, _ in server.queries]
        assert answer == Answer(Status.OK, ("192.0.2.5",))
        assert asked == [(b"xn--fa-hia.example.test", 1)]

    def test_an_8bit_target_in_an_answer_does_not_crash(self) -> None:
        """An MX target with raw UTF-8 bytes from the server: an answer, never an exception."""
        records = {
            b"raw.example.test": [("MX", struct.pack("!H", 10) + name_wire(b"mx\xc3\xa9.test"))]
        }
        with BadDns("answer", address="127.0.0.1", records=records) as server:
            (answer,) = ask([f"127.0.0.1:{server.port}"], ("raw.example.test", "MX"))
        assert answer == Answer(Status.OK, (MX(10, "mx\\195\\169.test"),))  # c-ares escapes
