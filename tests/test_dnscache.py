"""Tests for mxf_remote/dnscache.py: the DNS cache across deliveries of mxf-remoted.

The rules are pinned on a virtual clock (``VirtualClockLoop``, whose ``time`` is the
cache's clock) with a scripted inner lookup that answers each question from a list, so
expiry is asserted to the exact second.  Then the real thing: ``CaresLookup`` behind
``CachingLookup`` asking a real knot whose zone sets the TTLs, and the flag a cache hit
leaves in resolution's record and in the trace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pycares
import pytest

from mxf_remote.cares import NEGATIVE_TTL, CaresLookup
from mxf_remote.destination import make_destination
from mxf_remote.dispatch import Dispatched
from mxf_remote.dnscache import MAX_NEGATIVE_TTL, MAX_TTL, CachingLookup
from mxf_remote.knowledge import MX, Answer, Status
from mxf_remote.plan import Facts, Plan
from mxf_remote.race import Lost
from mxf_remote.resolution import Query, Resolution
from mxf_remote.server import Server
from mxf_remote.timeline import dispatch_events
from tests.infra.knot import KnotServer
from tests.scripted import SMTP, VirtualClockLoop

T = TypeVar("T")
Key = tuple[str, str]

HOST = "cache.test"
A_KEY = (HOST, "A")


@pytest.fixture(scope="module", autouse=True)
def pycares_shutdown_thread() -> None:
    """Start pycares' one daemon thread (on the first channel closed) before any test.

    The hygiene check allows that thread, but only after waiting 2 s for it to end.
    """
    pycares.Channel().close()


class Inner:
    """A scripted inner lookup: each ask of ``(name, type)`` takes the next answer listed.

    ``delay`` seconds pass before each answer; ``asked`` records ``(time, name, type)``;
    an ``Exception`` listed is raised instead of answered.
    """

    def __init__(self, script: dict[Key, list[Answer[Any] | Exception]], delay: float = 0.0):
        self.script = {key: list(answers) for key, answers in script.items()}
        self.delay = delay
        self.asked: list[tuple[float, str, str]] = []
        self.closed = False

    async def __call__(self, name: str, rtype: str) -> Answer[Any]:
        loop = asyncio.get_running_loop()
        self.asked.append((loop.time(), name, rtype))
        await asyncio.sleep(self.delay)
        answer = self.script[(name, rtype)].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        self.closed = True


def run(main: Callable[[VirtualClockLoop], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(loop)`` on a fresh virtual-clock loop (which fails if a task is left)."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


def ok(ttl: int | None, *records: str) -> Answer[Any]:
    """An OK answer with the given TTL (an address by default)."""
    return Answer(Status.OK, records or ("192.0.2.1",), ttl=ttl)


async def sleep_until(loop: VirtualClockLoop, when: float) -> None:
    """Let the virtual clock reach ``when`` seconds exactly."""
    await asyncio.sleep(when - loop.time())
    assert loop.time() == when


async def asks_at(
    loop: VirtualClockLoop, cache: CachingLookup, times: list[float], key: Key = A_KEY
) -> list[Answer[Any]]:
    """Ask ``key`` at each of ``times`` (seconds on the virtual clock)."""
    answers = []
    for when in times:
        await sleep_until(loop, when)
        answers.append(await cache(*key))
    return answers


def status_ttl_cached(answers: list[Answer[Any]]) -> list[tuple[Status, int | None, bool]]:
    """What a cache adds to each answer, with its status."""
    return [(answer.status, answer.ttl, answer.cached) for answer in answers]


class TestTtl:
    """An answer is served from the cache exactly as long as its TTL lasts."""

    def test_a_hit_has_the_answer_and_the_ttl_left(self) -> None:
        """Asked at 0 s (TTL 300) and again at 100 s: the same records, cached, TTL 200."""
        inner = Inner({A_KEY: [ok(300, "192.0.2.7")]})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            return await asks_at(loop, CachingLookup(inner, clock=loop.time), [0.0, 100.0])

        first, second = run(main)
        assert first == second == Answer(Status.OK, ("192.0.2.7",))
        assert status_ttl_cached([first, second]) == [
            (Status.OK, 300, False),
            (Status.OK, 200, True),
        ]
        assert len(inner.asked) == 1

    def test_expiry_is_exact(self) -> None:
        """TTL 5: at 4.999 s still a hit (0 s left, rounded down); at 5 s asked again."""
        inner = Inner({A_KEY: [ok(5), ok(5, "192.0.2.2")]})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            return await asks_at(loop, CachingLookup(inner, clock=loop.time), [0, 4, 4.999, 5])

        answers = run(main)
        assert status_ttl_cached(answers) == [
            (Status.OK, 5, False),
            (Status.OK, 1, True),
            (Status.OK, 0, True),
            (Status.OK, 5, False),
        ]
        assert answers[3].records == ("192.0.2.2",)
        assert [when for when, _, _ in inner.asked] == [0, 5]

    def test_the_ttl_runs_from_when_the_answer_arrived(self) -> None:
        """An answer taking 2 s with TTL 10: kept until 12 s, not 10 s."""
        inner = Inner({A_KEY: [ok(10), ok(10)]}, delay=2.0)

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            return await asks_at(loop, CachingLookup(inner, clock=loop.time), [0, 11, 12])

        answers = run(main)
        assert [answer.cached for answer in answers] == [False, True, False]
        assert answers[1].ttl == 1

    def test_a_positive_ttl_is_kept_a_day_at_most(self) -> None:
        """TTL a week: a hit until one day has passed, asked again then."""
        inner = Inner({A_KEY: [ok(7 * MAX_TTL), ok(7 * MAX_TTL)]})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            cache = CachingLookup(inner, clock=loop.time)
            return await asks_at(loop, cache, [0, MAX_TTL - 1, MAX_TTL])

        answers = run(main)
        assert status_ttl_cached(answers)[1:] == [(Status.OK, 1, True), (Status.OK, 604800, False)]
        assert MAX_TTL == 86_400

    @pytest.mark.parametrize("ttl", [0, None], ids=["ttl-0", "ttl-unknown"])
    def test_ttl_0_or_unknown_is_not_kept(self, ttl: int | None) -> None:
        """An answer with TTL 0 (use once), or none: every ask asks again."""
        inner = Inner({A_KEY: [ok(ttl), ok(ttl), ok(ttl)]})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            cache = CachingLookup(inner, clock=loop.time)
            answers = await asks_at(loop, cache, [0, 0, 1])
            assert len(cache) == 0
            return answers

        assert [answer.cached for answer in run(main)] == [False, False, False]
        assert len(inner.asked) == 3


class TestNegative:
    """NXDOMAIN and NODATA are kept for their (negative) TTL, like positive answers."""

    @pytest.mark.parametrize("status", [Status.NXDOMAIN, Status.NODATA])
    def test_a_negative_answer_is_kept_until_its_ttl_expires(self, status: Status) -> None:
        """TTL 60 (cares.NEGATIVE_TTL): hits at 1 s and 59.5 s, asked again at 60 s."""
        inner = Inner({A_KEY: [Answer(status, ttl=NEGATIVE_TTL), ok(300)]})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            return await asks_at(loop, CachingLookup(inner, clock=loop.time), [0, 1, 59.5, 60])

        assert status_ttl_cached(run(main)) == [
            (status, 60, False),
            (status, 59, True),
            (status, 0, True),
            (Status.OK, 300, False),
        ]
        assert NEGATIVE_TTL == 60

    def test_a_negative_answer_is_kept_three_hours_at_most(self) -> None:
        """NXDOMAIN with TTL a day (an SOA asking for it): asked again after 3 hours."""
        inner = Inner({A_KEY: [Answer(Status.NXDOMAIN, ttl=MAX_TTL)] * 2})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            cache = CachingLookup(inner, clock=loop.time)
            return await asks_at(loop, cache, [0, MAX_NEGATIVE_TTL - 1, MAX_NEGATIVE_TTL])

        answers = run(main)
        assert [answer.cached for answer in answers] == [False, True, False]
        assert MAX_NEGATIVE_TTL == 3 * 3600


class TestTemporaryFailures:
    """A temporary failure is never kept, and never stands for NXDOMAIN."""

    def test_a_servfail_is_not_kept_and_the_next_ask_asks_again(self) -> None:
        """TEMPFAIL at 0 s; the ask at 0 s after it goes to DNS and gets the real answer."""
        inner = Inner({A_KEY: [Answer(Status.TEMPFAIL), ok(300)]})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            cache = CachingLookup(inner, clock=loop.time)
            answers = await asks_at(loop, cache, [0, 0])
            assert len(cache) == 1
            return answers

        assert status_ttl_cached(run(main)) == [
            (Status.TEMPFAIL, None, False),
            (Status.OK, 300, False),
        ]
        assert len(inner.asked) == 2

    def test_a_tempfail_with_a_ttl_is_still_not_kept(self) -> None:
        """Even a TEMPFAIL claiming a TTL (no lookup of ours does) is asked again next time."""
        inner = Inner({A_KEY: [Answer(Status.TEMPFAIL, ttl=300), Answer(Status.NXDOMAIN, ttl=60)]})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            return await asks_at(loop, CachingLookup(inner, clock=loop.time), [0, 1, 2])

        assert status_ttl_cached(run(main)) == [
            (Status.TEMPFAIL, 300, False),
            (Status.NXDOMAIN, 60, False),
            (Status.NXDOMAIN, 59, True),
        ]

    def test_a_servfail_after_an_expired_nxdomain_is_a_servfail(self) -> None:
        """NXDOMAIN (TTL 5) expires; DNS then fails: TEMPFAIL, not the stale NXDOMAIN."""
        answers_in_order: list[Answer[Any] | Exception] = [
            Answer(Status.NXDOMAIN, ttl=5),
            Answer(Status.TEMPFAIL),
            Answer(Status.NXDOMAIN, ttl=5),
        ]
        inner = Inner({A_KEY: answers_in_order})

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            return await asks_at(loop, CachingLookup(inner, clock=loop.time), [0, 5, 5, 6])

        assert status_ttl_cached(run(main)) == [
            (Status.NXDOMAIN, 5, False),
            (Status.TEMPFAIL, None, False),
            (Status.NXDOMAIN, 5, False),
            (Status.NXDOMAIN, 4, True),
        ]

    def test_a_lookup_that_raises_is_not_kept(self) -> None:
        """The inner lookup raises: the caller gets the exception; the next ask asks again."""
        inner = Inner({A_KEY: [RuntimeError("resolver bug"), ok(300)]})

        async def main(loop: VirtualClockLoop) -> Answer[Any]:
            cache = CachingLookup(inner, clock=loop.time)
            with pytest.raises(RuntimeError, match="resolver bug"):
                await cache(*A_KEY)
            return await cache(*A_KEY)

        assert (run(main).status, len(inner.asked)) == (Status.OK, 2)


class TestSharedQuestions:
    """Misses for the same key at the same time ask DNS once (no thundering herd)."""

    def test_concurrent_misses_ask_once(self) -> None:
        """Five deliveries miss together: one question, five fresh answers, then hits."""
        inner = Inner({A_KEY: [ok(300)]}, delay=0.5)

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            cache = CachingLookup(inner, clock=loop.time)
            together = await asyncio.gather(*(cache(*A_KEY) for _ in range(5)))
            assert loop.time() == 0.5
            return [*together, await cache(*A_KEY)]

        answers = run(main)
        assert [answer.cached for answer in answers] == [False] * 5 + [True]
        assert all(answer == ok(300) for answer in answers)
        assert len(inner.asked) == 1

    def test_a_waiter_giving_up_does_not_stop_the_question(self) -> None:
        """One of two waiters is cancelled (its timeoutdns): the other still gets the answer."""
        inner = Inner({A_KEY: [ok(300)]}, delay=1.0)

        async def main(loop: VirtualClockLoop) -> Answer[Any]:
            cache = CachingLookup(inner, clock=loop.time)
            quitter = loop.create_task(cache(*A_KEY))
            stayer = loop.create_task(cache(*A_KEY))
            await asyncio.sleep(0.5)
            quitter.cancel()
            answer = await stayer
            assert quitter.cancelled()
            return answer

        assert run(main) == ok(300)
        assert len(inner.asked) == 1

    def test_a_question_nobody_waits_for_still_fills_the_cache(self) -> None:
        """Every waiter cancelled: the question finishes, and the next ask is a hit."""
        inner = Inner({A_KEY: [ok(300)]}, delay=1.0)

        async def main(loop: VirtualClockLoop) -> Answer[Any]:
            cache = CachingLookup(inner, clock=loop.time)
            waiter = loop.create_task(cache(*A_KEY))
            await asyncio.sleep(0.5)
            waiter.cancel()
            await sleep_until(loop, 2.0)
            return await cache(*A_KEY)

        answer = run(main)
        assert (answer.cached, answer.ttl, len(inner.asked)) == (True, 299, 1)

    def test_a_shared_exception_reaches_every_waiter(self) -> None:
        """The shared question raises: both waiters get the exception, nothing is kept."""
        inner = Inner({A_KEY: [RuntimeError("resolver bug")]}, delay=1.0)

        async def main(loop: VirtualClockLoop) -> list[Any]:
            cache = CachingLookup(inner, clock=loop.time)
            results = await asyncio.gather(cache(*A_KEY), cache(*A_KEY), return_exceptions=True)
            assert len(cache) == 0
            return list(results)

        assert [type(result) for result in run(main)] == [RuntimeError, RuntimeError]
        assert len(inner.asked) == 1

    def test_close_stops_the_questions_and_closes_the_inner_lookup(self) -> None:
        """close() with a question under way: it is cancelled, and the inner lookup closed."""
        inner = Inner({A_KEY: [ok(300)]}, delay=10.0)

        async def main(loop: VirtualClockLoop) -> None:
            cache = CachingLookup(inner, clock=loop.time)
            waiter = loop.create_task(cache(*A_KEY))
            await asyncio.sleep(1.0)
            await cache.close()
            with pytest.raises(asyncio.CancelledError):
                await waiter

        run(main)
        assert inner.closed


class TestKeysAndBound:
    """Entries are per (name, type); there are at most ``max_entries`` of them (LRU)."""

    def test_keys_are_name_and_type(self) -> None:
        """A and AAAA of one name, and A of another: three questions, each kept apart."""
        other = ("other.test", "A")
        inner = Inner(
            {
                A_KEY: [ok(300, "192.0.2.1")],
                (HOST, "AAAA"): [Answer(Status.NODATA, ttl=60)],
                other: [ok(300, "192.0.2.9")],
            }
        )

        async def main(loop: VirtualClockLoop) -> list[Answer[Any]]:
            cache = CachingLookup(inner, clock=loop.time)
            keys = [A_KEY, (HOST, "AAAA"), other] * 2
            return [await cache(*key) for key in keys]

        answers = run(main)
        assert [answer.cached for answer in answers] == [False] * 3 + [True] * 3
        assert answers[3:] == answers[:3]
        assert [answer.records for answer in answers[3:]] == [("192.0.2.1",), (), ("192.0.2.9",)]
        assert len(inner.asked) == 3

    def test_a_name_in_another_spelling_is_the_same_key(self) -> None:
        """``CACHE.Test.`` after ``cache.test``: a hit (names compare as ``dns_name``)."""
        inner = Inner({A_KEY: [ok(300)]})

        async def main(loop: VirtualClockLoop) -> Answer[Any]:
            cache = CachingLookup(inner, clock=loop.time)
            await cache(*A_KEY)
            return await cache("CACHE.Test.", "A")

        assert run(main).cached

    def test_the_least_recently_used_entry_is_evicted(self) -> None:
        """Bound 3: a, b, c, then a hit on a, then d: b (least recently used) is gone."""
        names = ["a", "b", "c", "d"]
        inner = Inner({(f"{n}.test", "A"): [ok(300), ok(300)] for n in names})

        async def main(loop: VirtualClockLoop) -> list[bool]:
            cache = CachingLookup(inner, clock=loop.time, max_entries=3)
            for name in ["a", "b", "c", "a", "d"]:
                await cache(f"{name}.test", "A")
            assert len(cache) == 3
            return [(await cache(f"{n}.test", "A")).cached for n in ["a", "c", "d", "b"]]

        assert run(main) == [True, True, True, False]
        asked = [name for _, name, _ in inner.asked]
        assert asked == ["a.test", "b.test", "c.test", "d.test", "b.test"]

    def test_memory_stays_bounded_with_many_names(self) -> None:
        """10 000 different names through a cache of 100: never more than 100 entries."""
        count, bound = 10_000, 100
        inner = Inner({(f"n{i}.test", "A"): [ok(300)] for i in range(count)})

        async def main(loop: VirtualClockLoop) -> list[int]:
            cache = CachingLookup(inner, clock=loop.time, max_entries=bound)
            sizes = []
            for i in range(count):
                await cache(f"n{i}.test", "A")
                sizes.append(len(cache))
            last = await cache(f"n{count - 1}.test", "A")
            assert last.cached
            return sizes

        assert max(run(main)) == bound

    def test_the_records_held_are_bounded_too(self) -> None:
        """Bound 10 records: answers of 4, 4, then 4 records evict the oldest; 11 not kept."""
        big = tuple(f"192.0.2.{i}" for i in range(11))
        four = ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4")
        inner = Inner(
            {
                **{(f"{n}.test", "A"): [ok(300, *four), ok(300, *four)] for n in "abc"},
                ("big.test", "A"): [ok(300, *big), ok(300, *big)],
                ("none.test", "A"): [Answer(Status.NXDOMAIN, ttl=60)],
            }
        )

        async def main(loop: VirtualClockLoop) -> list[tuple[str, bool, int, int]]:
            cache = CachingLookup(inner, clock=loop.time, max_records=10)
            seen = []
            for name in ["a", "b", "c", "a", "big", "big", "none", "none"]:
                answer = await cache(f"{name}.test", "A")
                seen.append((name, answer.cached, len(cache), cache.records))
            return seen

        assert run(main) == [
            ("a", False, 1, 4),
            ("b", False, 2, 8),
            ("c", False, 2, 8),
            ("a", False, 2, 8),
            ("big", False, 2, 8),
            ("big", False, 2, 8),
            ("none", False, 3, 8),
            ("none", True, 3, 8),
        ]

    def test_expired_entries_give_back_their_records(self) -> None:
        """An entry that expires and is asked again: the count of records held stays right."""
        inner = Inner({A_KEY: [ok(5, "192.0.2.1", "192.0.2.2")] * 3})

        async def main(loop: VirtualClockLoop) -> list[int]:
            cache = CachingLookup(inner, clock=loop.time)
            held = []
            for when in [0, 5, 10, 11]:
                await sleep_until(loop, when)
                await cache(*A_KEY)
                held.append(cache.records)
            return held

        assert run(main) == [2, 2, 2, 2]
        assert len(inner.asked) == 3

    def test_the_bound_is_at_least_one(self) -> None:
        """``max_entries=0`` is refused."""
        with pytest.raises(ValueError, match="at least 1"):
            CachingLookup(Inner({}), max_entries=0)


async def resolve(cache: CachingLookup) -> list[Query]:
    """One resolution of ``cache.test`` over SMTP through ``cache``: the questions asked."""
    destination = make_destination(HOST, (SMTP,), {})
    resolution = Resolution(destination, cache, timeout=30.0, changed=lambda: None)
    resolution.start()
    while not resolution.over:
        await asyncio.sleep(0.01)
    await resolution.close()
    return resolution.queries


def trace(queries: list[Query]) -> list[dict[str, Any]]:
    """The trace events of a dispatch that asked ``queries`` and made no attempt."""
    return dispatch_events(
        Dispatched(Lost(), Plan((), Facts("dns", HOST)), tuple(queries), (), None)
    )


class TestTheFlag:
    """A cache hit is visible in resolution's record of the question and in the trace."""

    def test_a_second_delivery_sees_cached_answers(self) -> None:
        """Two resolutions of one host through one cache: the second's answers are cached."""
        inner = Inner(
            {
                (HOST, "MX"): [Answer(Status.OK, (MX(10, f"mx.{HOST}"),), ttl=300)],
                (f"_smtp._tcp.{HOST}", "SRV"): [Answer(Status.NXDOMAIN, ttl=60)],
                (HOST, "AAAA"): [Answer(Status.NODATA, ttl=60)],
                (HOST, "A"): [ok(300, "192.0.2.1")],
                (f"mx.{HOST}", "AAAA"): [Answer(Status.NODATA, ttl=60)],
                (f"mx.{HOST}", "A"): [ok(300, "192.0.2.25")],
            }
        )

        async def main(loop: VirtualClockLoop) -> tuple[list[Query], list[Query]]:
            cache = CachingLookup(inner, clock=loop.time)
            return await resolve(cache), await resolve(cache)

        first, second = run(main)
        assert len(first) == len(second) == 6
        assert [query.cached for query in first] == [False] * 6
        assert [query.cached for query in second] == [True] * 6
        answers = [event for event in trace(second) if event["event"] == "answer"]
        assert len(answers) == 6
        assert all(event["cached"] is True for event in answers)
        assert not any("cached" in event for event in trace(first))


