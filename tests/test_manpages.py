"""Tests for the manual pages in man/: mandoc lint, titles, and mxf-remote(8)'s DIAGNOSTICS.

Every ``man/*.[1-9]`` page must pass ``mandoc -Tlint -W warning`` without a message (the
level CI holds us to; STYLE messages such as "referenced manual not found" are below it),
and its ``.Dt`` must name the page's own file and section.

The DIAGNOSTICS check renders ``man/mxf-remote.8`` and requires every report that
``mxf_remote/report.py`` can produce to appear there, letter included: the fixed ``Report``
constants as they are, the report-making functions called with placeholder arguments
(``HOST``, ``DETAIL``, ``PROGRAM``, ``REASON``, ``TYPE: MESSAGE``), which the page shows in
the same words.  Whitespace is compared loosely (line breaks and indentation are the
renderer's business), every other byte exactly.  It also works the other way: a report
listed on the page that report.py no longer prints fails too.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mxf_remote import report
from mxf_remote.report import Report

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"
PAGES = sorted(MAN.glob("*.[1-9]"))
DISPATCHER_PAGE = MAN / "mxf-remote.8"

MANDOC = shutil.which("mandoc")
needs_mandoc = pytest.mark.skipif(
    MANDOC is None, reason="mandoc is not installed (tools/system_deps.py installs it)"
)

PLACEHOLDER_TYPE = type("TYPE", (Exception,), {})
"""An exception class named ``TYPE``: internal_error() then prints ``TYPE: MESSAGE``."""


def page_id(page: Path) -> str:
    """A page's test id: its file name."""
    return page.name


def squeeze(text: str) -> str:
    """``text`` with every run of whitespace made one space, ends stripped."""
    return " ".join(text.split())


def render(page: Path) -> str:
    """``page`` as plain text: mandoc's ASCII output, overstrike removed, no line folding."""
    assert MANDOC is not None
    result = subprocess.run(
        [MANDOC, "-Tascii", "-O", "width=1000", str(page)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    text = result.stdout.decode("ascii", "replace")
    return re.sub(r".\x08", "", text).expandtabs()


def section(rendered: str, name: str) -> str:
    """The body of section ``name`` of a rendered page (up to the next section heading)."""
    match = re.search(rf"^{re.escape(name)}\n(.*?)(?=^\S)", rendered, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no {name} section"
    return match.group(1)


def title_line(page: Path) -> list[str]:
    """The arguments of the page's ``.Dt`` (mdoc) or ``.TH`` (man) line."""
    for line in page.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if words and words[0] in (".Dt", ".TH"):
            return [word.strip('"') for word in words[1:]]
    raise AssertionError(f"{page.name} has no .Dt (or .TH) line")


def placeholder(parameter: inspect.Parameter) -> object:
    """The argument a report function gets: its parameter name in capitals, or TYPE."""
    if "BaseException" in str(parameter.annotation):
        return PLACEHOLDER_TYPE("MESSAGE")
    return parameter.name.upper()


def report_makers() -> dict[str, Callable[..., Report]]:
    """Every public function of report.py that returns a Report (by annotation)."""
    return {
        name: function
        for name, function in inspect.getmembers(report, inspect.isfunction)
        if function.__module__ == report.__name__
        and not name.startswith("_")
        and inspect.signature(function).return_annotation in (Report, "Report")
    }


def all_reports() -> dict[str, Report]:
    """Every report report.py can make: the constants, then the functions with placeholders."""
    reports = {name: value for name, value in vars(report).items() if isinstance(value, Report)}
    for name, function in report_makers().items():
        parameters = inspect.signature(function).parameters.values()
        reports[f"{name}()"] = function(*(placeholder(p) for p in parameters))
    return reports


def as_printed(made: Report) -> str:
    """A report as qmail-rspawn reads it, without the final NUL, squeezed."""
    return squeeze(made.encode().rstrip(b"\0").decode("latin-1"))


REPORTS = all_reports()


class TestPages:
    """Each manual page is there and passes mandoc's lint at warning level."""

    def test_the_dispatcher_pages_exist(self) -> None:
        """man/mxf-remote.8 and man/mxf-remote-control.5 are in the tree."""
        assert DISPATCHER_PAGE in PAGES
        assert MAN / "mxf-remote-control.5" in PAGES

    @needs_mandoc
    @pytest.mark.parametrize("page", PAGES, ids=page_id)
    def test_mandoc_lint_is_clean(self, page: Path) -> None:
        """``mandoc -Tlint -W warning`` exits 0 and prints nothing."""
        assert MANDOC is not None
        result = subprocess.run(
            [MANDOC, "-Tlint", "-W", "warning", str(page)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        messages = (result.stdout + result.stderr).strip()
        assert (result.returncode, messages) == (0, "")

    @pytest.mark.parametrize("page", PAGES, ids=page_id)
    def test_title_names_the_file_and_section(self, page: Path) -> None:
        """``.Dt TITLE SECTION`` matches the file name (case aside) and its suffix."""
        arguments = title_line(page)
        assert len(arguments) >= 2, f"{page.name}: .Dt needs a title and a section"
        title, number = arguments[0], arguments[1]
        assert title.lower() == page.stem.lower()
        assert number == page.suffix[1:]


@needs_mandoc
class TestDiagnostics:
    """mxf-remote(8)'s DIAGNOSTICS lists exactly the reports report.py prints."""

    @pytest.fixture(scope="class")
    @classmethod
    def diagnostics(cls) -> str:
        """The DIAGNOSTICS section of the rendered mxf-remote(8)."""
        return section(render(DISPATCHER_PAGE), "DIAGNOSTICS")

    def test_report_py_has_reports_to_check(self) -> None:
        """The collector finds the constants and the report-making functions."""
        assert {"USAGE", "NO_CONNECTION", "control_error()", "internal_error()"} <= set(REPORTS)

    @pytest.mark.parametrize("name", sorted(REPORTS))
    def test_report_is_on_the_page(self, name: str, diagnostics: str) -> None:
        """The report's text, letter first, appears in DIAGNOSTICS word for word."""
        assert as_printed(REPORTS[name]) in squeeze(diagnostics)

    def test_every_listed_report_exists(self, diagnostics: str) -> None:
        """Each report heading on the page is (part of) a report report.py can print."""
        printed = [as_printed(made) for made in REPORTS.values()]
        headings = re.findall(r"^ {5}([ZD]\S.*)$", diagnostics, re.MULTILINE)
        assert len(headings) >= len(REPORTS)
        stale = [h for h in headings if not any(squeeze(h) in text for text in printed)]
        assert stale == []
