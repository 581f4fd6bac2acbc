"""Tests for tests/infra/dnsproxy.py: a forwarder in front of a real knotd."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiodns
import aiodns.error
import pycares
import pytest

from tests.infra import dnswire
from tests.infra.dnsproxy import DnsProxy
from tests.infra.knot import KnotServer, ipv6_loopback_available

pytestmark = pytest.mark.knot

ZONES = {
    "example.test": """
@           MX    10 mx1
mx1         A     127.0.0.2
mx1         AAAA  fd6d:7866::2
slow        A     127.0.0.3
gone        A     127.0.0.4
refused     A     127.0.0.5
long        TXT   "%s"
"""
    % ("x" * 200),
    "big.test": "\n".join(f"many A 127.0.{i // 200}.{i % 200 + 2}" for i in range(60)),
}


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotServer]:
    with KnotServer(ZONES, noudp_zones=["big.test"]) as server:
        yield server


@pytest.fixture
def proxy(knot: KnotServer) -> Iterator[DnsProxy]:
    with DnsProxy(knot.address) as p:
        yield p
        assert p.errors == []


def _run(coro: Any, budget: float = 15.0) -> Any:
    """Run a coroutine with a hard deadline so no test can hang."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, budget)

    return asyncio.run(bounded())


async def _resolve(
    nameservers: list[str], name: str, qtype: str, *, timeout: float = 1.0, tries: int = 3
) -> Any:
    resolver = aiodns.DNSResolver(nameservers=nameservers, timeout=timeout, tries=tries)
    try:
        return await resolver.query_dns(name, qtype)
    finally:
        await resolver.close()


def _timed_udp(proxy: DnsProxy, name: str, qtype: str, timeout: float = 3.0) -> tuple[Any, float]:
    t0 = time.monotonic()
    answer = dnswire.query_udp("127.0.0.1", proxy.port, name, qtype, timeout=timeout)
    return answer, time.monotonic() - t0


class TestPassThrough:
    """Without rules the proxy is transparent."""

    def test_udp_and_tcp(self, proxy: DnsProxy) -> None:
        """Queries over UDP and TCP get knot's answers."""
        udp = dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "A")
        tcp = dnswire.query_tcp("127.0.0.1", proxy.port, "mx1.example.test", "AAAA")
        assert udp.answer_data("A") == ["127.0.0.2"]
        assert tcp.answer_data("AAAA") == ["fd6d:7866::2"]

    def test_ipv6_listener(self, proxy: DnsProxy) -> None:
        """The proxy also answers on ::1 with the same port when IPv6 loopback exists."""
        if not ipv6_loopback_available():
            pytest.skip("no IPv6 loopback here")
        assert proxy.nameservers == [f"127.0.0.1:{proxy.port}", f"[::1]:{proxy.port}"]
        answer = dnswire.query_udp("::1", proxy.port, "example.test", "MX")
        assert answer.answer_data("MX") == [(10, "mx1.example.test")]

    def test_nxdomain_passes_through(self, proxy: DnsProxy) -> None:
        """Negative answers are forwarded unchanged."""
        answer = dnswire.query_udp("127.0.0.1", proxy.port, "nope.example.test", "A")
        assert answer.rcode == dnswire.RCODE_NXDOMAIN

    def test_upstream_truncation_preserved(self, proxy: DnsProxy) -> None:
        """A TC=1 answer from knot stays TC=1 over UDP; TCP gets the full answer."""
        udp = dnswire.query_udp("127.0.0.1", proxy.port, "many.big.test", "A")
        tcp = dnswire.query_tcp("127.0.0.1", proxy.port, "many.big.test", "A")
        assert udp.tc
        assert len(tcp.answer_data("A")) == 60

    def test_log_records_queries(self, proxy: DnsProxy) -> None:
        """Each query is logged with a monotonic time, lower-case name, type and transport."""
        t0 = time.monotonic()
        dnswire.query_udp("127.0.0.1", proxy.port, "MX1.Example.TEST.", "A")
        dnswire.query_tcp("127.0.0.1", proxy.port, "example.test", "MX")
        log = proxy.wait_for_queries(2, timeout=2.0)
        assert [(e.qname, e.qtype, e.transport) for e in log] == [
            ("mx1.example.test", "A", "udp"),
            ("example.test", "MX", "tcp"),
        ]
        assert t0 <= log[0].t <= log[1].t <= time.monotonic()
        assert proxy.queries("MX1.example.test", "A") == log[:1]
        proxy.clear_log()
        assert proxy.log == []


