"""mxf-remote end to end: real knot DNS, real sockets, real exec, byte-for-byte reports.

Every scenario runs the installed ``mxf-remote`` program in a subprocess, as qmail-rspawn
would, inside the session's private network namespace (see conftest.py).  Exchangers are
listeners on 127.0.1.x and fd6d:7866::x (loopback-routed, not interface addresses, so
the self-check lets them through); silent exchangers are made with an nftables DROP.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from mxf_remote import report
from tests.infra.dnsproxy import DnsProxy
from tests.infra.knot import KnotServer
from tests.infra.netns import silence
from tests.remotekit import (
    CLIENT_GREETING,
    SERVER_GREETING,
    Delivery,
    Listeners,
    QmailHome,
    run_remote,
    write_recorder,
)

pytestmark = [pytest.mark.knot]

SMTP_PORT = 2525
QMTP_PORT = 2209
SRV_PORT = 2626

ZONE = f"""
healthy             MX    10 mx1.healthy
mx1.healthy         A     127.0.1.1
mx1.healthy         AAAA  fd6d:7866::101
v4only              MX    10 mx.v4only
mx.v4only           A     127.0.1.2
v6only              MX    10 mx.v6only
mx.v6only           AAAA  fd6d:7866::103
silentbest          MX    10 mx1.silentbest
silentbest          MX    20 mx2.silentbest
mx1.silentbest      A     127.0.1.4
mx2.silentbest      A     127.0.1.5
silent6             MX    10 mx.silent6
mx.silent6          AAAA  fd6d:7866::106
mx.silent6          A     127.0.1.6
srv                 MX    10 mx.srv
mx.srv              A     127.0.1.7
_smtp._tcp.srv      SRV   10 0 {SRV_PORT} target.srv
_smtp._tcp.srv      SRV   20 0 {SRV_PORT} backup.srv
target.srv          A     127.0.1.8
backup.srv          A     127.0.1.9
srvdot              MX    10 mx.srvdot
mx.srvdot           A     127.0.1.10
_smtp._tcp.srvdot   SRV   0 0 0 .
nullmx              MX    0 .
cname               MX    10 alias.cname
alias.cname         CNAME real.cname
real.cname          A     127.0.1.11
implicit            A     127.0.1.12
noaddr              MX    10 nothere.noaddr
noaddr              MX    20 alsonot.noaddr
mxps                MX    12801 mx.mxps
mx.mxps             A     127.0.1.13
mxpsfb              MX    12801 mx.mxpsfb
mx.mxpsfb           A     127.0.1.14
self                MX    10 mx.self
self                MX    20 mx2.self
mx.self             A     127.0.0.1
mx2.self            A     127.0.1.15
better              MX    5 mx.better
better              MX    10 mx.self
mx.better           A     127.0.1.16
allsilent           MX    10 mx.allsilent
mx.allsilent        A     127.0.1.17
slowaaaa            MX    10 mx.slowaaaa
mx.slowaaaa         A     127.0.1.18
mx.slowaaaa         AAAA  fd6d:7866::118
dropped             MX    10 mx.dropped
mx.dropped          A     127.0.1.19
brokenmx            MX    10 mx.broken.test.
"""
ZONES = {"mxf.test": ZONE}
SERVFAIL_ZONES = ["broken.test"]

LISTENERS = [
    ("127.0.1.1", SMTP_PORT),
    ("fd6d:7866::101", SMTP_PORT),
    ("127.0.1.2", SMTP_PORT),
    ("fd6d:7866::103", SMTP_PORT),
    ("127.0.1.5", SMTP_PORT),
    ("127.0.1.6", SMTP_PORT),
    ("127.0.1.7", SMTP_PORT),
    ("127.0.1.8", SRV_PORT),
    ("127.0.1.9", SRV_PORT),
    ("127.0.1.10", SMTP_PORT),
    ("127.0.1.11", SMTP_PORT),
    ("127.0.1.12", SMTP_PORT),
    ("127.0.1.12", QMTP_PORT),
    ("127.0.1.13", QMTP_PORT),
    ("127.0.1.13", SMTP_PORT),
    ("127.0.1.14", SMTP_PORT),
    ("127.0.1.15", SMTP_PORT),
    ("127.0.1.16", SMTP_PORT),
    ("127.0.1.18", SMTP_PORT),
    ("fd6d:7866::118", SMTP_PORT),
    ("127.0.1.19", SMTP_PORT),
    ("127.0.1.20", SMTP_PORT),
]


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """A qmail home whose protocols run the recorder: QMTP (slice 1), then SMTP."""
    recorder = write_recorder(tmp_path)
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control(
        "protocols",
        f"qmtp:{QMTP_PORT}:1:N:N:{recorder}\nsmtp:{SMTP_PORT}:0:N:N:{recorder}\n",
    )
    qmail.control("timeoutconnect", "10\n")
    return qmail


def deliver(home: QmailHome, host: str, dns: KnotServer | DnsProxy, **kwargs: object) -> Delivery:
    """One delivery for ``host`` with ``dns`` as the nameserver."""
    return run_remote(home, host, env=dns.env, **kwargs)  # type: ignore[arg-type]


def assert_report(delivery: Delivery, expected: report.Report) -> None:
    """Exactly this report on fd 1, nothing on fd 2, exit 0, no handoff."""
    assert delivery.stdout == expected.encode()
    assert delivery.stderr == b""
    assert delivery.returncode == 0
    assert not delivery.handed_off


def handed_to(delivery: Delivery) -> tuple[str, str, str]:
    """(MXFHOST, TCPREMOTEIP, MXFPROTOCOL) of the exec'd program, after checking the run."""
    assert delivery.stderr == b""
    assert delivery.returncode == 0
    assert delivery.stdout == b"Krecorder got it\n\0"
    assert delivery.record is not None
    env = delivery.record["env"]
    return env["MXFHOST"], env["TCPREMOTEIP"], env["MXFPROTOCOL"]


