"""Hostile DNS: huge answers, odd chains, broken servers -- bounded work, the right letter.

Served by a real knot (``KnotServer``), through ``DnsProxy`` where answers must be slow,
dropped or refused, and by ``BadDns`` (tests/infra/baddns.py) for what knot will not
serve: wrong record types, a TCP answer cut in half, a server that dies mid-query, raw
8-bit owner names.  The letter rule: D only where spec §3 names a permanent situation;
a broken or unreachable DNS is always Z.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mxf_remote import report
from tests.hostilekit import SMTP_PORT, assert_handed_to, assert_report, recorder_home
from tests.infra.baddns import BadDns
from tests.infra.dnsproxy import DnsProxy
from tests.infra.knot import KnotServer
from tests.remotekit import Delivery, QmailHome, run_remote

pytestmark = [pytest.mark.knot]

MANY = 1000


def _zone() -> str:
    lines = [
        # 1,000 MX records: the best one answers, the rest do not exist.
        *(f"flood MX {10 + i} mx{i}.flood" for i in range(MANY)),
        "mx0.flood A 127.0.6.1",
        # 1,000 MX records at one preference, none with an address but the last.
        *(f"deep MX 10 mx{i}.deep" for i in range(MANY - 1)),
        f"deep MX 20 mx{MANY - 1}.deep",
        f"mx{MANY - 1}.deep A 127.0.6.2",
        # The host itself is an alias: its MX comes through the CNAME.
        "alias CNAME real",
        "real MX 10 mx.real",
        "mx.real A 127.0.6.3",
        # CNAME loops: on the host, and on the only exchanger.
        "loop1 CNAME loop2",
        "loop2 CNAME loop1",
        "mxloop MX 10 loop1",
        # A long CNAME chain (20 hops) to the exchanger's address.
        "chain MX 10 c0.chain",
        *(f"c{i}.chain CNAME c{i + 1}.chain" for i in range(20)),
        "c20.chain A 127.0.6.4",
        # SRV: a "." target and a port-0 record among good ones, weight 65535.
        "srvmix MX 10 nothere.srvmix",
        "_smtp._tcp.srvmix SRV 0 0 0 .",
        "_smtp._tcp.srvmix SRV 5 0 0 zeroport.srvmix",
        f"_smtp._tcp.srvmix SRV 10 65535 {SMTP_PORT} heavy.srvmix",
        f"_smtp._tcp.srvmix SRV 10 0 {SMTP_PORT} light.srvmix",
        "zeroport.srvmix A 127.0.6.9",
        "heavy.srvmix A 127.0.6.5",
        "light.srvmix A 127.0.6.5",
        # Upper case and trailing dots everywhere.
        "UPPER MX 10 MX.UPPER.mxf.test.",
        "MX.UPPER A 127.0.6.6",
        # Slow and refused and dripped names (rules in the proxy).
        "refused MX 10 mx.refused",
        "mx.refused A 127.0.6.7",
        "drip MX 10 mx.drip",
        "mx.drip A 127.0.6.7",
        "mxrefused MX 10 mx.mxrefused",
        "mx.mxrefused A 127.0.6.7",
    ]
    return "\n".join(lines) + "\n"


ZONES = {"mxf.test": _zone()}
LISTENERS = [(f"127.0.6.{n}", SMTP_PORT) for n in range(1, 7)]
"""Exchangers on 127.0.6.1..6 that greet."""


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """SMTP only, to the recorder; short DNS and connect budgets."""
    return recorder_home(tmp_path, timeoutconnect=3, timeoutdns=2)


def deliver(home: QmailHome, host: str, env: dict[str, str]) -> Delivery:
    """One delivery of a small message to ``host``."""
    return run_remote(home, host, env=env, timeout=30)


def queries(delivery: Delivery) -> list[dict[str, object]]:
    """The DNS questions mxf-remote's trace says it asked."""
    return [e for e in delivery.trace if e["event"] == "query"]