KNOT_ZONE = "\n".join(
    [
        "$TTL 30",
        "@ 30 SOA ns.ttl.test. hostmaster.ttl.test. 1 3600 600 86400 4",
        "@ 30 NS ns.invalid.",
        "short 2 A 192.0.2.2",
        "long 3600 A 192.0.2.3",
    ]
)


def on_real_dns(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` on a fresh asyncio loop, bounded to 20 s."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(main(), 20))
    finally:
        loop.close()


@pytest.mark.knot
class TestOnRealDns:
    """CaresLookup behind CachingLookup, asking a real knot whose zone sets the TTLs."""

    def test_real_ttls_are_kept_and_expire(self) -> None:
        """TTL 2 s: a hit with knot gone, until 2 s have passed; then DNS is asked (and fails)."""
        knot = KnotServer({"ttl.test": KNOT_ZONE}, listen=("127.0.0.1",))

        async def main() -> list[Answer[Any]]:
            cache = CachingLookup(CaresLookup(knot.nameservers, asyncio.get_running_loop()))
            try:
                fresh = await cache("short.ttl.test", "A")
                stored = time.monotonic()
                missing = await cache("missing.ttl.test", "A")
                knot.stop()
                hit = await cache("short.ttl.test", "A")
                missing_hit = await cache("missing.ttl.test", "A")
                await asyncio.sleep(2.05 - (time.monotonic() - stored))
                expired = await cache("short.ttl.test", "A")
                return [fresh, missing, hit, missing_hit, expired]
            finally:
                await cache.close()

        with knot:
            fresh, missing, hit, missing_hit, expired = on_real_dns(main)
        assert (fresh.records, fresh.ttl, fresh.cached) == (("192.0.2.2",), 2, False)
        assert (missing.status, missing.ttl, missing.cached) == (Status.NXDOMAIN, 60, False)
        assert (hit.records, hit.cached) == (("192.0.2.2",), True)
        assert hit.ttl in (1, 2)
        assert (missing_hit.status, missing_hit.cached) == (Status.NXDOMAIN, True)
        assert (expired.status, expired.cached) == (Status.TEMPFAIL, False)

    def test_a_second_ask_is_answered_from_the_cache(self) -> None:
        """TTL 3600: the second ask is a hit with the TTL knot gave, less the time passed."""
        knot = KnotServer({"ttl.test": KNOT_ZONE}, listen=("127.0.0.1",))

        async def main() -> tuple[Answer[Any], Answer[Any]]:
            cache = CachingLookup(CaresLookup(knot.nameservers, asyncio.get_running_loop()))
            try:
                return await cache("long.ttl.test", "A"), await cache("LONG.ttl.test.", "A")
            finally:
                await cache.close()

        with knot:
            first, second = on_real_dns(main)
        assert (first.ttl, first.cached, second.cached) == (3600, False, True)
        assert second.ttl in (3599, 3600)
        assert first == second == Answer(Status.OK, ("192.0.2.3",))


class TestServer:
    """mxf-remoted keeps one cache per nameserver set."""

    def test_one_cache_per_nameserver_set(self) -> None:
        """The same set gets the same CachingLookup; another set gets another."""

        async def main() -> None:
            server = Server("/nonexistent/socket")
            first = server.lookup_for(["127.0.0.1:53"])
            try:
                assert isinstance(first, CachingLookup)
                assert server.lookup_for(["127.0.0.1:53"]) is first
                other = server.lookup_for(["127.0.0.2:53"])
                assert isinstance(other, CachingLookup)
                assert other is not first
            finally:
                for lookup in server.lookups.values():
                    await lookup.close()

        on_real_dns(main)
