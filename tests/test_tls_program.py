"""Tests for mxf_remote/tls/program.py: the guard, options check and exec both TLS clients share."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from typing import NoReturn

import pytest

from mxf_remote.tls import program, reports, tlsc, ucspitlsc
from tests.importkit import modules_loaded_by

TIMEOUT = 20.0
ENOENT = FileNotFoundError(errno.ENOENT, "No such file or directory")
PROGRAMS = {"tlsc": tlsc.PROGRAM, "ucspitlsc": ucspitlsc.PROGRAM}

INJECT_RUNTIME_ERROR = "def pipe(): raise RuntimeError('injected')\nos.pipe = pipe\n"
INJECT_INTERRUPT = "def pipe(): raise KeyboardInterrupt\nos.pipe = pipe\n"


class Reported(Exception):
    """Stands in for ``output.finish`` in-process: carries the report instead of exiting."""

    def __init__(self, data: bytes) -> None:
        super().__init__("reported")
        self.data = data


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """``program.finish`` raises Reported, so the guard can be watched without exiting."""

    def finish(data: bytes) -> NoReturn:
        raise Reported(data)

    monkeypatch.setattr(program, "finish", finish)


def run_main(module: str, args: list[str], inject: str = "") -> subprocess.CompletedProcess[bytes]:
    """Run ``module.main(args)`` in a fresh interpreter with fds 6/7 open, after ``inject``."""
    code = (
        "import os\n"
        "null = os.open(os.devnull, os.O_RDWR)\n"
        "os.dup2(null, 6)\n"
        "os.dup2(null, 7)\n"
        f"{inject}"
        f"from mxf_remote.tls import {module}\n"
        f"{module}.main({args!r})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=TIMEOUT, check=False
    )


def in_process_report(call: Callable[[], object]) -> bytes:
    """The report ``call`` would print (``reported`` must be in use)."""
    with pytest.raises(Reported) as caught:
        call()
    return caught.value.data


class TestOneGuard:
    """Both programs go through the one guard: any exception is one Z report and exit 0."""

    def test_same_report_from_either_program(self) -> None:
        """An exception inside each program's main gives the same report, exit 0, empty fd 2."""
        for module, name in PROGRAMS.items():
            result = run_main(module, ["--", "true"], INJECT_RUNTIME_ERROR)
            assert (result.returncode, result.stderr) == (0, b"")
            assert result.stdout == reports.internal_error(name, RuntimeError("injected"))

    @pytest.mark.parametrize("module", sorted(PROGRAMS))
    def test_base_exceptions_are_caught_too(self, module: str) -> None:
        """A KeyboardInterrupt in main is a Z report and exit 0, not a traceback and exit 1."""
        result = run_main(module, ["--", "true"], INJECT_INTERRUPT)
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout == reports.internal_error(PROGRAMS[module], KeyboardInterrupt())

    def test_ucspitlsc_prog_that_cannot_run(self) -> None:
        """ucspitlsc's prog that cannot be executed: ``Unable to run``, exit 0 (tlsc: test_tlsc)."""
        result = run_main("ucspitlsc", ["--", "/nonexistent/prog"])
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout == reports.exec_failed("/nonexistent/prog", ENOENT)

    def test_ucspitlsc_imports_neither_tlsc_nor_ssl(self) -> None:
        """mxf-remote-ucspitlsc no longer borrows from mxf-remote-tlsc, and stays ssl-free."""
        loaded = modules_loaded_by("mxf_remote.tls.ucspitlsc")
        assert {"mxf_remote.tls.program", "mxf_remote.tls.reports"} <= loaded
        assert not {"mxf_remote.tls.tlsc", "ssl", "typing"} & loaded


@pytest.mark.usefixtures("reported")
class TestRunGuarded:
    """program.run_guarded: the exception policy, in-process."""

    @pytest.mark.parametrize(
        "error", [ValueError("boom"), KeyboardInterrupt(), SystemExit(3), MemoryError()]
    )
    def test_every_exception_is_an_internal_error(self, error: BaseException) -> None:
        """Whatever the body raises, the report is ``PROGRAM internal error: TYPE: MESSAGE``."""

        def body(args: list[str]) -> NoReturn:
            raise error

        data = in_process_report(lambda: program.run_guarded("p", body, []))
        assert data == reports.internal_error("p", error)

    def test_body_gets_argv_without_program_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without explicit arguments the body sees sys.argv[1:]."""
        monkeypatch.setattr(sys, "argv", ["mxf-remote-tlsc", "-k", "mx", "--", "prog"])

        def body(args: list[str]) -> NoReturn:
            raise ValueError(" ".join(args))

        data = in_process_report(lambda: program.run_guarded("p", body, None))
        assert data == reports.internal_error("p", ValueError("-k mx -- prog"))


@pytest.mark.usefixtures("reported")
class TestCheckedOptions:
    """program.checked_options: a usable command line, or the ``Unable to run`` report."""

    def test_usage_error(self) -> None:
        """A command line s6-tlsc would refuse names the TLS client and the problem."""
        data = in_process_report(lambda: program.checked_options("p", ["-x", "prog"]))
        assert data == reports.bad_command_line("p", "unknown option -x")

    def test_descriptor_not_open(self) -> None:
        """A -6/-7 descriptor that is not open is reported before anything forks."""
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            args = ["-6", str(write_end), "-7", str(read_end), "prog"]
            data = in_process_report(lambda: program.checked_options("p", args))
        finally:
            os.close(write_end)
        assert data == reports.descriptor_not_open("p", read_end)

    def test_usable(self) -> None:
        """Open descriptors and a program: the options come back."""
        read_end, write_end = os.pipe()
        try:
            args = ["-6", str(read_end), "-7", str(write_end), "-k", "mx", "prog", "a"]
            options = program.checked_options("p", args)
        finally:
            os.close(read_end)
            os.close(write_end)
        assert (options.servername, options.prog) == ("mx", ["prog", "a"])


@pytest.mark.usefixtures("reported")
class TestExecProg:
    """program.exec_prog: exec, or the qmail-remote way of saying it could not."""

    def test_missing_program(self) -> None:
        """A program that does not exist is ``Unable to run PROG: No such file or directory``."""
        missing = "/nonexistent/mxf-test-prog"
        data = in_process_report(lambda: program.exec_prog([missing], {}))
        assert data == reports.exec_failed(missing, ENOENT)