class TestRules:
    """delay, drop, rcode, drip, truncate and their matching."""

    def test_delay_measured(self, proxy: DnsProxy) -> None:
        """An 800 ms delay is answered after about 800 ms."""
        proxy.delay("slow.example.test", "A", 800)
        answer, elapsed = _timed_udp(proxy, "slow.example.test", "A")
        assert answer.answer_data("A") == ["127.0.0.3"]
        assert 0.78 <= elapsed < 1.1

    def test_delay_does_not_block_others(self, proxy: DnsProxy) -> None:
        """While a delayed query waits, another query is answered at once."""
        proxy.delay("slow.example.test", "A", 800)
        with ThreadPoolExecutor(max_workers=1) as pool:
            slow = pool.submit(_timed_udp, proxy, "slow.example.test", "A")
            proxy.wait_for_queries(1, timeout=2.0)
            fast, fast_elapsed = _timed_udp(proxy, "mx1.example.test", "A")
            assert not slow.done()
            _slow_answer, slow_elapsed = slow.result(timeout=5.0)
        assert fast.answer_data("A") == ["127.0.0.2"]
        assert fast_elapsed < 0.1
        assert slow_elapsed >= 0.78

    def test_drop_never_answers(self, proxy: DnsProxy) -> None:
        """A dropped query gets no answer, over UDP and TCP; other names still answer."""
        proxy.drop("gone.example.test")
        with pytest.raises(TimeoutError):
            dnswire.query_udp("127.0.0.1", proxy.port, "gone.example.test", "A", timeout=0.3)
        with pytest.raises(TimeoutError):
            dnswire.query_tcp("127.0.0.1", proxy.port, "gone.example.test", "A", timeout=0.3)
        assert dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "A").answers
        assert [e.transport for e in proxy.queries("gone.example.test")] == ["udp", "tcp"]

    def test_rcode_refused(self, proxy: DnsProxy) -> None:
        """rcode(5) answers REFUSED with the question and no records."""
        proxy.rcode("refused.example.test", "A", dnswire.RCODE_REFUSED)
        answer = dnswire.query_udp("127.0.0.1", proxy.port, "refused.example.test", "A")
        assert answer.rcode == dnswire.RCODE_REFUSED
        assert answer.answers == ()
        assert answer.qr
        assert answer.questions[0].name == "refused.example.test"

    def test_rule_matches_type(self, proxy: DnsProxy) -> None:
        """A rule for one type leaves other types of the same name alone."""
        proxy.rcode("mx1.example.test", "AAAA", dnswire.RCODE_SERVFAIL)
        a = dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "A")
        aaaa = dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "AAAA")
        assert (a.rcode, aaaa.rcode) == (dnswire.RCODE_NOERROR, dnswire.RCODE_SERVFAIL)

    def test_rule_name_case_insensitive(self, proxy: DnsProxy) -> None:
        """Rule and query names match whatever their case and trailing dot."""
        proxy.rcode("MX1.EXAMPLE.Test.", None, dnswire.RCODE_REFUSED)
        answer = dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.TEST", "A")
        assert answer.rcode == dnswire.RCODE_REFUSED

    def test_times_limits_rule(self, proxy: DnsProxy) -> None:
        """A rule with times=1 applies to the first matching query only."""
        proxy.rule("mx1.example.test", "A", times=1).drop()
        with pytest.raises(TimeoutError):
            dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "A", timeout=0.3)
        answer = dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "A")
        assert answer.answer_data("A") == ["127.0.0.2"]

    def test_transport_specific_rule(self, proxy: DnsProxy) -> None:
        """A rule limited to UDP leaves TCP queries alone."""
        proxy.rule("mx1.example.test", "A", transport="udp").drop()
        with pytest.raises(TimeoutError):
            dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "A", timeout=0.3)
        assert dnswire.query_tcp("127.0.0.1", proxy.port, "mx1.example.test", "A").answers

    def test_truncate_forces_tcp(self, proxy: DnsProxy) -> None:
        """truncate() answers UDP with an empty TC=1 message; TCP passes through."""
        proxy.rule("mx1.example.test", "A").truncate()
        udp = dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "A")
        tcp = dnswire.query_tcp("127.0.0.1", proxy.port, "mx1.example.test", "A")
        assert udp.tc
        assert udp.answers == ()
        assert tcp.answer_data("A") == ["127.0.0.2"]

    def test_drip_slows_tcp(self, proxy: DnsProxy) -> None:
        """drip(50, 40) writes the TCP answer in 50-byte chunks 40 ms apart, intact."""
        proxy.drip("long.example.test", "TXT", 50, 40)
        query = dnswire.build_query("long.example.test", "TXT")
        chunks: list[bytes] = []
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2.0) as sock:
            sock.sendall(len(query).to_bytes(2, "big") + query)
            t0 = time.monotonic()
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
                wire = b"".join(chunks)
                if len(wire) >= 2 and len(wire) == 2 + int.from_bytes(wire[:2], "big"):
                    break
            elapsed = time.monotonic() - t0
        wire = b"".join(chunks)
        assert max(len(c) for c in chunks) <= 50
        pauses = -(-len(wire) // 50) - 1
        assert pauses >= 4
        assert elapsed >= pauses * 0.04 * 0.9
        (txt,) = dnswire.parse_message(wire[2:]).answer_data("TXT")
        assert txt == (b"x" * 200,)

    def test_clear_rules(self, proxy: DnsProxy) -> None:
        """clear_rules() makes everything pass through again."""
        proxy.drop("mx1.example.test", "A")
        proxy.clear_rules()
        assert dnswire.query_udp("127.0.0.1", proxy.port, "mx1.example.test", "A").answers


class TestShutdown:
    """Clean shutdown."""

    def test_threads_joined_and_sockets_closed(self, knot: KnotServer) -> None:
        """After stop no proxy thread is alive and the port is free again, even mid-delay."""
        with DnsProxy(knot.address) as p:
            p.delay("slow.example.test", "A", 3000)
            port = p.port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(dnswire.build_query("slow.example.test", "A"), ("127.0.0.1", port))
                p.wait_for_queries(1, timeout=2.0)
            t0 = time.monotonic()
        assert time.monotonic() - t0 < 1.0
        assert not [t for t in threading.enumerate() if t.name.startswith("dnsproxy")]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))


