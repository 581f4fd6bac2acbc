"""Tests for tests/infra/knot.py: a real knotd answering real queries, then going away."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiodns
import aiodns.error
import pycares
import pytest

from tests.infra import dnswire
from tests.infra.knot import KnotServer, KnotStartError, ipv6_loopback_available

pytestmark = pytest.mark.knot

ROOT = Path(__file__).resolve().parent.parent

ZONES = {
    "example.test": """
@                 MX   10 mx1
@                 MX   20 mx2
mx1               A    127.0.0.2
mx1               AAAA fd6d:7866::2
mx2               A    127.0.0.3
_smtp._tcp        SRV  0 1 2525 mx1
txtonly           TXT  "no address here"
""",
    "big.test": "\n".join(f"many A 127.0.{i // 200}.{i % 200 + 2}" for i in range(60)),
    "withsoa.test": """
$TTL 120
@   SOA ns.withsoa.test. admin.withsoa.test. 42 3600 600 86400 60
@   NS  ns
ns  A   127.0.0.7
""",
}
SERVFAIL = ["broken.test", "sf.example.test"]
NOUDP = ["big.test"]


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotServer]:
    with KnotServer(ZONES, servfail_zones=SERVFAIL, noudp_zones=NOUDP) as server:
        yield server


def _process_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _run(coro: Any, budget: float = 10.0) -> Any:
    """Run a coroutine with a hard deadline so no test can hang."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, budget)

    return asyncio.run(bounded())


async def _aiodns_query(nameservers: list[str], name: str, qtype: str) -> Any:
    resolver = aiodns.DNSResolver(nameservers=nameservers, timeout=1.0, tries=3)
    try:
        return await resolver.query_dns(name, qtype)
    finally:
        await resolver.close()


def _aiodns_error(nameservers: list[str], name: str, qtype: str) -> int:
    with pytest.raises(aiodns.error.DNSError) as info:
        _run(_aiodns_query(nameservers, name, qtype))
    return int(info.value.args[0])


