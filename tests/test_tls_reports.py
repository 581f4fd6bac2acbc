"""Tests for mxf_remote/tls/reports.py: every report the TLS clients print."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from mxf_remote.tls import reports
from mxf_remote.tls.context import build_context
from mxf_remote.tls.options import Options
from mxf_remote.tls.pump import Endpoint, HandshakeFailed, Session, handshake

ROOT = Path(__file__).resolve().parents[1]
TLS_PACKAGE = ROOT / "mxf_remote" / "tls"
ENOENT = FileNotFoundError(errno.ENOENT, "No such file or directory")

EVERY_REPORT = {
    "bad_command_line": reports.bad_command_line("mxf-remote-tlsc", "unknown option -x"),
    "descriptor_not_open": reports.descriptor_not_open("mxf-remote-ucspitlsc", 7),
    "exec_failed": reports.exec_failed("/usr/bin/smtpc", ENOENT),
    "handshake_failed": reports.handshake_failed("192.0.2.25", "certificate rejected: expired"),
    "handshake_timed_out": reports.handshake_timed_out("192.0.2.25", 1500),
    "engine_died": reports.engine_died("192.0.2.25"),
    "configuration_error": reports.configuration_error("-y needs CERTFILE and KEYFILE"),
    "internal_error": reports.internal_error("mxf-remote-tlsc", ValueError("boom")),
}


def diagnostics(page: str) -> list[re.Pattern[bytes]]:
    """The report headings of a page's DIAGNOSTICS, upper-case words as wildcards."""
    source = (ROOT / "man" / page).read_text(encoding="utf-8")
    section = source.split(".Sh DIAGNOSTICS", 1)[1].split("\n.Sh ", 1)[0]
    headings = re.findall(r"^\.It Li (Z.*)$", section, re.MULTILINE)
    return [
        re.compile(re.sub(rb"(IP|PROGRAM|REASON)", rb".+", re.escape(heading.encode())))
        for heading in headings
    ]


class TestEveryReport:
    """Rules every TLS report obeys (spec §7, man/mxf-remote-tlsc.8)."""

    @pytest.mark.parametrize("name", sorted(EVERY_REPORT))
    def test_a_deferral_ending_in_lf_and_one_nul(self, name: str) -> None:
        """Each report is Z, one LF-terminated line, and exactly one NUL at the end."""
        made = EVERY_REPORT[name]
        assert made[:1] == b"Z"
        assert made.endswith(b"\n\0")
        assert made.count(b"\0") == 1
        assert made.count(b"\n") == 1

    @pytest.mark.parametrize("name", sorted(EVERY_REPORT))
    def test_status_is_temporary(self, name: str) -> None:
        """Each text carries a #4.x.x status before its LF."""
        assert re.search(rb"\(#4\.\d\.\d\)\n\0$", EVERY_REPORT[name])

    @pytest.mark.parametrize("name", sorted(set(EVERY_REPORT) - {"internal_error"}))
    def test_listed_on_the_tlsc_page(self, name: str) -> None:
        """Every report but the internal error has its heading in mxf-remote-tlsc(8)."""
        text = EVERY_REPORT[name].removesuffix(b"\n\0")
        assert any(pattern.fullmatch(text) for pattern in diagnostics("mxf-remote-tlsc.8"))

    @pytest.mark.parametrize("name", ["bad_command_line", "descriptor_not_open", "exec_failed"])
    def test_ucspitlsc_reports_listed_on_its_page(self, name: str) -> None:
        """The reports mxf-remote-ucspitlsc can print are in mxf-remote-ucspitlsc(8)."""
        text = EVERY_REPORT[name].removesuffix(b"\n\0")
        assert any(pattern.fullmatch(text) for pattern in diagnostics("mxf-remote-ucspitlsc.8"))

    def test_no_report_text_elsewhere_in_the_tls_package(self) -> None:
        """No other module of mxf_remote/tls spells a report (a ``(#4.`` status)."""
        spelled = sorted(p.name for p in TLS_PACKAGE.glob("*.py") if "(#4." in p.read_text())
        assert spelled == ["reports.py"]


