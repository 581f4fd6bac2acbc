"""mxf-remote-probe end to end: real knot DNS, real listeners and silent hosts, real output.

The installed ``mxf-remote-probe`` runs in a subprocess inside the session's private
network namespace (conftest.py), against one knotd serving the scenario zone.  Exchangers
listen on 127.0.4.x and fd6d:7866::4xx; silent ones are made with an nftables DROP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.knot import KnotServer
from tests.infra.netns import silence
from tests.measured import measured
from tests.remotekit import Listeners, QmailHome
from tests.tlskit import AiosmtpdServer, Certs

pytestmark = [pytest.mark.knot]

PROBE = os.path.join(os.path.dirname(sys.executable), "mxf-remote-probe")
SMTP_PORT = 2525
QMTP_PORT = 2209

ZONE = """
healthy         MX    10 mx.healthy
mx.healthy      AAAA  fd6d:7866::401
mx.healthy      A     127.0.4.1
silentbest      MX    10 mx1.silentbest
silentbest      MX    20 mx2.silentbest
mx1.silentbest  A     127.0.4.2
mx2.silentbest  A     127.0.4.3
refused         MX    10 mx.refused
mx.refused      A     127.0.4.4
mxps            MX    12801 mx.mxps
mx.mxps         A     127.0.4.5
halfgone        MX    10 gone.halfgone
halfgone        MX    20 mx.healthy
talk            MX    10 mx.talk
mx.talk         A     127.0.4.7
"""
ZONES = {"probe.test": ZONE}

LISTENERS = [
    ("fd6d:7866::401", SMTP_PORT),
    ("127.0.4.1", SMTP_PORT),
    ("127.0.4.3", SMTP_PORT),
    ("127.0.4.5", QMTP_PORT),
    ("127.0.4.5", SMTP_PORT),
    ("127.0.4.6", SMTP_PORT),
]


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """A qmail home with QMTP (slice 1) and SMTP, both run by /bin/true (never run)."""
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control(
        "protocols", f"qmtp:{QMTP_PORT}:1:N:N:/bin/true\nsmtp:{SMTP_PORT}:0:N:N:/bin/true\n"
    )
    qmail.control("timeoutconnect", "5\n")
    return qmail


@dataclass
class Probed:
    """What one run of the probe printed."""

    stdout: str
    stderr: str
    returncode: int

    @property
    def json(self) -> dict[str, Any]:
        """stdout parsed as the ``--json`` object."""
        parsed: dict[str, Any] = json.loads(self.stdout)
        return parsed


def probe(home: QmailHome, *args: str, env: dict[str, str] | None = None) -> Probed:
    """Run mxf-remote-probe with ``args`` against ``home``."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MXF_QMAIL": str(home.root),
        **(env or {}),
    }
    done = subprocess.run(
        [PROBE, *args],
        capture_output=True,
        text=True,
        env=measured(full_env),
        timeout=30,
        check=False,
    )
    return Probed(done.stdout, done.stderr, done.returncode)