@pytest.mark.usefixtures("netns", "listeners")
class TestHugeAnswers:
    """Answers with a thousand records cost a bounded number of questions and attempts."""

    def test_a_thousand_mx_records_deliver_to_the_best(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """1,000 MX (over TCP): the best exchanger gets the mail; at most 32 are resolved."""
        delivery = deliver(home, "flood.mxf.test", knot.env)
        assert_handed_to(delivery, "127.0.6.1")
        assert len(queries(delivery)) <= 4 + 2 * 32

    def test_a_thousand_addressless_exchangers_are_not_a_bounce(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """1,000 MX, only the worst has an address: never #5.4.4 for what we did not ask."""
        delivery = deliver(home, "deep.mxf.test", knot.env)
        assert len(queries(delivery)) <= 4 + 2 * 32
        assert delivery.stderr == b"" and delivery.returncode == 0
        assert delivery.stdout[:1] != b"D", delivery.stdout


@pytest.mark.usefixtures("netns", "listeners")
class TestChains:
    """CNAMEs on the host and on exchangers; loops and long chains."""

    def test_the_host_is_a_cname_to_a_domain_with_mx(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """``alias CNAME real``, ``real MX``: the MX behind the alias is used."""
        assert_handed_to(deliver(home, "alias.mxf.test", knot.env), "127.0.6.3")

    def test_a_twenty_hop_cname_chain_to_the_exchanger(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """An exchanger 20 CNAMEs away from its A record is still reached."""
        assert_handed_to(deliver(home, "chain.mxf.test", knot.env), "127.0.6.4")

    def test_a_cname_loop_on_the_host_is_a_deferral(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """host CNAME loop (NOERROR, no final record): Z #4.1.2, never a bounce."""
        assert_report(deliver(home, "loop1.mxf.test", knot.env), report.DNS_TEMPORARY)

    def test_a_cname_loop_on_the_only_exchanger_is_a_deferral(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """MX target in a CNAME loop: Z #4.1.2, not #5.4.4."""
        assert_report(deliver(home, "mxloop.mxf.test", knot.env), report.DNS_TEMPORARY)


@pytest.mark.usefixtures("netns", "listeners")
class TestOddRecords:
    """SRV oddities, upper case and trailing dots."""

    def test_srv_dot_and_port_zero_among_good_records_are_skipped(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """SRV ``.``, port 0 and weight 65535 together: the weighted target is used."""
        delivery = deliver(home, "srvmix.mxf.test", knot.env)
        record = assert_handed_to(delivery, "127.0.6.5")
        env = record["env"]
        assert isinstance(env, dict)
        assert env["MXFHOST"] in ("heavy.srvmix.mxf.test", "light.srvmix.mxf.test")
        attempted = {e["address"] for e in delivery.trace if e["event"] == "attempt"}
        assert "127.0.6.9" not in attempted

    def test_upper_case_and_trailing_dots(self, home: QmailHome, knot: KnotServer) -> None:
        """``UPPER.MXF.TEST.`` with an upper-case MX target: delivered, name lower-cased."""
        record = assert_handed_to(deliver(home, "UPPER.MXF.TEST.", knot.env), "127.0.6.6")
        env = record["env"]
        assert isinstance(env, dict)
        assert env["MXFHOST"] == "mx.upper.mxf.test"


@pytest.mark.usefixtures("netns", "listeners")
class TestBrokenServers:
    """Servers that refuse, drip, cut, lie or die: always Z, always within timeoutdns."""

    def test_refused_is_4_1_2(self, home: QmailHome, knot: KnotServer) -> None:
        """REFUSED for every question about the host: Z #4.1.2."""
        with DnsProxy(knot.address) as proxy:
            for qtype in ("MX", "SRV", "A", "AAAA"):
                proxy.rcode("refused.mxf.test", qtype, 5)
            proxy.rcode("_smtp._tcp.refused.mxf.test", "SRV", 5)
            delivery = deliver(home, "refused.mxf.test", proxy.env)
        assert_report(delivery, report.DNS_TEMPORARY)

    def test_refused_for_the_exchanger_only_is_4_1_2(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """MX answered, its exchanger's A and AAAA REFUSED: Z #4.1.2, not #5.4.4."""
        with DnsProxy(knot.address) as proxy:
            proxy.rcode("mx.mxrefused.mxf.test", None, 5)
            delivery = deliver(home, "mxrefused.mxf.test", proxy.env)
        assert_report(delivery, report.DNS_TEMPORARY)

    def test_a_dripping_tcp_server_is_cut_off_at_timeoutdns(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """MX truncated over UDP, then dripped a byte per 200 ms over TCP: Z after ~2 s."""
        with DnsProxy(knot.address) as proxy:
            proxy.rule("drip.mxf.test", "MX", transport="udp").truncate()
            proxy.drip("drip.mxf.test", "MX", 1, 200)
            delivery = deliver(home, "drip.mxf.test", proxy.env)
        assert_report(delivery, report.DNS_TEMPORARY)
        assert delivery.seconds < 6

    def test_every_nameserver_down(self, home: QmailHome) -> None:
        """Two nameservers, both closed ports: Z #4.1.2 at once."""
        env = {"MXF_NAMESERVERS": "127.0.6.50:53,[fd6d:7866::650]:53"}
        delivery = deliver(home, "example.test", env)
        assert_report(delivery, report.DNS_TEMPORARY)
        assert delivery.seconds < 6

    def test_answers_of_the_wrong_type_are_a_deferral(self, home: QmailHome) -> None:
        """Every question answered with a TXT record: Z #4.1.2 (a broken server), not D."""
        with BadDns("wrong-type") as server:
            delivery = deliver(home, "wrong.example.test", server.env)
        assert_report(delivery, report.DNS_TEMPORARY)

    def test_an_answer_cut_in_half_over_tcp(self, home: QmailHome) -> None:
        """TC=1 over UDP, half an answer over TCP then close: Z #4.1.2."""
        with BadDns("tcp-cut") as server:
            delivery = deliver(home, "cut.example.test", server.env)
        assert_report(delivery, report.DNS_TEMPORARY)
        assert any(transport == "tcp" for _, _, transport in server.queries)

    def test_a_nameserver_that_dies_mid_query(self, home: QmailHome) -> None:
        """The server closes its sockets on the first question: Z #4.1.2 within timeoutdns."""
        with BadDns("die") as server:
            delivery = deliver(home, "dies.example.test", server.env)
        assert_report(delivery, report.DNS_TEMPORARY)
        assert delivery.seconds < 6