class TestThroughAiodns:
    """c-ares behaviour through the proxy: the cases mxf-remote's tests depend on."""

    def test_delayed_answer(self, proxy: DnsProxy) -> None:
        """A fresh channel (timeout=1.0, tries=3) waits for a 300 ms answer."""
        proxy.delay("slow.example.test", "A", 300)
        t0 = time.monotonic()
        res = _run(_resolve(proxy.nameservers, "slow.example.test", "A"))
        elapsed = time.monotonic() - t0
        assert [r.data.addr for r in res.answer] == ["127.0.0.3"]
        assert 0.28 <= elapsed < 0.9

    def test_dropped_query_times_out(self, proxy: DnsProxy) -> None:
        """A dropped query ends in ARES_ETIMEOUT after c-ares' retries."""
        proxy.drop("gone.example.test", "A")
        with pytest.raises(aiodns.error.DNSError) as info:
            _run(_resolve(proxy.nameservers[:1], "gone.example.test", "A", timeout=0.2, tries=2))
        assert info.value.args[0] == pycares.errno.ARES_ETIMEOUT
        assert len(proxy.queries("gone.example.test", "A")) == 2

    def test_refused(self, proxy: DnsProxy) -> None:
        """rcode(REFUSED) surfaces as ARES_EREFUSED."""
        proxy.rcode("refused.example.test", "A", dnswire.RCODE_REFUSED)
        with pytest.raises(aiodns.error.DNSError) as info:
            _run(_resolve(proxy.nameservers, "refused.example.test", "A"))
        assert info.value.args[0] == pycares.errno.ARES_EREFUSED

    def test_truncated_then_tcp(self, proxy: DnsProxy) -> None:
        """c-ares retries over TCP after TC=1 and gets 60 A records; the log shows both."""
        res = _run(_resolve(proxy.nameservers, "many.big.test", "A"))
        assert len({r.data.addr for r in res.answer}) == 60
        transports = [e.transport for e in proxy.queries("many.big.test", "A")]
        assert transports[0] == "udp"
        assert "tcp" in transports
