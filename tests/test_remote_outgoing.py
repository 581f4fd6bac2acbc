"""Source addresses and address families end to end: real knot, sockets, exec, reports.

The installed ``mxf-remote`` (and ``mxf-remote-probe``) run in subprocesses inside the
session's private network namespace.  The source addresses are configured on ``lo`` for
this module (``netns.added_interface_address``): an interface address is "this machine"
for mxf-remote, which the route-local test addresses are not.  Exchangers listen on
127.0.5.x and fd6d:7866::5xx.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mxf_remote import report
from tests.infra.knot import KnotServer
from tests.infra.netns import added_interface_address
from tests.measured import measured
from tests.remotekit import Delivery, QmailHome, run_remote, write_recorder

pytestmark = [pytest.mark.knot]

SMTP_PORT = 2525
SOURCE4 = "127.0.3.1"
SOURCE6 = "fd6d:7867::31"
PROBE = os.path.join(os.path.dirname(sys.executable), "mxf-remote-probe")

ZONE = f"""
dual            MX    10 mx.dual
mx.dual         A     127.0.5.1
mx.dual         AAAA  fd6d:7866::501
v6only          MX    10 mx.v6only
mx.v6only       AAAA  fd6d:7866::502
us              MX    10 mx.us
us              MX    20 mx.dual
mx.us           A     {SOURCE4}
"""
ZONES = {"fam.test": ZONE}

LISTENERS = [
    ("127.0.5.1", SMTP_PORT),
    ("fd6d:7866::501", SMTP_PORT),
    ("fd6d:7866::502", SMTP_PORT),
]


@pytest.fixture(scope="module")
def sources(netns: None) -> Iterator[None]:
    """SOURCE4 and SOURCE6 are addresses of this machine (on ``lo``) for this module."""
    with added_interface_address(SOURCE4), added_interface_address(SOURCE6):
        yield


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """A qmail home whose only protocol, SMTP, runs the recorder."""
    recorder = write_recorder(tmp_path)
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control("protocols", f"smtp:{SMTP_PORT}:0:N:N:{recorder}\n")
    qmail.control("timeoutconnect", "10\n")
    return qmail


def handed_off(delivery: Delivery) -> dict[str, str]:
    """The exec'd program's environment, after checking that the delivery went through."""
    assert (delivery.stdout, delivery.stderr, delivery.returncode) == (
        b"Krecorder got it\n\0",
        b"",
        0,
    )
    assert delivery.record is not None
    env: dict[str, str] = delivery.record["env"]
    return env


def asked(delivery: Delivery) -> set[tuple[str, str]]:
    """(name, type) of every DNS question the delivery's trace shows."""
    return {(e["name"], e["type"]) for e in delivery.trace if e["event"] == "query"}


def assert_report(delivery: Delivery, expected: bytes) -> None:
    """Exactly this report (NUL included), nothing on fd 2, exit 0, no handoff."""
    assert (delivery.stdout, delivery.stderr, delivery.returncode) == (expected, b"", 0)
    assert not delivery.handed_off


