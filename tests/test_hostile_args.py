"""Hostile arguments: odd hosts, senders and recipients through the real mxf-remote.

Hosts that cannot be a DNS name at all (blanks, control bytes, 8-bit bytes, labels over
63 bytes, brackets that do not close, ``[IPv6:`` garbage) are refused by c-ares before
any question is sent; qmail-remote would send them and get NXDOMAIN.  Either way the
report is ``#5.1.2`` with every byte outside 33..126 printed as ``?``.  Senders and
recipients are never interpreted: they reach the protocol client byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mxf_remote import report
from tests.hostilekit import SMTP_PORT, assert_handed_to, assert_report, recorder_home
from tests.infra.knot import KnotServer
from tests.remotekit import QmailHome, run_remote

pytestmark = [pytest.mark.knot]

ZONE = """
ok      MX 10 mx.ok
mx.ok   A  127.0.6.11
"""
ZONES = {"mxf.test": ZONE}
LISTENERS = [("127.0.6.11", SMTP_PORT), ("fd6d:7866::611", SMTP_PORT)]
"""The exchanger of ok.mxf.test, and a literal target."""


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """SMTP to the recorder."""
    return recorder_home(tmp_path, timeoutconnect=3, timeoutdns=3)


def _surrogates(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@pytest.mark.usefixtures("netns", "listeners")
class TestHosts:
    """Every impossible host name gets one well-formed report, never a crash."""

    @pytest.mark.parametrize(
        ("host", "printed"),
        [
            ("a b.mxf.test", b"a?b.mxf.test"),
            ("a\x01b.mxf.test", b"a?b.mxf.test"),
            ("tab\t.mxf.test", b"tab?.mxf.test"),
            (_surrogates(b"caf\xe9.mxf.test"), b"caf?.mxf.test"),
            ("x" * 300 + ".mxf.test", b"x" * 300 + b".mxf.test"),
            ("a." * 150 + "mxf.test", b"a." * 150 + b"mxf.test"),
            ("[127.0.6.11", b"[127.0.6.11"),
            ("[IPv6:zzz]", b"[IPv6:zzz]"),
            ("[IPv6:]", b"[IPv6:]"),
            ("[IPv6:127.0.6.11]", b"[IPv6:127.0.6.11]"),
            ("[]", b"[]"),
            ("../../etc/passwd", b"../../etc/passwd"),
        ],
        ids=[
            "space",
            "control",
            "tab",
            "8bit",
            "long-label",
            "long-name",
            "open-bracket",
            "ipv6-garbage",
            "ipv6-empty",
            "ipv6-with-v4",
            "empty-brackets",
            "path",
        ],
    )
    def test_impossible_hosts_are_5_1_2(
        self, home: QmailHome, knot: KnotServer, host: str, printed: bytes
    ) -> None:
        """A name DNS cannot hold: ``D... host named HOST. (#5.1.2)``, HOST made printable."""
        delivery = run_remote(home, host, env=knot.env)
        assert_report(
            delivery, b"DSorry, I couldn't find any host named " + printed + b". (#5.1.2)\n\0"
        )

    @pytest.mark.parametrize("host", ["", ".", ".."])
    def test_empty_and_root_hosts_are_never_delivered_or_bounced(
        self, home: QmailHome, knot: KnotServer, host: str
    ) -> None:
        """The empty host and the root: one Z or D report (knot refuses the root zone)."""
        delivery = run_remote(home, host, env=knot.env)
        assert delivery.stderr == b"" and delivery.returncode == 0
        assert delivery.stdout.count(b"\0") == 1 and delivery.stdout.endswith(b"\n\0")
        assert delivery.stdout[:1] in (b"Z", b"D") and not delivery.handed_off

    def test_bracketed_ipv6_literal_with_tag(self, home: QmailHome) -> None:
        """``[IPv6:fd6d:7866::611]`` is connected to without DNS."""
        delivery = run_remote(home, "[IPv6:fd6d:7866::611]", env={"MXF_NAMESERVERS": "127.0.6.9"})
        assert_handed_to(delivery, "fd6d:7866::611")

    def test_upper_case_host_with_trailing_dot(self, home: QmailHome, knot: KnotServer) -> None:
        """``OK.MXF.TEST.`` is the same domain as ok.mxf.test; argv keeps the original."""
        delivery = run_remote(home, "OK.MXF.TEST.", env=knot.env)
        record = assert_handed_to(delivery, "127.0.6.11")
        assert record["argv"] == ["OK.MXF.TEST.", "sender@example.org", "rcpt@example.test"]


@pytest.mark.usefixtures("netns", "listeners")
class TestEnvelope:
    """Senders and recipients pass through untouched, however odd."""

    @pytest.mark.parametrize("sender", ["", "#@[]", "-k", "--", "x-box=dom@host"])
    def test_senders(self, home: QmailHome, knot: KnotServer, sender: str) -> None:
        """Bounce (``""``), double bounce (``#@[]``) and option-like senders reach argv[2]."""
        delivery = run_remote(home, "ok.mxf.test", env=knot.env, sender=sender)
        record = assert_handed_to(delivery, "127.0.6.11")
        assert record["argv"] == ["ok.mxf.test", sender, "rcpt@example.test"]

    def test_five_thousand_recipients(self, home: QmailHome, knot: KnotServer) -> None:
        """5,000 recipients are handed on, in order, all of them."""
        recipients = tuple(f"r{i}@example.test" for i in range(5000))
        delivery = run_remote(home, "ok.mxf.test", env=knot.env, recipients=recipients)
        record = assert_handed_to(delivery, "127.0.6.11")
        assert record["argv"] == ["ok.mxf.test", "sender@example.org", *recipients]

    def test_recipients_with_odd_bytes(self, home: QmailHome, knot: KnotServer) -> None:
        """Blanks, control bytes, 8-bit bytes, ``-`` first: each arrives byte for byte."""
        recipients = (
            "a b@example.test",
            "tab\t@x",
            _surrogates(b"caf\xe9@x"),
            "-v@x",
            "",
            "@",
            "\x7f@x",
        )
        delivery = run_remote(home, "ok.mxf.test", env=knot.env, recipients=recipients)
        record = assert_handed_to(delivery, "127.0.6.11")
        assert record["argv"] == ["ok.mxf.test", "sender@example.org", *recipients]

    def test_usage_with_two_arguments_is_5_3_5(self, home: QmailHome) -> None:
        """Host and sender only: the qmail-remote usage report."""
        delivery = run_remote(home, "ok.mxf.test", env={}, recipients=())
        assert_report(delivery, report.USAGE)
