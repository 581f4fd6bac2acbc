"""Tests for mxf_remote/output.py's printable-bytes rules: ``outsafe`` and ``printable_ascii``.

(``report_bytes``, ``write_all`` and ``finish`` are tested in test_report.py.)
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mxf_remote import report
from mxf_remote.clients import reports as client_reports
from mxf_remote.output import outsafe, printable_ascii


class TestOutsafe:
    """qmail-remote's ``outsafe()``: every byte below 33 or above 126 prints as ``?``."""

    @given(st.text())
    def test_one_byte_out_per_utf8_byte_in(self, host: str) -> None:
        """The output has as many bytes as the host's UTF-8 encoding."""
        assert len(outsafe(host)) == len(host.encode("utf-8"))

    @given(st.text())
    def test_only_visible_ascii_comes_out(self, host: str) -> None:
        """Every byte printed is between 33 and 126: no space, no control, no NUL."""
        assert all(33 <= byte <= 126 for byte in outsafe(host))

    @given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126)))
    def test_visible_ascii_is_untouched(self, host: str) -> None:
        """A host of visible ASCII prints exactly as it is."""
        assert outsafe(host) == host.encode("ascii")

    def test_space_is_not_safe(self) -> None:
        """Byte 32 is outside the rule: a space in a host name prints as ``?``."""
        assert outsafe(" mx .example") == b"?mx?.example"

    def test_surrogate_escaped_byte_is_one_question_mark(self) -> None:
        """A byte that came in as a surrogate escape (argv) is one ``?``, not three."""
        assert outsafe("mx\udcff.example") == b"mx?.example"


class TestPrintableAscii:
    """Free text: every byte below 32 or above 126 prints as ``?``; spaces stay."""

    @given(st.binary())
    def test_same_length_and_printable(self, raw: bytes) -> None:
        """Each byte maps to one byte between 32 and 126."""
        printed = printable_ascii(raw)
        assert len(printed) == len(raw)
        assert all(32 <= byte <= 126 for byte in printed)

    @given(st.binary())
    def test_differs_from_outsafe_only_at_spaces(self, raw: bytes) -> None:
        """The two rules disagree on byte 32 and on nothing else."""
        text = raw.decode("utf-8", "surrogateescape")
        pairs = zip(printable_ascii(raw), outsafe(text), strict=True)
        assert all(mine == theirs or (mine, theirs) == (32, 63) for mine, theirs in pairs)

    def test_controls_and_high_bytes(self) -> None:
        """TAB, CR, LF, NUL, DEL and bytes over 127 become ``?``; the space survives."""
        assert printable_ascii(b"a b\tc\rd\ne\0f\x7fg\xc3\xa9") == b"a b?c?d?e?f?g??"


class TestBothReportModulesUseThem:
    """The dispatcher's and the clients' reports print foreign bytes by the same rules."""

    @pytest.mark.parametrize("host", ["mx.example", "m x\t\u00e9", "\udcfe\x7f"])
    def test_host_in_dispatcher_and_ip_in_clients_print_alike(self, host: str) -> None:
        """A name in mxf-remote's #5.1.2 report and in the clients' ``Giving up`` is outsafe."""
        assert outsafe(host) in report.no_such_host(host).text
        assert client_reports.giving_up(host) == b"DGiving up on " + outsafe(host) + b".\n\0"

    def test_qmtp_description_and_dispatcher_detail_keep_spaces(self) -> None:
        """A QMTP description and a control-file detail follow printable_ascii alike."""
        raw = b"over quota\tfor \xe2\x82\xac"
        assert client_reports.qmtp_text(raw) == printable_ascii(raw) + b"\n"
        detail = raw.decode("utf-8")
        assert printable_ascii(raw) in report.control_error(detail).text