class TestLifecycle:
    """Starting, addressing and stopping knotd."""

    def test_starts_quickly(self, knot: KnotServer) -> None:
        """knotd answers every zone well under a second after it is spawned."""
        assert 0 < knot.startup_seconds < 1.0

    def test_nameservers_share_one_port(self, knot: KnotServer) -> None:
        """Every listen address uses the same port, in c-ares "host:port" syntax."""
        expected = [f"127.0.0.1:{knot.port}"]
        if ipv6_loopback_available():
            expected.append(f"[::1]:{knot.port}")
        assert knot.nameservers == expected
        assert knot.env == {"MXF_NAMESERVERS": ",".join(expected)}

    def test_answers_on_every_address(self, knot: KnotServer) -> None:
        """The same zone data is served on 127.0.0.1 and (when present) ::1."""
        for addr in knot.listen:
            answer = dnswire.query_udp(addr, knot.port, "mx1.example.test", "A")
            assert answer.answer_data("A") == ["127.0.0.2"]

    def test_stop_ends_process_and_frees_port(self) -> None:
        """After the with-block knotd is gone, its port refuses and its temp dir is removed."""
        with KnotServer({"gone.test": "@ A 127.0.0.9"}) as server:
            proc = server._proc
            assert proc is not None
            port, directory = server.port, server.directory
            assert dnswire.query_tcp("127.0.0.1", port, "gone.test", "A").answers
        assert proc.poll() is not None
        assert not directory.exists()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()

    def test_exception_in_block_still_stops(self) -> None:
        """An exception inside the with-block still stops knotd."""
        server = KnotServer({"boom.test": "@ A 127.0.0.9"})
        with pytest.raises(ZeroDivisionError), server:
            pid = server._proc.pid if server._proc else -1
            _ = 1 / 0
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

    def test_knot_dies_with_a_killed_test_process(self) -> None:
        """If the test process dies without stop(), knotd is killed too (no orphan)."""
        code = (
            f"import os, sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.infra.knot import KnotServer\n"
            "k = KnotServer({'o.test': '@ A 127.0.0.9'}); k.start()\n"
            "print(k._proc.pid, k.directory, flush=True); os._exit(0)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
        pid_text, directory = out.stdout.split()
        pid = int(pid_text)
        shutil.rmtree(directory, ignore_errors=True)
        deadline = time.monotonic() + 3.0
        while _process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        orphan = _process_alive(pid)
        if orphan:
            os.kill(pid, signal.SIGKILL)  # the test must not leave it behind either
        assert not orphan

    def test_bad_zone_fails_fast_with_log(self) -> None:
        """A zone knot cannot load raises KnotStartError at once, quoting knot's log."""
        t0 = time.monotonic()
        with pytest.raises(KnotStartError) as info:
            KnotServer({"bad.test": "www A 300.1.2.3"}).start()
        assert time.monotonic() - t0 < 2.0
        assert "invalid IPv4 address" in str(info.value)
        assert "www A 300.1.2.3" in str(info.value)

    def test_rejects_noudp_zone_not_served(self) -> None:
        """noudp_zones must name served zones."""
        with pytest.raises(ValueError, match="noudp"):
            KnotServer({"a.test": "@ A 127.0.0.9"}, noudp_zones=["b.test"])

    def test_ipv4_only_listen(self) -> None:
        """listen=("127.0.0.1",) gives a single IPv4 nameserver."""
        with KnotServer({"v4.test": "@ A 127.0.0.9"}, listen=("127.0.0.1",)) as server:
            assert server.nameservers == [f"127.0.0.1:{server.port}"]


class TestZoneDefaults:
    """Records-only zone text gets a SOA and NS; a given SOA is kept."""

    def test_default_soa_added(self, knot: KnotServer) -> None:
        """A zone without SOA answers a SOA query authoritatively."""
        answer = dnswire.query_udp("127.0.0.1", knot.port, "example.test", "SOA")
        (soa,) = answer.answer_data("SOA")
        assert isinstance(soa, tuple)
        assert soa[0] == "ns.example.test"
        assert answer.aa

    def test_given_soa_kept(self, knot: KnotServer) -> None:
        """A zone that has its own SOA is served with it, not with the default."""
        answer = dnswire.query_udp("127.0.0.1", knot.port, "withsoa.test", "SOA")
        (soa,) = answer.answer_data("SOA")
        assert isinstance(soa, tuple)
        assert soa[2] == 42
        assert answer.answers[0].ttl == 120


class TestAnswersOnTheWire:
    """Raw answers seen with the dnswire helper."""

    def test_mx(self, knot: KnotServer) -> None:
        """MX records come back with their preferences."""
        answer = dnswire.query_udp("127.0.0.1", knot.port, "EXAMPLE.test.", "MX")
        assert sorted(answer.answer_data("MX")) == [  # type: ignore[type-var]
            (10, "mx1.example.test"),
            (20, "mx2.example.test"),
        ]

    def test_srv(self, knot: KnotServer) -> None:
        """SRV records come back decoded."""
        answer = dnswire.query_udp("127.0.0.1", knot.port, "_smtp._tcp.example.test", "SRV")
        assert answer.answer_data("SRV") == [(0, 1, 2525, "mx1.example.test")]

    def test_nxdomain(self, knot: KnotServer) -> None:
        """A name that does not exist is NXDOMAIN."""
        answer = dnswire.query_udp("127.0.0.1", knot.port, "nope.example.test", "A")
        assert answer.rcode == dnswire.RCODE_NXDOMAIN

    def test_nodata(self, knot: KnotServer) -> None:
        """A name without records of the asked type is NOERROR with no answers."""
        answer = dnswire.query_udp("127.0.0.1", knot.port, "txtonly.example.test", "A")
        assert (answer.rcode, answer.answers) == (dnswire.RCODE_NOERROR, ())

    @pytest.mark.parametrize("name", ["broken.test", "x.broken.test", "a.sf.example.test"])
    def test_servfail(self, knot: KnotServer, name: str) -> None:
        """Names at or below a servfail zone answer SERVFAIL (also inside a served zone)."""
        answer = dnswire.query_udp("127.0.0.1", knot.port, name, "A")
        assert answer.rcode == dnswire.RCODE_SERVFAIL

    def test_noudp_truncates_udp(self, knot: KnotServer) -> None:
        """A mod-noudp zone answers over UDP with TC=1 and no records."""
        answer = dnswire.query_udp("127.0.0.1", knot.port, "many.big.test", "A")
        assert answer.tc
        assert answer.answers == ()

    def test_noudp_full_over_tcp(self, knot: KnotServer) -> None:
        """The same query over TCP gets all 60 records."""
        answer = dnswire.query_tcp("127.0.0.1", knot.port, "many.big.test", "A")
        assert not answer.tc
        assert len(answer.answer_data("A")) == 60


class TestThroughAiodns:
    """The c-ares resolver that mxf-remote uses, pointed at knot."""

    def test_mx(self, knot: KnotServer) -> None:
        """query_dns MX gives priorities and exchanges without trailing dots."""
        res = _run(_aiodns_query(knot.nameservers, "example.test", "MX"))
        got = sorted(
            (r.data.priority, r.data.exchange)
            for r in res.answer
            if r.type == pycares.QUERY_TYPE_MX
        )
        assert got == [(10, "mx1.example.test"), (20, "mx2.example.test")]

    def test_srv(self, knot: KnotServer) -> None:
        """query_dns SRV gives priority, weight, port and target."""
        res = _run(_aiodns_query(knot.nameservers, "_smtp._tcp.example.test", "SRV"))
        (rec,) = [r.data for r in res.answer if r.type == pycares.QUERY_TYPE_SRV]
        assert (rec.priority, rec.weight, rec.port, rec.target) == (0, 1, 2525, "mx1.example.test")

    def test_a_and_aaaa(self, knot: KnotServer) -> None:
        """query_dns A and AAAA give the addresses."""
        res_a = _run(_aiodns_query(knot.nameservers, "mx1.example.test", "A"))
        res_aaaa = _run(_aiodns_query(knot.nameservers, "mx1.example.test", "AAAA"))
        assert [r.data.addr for r in res_a.answer] == ["127.0.0.2"]
        assert [r.data.addr for r in res_aaaa.answer] == ["fd6d:7866::2"]

    def test_nxdomain(self, knot: KnotServer) -> None:
        """NXDOMAIN is ARES_ENOTFOUND."""
        err = _aiodns_error(knot.nameservers, "nope.example.test", "A")
        assert err == pycares.errno.ARES_ENOTFOUND

    def test_nodata(self, knot: KnotServer) -> None:
        """NODATA is ARES_ENODATA."""
        err = _aiodns_error(knot.nameservers, "txtonly.example.test", "AAAA")
        assert err == pycares.errno.ARES_ENODATA

    def test_servfail(self, knot: KnotServer) -> None:
        """SERVFAIL is ARES_ESERVFAIL."""
        err = _aiodns_error(knot.nameservers, "mail.broken.test", "MX")
        assert err == pycares.errno.ARES_ESERVFAIL

    def test_truncated_then_tcp(self, knot: KnotServer) -> None:
        """c-ares retries a TC=1 answer over TCP and gets all 60 A records."""
        res = _run(_aiodns_query(knot.nameservers, "many.big.test", "A"))
        addrs = {r.data.addr for r in res.answer if r.type == pycares.QUERY_TYPE_A}
        assert len(addrs) == 60