@pytest.mark.usefixtures("netns", "listeners")
class TestDelivery:
    """Mail is handed to the right exchanger and protocol."""

    def test_ipv6_goes_first_when_an_exchanger_has_both_families(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """AAAA and A for the best MX: the IPv6 address gets the connection."""
        assert handed_to(deliver(home, "healthy.mxf.test", knot)) == (
            "mx1.healthy.mxf.test",
            "fd6d:7866::101",
            "smtp",
        )

    def test_an_ipv4_only_exchanger(self, home: QmailHome, knot: KnotServer) -> None:
        """An exchanger with only an A record is reached over IPv4."""
        assert handed_to(deliver(home, "v4only.mxf.test", knot))[1] == "127.0.1.2"

    def test_an_ipv6_only_exchanger(self, home: QmailHome, knot: KnotServer) -> None:
        """An exchanger with only an AAAA record is reached over IPv6."""
        assert handed_to(deliver(home, "v6only.mxf.test", knot))[1] == "fd6d:7866::103"

    def test_srv_targets_come_before_mx_with_the_srv_port(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """SRV priority 10 target on its SRV port wins over the MX exchanger."""
        delivery = deliver(home, "srv.mxf.test", knot)
        assert handed_to(delivery) == ("target.srv.mxf.test", "127.0.1.8", "smtp")
        assert delivery.record is not None
        assert delivery.record["env"]["TCPREMOTEPORT"] == str(SRV_PORT)

    def test_srv_dot_declines_the_protocol_entirely(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """``_smtp._tcp SRV 0 0 0 .`` drops SMTP even for the MX: nothing else is offered."""
        home.control(
            "protocols", home.root.joinpath("control/protocols").read_text().split("\n", 1)[1]
        )  # SMTP only
        assert_report(deliver(home, "srvdot.mxf.test", knot), report.SERVICE_DECLINED)

    def test_an_mx_target_behind_a_cname(self, home: QmailHome, knot: KnotServer) -> None:
        """An exchanger name that is a CNAME still gets its address."""
        assert handed_to(deliver(home, "cname.mxf.test", knot))[1] == "127.0.1.11"

    def test_implicit_mx_tries_every_protocol_in_order(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """No MX, an A record: the host itself, QMTP first (every protocol is tried)."""
        assert handed_to(deliver(home, "implicit.mxf.test", knot)) == (
            "implicit.mxf.test",
            "127.0.1.12",
            "qmtp",
        )

    def test_mxps_slice_one_uses_qmtp(self, home: QmailHome, knot: KnotServer) -> None:
        """Preference 12801 (slice 1): QMTP on its port."""
        assert handed_to(deliver(home, "mxps.mxf.test", knot))[2] == "qmtp"

    def test_mxps_falls_back_to_smtp_when_qmtp_refuses(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """Slice-1 exchanger with QMTP refused: SMTP on the same host."""
        assert handed_to(deliver(home, "mxpsfb.mxf.test", knot)) == (
            "mx.mxpsfb.mxf.test",
            "127.0.1.14",
            "smtp",
        )

    def test_a_better_exchanger_than_us_is_still_tried(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """We are MX 10; MX 5 is someone else and gets the mail."""
        assert handed_to(deliver(home, "better.mxf.test", knot))[1] == "127.0.1.16"

    def test_a_slow_aaaa_answer_does_not_stop_ipv4(self, home: QmailHome, knot: KnotServer) -> None:
        """AAAA 300 ms late: IPv4 starts after the 50 ms resolution delay and wins."""
        with DnsProxy(knot.address) as proxy:
            proxy.delay("mx.slowaaaa.mxf.test", "AAAA", 300)
            delivery = deliver(home, "slowaaaa.mxf.test", proxy)
        assert handed_to(delivery)[1] == "127.0.1.18"
        assert delivery.seconds < 2.0

    def test_literals_need_no_dns(self, home: QmailHome) -> None:
        """``[127.0.1.20]`` is connected to directly (no nameserver is even configured)."""
        delivery = run_remote(home, "[127.0.1.20]", env={"MXF_NAMESERVERS": "127.0.0.9:9"})
        assert handed_to(delivery) == ("127.0.1.20", "127.0.1.20", "smtp")

    def test_routes_send_the_host_to_its_relay(self, home: QmailHome, knot: KnotServer) -> None:
        """smtproutes ``.mxf.test:[127.0.1.20]`` sends any *.mxf.test there, MX ignored."""
        home.control("smtproutes", ".mxf.test:[127.0.1.20]\n")
        assert handed_to(deliver(home, "healthy.mxf.test", knot))[1] == "127.0.1.20"


@pytest.mark.usefixtures("netns", "listeners")
class TestHandoff:
    """The exec'd program gets exactly what a UCSPI-TCP client gives."""

    def test_argv_environment_descriptors_and_conversation(
        self, home: QmailHome, knot: KnotServer, listeners: Listeners
    ) -> None:
        """argv as given, UCSPI variables, only fds 0,1,2,6,7, fd 0 at 0, blocking 6/7."""
        delivery = run_remote(
            home,
            "v4only.mxf.test",
            recipients=("a@x.test", "b@x.test"),
            env={**knot.env, "TCPREMOTEHOST": "stale", "TCP6REMOTEIP": "::9", "SSLCTLFD": "9"},
        )
        record = delivery.record
        assert record is not None
        assert record["argv"] == ["v4only.mxf.test", "sender@example.org", "a@x.test", "b@x.test"]
        env = record["env"]
        assert env["PROTO"] == "TCP"
        assert env["TCPREMOTEIP"] == "127.0.1.2" and env["TCPREMOTEPORT"] == str(SMTP_PORT)
        assert env["TCPLOCALIP"] and int(env["TCPLOCALPORT"]) > 0
        assert env["MXFHOST"] == "mx.v4only.mxf.test" and env["MXFPROTOCOL"] == "smtp"
        for removed in ("TCPREMOTEHOST", "TCP6REMOTEIP", "SSLCTLFD"):
            assert removed not in env
        assert record["fds"] == [0, 1, 2, 6, 7]
        assert record["fd0_offset"] == 0
        assert record["fd6_blocking"] and record["fd7_blocking"]
        assert record["fd6_fd7_same_socket"] and not record["fd6_cloexec"]
        assert record["heard"] == SERVER_GREETING.decode()
        assert CLIENT_GREETING in listeners.heard

    def test_signals_pipe_ignored_and_nothing_else(self, home: QmailHome, knot: KnotServer) -> None:
        """The program starts with SIGPIPE ignored and every other signal at its default."""
        delivery = deliver(home, "v4only.mxf.test", knot)
        assert delivery.signals is not None
        assert delivery.signals["SigIgn"] == 1 << (signal.SIGPIPE - 1)

    def test_the_callers_signal_mask_survives_the_handoff(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """A caller that blocks SIGUSR1 (as rspawn blocks SIGCHLD) passes that mask on."""
        recorder = home.root.parent / "recorder.py"
        home.control("protocols", f"smtp:{SMTP_PORT}:0:N:N:{recorder}\n")
        record = _run_with_blocked_usr1(home, knot.env)
        assert record["sigmask"] == [signal.SIGUSR1]

    def test_an_ipv6_peer_is_written_compressed_without_brackets(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """TCPREMOTEIP for an IPv6 exchanger is ``fd6d:7866::103``."""
        delivery = deliver(home, "v6only.mxf.test", knot)
        assert delivery.record is not None
        assert delivery.record["env"]["TCPREMOTEIP"] == "fd6d:7866::103"
        assert ":" in delivery.record["env"]["TCPLOCALIP"]

    def test_a_program_that_cannot_be_executed_gives_a_z_report(
        self, home: QmailHome, knot: KnotServer, tmp_path: Path
    ) -> None:
        """An executable file with a missing interpreter: ``ZUnable to run ...``."""
        broken = tmp_path / "broken"
        broken.write_text("#!/nonexistent/interpreter\n")
        broken.chmod(0o755)
        home.control("protocols", f"smtp:{SMTP_PORT}:0:N:N:{broken}\n")
        delivery = deliver(home, "v4only.mxf.test", knot)
        assert_report(delivery, report.cannot_run(str(broken), "No such file or directory"))

    def test_the_trace_records_queries_attempts_and_the_handoff(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """MXF_TRACE gets JSON lines: queries, answers, the attempt, the win, the handoff."""
        events = [e["event"] for e in deliver(home, "v4only.mxf.test", knot).trace]
        for kind in ("start", "query", "answer", "attempt", "attempt_won", "handoff"):
            assert kind in events
        assert events.index("attempt") < events.index("attempt_won") < events.index("handoff")


def _run_with_blocked_usr1(home: QmailHome, env: dict[str, str]) -> dict[str, object]:
    """Run a delivery from a parent that blocks SIGUSR1; what the recorder saw."""
    import json
    import os

    from tests.remotekit import MXF_REMOTE

    message = home.root / "message"
    message.write_bytes(b"x\n")
    record = home.root / "record.json"
    full_env = {
        "PATH": os.environ["PATH"],
        "MXF_QMAIL": str(home.root),
        "MXF_TEST_RECORD": str(record),
        **env,
    }

    def block_usr1() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    with open(message, "rb") as stdin:
        subprocess.run(
            [MXF_REMOTE, "v4only.mxf.test", "s@x", "r@y"],
            stdin=stdin,
            env=full_env,
            capture_output=True,
            timeout=30,
            check=True,
            preexec_fn=block_usr1,
        )
    seen: dict[str, object] = json.loads(record.read_text())
    return seen


@pytest.mark.usefixtures("netns", "listeners")
class TestRace:
    """Silent exchangers cost about one connectdelay, not timeoutconnect."""

    def test_a_silent_best_exchanger_costs_about_one_connect_delay(
        self, home: QmailHome, knot: KnotServer, silent_hosts: None
    ) -> None:
        """Best MX drops SYNs: the second MX gets the mail well inside a second."""
        silence("127.0.1.4", SMTP_PORT)
        delivery = deliver(home, "silentbest.mxf.test", knot)
        assert handed_to(delivery)[1] == "127.0.1.5"
        attempts = [e for e in delivery.trace if e["event"] == "attempt"]
        assert [a["address"] for a in attempts] == ["127.0.1.4", "127.0.1.5"]
        gap = attempts[1]["t"] - attempts[0]["t"]
        assert 240 <= gap <= 400, f"second attempt {gap} ms after the first"

    def test_silent_ipv6_falls_over_to_ipv4(
        self, home: QmailHome, knot: KnotServer, silent_hosts: None
    ) -> None:
        """The IPv6 address drops SYNs: the IPv4 address of the same exchanger wins."""
        silence("fd6d:7866::106", SMTP_PORT)
        assert handed_to(deliver(home, "silent6.mxf.test", knot))[1] == "127.0.1.6"

    def test_everything_silent_ends_with_4_4_1_at_timeoutconnect(
        self, home: QmailHome, knot: KnotServer, silent_hosts: None
    ) -> None:
        """The only exchanger drops SYNs, timeoutconnect 1: #4.4.1 after about 1 s."""
        silence("127.0.1.17")
        home.control("timeoutconnect", "1\n")
        delivery = deliver(home, "allsilent.mxf.test", knot)
        assert_report(delivery, report.NO_CONNECTION)
        assert 1.0 <= delivery.seconds < 5.0


@pytest.mark.usefixtures("netns")
class TestReports:
    """Every failure report of spec §3/§7, from a real scenario, byte for byte."""

    def test_nxdomain_is_5_1_2_naming_the_host(self, home: QmailHome, knot: KnotServer) -> None:
        """No such domain: ``DSorry, I couldn't find any host named HOST. (#5.1.2)``."""
        delivery = deliver(home, "nosuch.mxf.test", knot)
        assert_report(delivery, report.no_such_host("nosuch.mxf.test"))

    def test_servfail_is_4_1_2(self, home: QmailHome, knot: KnotServer) -> None:
        """SERVFAIL on MX: ``ZSorry, I couldn't find any host by that name. (#4.1.2)``."""
        assert_report(deliver(home, "x.broken.test", knot), report.DNS_TEMPORARY)

    def test_null_mx_is_5_1_10(self, home: QmailHome, knot: KnotServer) -> None:
        """``MX 0 .``: the domain accepts no mail."""
        assert_report(deliver(home, "nullmx.mxf.test", knot), report.null_mx("nullmx.mxf.test"))

    def test_exchangers_without_addresses_are_5_4_4(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """MX targets that do not exist: #5.4.4."""
        assert_report(deliver(home, "noaddr.mxf.test", knot), report.NO_EXCHANGER_ADDRESS)

    def test_an_exchanger_whose_lookup_fails_temporarily_is_4_1_2(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """The only MX target lives in a SERVFAIL zone: #4.1.2, not #5.4.4."""
        assert_report(deliver(home, "brokenmx.mxf.test", knot), report.DNS_TEMPORARY)

    def test_we_are_the_best_mx_is_5_4_6(self, home: QmailHome, knot: KnotServer) -> None:
        """MX 10 is 127.0.0.1 (us): MX 10 and worse are cut, nothing is left: #5.4.6."""
        assert_report(deliver(home, "self.mxf.test", knot), report.WE_ARE_BEST_MX)

    def test_our_own_literal_is_5_4_6(self, home: QmailHome) -> None:
        """``[127.0.0.1]`` is us."""
        delivery = run_remote(home, "[127.0.0.1]", env={"MXF_NAMESERVERS": "127.0.0.9:9"})
        assert_report(delivery, report.WE_ARE_BEST_MX)

    def test_dropped_queries_end_at_timeoutdns_with_4_1_2(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """The MX query is never answered, timeoutdns 1: #4.1.2 after about 1 s."""
        home.control("timeoutdns", "1\n")
        with DnsProxy(knot.address) as proxy:
            proxy.drop("dropped.mxf.test", "MX")
            delivery = deliver(home, "dropped.mxf.test", proxy)
        assert_report(delivery, report.DNS_TEMPORARY)
        assert 1.0 <= delivery.seconds < 4.0

    def test_too_few_arguments_is_5_3_5(self, home: QmailHome) -> None:
        """Fewer than three arguments: the qmail-remote usage report."""
        delivery = run_remote(home, "host", env={}, recipients=())
        assert_report(delivery, report.USAGE)

    def test_a_bad_control_file_is_4_3_0_naming_file_and_line(self, home: QmailHome) -> None:
        """``protocols`` line 2 with five fields: Z, and the file and line are named."""
        home.control("protocols", "# comment\nsmtp:25:0:N:prog\n")
        delivery = run_remote(home, "example.test", env={})
        assert_report(
            delivery,
            report.control_error(
                "control/protocols line 2: 5 fields, expected 6 "
                "(service:defport:slice:implicitTLS:explicitTLS:program)"
            ),
        )

    def test_no_installed_protocol(self, home: QmailHome) -> None:
        """Every protocol program missing: ``ZNo usable mail protocol ...``."""
        home.control("protocols", "smtp:25:0:N:N:/nonexistent/program\n")
        assert_report(run_remote(home, "example.test", env={}), report.NO_PROTOCOL)

    def test_a_bad_nameserver_setting_is_a_z_report(self, home: QmailHome) -> None:
        """``MXF_NAMESERVERS=nonsense``: a deferral that names the variable."""
        delivery = run_remote(home, "example.test", env={"MXF_NAMESERVERS": "nonsense"})
        assert delivery.stdout.startswith(b"ZUnable to set up DNS: MXF_NAMESERVERS")
        assert delivery.stdout.endswith(b"(#4.3.0)\n\0") and delivery.stderr == b""
