"""Hostile control files, through the real mxf-remote process: exact report bytes.

tests/test_control.py checks the parsers one by one; here each bad file goes through the
installed program as qmail-rspawn runs it, and what counts is what rspawn would read:
``ZUnable to read control files. (#4.3.0)`` plus one line naming the file, the line and
the problem -- never a D, never a traceback, stderr empty, exit 0.  Files that parse
(duplicate routes, IPv6 relays) must deliver to the right place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.hostilekit import (
    SMTP_PORT,
    assert_handed_to,
    assert_report,
    control_report,
    recorder_home,
)
from tests.remotekit import MXF_REMOTE, Delivery, QmailHome, run_remote

NO_DNS = {"MXF_NAMESERVERS": "127.0.6.9:9"}
FIELDS = "(service:defport:slice:implicitTLS:explicitTLS:program)"
LISTENERS = [
    (address, port)
    for address in ("127.0.6.21", "127.0.6.22", "fd6d:7866::621")
    for port in (SMTP_PORT, 2626)
]
"""Relays on 127.0.6.21/22 and fd6d:7866::621, on the SMTP port and on 2626."""


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """SMTP on the recorder, no DNS needed (every case is a literal or a route)."""
    return recorder_home(tmp_path, timeoutconnect=3, timeoutdns=2)


def deliver(home: QmailHome, host: str = "[127.0.6.21]") -> Delivery:
    """One delivery with no usable nameserver (literals and literal relays only)."""
    return run_remote(home, host, env=NO_DNS, timeout=20)


def recorder_line(home: QmailHome) -> str:
    """The protocols line that runs the recorder."""
    return (home.root / "control" / "protocols").read_text().strip()


@pytest.mark.usefixtures("netns")
class TestUnreadableFiles:
    """Files that exist but cannot be read."""

    def test_a_directory_instead_of_a_file(self, home: QmailHome) -> None:
        """control/timeoutconnect is a directory: Z naming it."""
        (home.root / "control" / "timeoutconnect").unlink()
        (home.root / "control" / "timeoutconnect").mkdir()
        assert_report(
            deliver(home), control_report("control/timeoutconnect: cannot read: Is a directory")
        )

    def test_binary_garbage(self, home: QmailHome) -> None:
        """protocols full of binary bytes: Z naming line 1, the garbage made printable."""
        (home.root / "control" / "protocols").write_bytes(b"\x00\xff\xfe\x01garbage\x80\n")
        assert_report(
            deliver(home),
            control_report(f"control/protocols line 1: 1 fields, expected 6 {FIELDS}"),
        )

    def test_crlf_line_ends(self, home: QmailHome) -> None:
        """protocols written with CRLF: Z naming line 1 and the CR."""
        home.control("protocols", recorder_line(home) + "\r\n")
        assert_report(
            deliver(home),
            control_report(
                "control/protocols line 1: line ends in a carriage return (CRLF line ends?)"
            ),
        )

    def test_crlf_in_a_number_file(self, home: QmailHome) -> None:
        """timeoutconnect ``60\\r\\n``: Z naming it."""
        home.control("timeoutconnect", "60\r\n")
        assert_report(
            deliver(home),
            control_report(
                "control/timeoutconnect line 1: line ends in a carriage return (CRLF line ends?)"
            ),
        )

    def test_a_huge_file(self, home: QmailHome) -> None:
        """smtproutes over 16 MiB (sparse): Z naming it, read no further."""
        with (home.root / "control" / "smtproutes").open("wb") as routes:
            routes.truncate(16 * 1024 * 1024 + 1)
        assert_report(
            deliver(home), control_report("control/smtproutes: larger than 16777216 bytes")
        )

    def test_a_symlink_loop(self, home: QmailHome) -> None:
        """control/timeoutdns pointing at itself: Z naming it."""
        path = home.root / "control" / "timeoutdns"
        path.unlink()
        path.symlink_to(path)
        assert_report(
            deliver(home),
            control_report("control/timeoutdns: cannot read: Too many levels of symbolic links"),
        )

    def test_a_fifo_does_not_hang_the_delivery(self, home: QmailHome) -> None:
        """control/smtproutes is a FIFO nobody writes: a Z report at once, no hang."""
        os.mkfifo(home.root / "control" / "smtproutes")
        delivery = deliver(home)
        assert_report(
            delivery, control_report("control/smtproutes: cannot read: not a regular file")
        )
        assert delivery.seconds < 5

    @pytest.mark.cold_only(
        "drops the capabilities of mxf-remote's own process; with mxf-remoted, the server "
        "(the same user in production) reads the control files"
    )
    def test_unreadable_permissions(self, home: QmailHome) -> None:
        """A mode-000 protocols file, read without root's DAC override: Z naming it."""
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0 or setpriv is None:
            pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")
        os.chmod(home.root / "control" / "protocols", 0)
        env = {"PATH": os.environ["PATH"], "MXF_QMAIL": str(home.root), **NO_DNS}
        drop = "-dac_override,-dac_read_search"
        done = subprocess.run(
            [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", MXF_REMOTE, "x", "s", "r"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=20,
            check=False,
        )
        assert (done.stdout, done.stderr, done.returncode) == (
            control_report("control/protocols: cannot read: Permission denied"),
            b"",
            0,
        )


@pytest.mark.usefixtures("netns")
class TestProtocolsTable:
    """Malformed lines of control/protocols: each names its line and problem."""

    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            ("smtp:25:0:N:N", f"5 fields, expected 6 {FIELDS}"),
            ("smtp:25:0:N:N:prog:extra", f"7 fields, expected 6 {FIELDS}"),
            ("smtp:0:0:N:N:PROG", "0 is outside 1..65535 (port)"),
            ("smtp:65536:0:N:N:PROG", "65536 is outside 1..65535 (port)"),
            ("smtp:-1:0:N:N:PROG", "'-1' is not a whole number of (port)"),
            ("smtp:abc:0:N:N:PROG", "'abc' is not a whole number of (port)"),
            ("smtp::0:N:N:PROG", "empty, expected a whole number of (port)"),
            ("smtp:25:16:N:N:PROG", "16 is outside 0..15 (slice)"),
            ("smtp:25:-2:N:N:PROG", "'-2' is not a whole number of (slice)"),
            ("smtp:25:0:yes:N:PROG", "implicitTLS must be Y or N, not 'yes'"),
            ("smtp:25:0:N:X:PROG", "explicitTLS must be Y or N, not 'X'"),
            ("smtp:25:0:Y:Y:PROG", "implicitTLS and explicitTLS are both Y"),
            ("smtp:25:0:N:N:", "the program field is empty"),
            ("sm tp:25:0:N:N:PROG", "service 'sm tp' is not a DNS label"),
            ("smtp:\u0665:0:N:N:PROG", "'\u0665' is not a whole number of (port)"),
        ],
        ids=[
            "five-fields",
            "seven-fields",
            "port-0",
            "port-65536",
            "port-minus-1",
            "port-abc",
            "port-empty",
            "slice-16",
            "slice-minus-2",
            "tls-yes",
            "tls-x",
            "both-tls",
            "no-program",
            "blank-service",
            "arabic-digit",
        ],
    )
    def test_bad_line(self, home: QmailHome, line: str, problem: str) -> None:
        """A bad line 2 (after a comment) gives Z naming line 2 and the problem."""
        program = recorder_line(home).rsplit(":", 1)[1]
        home.control("protocols", "# comment\n" + line.replace("PROG", program) + "\n")
        report = control_report(f"control/protocols line 2: {problem}")
        assert_report(deliver(home), report.replace("\u0665".encode(), b"??"))

    def test_a_service_listed_twice(self, home: QmailHome) -> None:
        """The same service on two lines: Z naming the second."""
        line = recorder_line(home)
        home.control("protocols", f"{line}\n{line}\n")
        assert_report(
            deliver(home), control_report("control/protocols line 2: service smtp is listed twice")
        )

    @pytest.mark.parametrize(
        ("name", "text", "problem"),
        [
            ("timeoutconnect", "0\n", "0 is outside 1..86400 seconds"),
            ("timeoutconnect", "-1\n", "'-1' is not a whole number of seconds"),
            ("timeoutdns", "abc\n", "'abc' is not a whole number of seconds"),
            ("timeoutdns", "\n", "empty, expected a whole number of seconds"),
            ("connectdelay", "9" * 40 + "\n", "9" * 40 + " is outside 0..1000000000 milliseconds"),
        ],
        ids=["connect-0", "connect-minus-1", "dns-abc", "dns-empty", "delay-huge"],
    )
    def test_bad_numbers(self, home: QmailHome, name: str, text: str, problem: str) -> None:
        """A number file that is no number in range: Z naming file, line 1 and value."""
        home.control(name, text)
        assert_report(deliver(home), control_report(f"control/{name} line 1: {problem}"))