@pytest.mark.usefixtures("netns", "listeners")
class TestProbeOutput:
    """The human table and the JSON object: plan, timeline, winner, exit status."""

    def test_table_shows_plan_timeline_and_winner(self, home: QmailHome, knot: KnotServer) -> None:
        """A healthy exchanger: both addresses planned IPv6 first, DNS in the timeline, exit 0."""
        run = probe(home, "healthy.probe.test", env=knot.env)
        assert run.returncode == 0, run.stderr
        assert run.stderr == ""
        lines = run.stdout.splitlines()
        plan_rows = [line for line in lines if "mx.healthy.probe.test" in line and " mx " in line]
        assert "fd6d:7866::401" in plan_rows[0]
        assert "127.0.4.1" in plan_rows[1]
        assert any("DNS MX healthy.probe.test" in line for line in lines)
        assert any("connect smtp fd6d:7866::401 port 2525" in line for line in lines)
        winner = "Winner: smtp to mx.healthy.probe.test fd6d:7866::401 port 2525"
        assert lines[-1].startswith(winner)

    def test_json_carries_every_field(self, home: QmailHome, knot: KnotServer) -> None:
        """--json: plan rows with every field, timed queries and attempts, and the winner."""
        run = probe(home, "healthy.probe.test", "--json", env=knot.env)
        assert run.returncode == 0, run.stderr
        result = run.json
        assert result["connected"] is True
        first = result["plan"][0]
        assert {k: first[k] for k in ("protocol", "exchanger", "address", "port")} == {
            "protocol": "smtp",
            "exchanger": "mx.healthy.probe.test",
            "address": "fd6d:7866::401",
            "port": SMTP_PORT,
        }
        assert (first["preference"], first["slice"], first["source"]) == (10, 0, "mx")
        queries = {(q["type"], q["name"]): q for q in result["timeline"]["queries"]}
        mx = queries[("MX", "healthy.probe.test")]
        assert mx["status"] == "ok" and mx["records"] == [[10, "mx.healthy.probe.test"]]
        assert 0 < mx["start"] <= mx["end"]
        attempt = result["timeline"]["attempts"][0]
        assert attempt["outcome"] == "won" and attempt["start"] <= attempt["end"]
        assert result["winner"]["address"] == "fd6d:7866::401"
        assert result["report"] is None

    def test_silent_best_mx_is_an_abandoned_attempt(
        self, home: QmailHome, knot: KnotServer, silent_hosts: None
    ) -> None:
        """Best MX silent: it was started, left unanswered, and the second MX won ~250 ms later."""
        silence("127.0.4.2", SMTP_PORT)
        run = probe(home, "silentbest.probe.test", "--json", env=knot.env)
        assert run.returncode == 0, run.stderr
        best, second = run.json["plan"]
        assert (best["address"], best["outcome"]) == ("127.0.4.2", "abandoned")
        assert (second["address"], second["outcome"]) == ("127.0.4.3", "won")
        assert second["start"] - best["start"] >= 200
        table = probe(home, "silentbest.probe.test", env=knot.env).stdout
        assert any("127.0.4.2" in line and "abandoned" in line for line in table.splitlines())

    def test_nothing_connects_exit_1_with_the_would_be_report(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """A refused exchanger: the attempt failed with ECONNREFUSED, #4.4.1 shown, exit 1."""
        run = probe(home, "refused.probe.test", env=knot.env)
        assert run.returncode == 1
        assert any("failed (ECONNREFUSED)" in line for line in run.stdout.splitlines())
        would = "mxf-remote would report: ZSorry, I wasn't able to establish an SMTP connection."
        assert would in run.stdout
        result = probe(home, "refused.probe.test", "--json", env=knot.env).json
        assert result["connected"] is False and result["winner"] is None
        assert result["plan"][0]["errno"] == "ECONNREFUSED"

    def test_unknown_host_is_exit_1_with_the_dns_report(
        self, home: QmailHome, knot: KnotServer
    ) -> None:
        """NXDOMAIN everywhere: no attempt planned, the #5.1.2 report shown, exit 1."""
        run = probe(home, "nowhere.probe.test", env=knot.env)
        assert run.returncode == 1
        assert "(no attempt planned)" in run.stdout
        assert "couldn't find any host named nowhere.probe.test. (#5.1.2)" in run.stdout

    def test_protocols_option_limits_the_plan(self, home: QmailHome, knot: KnotServer) -> None:
        """MXPS slice 1 plans QMTP then SMTP; --protocols smtp leaves SMTP alone."""
        both = probe(home, "mxps.probe.test", "--json", env=knot.env).json
        assert [row["protocol"] for row in both["plan"]] == ["qmtp", "smtp"]
        assert both["plan"][0]["slice"] == 1
        only = probe(home, "mxps.probe.test", "--json", "--protocols", "smtp", env=knot.env).json
        assert [row["protocol"] for row in only["plan"]] == ["smtp"]
        assert only["protocols"] == ["smtp"]

    def test_a_literal_asks_no_dns(self, home: QmailHome) -> None:
        """``[127.0.4.6]``: no DNS; every protocol at its default port; QMTP refused, SMTP won."""
        result = probe(home, "[127.0.4.6]", "--json", env={"MXF_NAMESERVERS": "127.0.0.9:9"}).json
        assert result["timeline"]["queries"] == []
        assert [(r["protocol"], r["port"]) for r in result["plan"]] == [
            ("qmtp", QMTP_PORT),
            ("smtp", SMTP_PORT),
        ]
        assert result["plan"][0]["errno"] == "ECONNREFUSED"
        assert result["winner"]["protocol"] == "smtp"


class TestProbeErrors:
    """Errors are one clear line on stderr and exit 1, never a traceback."""

    def test_unknown_protocol(self, home: QmailHome) -> None:
        """--protocols names a service control/protocols does not have."""
        run = probe(home, "example.test", "--protocols", "smtp,lmtp")
        assert run.returncode == 1
        assert run.stderr == (
            "mxf-remote-probe: --protocols: lmtp not in control/protocols (it has qmtp, smtp)\n"
        )
        assert run.stdout == ""

    def test_bad_control_file_names_file_and_line(self, home: QmailHome) -> None:
        """A malformed control/protocols: the file, line and problem, exit 1."""
        home.control("protocols", "smtp:25:0:N:N:/bin/true\nqmtp:209:1:N\n")
        run = probe(home, "example.test")
        assert run.returncode == 1
        assert run.stderr.startswith("mxf-remote-probe: cannot read the control files")
        assert "protocols" in run.stderr and "line 2" in run.stderr
        assert "Traceback" not in run.stderr

    def test_bad_nameservers(self, home: QmailHome) -> None:
        """MXF_NAMESERVERS that is not an address list."""
        run = probe(home, "example.test", env={"MXF_NAMESERVERS": "not-an-address"})
        assert run.returncode == 1
        assert run.stderr.startswith("mxf-remote-probe: MXF_NAMESERVERS: ")
        assert "Traceback" not in run.stderr

    def test_usage_error(self, home: QmailHome) -> None:
        """No host at all: usage on stderr, exit 1."""
        run = probe(home)
        assert run.returncode == 1
        assert "usage: mxf-remote-probe" in run.stderr
        assert "Traceback" not in run.stderr


@pytest.mark.usefixtures("listeners")
class TestFacts:
    """The probe shows what the planner decided, from the plan's facts."""

    def test_an_exchanger_without_address(self, home: QmailHome, knot: KnotServer) -> None:
        """MX 10 does not exist: JSON says so per target, text names it; MX 20 wins."""
        run = probe(home, "halfgone.probe.test", "--json", env=knot.env)
        facts = run.json["facts"]
        assert (facts["kind"], facts["mx"], facts["self_cut"]) == ("dns", "ok", False)
        targets = {t["name"]: t for t in facts["targets"]}
        assert targets["gone.halfgone.probe.test"] == {
            "name": "gone.halfgone.probe.test",
            "source": "mx",
            "preference": 10,
            "has_addresses": False,
            "temporary": False,
            "permanent": True,
        }
        assert targets["mx.healthy.probe.test"]["has_addresses"] is True
        assert run.json["connected"] is True
        text = probe(home, "halfgone.probe.test", env=knot.env).stdout
        assert "no address for gone.halfgone.probe.test (mx 10): no such address" in text


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A trustme CA and its CAFILE."""
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs: Certs, listeners: Listeners) -> Iterator[AiosmtpdServer]:
    """aiosmtpd with STARTTLS for mx.talk.probe.test on its MX address."""
    server = AiosmtpdServer("127.0.4.7", SMTP_PORT, certs.named_context("mx.talk.probe.test"))
    yield server
    server.close()


class TestConversation:
    """--conversation: the SMTP conversation with the winner, timed, up to QUIT."""

    def test_starttls_conversation_on_the_probes_clock(
        self, home: QmailHome, knot: KnotServer, certs: Certs, tls_server: AiosmtpdServer
    ) -> None:
        """Banner to QUIT after the race, TLS verified with CAFILE, and no message sent."""
        env = {**knot.env, "CAFILE": str(certs.cafile)}
        result = probe(home, "talk.probe.test", "--json", "--conversation", env=env).json
        talk = result["conversation"]
        assert [p["phase"] for p in talk["phases"]] == [
            "banner",
            "EHLO",
            "STARTTLS",
            "TLS handshake",
            "EHLO after TLS",
            "QUIT",
        ]
        assert talk["phases"][0]["start_ms"] >= result["winner"]["end"]
        assert "STARTTLS" in talk["keywords_before_tls"]
        tls = talk["tls"]
        assert (tls["checked_name"], tls["verified"]) == ("mx.talk.probe.test", True)
        assert tls["names"] == ["DNS:mx.talk.probe.test"]
        assert talk["error"] is None
        assert tls_server.no_arrival()

    def test_text_shows_the_phases(
        self, home: QmailHome, knot: KnotServer, tls_server: AiosmtpdServer
    ) -> None:
        """The text form ends with the conversation; without CAFILE the verdict says why."""
        run = probe(home, "talk.probe.test", "--conversation", env=knot.env)
        assert run.returncode == 0
        assert "TLS handshake" in run.stdout and "Conversation complete." in run.stdout
        assert "(closed: the probe hands nothing off)" not in run.stdout
        assert "unable to get local issuer certificate" in run.stdout

    def test_no_conversation_with_a_qmtp_winner(self, home: QmailHome, knot: KnotServer) -> None:
        """A QMTP winner is closed as without the option: QMTP has no banner to time."""
        result = probe(home, "mxps.probe.test", "--json", "--conversation", env=knot.env).json
        assert result["winner"]["protocol"] == "qmtp"
        assert "conversation" not in result