class TestTexts:
    """Byte-for-byte texts."""

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("bad_command_line", b"ZUnable to run mxf-remote-tlsc: unknown option -x. (#4.3.0)"),
            (
                "descriptor_not_open",
                b"ZUnable to run mxf-remote-ucspitlsc: descriptor 7 is not open. (#4.3.0)",
            ),
            ("exec_failed", b"ZUnable to run /usr/bin/smtpc: No such file or directory. (#4.3.0)"),
            (
                "handshake_failed",
                b"ZTLS handshake with 192.0.2.25 failed: certificate rejected: expired. (#4.4.2)",
            ),
            (
                "handshake_timed_out",
                b"ZTLS handshake with 192.0.2.25 failed: timed out after 1500 ms. (#4.4.2)",
            ),
            (
                "engine_died",
                b"ZTLS handshake with 192.0.2.25 failed: the TLS engine died. (#4.4.2)",
            ),
            (
                "configuration_error",
                b"ZTLS client configuration error: -y needs CERTFILE and KEYFILE. (#4.3.0)",
            ),
            ("internal_error", b"Zmxf-remote-tlsc internal error: ValueError: boom (#4.3.0)"),
        ],
    )
    def test_text(self, name: str, expected: bytes) -> None:
        """The report reads exactly as documented."""
        assert EVERY_REPORT[name] == expected + b"\n\0"

    def test_unnamed_peer(self) -> None:
        """Without TCPREMOTEIP or -k the peer is "the remote host"."""
        assert reports.handshake_failed(None, "x").startswith(
            b"ZTLS handshake with the remote host failed: x."
        )

    def test_exec_error_without_strerror(self) -> None:
        """An OSError with no strerror is named by its message."""
        assert reports.exec_failed("prog", OSError("odd")) == (
            b"ZUnable to run prog: odd. (#4.3.0)\n\0"
        )

    def test_argument_bytes_come_back_as_they_came(self) -> None:
        """A program name with a non-UTF-8 byte (surrogate-escaped in argv) prints that byte."""
        name = os.fsdecode(b"/bin/\xffprog")
        assert reports.exec_failed(name, ENOENT).startswith(b"ZUnable to run /bin/\xffprog: ")

    def test_nul_in_a_reason_is_a_question_mark(self) -> None:
        """A NUL inside a text cannot end the report early."""
        assert reports.configuration_error("a\0b") == (
            b"ZTLS client configuration error: a?b. (#4.3.0)\n\0"
        )

    def test_unencodable_message_still_reports(self) -> None:
        """A lone surrogate in an exception message is escaped, never an encoding error."""
        assert reports.internal_error("p", ValueError("\ud800")) == (
            b"Zp internal error: ValueError: \\ud800 (#4.3.0)\n\0"
        )


class TestEngineReason:
    """The engine's words, as the parent puts them in a report."""

    def test_nothing_said_is_engine_died(self) -> None:
        """An engine that ended without a word "died"."""
        assert reports.engine_reason(b"") == reports.ENGINE_DIED

    def test_one_line_without_final_period(self) -> None:
        """Control characters become spaces, the ends are trimmed, final periods dropped."""
        assert reports.engine_reason(b" cannot load\nCAFILE\t/x.. ") == "cannot load CAFILE /x"

    def test_bounded(self) -> None:
        """At most MAX_ENGINE_REASON characters of the reason are kept."""
        assert reports.engine_reason(b"y" * 5000) == "y" * reports.MAX_ENGINE_REASON

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 become U+FFFD, not an error."""
        assert reports.engine_reason(b"bad \xff") == "bad \ufffd"

    def test_only_periods_is_engine_died(self) -> None:
        """A reason with nothing left after trimming counts as no reason."""
        assert reports.engine_reason(b"...\n") == reports.ENGINE_DIED


class TestTimeoutWording:
    """The engine and the parent word a handshake timeout alike."""

    def test_engine_timeout_is_the_reports_wording(self) -> None:
        """A peer that never answers the ClientHello fails with ``reports.timed_out``."""
        silent_r, silent_w = os.pipe()
        sink_r, sink_w = os.pipe()
        session = Session(build_context(Options(), {}), None)
        try:
            with pytest.raises(HandshakeFailed) as failed:
                handshake(session, Endpoint(silent_r), Endpoint(sink_w), timeout_ms=50, watch=[])
        finally:
            for fd in (silent_r, silent_w, sink_r, sink_w):
                os.close(fd)
        assert str(failed.value) == reports.timed_out(50) == "timed out after 50 ms"
