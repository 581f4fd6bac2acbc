"""Tests for mxf_remote/prelude.py: one prelude for mxf-remote, the probe and the server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mxf_remote import report
from mxf_remote.control import Protocol
from mxf_remote.prelude import Prepared, Stopped, prepare


def home_with(tmp_path: Path, **control: str) -> Path:
    """A qmail home with these control files."""
    (tmp_path / "control").mkdir(parents=True)
    for name, text in control.items():
        (tmp_path / "control" / name).write_text(text)
    return tmp_path


def executable(path: Path) -> Path:
    """An executable file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_everything_from_the_given_environment(tmp_path: Path) -> None:
    """MXF_QMAIL, PATH and MXF_NAMESERVERS come from the mapping given, not os.environ."""
    program = executable(tmp_path / "elsewhere" / "my-smtp")
    home = home_with(tmp_path / "qmail", protocols="smtp:25:0:N:N:my-smtp\n")
    environ = {"MXF_QMAIL": str(home), "PATH": str(program.parent), "MXF_NAMESERVERS": "192.0.2.53"}
    assert "my-smtp" not in os.environ.get("PATH", "")
    prepared = prepare("example.org", environ, beside=str(tmp_path / "nowhere"))
    assert isinstance(prepared, Prepared)
    assert prepared.home == str(home)
    assert [p.program_path for p in prepared.destination.protocols] == [str(program)]
    assert prepared.nameservers == ["192.0.2.53:53"]
    assert "127.0.0.1" in prepared.local


def test_a_relative_program_is_found_from_the_qmail_home(tmp_path: Path) -> None:
    """``bin/x`` in control/protocols is the home's bin/x, wherever the caller runs."""
    home = home_with(tmp_path, protocols="smtp:25:0:N:N:bin/x\n")
    executable(home / "bin" / "x")
    prepared = prepare(
        "example.org",
        {"MXF_QMAIL": str(home), "MXF_NAMESERVERS": "192.0.2.53"},
        beside="/nonexistent",
    )
    assert isinstance(prepared, Prepared)
    assert prepared.destination.protocols[0].program_path == str(home / "bin" / "x")


def test_a_literal_needs_no_nameservers(tmp_path: Path) -> None:
    """A literal never reads MXF_NAMESERVERS, even a broken one."""
    executable(tmp_path / "bin" / "x")
    home = home_with(tmp_path, protocols="smtp:25:0:N:N:bin/x\n")
    prepared = prepare(
        "[192.0.2.9]", {"MXF_QMAIL": str(home), "MXF_NAMESERVERS": "junk"}, beside="/nonexistent"
    )
    assert isinstance(prepared, Prepared) and prepared.nameservers == []


@pytest.mark.parametrize(
    ("control", "environ", "wanted", "why"),
    [
        ({"protocols": "smtp:25:0:N\n"}, {}, "control", "cannot read the control files in "),
        (
            {"protocols": "smtp:25:0:N:N:/nonexistent/x\n"},
            {},
            "protocols",
            "no usable mail protocol in control/protocols (smtp: program /nonexistent/x is not",
        ),
        (
            {"protocols": "smtp:25:0:N:N:/bin/true\n"},
            {"MXF_NAMESERVERS": "not-an-address"},
            "nameservers",
            "MXF_NAMESERVERS: ",
        ),
    ],
)
def test_stopped_with_a_report_and_a_sentence(
    tmp_path: Path, control: dict[str, str], environ: dict[str, str], wanted: str, why: str
) -> None:
    """Each way of stopping: mxf-remote's report, and the same in words for the probe."""
    home = home_with(tmp_path, **control)
    stopped = prepare("example.org", {"MXF_QMAIL": str(home), **environ}, beside="/nonexistent")
    assert isinstance(stopped, Stopped)
    expected = {
        "control": report.control_error("control/protocols line 1: x").letter,
        "protocols": report.NO_PROTOCOL.letter,
        "nameservers": "Z",
    }[wanted]
    assert stopped.report.letter == expected
    assert stopped.why.startswith(why)
    if wanted == "protocols":
        assert stopped.report == report.NO_PROTOCOL


def test_choose_narrows_the_protocols(tmp_path: Path) -> None:
    """The probe's --protocols: only what ``choose`` returns is planned."""
    home = home_with(tmp_path, protocols="qmtp:209:1:N:N:/bin/true\nsmtp:25:0:N:N:/bin/true\n")

    def only_smtp(protocols: tuple[Protocol, ...]) -> tuple[Protocol, ...]:
        return tuple(p for p in protocols if p.service == "smtp")

    prepared = prepare("[192.0.2.9]", {"MXF_QMAIL": str(home)}, beside="/x", choose=only_smtp)
    assert isinstance(prepared, Prepared)
    assert [p.service for p in prepared.destination.protocols] == ["smtp"]
