"""Tests for mxf_remote/report.py and mxf_remote/output.py: the bytes qmail-rspawn reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mxf_remote import report
from mxf_remote.output import outsafe as printable_host
from mxf_remote.output import report_bytes, write_all
from mxf_remote.report import (
    Report,
    bad_nameservers,
    cannot_run,
    control_error,
    internal_error,
    no_such_host,
    null_mx,
)

CONSTANTS = sorted(
    (name for name, value in vars(report).items() if isinstance(value, Report)),
)
MADE = {
    "no_such_host": no_such_host("example.com"),
    "null_mx": null_mx("example.com"),
    "control_error": control_error("control/protocols line 3: bad"),
    "bad_nameservers": bad_nameservers("MXF_NAMESERVERS: nothing"),
    "cannot_run": cannot_run("/bin/x", "No such file or directory"),
    "internal_error": internal_error(ValueError("boom")),
}
EVERY_REPORT = {**{name: getattr(report, name) for name in CONSTANTS}, **MADE}


class TestEveryReport:
    """Rules every report obeys (spec §7, contract §1.1 and §1.4)."""

    def test_constants_found(self) -> None:
        """The module's fixed reports are all checked here (the list is not empty)."""
        assert {"USAGE", "DNS_TEMPORARY", "NO_CONNECTION", "WE_ARE_BEST_MX"} <= set(CONSTANTS)

    @pytest.mark.parametrize("name", sorted(EVERY_REPORT))
    def test_one_nul_at_the_end(self, name: str) -> None:
        """The encoding ends in exactly one NUL and has no other NUL."""
        encoded = EVERY_REPORT[name].encode()
        assert encoded.endswith(b"\0")
        assert encoded.count(b"\0") == 1

    @pytest.mark.parametrize("name", sorted(EVERY_REPORT))
    def test_letter(self, name: str) -> None:
        """mxf-remote itself only defers (Z) or bounces (D)."""
        rep = EVERY_REPORT[name]
        assert rep.letter in ("Z", "D")
        assert rep.encode()[:1] == rep.letter.encode()

    @pytest.mark.parametrize("name", sorted(EVERY_REPORT))
    def test_text_ends_in_one_lf(self, name: str) -> None:
        """Texts end in LF, exactly one, and have no blank line (qmail-send's bounce rule)."""
        text = EVERY_REPORT[name].text
        assert text.endswith(b"\n")
        assert not text.endswith(b"\n\n")
        assert b"\n\n" not in text
        assert b"\r" not in text

    @pytest.mark.parametrize("name", sorted(EVERY_REPORT))
    def test_status_code(self, name: str) -> None:
        """Every text carries a (#x.y.z) status whose class matches the letter."""
        rep = EVERY_REPORT[name]
        expected = b"(#4." if rep.letter == "Z" else b"(#5."
        assert expected in rep.text

    @pytest.mark.parametrize("name", sorted(EVERY_REPORT))
    def test_ascii(self, name: str) -> None:
        """Texts are printable ASCII plus LF (they end up in logs and bounces)."""
        assert all(32 <= b <= 126 or b == 10 for b in EVERY_REPORT[name].text)


class TestTexts:
    """Byte-for-byte texts from the spec and qmail-remote."""

    @pytest.mark.parametrize(
        ("rep", "expected"),
        [
            (report.USAGE, b"DI (qmail-remote) was invoked improperly. (#5.3.5)\n\0"),
            (report.NO_HOME, b"ZUnable to switch to home directory. (#4.3.0)\n\0"),
            (
                report.NO_PROTOCOL,
                b"ZNo usable mail protocol is installed (control/protocols). (#4.3.0)\n\0",
            ),
            (report.DNS_TEMPORARY, b"ZSorry, I couldn't find any host by that name. (#4.1.2)\n\0"),
            (
                report.NO_EXCHANGER_ADDRESS,
                b"DSorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n\0",
            ),
            (
                report.WE_ARE_BEST_MX,
                b"DSorry. Although I'm listed as a best-preference MX or A for that host,\n"
                b"it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n\0",
            ),
            (
                report.NO_CONNECTION,
                b"ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n\0",
            ),
            (report.NO_MESSAGE, b"ZUnable to read message. (#4.3.0)\n\0"),
            (report.NO_RESOURCES, b"ZSystem resources temporarily unavailable. (#4.3.0)\n\0"),
        ],
        ids=lambda value: value.letter if isinstance(value, Report) else "",
    )
    def test_fixed(self, rep: Report, expected: bytes) -> None:
        """The fixed reports, exactly."""
        assert rep.encode() == expected

    def test_we_are_best_mx_two_lines(self) -> None:
        """#5.4.6 is the one two-line text."""
        assert report.WE_ARE_BEST_MX.text.count(b"\n") == 2

    def test_no_such_host(self) -> None:
        """#5.1.2 names the host."""
        assert no_such_host("Example.COM").encode() == (
            b"DSorry, I couldn't find any host named Example.COM. (#5.1.2)\n\0"
        )

    def test_no_such_host_empty(self) -> None:
        """An empty host prints as qmail prints it: ``named . (#5.1.2)``."""
        assert no_such_host("").encode() == b"DSorry, I couldn't find any host named . (#5.1.2)\n\0"

    def test_null_mx(self) -> None:
        """#5.1.10 names the host."""
        assert null_mx("example.com").encode() == (
            b"DSorry, example.com does not accept mail (null MX). (#5.1.10)\n\0"
        )

    def test_control_error(self) -> None:
        """The qmail text on line one, the file, line and problem on line two."""
        encoded = control_error("control/protocols line 3: 5 fields, expected 6").encode()
        assert encoded == (
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/protocols line 3: 5 fields, expected 6\n\0"
        )

    def test_control_error_detail_is_one_line(self) -> None:
        """A detail with LF, CR, NUL or non-ASCII stays on the second line, made safe."""
        text = control_error("control/x line 1: a\nb\rc\0d\u00e9").text
        lines = text.split(b"\n")
        assert lines[0] == b"Unable to read control files. (#4.3.0)"
        assert lines[1] == b"control/x line 1: a?b?c?d??"
        assert lines[2:] == [b""]

    def test_control_error_detail_bounded(self) -> None:
        """A huge detail is cut to a bounded length."""
        assert len(control_error("x" * 100_000).text) < 2000

    def test_internal_error(self) -> None:
        """Internal errors name the exception type and message (spec §7)."""
        assert internal_error(ValueError("boom")).encode() == (
            b"Zmxf-remote internal error: ValueError: boom (#4.3.0)\n\0"
        )

    def test_internal_error_other_types(self) -> None:
        """The type name is the exception's own class name."""
        assert b"KeyError: 'k'" in internal_error(KeyError("k")).text
        assert b"internal error: KeyboardInterrupt: " in internal_error(KeyboardInterrupt()).text

    def test_internal_error_multiline_message(self) -> None:
        """A message with newlines or NULs stays one safe line."""
        text = internal_error(RuntimeError("a\nb\0c")).text
        assert text == b"mxf-remote internal error: RuntimeError: a?b?c (#4.3.0)\n"

    def test_cannot_run(self) -> None:
        """``ZUnable to run PROGRAM: REASON. (#4.3.0)`` (spec §6)."""
        assert cannot_run("/bin/smtpc", "No such file or directory").encode() == (
            b"ZUnable to run /bin/smtpc: No such file or directory. (#4.3.0)\n\0"
        )

    def test_bad_nameservers(self) -> None:
        """A bad MXF_NAMESERVERS defers, saying why."""
        assert bad_nameservers("MXF_NAMESERVERS: 'x' is not an address").encode() == (
            b"ZUnable to set up DNS: MXF_NAMESERVERS: 'x' is not an address. (#4.3.0)\n\0"
        )