@pytest.mark.usefixtures("sources", "listeners")
class TestSourceAddresses:
    """Every connection of a family binds to its configured source; TCPLOCALIP is it."""

    def test_ipv6_connection_binds_outgoingip6(self, home: QmailHome, knot: KnotServer) -> None:
        """IPv6 wins for the dual-stack MX, from SOURCE6; the trace's attempt names it."""
        home.control("outgoingip", f"{SOURCE4}\n")
        home.control("outgoingip6", f"{SOURCE6}\n")
        delivery = run_remote(home, "dual.fam.test", env=knot.env)
        env = handed_off(delivery)
        assert (env["TCPREMOTEIP"], env["TCPLOCALIP"]) == ("fd6d:7866::501", SOURCE6)
        attempts = [e for e in delivery.trace if e["event"] == "attempt"]
        assert attempts[0]["address"] == "fd6d:7866::501"
        assert attempts[0]["source_address"] == SOURCE6

    def test_ipv4_connection_binds_outgoingip(self, home: QmailHome, knot: KnotServer) -> None:
        """Under ``ipv4`` the connection is IPv4, from SOURCE4, and no AAAA is asked."""
        home.control("outgoingip", f"{SOURCE4}\n")
        home.control("addressfamilies", "dual.fam.test:ipv4\n")
        delivery = run_remote(home, "dual.fam.test", env=knot.env)
        env = handed_off(delivery)
        assert (env["TCPREMOTEIP"], env["TCPLOCALIP"]) == ("127.0.5.1", SOURCE4)
        assert [e["source_address"] for e in delivery.trace if e["event"] == "attempt"] == [SOURCE4]
        assert not any(rtype == "AAAA" for _, rtype in asked(delivery))

    def test_only_the_configured_family_is_bound(self, home: QmailHome, knot: KnotServer) -> None:
        """outgoingip6 alone leaves IPv4 to the system: no source_address on that attempt."""
        home.control("outgoingip6", f"{SOURCE6}\n")
        home.control("addressfamilies", "dual.fam.test:ipv4\n")
        delivery = run_remote(home, "dual.fam.test", env=knot.env)
        env = handed_off(delivery)
        assert (env["TCPREMOTEIP"], env["TCPLOCALIP"]) == ("127.0.5.1", "127.0.0.1")
        attempt = next(e for e in delivery.trace if e["event"] == "attempt")
        assert "source_address" not in attempt

    def test_unspecified_is_the_systems_choice(self, home: QmailHome, knot: KnotServer) -> None:
        """``0.0.0.0`` binds nothing: the delivery goes out as without the file."""
        home.control("outgoingip", "0.0.0.0\n")
        home.control("addressfamilies", ":ipv4\n")
        env = handed_off(run_remote(home, "dual.fam.test", env=knot.env))
        assert (env["TCPREMOTEIP"], env["TCPLOCALIP"]) == ("127.0.5.1", "127.0.0.1")

    def test_a_non_local_address_defers(self, home: QmailHome, knot: KnotServer) -> None:
        """127.0.0.99 is routed locally but is no interface address: Z naming the file."""
        home.control("outgoingip", "127.0.0.99\n")
        assert_report(
            run_remote(home, "dual.fam.test", env=knot.env),
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/outgoingip line 1: 127.0.0.99 is not an address of this machine\n\0",
        )

    def test_the_wrong_family_defers(self, home: QmailHome, knot: KnotServer) -> None:
        """An IPv4 address in outgoingip6: Z naming the file and the problem."""
        home.control("outgoingip6", f"{SOURCE4}\n")
        assert_report(
            run_remote(home, "dual.fam.test", env=knot.env),
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/outgoingip6 line 1: 127.0.3.1 is an IPv4 address, expected IPv6"
            b" (control/outgoingip is for that family)\n\0",
        )

    def test_the_source_address_is_us_for_the_self_check(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """The best MX is the bound source address: qmail's "I'm listed as best MX" D."""
        home.control("outgoingip", f"{SOURCE4}\n")
        assert_report(run_remote(home, "us.fam.test", env=knot.env), report.WE_ARE_BEST_MX.encode())


@pytest.mark.usefixtures("netns", "listeners")
class TestAddressFamilies:
    """control/addressfamilies through the real mxf-remote."""

    def test_suffix_ipv4_first_leads_with_ipv4(self, home: QmailHome, knot: KnotServer) -> None:
        """``.fam.test:ipv4,ipv6``: IPv4 is tried first and wins; both were asked."""
        home.control("addressfamilies", ".fam.test:ipv4,ipv6\n:ipv6\n")
        delivery = run_remote(home, "dual.fam.test", env=knot.env)
        assert handed_off(delivery)["TCPREMOTEIP"] == "127.0.5.1"
        assert {("mx.dual.fam.test", "A"), ("mx.dual.fam.test", "AAAA")} <= asked(delivery)

    def test_default_line_ipv6_only(self, home: QmailHome, knot: KnotServer) -> None:
        """The empty key ``:ipv6`` applies to every host without its own line: no A asked."""
        home.control("addressfamilies", "other.example:ipv4\n:ipv6\n")
        delivery = run_remote(home, "dual.fam.test", env=knot.env)
        assert handed_off(delivery)["TCPREMOTEIP"] == "fd6d:7866::501"
        assert not any(rtype == "A" for _, rtype in asked(delivery))

    def test_ipv4_for_an_ipv6_only_exchanger(self, home: QmailHome, knot: KnotServer) -> None:
        """``ipv4`` and an MX with only AAAA: no AAAA asked, no connection, qmail-remote's D."""
        home.control("addressfamilies", "v6only.fam.test:ipv4\n")
        delivery = run_remote(home, "v6only.fam.test", env=knot.env)
        assert_report(delivery, report.NO_EXCHANGER_ADDRESS.encode())
        assert ("mx.v6only.fam.test", "AAAA") not in asked(delivery)

    def test_a_literal_of_a_disallowed_family(self, home: QmailHome, knot: KnotServer) -> None:
        """An IPv6 literal under ``:ipv4``: Z naming control/addressfamilies, no connection."""
        home.control("addressfamilies", ":ipv4\n")
        assert_report(
            run_remote(home, "[IPv6:fd6d:7866::501]", env=knot.env),
            b"ZSorry, control/addressfamilies does not allow IPv6 for this host. (#4.3.0)\n\0",
        )

    def test_a_malformed_line(self, home: QmailHome, knot: KnotServer) -> None:
        """``ipv5`` on line 2: Z naming file, line and problem."""
        home.control("addressfamilies", "gmail.com:ipv4\n.google.com:ipv5\n")
        assert_report(
            run_remote(home, "dual.fam.test", env=knot.env),
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/addressfamilies line 2: 'ipv5' is not ipv4 or ipv6 (in 'ipv5')\n\0",
        )


def run_probe(home: QmailHome, *args: str, env: dict[str, str]) -> str:
    """``mxf-remote-probe ARGS`` against ``home``: its output (it must connect)."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MXF_QMAIL": str(home.root)}
    done = subprocess.run(
        [PROBE, *args],
        capture_output=True,
        text=True,
        env=measured({**full_env, **env}),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.usefixtures("sources", "listeners")
class TestProbe:
    """The probe shows the source addresses and the family policy it used."""

    def test_settings_and_attempts(self, home: QmailHome, knot: KnotServer) -> None:
        """JSON settings name both; only IPv4 is planned; the attempt event has the source."""
        home.control("outgoingip", f"{SOURCE4}\n")
        home.control("addressfamilies", "dual.fam.test:ipv4\n")
        result = json.loads(run_probe(home, "--json", "dual.fam.test", env=knot.env))
        settings = result["settings"]
        assert (settings["source_ipv4"], settings["source_ipv6"]) == (SOURCE4, None)
        assert settings["address_families"] == ["ipv4"]
        assert [row["address"] for row in result["plan"]] == ["127.0.5.1"]
        starts = [e for e in result["timeline"]["events"] if e["event"] == "attempt"]
        assert [e["source_address"] for e in starts] == [SOURCE4]

    def test_text_settings_line(self, home: QmailHome, knot: KnotServer) -> None:
        """The human output has one line with the source addresses and the families."""
        home.control("outgoingip6", f"{SOURCE6}\n")
        output = run_probe(home, "dual.fam.test", env=knot.env)
        assert (
            f"source addresses: IPv4 system choice, IPv6 {SOURCE6}; address families ipv6,ipv4"
            in output.splitlines()
        )