@pytest.mark.usefixtures("netns", "listeners")
class TestRoutes:
    """Routes files: bad ones are Z; odd but valid ones deliver to the right relay."""

    def test_duplicate_routes_last_one_wins(self, home: QmailHome) -> None:
        """The same key twice: the later line decides, as qmail's constmap does."""
        home.control("smtproutes", "x.test:[127.0.6.22]\nx.test:[127.0.6.21]\n")
        assert_handed_to(deliver(home, "x.test"), "127.0.6.21")

    def test_ipv6_relay_with_port(self, home: QmailHome) -> None:
        """``x.test:[fd6d:7866::621]:2626``: that address, that port."""
        home.control("smtproutes", "x.test:[fd6d:7866::621]:2626\n")
        record = assert_handed_to(deliver(home, "x.test"), "fd6d:7866::621")
        env = record["env"]
        assert isinstance(env, dict) and env["TCPREMOTEPORT"] == "2626"

    def test_ipv6_relay_without_port(self, home: QmailHome) -> None:
        """``x.test:[fd6d:7866::621]``: that address, the protocol's default port."""
        home.control("smtproutes", "x.test:[fd6d:7866::621]\n")
        record = assert_handed_to(deliver(home, "x.test"), "fd6d:7866::621")
        env = record["env"]
        assert isinstance(env, dict) and env["TCPREMOTEPORT"] == str(SMTP_PORT)

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("fd6d:7866::621", "'7866::621' is not a whole number of (port)"),
            ("[fd6d:7866::621", "relay '[fd6d:7866::621' has [ without ]"),
            ("[fd6d:7866::621]2626", "unexpected '2626' after [fd6d:7866::621]"),
            ("127.0.6.21:0", "0 is outside 1..65535 (port)"),
            ("127.0.6.21:65536", "65536 is outside 1..65535 (port)"),
            (":25", "a port without a relay"),
            ("relay with blanks", "relay 'relay with blanks' contains blanks or control bytes"),
        ],
        ids=[
            "v6-unbracketed",
            "v6-open-bracket",
            "v6-junk-after",
            "port-0",
            "port-65536",
            "no-relay",
            "blanks",
        ],
    )
    def test_bad_route(self, home: QmailHome, value: str, problem: str) -> None:
        """A bad relay on line 2: Z naming smtproutes line 2."""
        home.control("smtproutes", f"other.test:[127.0.6.22]\nx.test:{value}\n")
        assert_report(
            deliver(home, "x.test"), control_report(f"control/smtproutes line 2: {problem}")
        )