class TestPrintableHost:
    """qmail's outsafe: bytes outside 33..126 print as ``?``."""

    @pytest.mark.parametrize(
        ("host", "printed"),
        [
            ("example.com", b"example.com"),
            ("Ex-ample_1.COM", b"Ex-ample_1.COM"),
            ("a b", b"a?b"),
            ("a\tb\nc\rd\0e", b"a?b?c?d?e"),
            ("\x7f", b"?"),
            ("!~", b"!~"),
            ("\u00e9", b"??"),
            ("\u20ac", b"???"),
            ("caf\udce9", b"caf?"),
            ("", b""),
        ],
    )
    def test_printable_host(self, host: str, printed: bytes) -> None:
        """Each byte of the UTF-8 (or surrogate-escaped) host outside 33..126 is one ``?``."""
        assert printable_host(host) == printed


class TestReportBytes:
    """output.report_bytes: letter, text with NULs made ``?``, one NUL."""

    def test_plain(self) -> None:
        """Letter, text, NUL."""
        assert report_bytes("Z", b"later\n") == b"Zlater\n\0"

    def test_nul_in_text(self) -> None:
        """A NUL inside the text becomes ``?`` so the report is not cut short."""
        assert report_bytes("D", b"a\0b\0\n") == b"Da?b?\n\0"

    def test_report_encode_uses_it(self) -> None:
        """Report.encode applies the same rule."""
        assert Report("Z", b"x\0y\n").encode() == b"Zx?y\n\0"

    def test_empty_text(self) -> None:
        """Even an empty text gets its one NUL."""
        assert report_bytes("Z", b"") == b"Z\0"


class TestWriteAll:
    """output.write_all: every byte, or False when the descriptor refuses."""

    def test_pipe(self) -> None:
        """All bytes arrive through a pipe."""
        read_end, write_end = os.pipe()
        try:
            data = b"Zx\n\0" * 1000
            assert write_all(write_end, data)
            os.close(write_end)
            write_end = -1
            received = b""
            while chunk := os.read(read_end, 65536):
                received += chunk
            assert received == data
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)

    def test_closed_descriptor(self) -> None:
        """A closed descriptor gives False, not an exception."""
        read_end, write_end = os.pipe()
        os.close(read_end)
        os.close(write_end)
        assert write_all(write_end, b"x") is False

    def test_reader_gone(self) -> None:
        """A pipe whose reader is gone gives False (EPIPE; SIGPIPE is ignored by Python)."""
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            assert write_all(write_end, b"x") is False
        finally:
            os.close(write_end)

    def test_empty(self) -> None:
        """Nothing to write is success."""
        read_end, write_end = os.pipe()
        try:
            assert write_all(write_end, b"")
        finally:
            os.close(read_end)
            os.close(write_end)


class TestFinish:
    """output.finish: the reports on fd 1, nothing else, exit 0."""

    def test_finish(self) -> None:
        """A child calling finish() writes exactly the bytes to fd 1 and exits 0."""
        code = (
            "import sys\n"
            "from mxf_remote.output import finish\n"
            "from mxf_remote.report import DNS_TEMPORARY\n"
            "sys.stderr.write('')\n"
            "finish(DNS_TEMPORARY.encode())\n"
        )
        root = str(Path(__file__).resolve().parents[1])
        environment = {**os.environ, "PYTHONPATH": root}
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            timeout=30,
            check=False,
            cwd=root,
            env=environment,
        )
        assert result.returncode == 0
        assert result.stdout == b"ZSorry, I couldn't find any host by that name. (#4.1.2)\n\0"
        assert result.stderr == b""
