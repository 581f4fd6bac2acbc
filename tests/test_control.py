"""Tests for mxf_remote/control.py: control files, the protocols table and routes (spec §2)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mxf_remote import control, controlfile
from mxf_remote.control import (
    DEFAULT_PROTOCOLS,
    ControlError,
    Protocol,
    Route,
    find_program,
    install_protocol,
    lookup_route,
    parse_protocols,
    parse_route_value,
    parse_routes,
    qmail_home,
    read_control,
    read_first_line,
    read_lines,
    read_number,
)

PROGRAMS = ("mxf-remote-qmtpc", "mxf-remote-smtpc", "mxf-remote-tlsc", "mxf-remote-ucspitlsc")


def make_executable(directory: Path, name: str, *, mode: int = 0o755) -> Path:
    """A small shell script ``directory/name`` with ``mode``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def write_control(home: Path, name: str, content: str | bytes) -> Path:
    """Write ``home/control/name`` (text as UTF-8, bytes as is)."""
    (home / "control").mkdir(parents=True, exist_ok=True)
    path = home / "control" / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty qmail home with a control directory."""
    path = tmp_path / "qmail"
    (path / "control").mkdir(parents=True)
    return path


@pytest.fixture
def beside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory standing for mxf-remote's own, holding every program we ship.

    PATH is emptied of programs and s6-networking is made absent, so that only this
    directory can satisfy a lookup.
    """
    directory = tmp_path / "bin"
    for name in PROGRAMS:
        make_executable(directory, name)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(control, "S6_COMMAND_DIR", str(tmp_path / "no-s6"))
    return directory


def expect_error(error: pytest.ExceptionInfo[ControlError], name: str, line: int | None) -> None:
    """The error names ``control/name`` and ``line`` (or no line) in its detail."""
    assert error.value.name == name
    assert error.value.line == line
    where = f"control/{name}" + (f" line {line}" if line else "")
    assert error.value.detail().startswith(where + ": ")
    assert error.value.problem


class TestQmailHome:
    """Where the control files are."""

    def test_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without MXF_QMAIL the home is /var/qmail."""
        monkeypatch.delenv("MXF_QMAIL", raising=False)
        assert qmail_home() == "/var/qmail"

    def test_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """MXF_QMAIL names another home."""
        monkeypatch.setenv("MXF_QMAIL", "/opt/qmail")
        assert qmail_home() == "/opt/qmail"

    def test_empty_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An empty MXF_QMAIL is the same as none."""
        monkeypatch.setenv("MXF_QMAIL", "")
        assert qmail_home() == "/var/qmail"


class TestControlErrorDetail:
    """The text that goes to the second line of the #4.3.0 report."""

    def test_with_line(self) -> None:
        """File, line and problem, in that order."""
        assert ControlError("protocols", 3, "bad").detail() == "control/protocols line 3: bad"

    def test_without_line(self) -> None:
        """A whole-file problem has no line number."""
        assert ControlError("me", None, "cannot read").detail() == "control/me: cannot read"

    def test_str_is_detail(self) -> None:
        """The exception's message is its detail."""
        assert str(ControlError("x", 1, "y")) == "control/x line 1: y"


class TestReadLines:
    """Reading a control file: absent, lines, the first-line rule and unreadable files."""

    def test_absent(self, home: Path) -> None:
        """A file that does not exist is None (its default applies)."""
        assert read_lines(str(home), "nosuchfile") is None
        assert read_first_line(str(home), "nosuchfile") is None

    def test_absent_control_directory(self, tmp_path: Path) -> None:
        """A home without a control directory has every file absent."""
        assert read_lines(str(tmp_path), "protocols") is None

    def test_dangling_symlink_is_absent(self, home: Path) -> None:
        """A symlink to nothing is ENOENT, which qmail treats as absent."""
        (home / "control" / "timeoutdns").symlink_to(home / "nowhere")
        assert read_lines(str(home), "timeoutdns") is None

    def test_lines(self, home: Path) -> None:
        """Every line, trailing space and tab stripped, leading blanks kept."""
        write_control(home, "f", "a \t\n  b\n\nc")
        assert read_lines(str(home), "f") == ["a", "  b", "", "c"]

    def test_empty_file(self, home: Path) -> None:
        """An empty file has no lines and an empty first line."""
        write_control(home, "f", "")
        assert read_lines(str(home), "f") == []
        assert read_first_line(str(home), "f") == ""

    @pytest.mark.parametrize(
        ("content", "first"),
        [
            ("value\n", "value"),
            ("value", "value"),
            ("value \t \n", "value"),
            ("value\nsecond\n", "value"),
            ("\nsecond\n", ""),
            ("  value\n", "  value"),
            ("two words \n", "two words"),
        ],
    )
    def test_first_line_rule(self, home: Path, content: str, first: str) -> None:
        """qmail's readline: the first line, trailing space/tab/LF stripped."""
        write_control(home, "f", content)
        assert read_first_line(str(home), "f") == first

    def test_undecodable_bytes_do_not_fail(self, home: Path) -> None:
        """Bytes that are not UTF-8 survive as surrogate escapes, never an exception."""
        write_control(home, "f", b"caf\xe9\n")
        assert read_first_line(str(home), "f") == "caf\udce9"

    @pytest.mark.parametrize(
        ("content", "line"),
        [(b"60\r\n", 1), (b"60\r", 1), (b"60 \r\n", 1), (b"a\nb\nc\r\nd\n", 3), (b"60\r \n", 1)],
    )
    def test_crlf_is_an_error(self, home: Path, content: bytes, line: int) -> None:
        """A line ending in CR is an error naming the file, the line and CRLF."""
        write_control(home, "f", content)
        with pytest.raises(ControlError) as error:
            read_lines(str(home), "f")
        expect_error(error, "f", line)
        assert "carriage return" in error.value.problem

    def test_cr_inside_a_line_is_kept(self, home: Path) -> None:
        """Only a CR at the end of a line is refused."""
        write_control(home, "f", b"a\rb\n")
        assert read_lines(str(home), "f") == ["a\rb"]

    def test_directory(self, home: Path) -> None:
        """A directory where a file should be is an error, not an absent file."""
        (home / "control" / "timeoutconnect").mkdir()
        with pytest.raises(ControlError) as error:
            read_lines(str(home), "timeoutconnect")
        expect_error(error, "timeoutconnect", None)
        assert "cannot read" in error.value.problem

    def test_symlink_loop(self, home: Path) -> None:
        """A file that cannot be opened (ELOOP) is an error, also when running as root."""
        path = home / "control" / "timeoutdns"
        path.symlink_to(path)
        with pytest.raises(ControlError) as error:
            read_lines(str(home), "timeoutdns")
        expect_error(error, "timeoutdns", None)
        assert "cannot read" in error.value.problem

    @pytest.mark.skipif(
        os.geteuid() == 0, reason="root reads a mode-000 file anyway; nothing to test as root"
    )
    def test_unreadable(self, home: Path) -> None:
        """A file we may not read is an error naming the file."""
        path = write_control(home, "timeoutconnect", "60\n")
        path.chmod(0)
        with pytest.raises(ControlError) as error:
            read_lines(str(home), "timeoutconnect")
        expect_error(error, "timeoutconnect", None)

    def test_huge_file(self, home: Path) -> None:
        """A file larger than the limit (16 MiB) is an error, read no further."""
        path = write_control(home, "smtproutes", "")
        with path.open("wb") as file:
            file.truncate(controlfile.MAX_CONTROL_FILE_BYTES + 1)
        with pytest.raises(ControlError) as error:
            read_lines(str(home), "smtproutes")
        expect_error(error, "smtproutes", None)
        assert "larger than" in error.value.problem

    def test_size_limit_boundary(self, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A file exactly at the limit is read; one byte more is refused."""
        monkeypatch.setattr(controlfile, "MAX_CONTROL_FILE_BYTES", 8)
        write_control(home, "ok", "1234567\n")
        assert read_lines(str(home), "ok") == ["1234567"]
        write_control(home, "big", "12345678\n")
        with pytest.raises(ControlError):
            read_lines(str(home), "big")


class TestNumbers:
    """Single-number files: timeoutconnect, connectdelay, timeoutdns."""

    def test_absent_is_default(self, home: Path) -> None:
        """A missing file gives the default."""
        assert read_number(str(home), "n", 42, low=1, high=100, unit="seconds") == 42

    @pytest.mark.parametrize(
        ("content", "value"),
        [("7\n", 7), ("7", 7), ("7 \t\n", 7), ("7\ngarbage\n", 7), ("007\n", 7), ("100\n", 100)],
    )
    def test_valid(self, home: Path, content: str, value: int) -> None:
        """The first line, trailing blanks stripped, in plain decimal."""
        write_control(home, "n", content)
        assert read_number(str(home), "n", 42, low=1, high=100, unit="seconds") == value

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            ("", "empty"),
            ("\n", "empty"),
            ("abc\n", "not a whole number"),
            ("12abc\n", "not a whole number"),
            ("1.5\n", "not a whole number"),
            ("-5\n", "not a whole number"),
            ("+5\n", "not a whole number"),
            (" 5\n", "not a whole number"),
            ("0x10\n", "not a whole number"),
            ("\u0661\u0662\n", "not a whole number"),
            ("0\n", "outside"),
            ("101\n", "outside"),
            ("99999999999999999999999999\n", "outside"),
        ],
    )
    def test_invalid(self, home: Path, content: str, problem: str) -> None:
        """Empty, non-numeric, negative and out-of-range values are errors on line 1."""
        write_control(home, "n", content)
        with pytest.raises(ControlError) as error:
            read_number(str(home), "n", 42, low=1, high=100, unit="seconds")
        expect_error(error, "n", 1)
        assert problem in error.value.problem

    def test_huge_value_is_shortened_in_the_message(self, home: Path) -> None:
        """An absurdly long value does not make an absurdly long log line."""
        write_control(home, "n", "9" * 5000 + "\n")
        with pytest.raises(ControlError) as error:
            read_number(str(home), "n", 42, low=1, high=100, unit="seconds")
        assert len(error.value.detail()) < 200


class TestParseProtocols:
    """The protocols table: service:defport:slice:implicitTLS:explicitTLS:program."""

    def test_default_table(self) -> None:
        """The built-in default is QMTPS, QMTP, SMTP with the spec's fields."""
        protocols = parse_protocols(DEFAULT_PROTOCOLS.splitlines())
        assert [
            (p.service, p.default_port, p.slice, p.implicit_tls, p.explicit_tls, p.program)
            for p in protocols
        ] == [
            ("qmtps", 6209, -1, True, False, "mxf-remote-qmtpc"),
            ("qmtp", 209, 1, False, False, "mxf-remote-qmtpc"),
            ("smtp", 25, 0, False, True, "mxf-remote-smtpc"),
        ]

    def test_default_text_is_the_spec(self) -> None:
        """The default table is, line for line, the one in spec §2."""
        assert DEFAULT_PROTOCOLS == (
            "qmtps:6209:-1:Y:N:mxf-remote-qmtpc\n"
            "qmtp:209:1:N:N:mxf-remote-qmtpc\n"
            "smtp:25:0:N:Y:mxf-remote-smtpc\n"
        )

    def test_comments_and_blank_lines(self) -> None:
        """Blank lines and lines starting with # are ignored; order is kept."""
        lines = ["# mail", "", "smtp:25:0:N:N:/x/smtpc", "#qmtp:209:1:N:N:q", "lmtp:24:2:N:N:l"]
        assert [p.service for p in parse_protocols(lines)] == ["smtp", "lmtp"]

    def test_absolute_program_kept(self) -> None:
        """The program field is kept as written; lookup happens at install time."""
        (protocol,) = parse_protocols(["smtp:25:0:N:N:/usr/local/bin/smtpc"])
        assert protocol.program == "/usr/local/bin/smtpc"
        assert protocol.program_path is None

    def test_service_lower_cased(self) -> None:
        """The service label is stored in lower case (DNS and routes file stem)."""
        (protocol,) = parse_protocols(["SMTP:25:0:N:N:p"])
        assert protocol.service == "smtp"

    @pytest.mark.parametrize(("slice_text", "value"), [("-1", -1), ("0", 0), ("1", 1), ("15", 15)])
    def test_valid_slices(self, slice_text: str, value: int) -> None:
        """Slices 0..15 and -1 (none) are accepted."""
        (protocol,) = parse_protocols([f"x:1:{slice_text}:N:N:p"])
        assert protocol.slice == value

    @pytest.mark.parametrize("port", ["1", "25", "65535"])
    def test_valid_ports(self, port: str) -> None:
        """Ports 1..65535 are accepted."""
        (protocol,) = parse_protocols([f"x:{port}:0:N:N:p"])
        assert protocol.default_port == int(port)

    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            ("smtp:25:0:N:Y", "5 fields"),
            ("smtp", "1 fields"),
            ("smtp:25:0:N:Y:prog:extra", "7 fields"),
            ("smtp:0:0:N:N:p", "outside"),
            ("smtp:65536:0:N:N:p", "outside"),
            ("smtp:-1:0:N:N:p", "not a whole number"),
            ("smtp:abc:0:N:N:p", "not a whole number"),
            ("smtp::0:N:N:p", "empty"),
            ("smtp:25:16:N:N:p", "outside"),
            ("smtp:25:-2:N:N:p", "not a whole number"),
            ("smtp:25:x:N:N:p", "not a whole number"),
            ("smtp:25::N:N:p", "empty"),
            ("smtp:25:0:yes:N:p", "implicitTLS must be Y or N"),
            ("smtp:25:0:N:Q:p", "explicitTLS must be Y or N"),
            ("smtp:25:0::N:p", "implicitTLS must be Y or N"),
            ("smtp:25:0:Y:Y:p", "both Y"),
            ("smtp:25:0:N:N:", "program field is empty"),
            (":25:0:N:N:p", "not a DNS label"),
            ("smtp_x:25:0:N:N:p", "not a DNS label"),
            ("-smtp:25:0:N:N:p", "not a DNS label"),
            ("sm tp:25:0:N:N:p", "not a DNS label"),
        ],
    )
    def test_errors(self, line: str, problem: str) -> None:
        """A malformed line is an error naming the file, its line number and the problem."""
        lines = ["# comment", "", "qmtp:209:1:N:N:q", line]
        with pytest.raises(ControlError) as error:
            parse_protocols(lines)
        expect_error(error, "protocols", 4)
        assert problem in error.value.problem

    def test_duplicate_service(self) -> None:
        """A service listed twice (in any case) is an error on the second line."""
        with pytest.raises(ControlError) as error:
            parse_protocols(["smtp:25:0:N:N:a", "SMTP:587:0:N:N:b"])
        expect_error(error, "protocols", 2)
        assert "twice" in error.value.problem

    def test_too_many_protocols(self) -> None:
        """More than 16 protocols is an error (SRV queries are bounded)."""
        lines = [f"p{i}:{i + 1}:0:N:N:prog" for i in range(17)]
        with pytest.raises(ControlError) as error:
            parse_protocols(lines)
        expect_error(error, "protocols", 17)

    def test_empty_table(self) -> None:
        """A file of comments only has no protocols."""
        assert parse_protocols(["# nothing", ""]) == []

    def test_other_file_name(self) -> None:
        """Errors name the file the lines came from."""
        with pytest.raises(ControlError) as error:
            parse_protocols(["x"], name="other")
        expect_error(error, "other", 1)


class TestFindProgram:
    """Where a program named in the control files is found: beside us, then on PATH."""

    def test_absolute_executable(self, tmp_path: Path) -> None:
        """An absolute path is taken as is when it is an executable file."""
        path = make_executable(tmp_path, "prog")
        assert find_program(str(path), str(tmp_path / "elsewhere")) == str(path)

    def test_absolute_not_executable(self, tmp_path: Path) -> None:
        """An absolute path to a non-executable file is not found."""
        path = make_executable(tmp_path, "prog", mode=0o644)
        assert find_program(str(path), str(tmp_path)) is None

    def test_absolute_missing(self, tmp_path: Path) -> None:
        """An absolute path to nothing is not found, and PATH is not searched."""
        assert find_program(str(tmp_path / "nothing"), str(tmp_path)) is None

    def test_absolute_directory(self, tmp_path: Path) -> None:
        """A directory is not a program even when it has the x bit."""
        assert find_program(str(tmp_path), str(tmp_path)) is None

    def test_beside_wins_over_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bare name is looked up beside the running mxf-remote first."""
        mine = make_executable(tmp_path / "mine", "prog")
        make_executable(tmp_path / "path", "prog")
        monkeypatch.setenv("PATH", str(tmp_path / "path"))
        assert find_program("prog", str(tmp_path / "mine")) == str(mine)

    def test_then_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bare name not beside us is looked up on PATH, in PATH order."""
        (tmp_path / "mine").mkdir()
        make_executable(tmp_path / "p1", "other")
        second = make_executable(tmp_path / "p2", "prog")
        make_executable(tmp_path / "p3", "prog")
        path = os.pathsep.join(str(tmp_path / d) for d in ("p1", "p2", "p3"))
        monkeypatch.setenv("PATH", path)
        assert find_program("prog", str(tmp_path / "mine")) == str(second)

    def test_non_executable_beside_is_skipped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A non-executable file beside us does not hide an executable one on PATH."""
        make_executable(tmp_path / "mine", "prog", mode=0o644)
        on_path = make_executable(tmp_path / "path", "prog")
        monkeypatch.setenv("PATH", str(tmp_path / "path"))
        assert find_program("prog", str(tmp_path / "mine")) == str(on_path)

    def test_directory_named_like_program_is_skipped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A directory with the program's name is not the program."""
        (tmp_path / "mine" / "prog").mkdir(parents=True)
        on_path = make_executable(tmp_path / "path", "prog")
        monkeypatch.setenv("PATH", str(tmp_path / "path"))
        assert find_program("prog", str(tmp_path / "mine")) == str(on_path)

    def test_not_found(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A name found nowhere is None."""
        monkeypatch.setenv("PATH", str(tmp_path))
        assert find_program("no-such-program-here", str(tmp_path)) is None

    def test_found_path_is_absolute(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A program found through a relative PATH entry is returned as an absolute path."""
        make_executable(tmp_path / "rel", "prog")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("PATH", "rel")
        found = find_program("prog", str(tmp_path / "nowhere"))
        assert found == str(tmp_path / "rel" / "prog")


class TestProgramDirectory:
    """The directory bare names are looked up in first: the running program's, links resolved."""

    def test_a_link_elsewhere_gives_the_target_directory(self, tmp_path: Path) -> None:
        """qmail/bin/qmail-remote -> venv/bin/mxf-remote: venv/bin, as for the program itself."""
        program = make_executable(tmp_path / "venv" / "bin", "mxf-remote")
        (tmp_path / "qmail" / "bin").mkdir(parents=True)
        link = tmp_path / "qmail" / "bin" / "qmail-remote"
        link.symlink_to(program)
        venv_bin = str(program.parent.resolve())
        assert control.program_directory(str(link)) == venv_bin
        assert control.program_directory(str(program)) == venv_bin

    def test_a_chain_of_relative_links(self, tmp_path: Path) -> None:
        """Links to links, with relative targets, are followed to the real program."""
        program = make_executable(tmp_path / "real", "mxf-remote")
        (tmp_path / "middle").mkdir()
        (tmp_path / "middle" / "mxf-remote").symlink_to(Path("..") / "real" / "mxf-remote")
        (tmp_path / "qmail").mkdir()
        link = tmp_path / "qmail" / "qmail-remote"
        link.symlink_to(Path("..") / "middle" / "mxf-remote")
        assert control.program_directory(str(link)) == str(program.parent.resolve())

    def test_a_relative_argv0(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A relative argv[0] naming a link is taken from the current directory, then followed."""
        program = make_executable(tmp_path / "venv" / "bin", "mxf-remote")
        (tmp_path / "qmail" / "bin").mkdir(parents=True)
        (tmp_path / "qmail" / "bin" / "qmail-remote").symlink_to(program)
        monkeypatch.chdir(tmp_path / "qmail")
        assert control.program_directory("bin/qmail-remote") == str(program.parent.resolve())

    def test_default_protocols_through_a_link(
        self, home: Path, beside: Path, tmp_path: Path
    ) -> None:
        """Clients beside the link's target, none beside the link or on PATH: all usable."""
        program = make_executable(beside, "mxf-remote")
        (tmp_path / "qmail-bin").mkdir()
        link = tmp_path / "qmail-bin" / "qmail-remote"
        link.symlink_to(program)
        found = read_control(str(home), control.program_directory(str(link)))
        assert [p.service for p in found.usable_protocols] == ["qmtps", "qmtp", "smtp"]


class TestInstallProtocol:
    """A protocol is usable only when its program and TLS client are installed."""

    @staticmethod
    def parse(line: str) -> Protocol:
        (protocol,) = parse_protocols([line])
        return protocol

    def test_plain(self, beside: Path) -> None:
        """A protocol without TLS needs only its program."""
        installed = install_protocol(
            self.parse("qmtp:209:1:N:N:mxf-remote-qmtpc"), str(beside), "nope", "nope"
        )
        assert installed.usable
        assert installed.program_path == str(beside / "mxf-remote-qmtpc")
        assert installed.tls_client_path is None

    def test_implicit_tls(self, beside: Path) -> None:
        """Implicit TLS runs under the tlsclient."""
        installed = install_protocol(
            self.parse("qmtps:6209:-1:Y:N:mxf-remote-qmtpc"),
            str(beside),
            "mxf-remote-tlsc",
            "nope",
        )
        assert installed.usable
        assert installed.tls_client_path == str(beside / "mxf-remote-tlsc")

    def test_explicit_tls(self, beside: Path) -> None:
        """Explicit TLS runs under the ucspitlsclient."""
        installed = install_protocol(
            self.parse("smtp:25:0:N:Y:mxf-remote-smtpc"),
            str(beside),
            "nope",
            "mxf-remote-ucspitlsc",
        )
        assert installed.usable
        assert installed.tls_client_path == str(beside / "mxf-remote-ucspitlsc")

    def test_fields_kept(self, beside: Path) -> None:
        """Installing keeps every field of the line."""
        protocol = self.parse("Lmtp:24:3:N:N:mxf-remote-smtpc")
        installed = install_protocol(protocol, str(beside), "x", "y")
        assert (installed.service, installed.default_port, installed.slice) == ("lmtp", 24, 3)
        assert (installed.implicit_tls, installed.explicit_tls) == (False, False)
        assert installed.program == "mxf-remote-smtpc"

    def test_missing_program(self, beside: Path) -> None:
        """A missing program leaves the protocol present but unusable, saying why."""
        installed = install_protocol(
            self.parse("qmtp:209:1:N:N:no-such-client"), str(beside), "x", "y"
        )
        assert not installed.usable
        assert installed.program_path is None
        assert installed.unusable_reason is not None
        assert "no-such-client" in installed.unusable_reason

    def test_missing_tls_client(self, beside: Path) -> None:
        """A missing TLS client leaves the protocol unusable, naming the client."""
        installed = install_protocol(
            self.parse("qmtps:6209:-1:Y:N:mxf-remote-qmtpc"), str(beside), "no-tlsc", "y"
        )
        assert not installed.usable
        assert installed.unusable_reason is not None
        assert "no-tlsc" in installed.unusable_reason

    def test_missing_ucspi_tls_client(self, beside: Path) -> None:
        """A missing UCSPI-TLS client leaves an explicit-TLS protocol unusable."""
        installed = install_protocol(
            self.parse("smtp:25:0:N:Y:mxf-remote-smtpc"), str(beside), "x", "no-ucspitlsc"
        )
        assert not installed.usable
        assert installed.unusable_reason is not None
        assert "no-ucspitlsc" in installed.unusable_reason

    def test_unneeded_tls_client_may_be_missing(self, beside: Path) -> None:
        """A protocol without TLS does not care that the TLS clients are missing."""
        installed = install_protocol(
            self.parse("smtp:25:0:N:N:mxf-remote-smtpc"), str(beside), "none", "none"
        )
        assert installed.usable


class TestParseRouteValue:
    """The relay[:port] part of a routes line."""

    @pytest.mark.parametrize(
        ("value", "route"),
        [
            ("relay.example", Route("relay.example", None)),
            ("relay.example:2525", Route("relay.example", 2525)),
            ("Relay.Example:1", Route("Relay.Example", 1)),
            ("relay.example:65535", Route("relay.example", 65535)),
            ("1.2.3.4", Route("1.2.3.4", None)),
            ("1.2.3.4:26", Route("1.2.3.4", 26)),
            ("[1.2.3.4]:26", Route("[1.2.3.4]", 26)),
            ("[2001:db8::25]", Route("[2001:db8::25]", None)),
            ("[2001:db8::25]:2525", Route("[2001:db8::25]", 2525)),
            ("[IPv6:2001:db8::25]:2525", Route("[IPv6:2001:db8::25]", 2525)),
        ],
    )
    def test_valid(self, value: str, route: Route) -> None:
        """A relay name or literal with an optional port."""
        assert parse_route_value("smtproutes", 1, value) == route

    def test_empty_relay(self) -> None:
        """An empty value means "no route for this protocol"."""
        assert parse_route_value("smtproutes", 1, "") is None

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("relay:0", "outside"),
            ("relay:65536", "outside"),
            ("relay:-1", "not a whole number"),
            ("relay:abc", "not a whole number"),
            ("relay:", "empty"),
            ("relay:25:26", "not a whole number"),
            (":2525", "port without a relay"),
            ("[2001:db8::25", "without ]"),
            ("[2001:db8::25]2525", "unexpected"),
            ("[2001:db8::25]:", "empty"),
            ("[2001:db8::25]:x", "not a whole number"),
            ("re lay", "blanks"),
            ("relay\x01", "control"),
        ],
    )
    def test_invalid(self, value: str, problem: str) -> None:
        """Bad ports and malformed relays are errors naming the file and line."""
        with pytest.raises(ControlError) as error:
            parse_route_value("qmtproutes", 7, value)
        expect_error(error, "qmtproutes", 7)
        assert problem in error.value.problem


class TestParseRoutes:
    """A routes file becomes a table keyed by lower-cased domain or .suffix."""

    def test_table(self) -> None:
        """Keys are lower-cased bytes; values are routes or None for an empty relay."""
        table = parse_routes(
            ["Example.COM:relay", ".af.mil:", ":heaven.af.mil", "x.test:r:26"], "smtproutes"
        )
        assert table == {
            b"example.com": Route("relay", None),
            b".af.mil": None,
            b"": Route("heaven.af.mil", None),
            b"x.test": Route("r", 26),
        }

    def test_ignored_lines(self) -> None:
        """Blank lines, comments and lines without a colon are ignored."""
        table = parse_routes(["", "# a:b", "no colon here", "a:b"], "smtproutes")
        assert table == {b"a": Route("b", None)}

    def test_last_duplicate_wins(self) -> None:
        """For a key given twice, in any case, the last line wins (qmail's constmap)."""
        table = parse_routes(["a.test:first", "A.TEST:second"], "smtproutes")
        assert table == {b"a.test": Route("second", None)}

    def test_last_duplicate_wins_over_empty(self) -> None:
        """An empty relay given last replaces an earlier relay for the same key."""
        table = parse_routes(["a.test:first", "a.test:"], "smtproutes")
        assert table == {b"a.test": None}

    def test_error_line_number(self) -> None:
        """A bad port is reported with its line number, comments counted."""
        with pytest.raises(ControlError) as error:
            parse_routes(["# c", "", "a.test:r:99999"], "qmtpsroutes")
        expect_error(error, "qmtpsroutes", 3)

    def test_key_keeps_brackets(self) -> None:
        """A literal can be a key, brackets and all."""
        table = parse_routes(["[1.2.3.4]:relay"], "smtproutes")
        assert lookup_route(table, "[1.2.3.4]") == Route("relay", None)


class TestLookupRoute:
    """qmail's smtproutes lookup: exact, .suffix longest first, then the default."""

    TABLE = (
        "a.b.example.com:exact",
        ".b.example.com:b-suffix",
        ".example.com:example-suffix",
        ".com:com-suffix",
        "other.test:other",
    )

    @pytest.mark.parametrize(
        ("host", "relay"),
        [
            ("a.b.example.com", "exact"),
            ("x.a.b.example.com", "b-suffix"),
            ("z.b.example.com", "b-suffix"),
            ("b.example.com", "example-suffix"),
            ("example.com", "com-suffix"),
            ("deep.x.y.example.com", "example-suffix"),
            ("foo.com", "com-suffix"),
            ("other.test", "other"),
            ("A.B.EXAMPLE.COM", "exact"),
            ("X.B.Example.Com", "b-suffix"),
        ],
    )
    def test_order(self, host: str, relay: str) -> None:
        """The most specific key wins; matching ignores ASCII case."""
        table = parse_routes(list(self.TABLE), "smtproutes")
        route = lookup_route(table, host)
        assert route is not None
        assert route.relay == relay

    def test_exact_key_does_not_match_subdomains(self) -> None:
        """A key without a leading dot matches only that exact name."""
        table = parse_routes(["other.test:other"], "smtproutes")
        assert lookup_route(table, "sub.other.test") is None
        assert lookup_route(table, "nother.test") is None

    def test_suffix_does_not_match_the_bare_domain(self) -> None:
        """.example.com matches names below example.com, not example.com itself."""
        table = parse_routes([".example.com:r"], "smtproutes")
        assert lookup_route(table, "example.com") is None
        assert lookup_route(table, "notexample.com") is None

    def test_default_route(self) -> None:
        """The empty key is the default route for every host without a better key."""
        table = parse_routes(["a.test:a", ":default"], "smtproutes")
        assert lookup_route(table, "a.test") == Route("a", None)
        assert lookup_route(table, "b.test") == Route("default", None)
        assert lookup_route(table, "[1.2.3.4]") == Route("default", None)

    def test_no_match(self) -> None:
        """No key and no default: no route."""
        table = parse_routes(["a.test:a"], "smtproutes")
        assert lookup_route(table, "b.test") is None
        assert lookup_route({}, "b.test") is None

    def test_af_mil_example(self) -> None:
        """`.af.mil:` before `:heaven.af.mil`: *.af.mil use MX, everything else heaven."""
        table = parse_routes([".af.mil:", ":heaven.af.mil"], "smtproutes")
        assert lookup_route(table, "inside.af.mil") is None
        assert lookup_route(table, "a.b.af.mil") is None
        assert lookup_route(table, "example.com") == Route("heaven.af.mil", None)
        assert lookup_route(table, "af.mil") == Route("heaven.af.mil", None)

    def test_empty_relay_stops_the_search(self) -> None:
        """An exact key with an empty relay hides a matching suffix key."""
        table = parse_routes(["a.example.com:", ".example.com:relay"], "smtproutes")
        assert lookup_route(table, "a.example.com") is None
        assert lookup_route(table, "b.example.com") == Route("relay", None)

    def test_relay_with_port(self) -> None:
        """`inside.af.mil:firewall.af.mil:26` routes to port 26."""
        table = parse_routes(["inside.af.mil:firewall.af.mil:26"], "smtproutes")
        assert lookup_route(table, "inside.af.mil") == Route("firewall.af.mil", 26)

    def test_ipv6_relay(self) -> None:
        """`example.org:[2001:db8::25]:2525` routes to a bracketed IPv6 relay."""
        table = parse_routes(["example.org:[2001:db8::25]:2525"], "smtproutes")
        assert lookup_route(table, "example.org") == Route("[2001:db8::25]", 2525)


class TestReadControl:
    """Everything mxf-remote reads, end to end on a temporary qmail home."""

    def test_defaults(self, home: Path, beside: Path) -> None:
        """With no control files every default of spec §2 applies."""
        result = read_control(str(home), str(beside))
        assert result.home == str(home)
        assert result.timeout_connect == 60
        assert result.connect_delay == pytest.approx(0.250)
        assert result.timeout_dns == 30
        assert [(p.service, p.default_port, p.slice) for p in result.protocols] == [
            ("qmtps", 6209, -1),
            ("qmtp", 209, 1),
            ("smtp", 25, 0),
        ]
        assert result.routes == {}
        qmtps, qmtp, smtp = result.protocols
        assert qmtps.tls_client_path == str(beside / "mxf-remote-tlsc")
        assert qmtp.tls_client_path is None
        assert smtp.tls_client_path == str(beside / "mxf-remote-ucspitlsc")
        assert qmtp.program_path == str(beside / "mxf-remote-qmtpc")
        assert smtp.program_path == str(beside / "mxf-remote-smtpc")
        assert result.usable_protocols == result.protocols

    def test_types(self, home: Path, beside: Path) -> None:
        """Timeouts and the delay are seconds as floats."""
        result = read_control(str(home), str(beside))
        assert isinstance(result.timeout_connect, float)
        assert isinstance(result.connect_delay, float)
        assert isinstance(result.timeout_dns, float)

    def test_s6_clients_preferred(
        self, home: Path, beside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The TLS client defaults are s6-networking's when those are executable."""
        s6 = tmp_path / "s6"
        make_executable(s6, "s6-tlsc")
        make_executable(s6, "s6-ucspitlsc")
        monkeypatch.setattr(control, "S6_COMMAND_DIR", str(s6))
        qmtps, _, smtp = read_control(str(home), str(beside)).protocols
        assert qmtps.tls_client_path == str(s6 / "s6-tlsc")
        assert smtp.tls_client_path == str(s6 / "s6-ucspitlsc")

    def test_s6_not_executable_ignored(
        self, home: Path, beside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A non-executable s6 client is not a default; ours is used."""
        s6 = tmp_path / "s6"
        make_executable(s6, "s6-tlsc", mode=0o644)
        monkeypatch.setattr(control, "S6_COMMAND_DIR", str(s6))
        qmtps, _, _ = read_control(str(home), str(beside)).protocols
        assert qmtps.tls_client_path == str(beside / "mxf-remote-tlsc")

    def test_tls_client_files(self, home: Path, beside: Path, tmp_path: Path) -> None:
        """tlsclient and ucspitlsclient name the clients by their first line."""
        tlsc = make_executable(tmp_path / "tls", "my-tlsc")
        ucspi = make_executable(tmp_path / "tls", "my-ucspitlsc")
        write_control(home, "tlsclient", f"{tlsc} \nignored\n")
        write_control(home, "ucspitlsclient", f"{ucspi}\n")
        qmtps, _, smtp = read_control(str(home), str(beside)).protocols
        assert qmtps.tls_client_path == str(tlsc)
        assert smtp.tls_client_path == str(ucspi)

    def test_tls_client_bare_name(self, home: Path, beside: Path) -> None:
        """A bare name in tlsclient is looked up beside mxf-remote."""
        make_executable(beside, "other-tlsc")
        write_control(home, "tlsclient", "other-tlsc\n")
        qmtps, _, _ = read_control(str(home), str(beside)).protocols
        assert qmtps.tls_client_path == str(beside / "other-tlsc")

    def test_missing_tls_client_file_target(self, home: Path, beside: Path) -> None:
        """A tlsclient naming nothing installed makes the implicit-TLS protocols unusable."""
        write_control(home, "tlsclient", "/nonexistent/tlsc\n")
        result = read_control(str(home), str(beside))
        assert [p.service for p in result.usable_protocols] == ["qmtp", "smtp"]
        qmtps = result.protocols[0]
        assert qmtps.unusable_reason is not None
        assert "/nonexistent/tlsc" in qmtps.unusable_reason

    @pytest.mark.parametrize(
        ("name", "content", "expected"),
        [
            ("timeoutconnect", "120\n", ("timeout_connect", 120.0)),
            ("timeoutconnect", "1\n", ("timeout_connect", 1.0)),
            ("timeoutdns", "7 \n", ("timeout_dns", 7.0)),
            ("connectdelay", "100\n", ("connect_delay", 0.100)),
            ("connectdelay", "0\n", ("connect_delay", 0.010)),
            ("connectdelay", "5\n", ("connect_delay", 0.010)),
            ("connectdelay", "10\n", ("connect_delay", 0.010)),
            ("connectdelay", "2000\n", ("connect_delay", 2.0)),
            ("connectdelay", "2001\n", ("connect_delay", 2.0)),
            ("connectdelay", "99999\n", ("connect_delay", 2.0)),
        ],
    )
    def test_numbers(
        self, home: Path, beside: Path, name: str, content: str, expected: tuple[str, float]
    ) -> None:
        """Numbers are read; connectdelay is milliseconds clamped to 10..2000."""
        attribute, value = expected
        write_control(home, name, content)
        assert getattr(read_control(str(home), str(beside)), attribute) == pytest.approx(value)

    @pytest.mark.parametrize("name", ["timeoutconnect", "connectdelay", "timeoutdns"])
    @pytest.mark.parametrize("content", ["", "x\n", "-1\n", "1e3\n", "1" * 30 + "\n", "60\r\n"])
    def test_bad_numbers(self, home: Path, beside: Path, name: str, content: str) -> None:
        """A bad number in any timing file is an error naming that file and line 1."""
        write_control(home, name, content)
        with pytest.raises(ControlError) as error:
            read_control(str(home), str(beside))
        expect_error(error, name, 1)

    def test_protocols_file(self, home: Path, beside: Path) -> None:
        """A protocols file replaces the default table, in its order."""
        write_control(
            home,
            "protocols",
            "# ours\nsmtp:587:0:N:N:mxf-remote-smtpc\nqmtp:209:1:N:N:mxf-remote-qmtpc\n",
        )
        result = read_control(str(home), str(beside))
        assert [(p.service, p.default_port) for p in result.protocols] == [
            ("smtp", 587),
            ("qmtp", 209),
        ]

    def test_unusable_protocol_is_kept(self, home: Path, beside: Path) -> None:
        """A protocol whose program is missing is listed but not usable."""
        write_control(
            home, "protocols", "x:1:0:N:N:not-installed\nsmtp:25:0:N:N:mxf-remote-smtpc\n"
        )
        result = read_control(str(home), str(beside))
        assert [p.service for p in result.protocols] == ["x", "smtp"]
        assert [p.service for p in result.usable_protocols] == ["smtp"]
        assert result.protocols[0].unusable_reason is not None

    def test_nothing_usable(self, home: Path, beside: Path) -> None:
        """When no program is installed every protocol is unusable (not an error)."""
        for name in PROGRAMS:
            (beside / name).unlink()
        result = read_control(str(home), str(beside))
        assert len(result.protocols) == 3
        assert result.usable_protocols == ()

    def test_program_on_path(
        self, home: Path, beside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A program not beside mxf-remote is found on PATH."""
        make_executable(tmp_path / "path", "lmtpc")
        monkeypatch.setenv("PATH", str(tmp_path / "path"))
        write_control(home, "protocols", "lmtp:24:0:N:N:lmtpc\n")
        (protocol,) = read_control(str(home), str(beside)).protocols
        assert protocol.program_path == str(tmp_path / "path" / "lmtpc")

    def test_protocols_error(self, home: Path, beside: Path) -> None:
        """A bad protocols line is an error naming control/protocols and the line."""
        write_control(home, "protocols", "smtp:25:0:N:N:mxf-remote-smtpc\nqmtp:209:99:N:N:q\n")
        with pytest.raises(ControlError) as error:
            read_control(str(home), str(beside))
        expect_error(error, "protocols", 2)

    def test_protocols_crlf(self, home: Path, beside: Path) -> None:
        """A protocols file with CRLF line ends is an error that says so."""
        write_control(home, "protocols", b"smtp:25:0:N:N:mxf-remote-smtpc\r\n")
        with pytest.raises(ControlError) as error:
            read_control(str(home), str(beside))
        expect_error(error, "protocols", 1)

    def test_protocols_directory(self, home: Path, beside: Path) -> None:
        """A directory named protocols is an error, not the default table."""
        (home / "control" / "protocols").mkdir()
        with pytest.raises(ControlError) as error:
            read_control(str(home), str(beside))
        expect_error(error, "protocols", None)

    def test_routes(self, home: Path, beside: Path) -> None:
        """Each usable protocol's <service>routes file is read into its table."""
        write_control(home, "smtproutes", "example.com:relay.example:2525\n.af.mil:\n")
        write_control(home, "qmtproutes", ":[2001:db8::209]\n")
        result = read_control(str(home), str(beside))
        assert result.routes == {
            "smtp": {b"example.com": Route("relay.example", 2525), b".af.mil": None},
            "qmtp": {b"": Route("[2001:db8::209]", None)},
        }

    def test_routes_error(self, home: Path, beside: Path) -> None:
        """A bad port in a routes file is an error naming the file and the line."""
        write_control(home, "qmtpsroutes", "a.test:relay\nb.test:relay:abc\n")
        with pytest.raises(ControlError) as error:
            read_control(str(home), str(beside))
        expect_error(error, "qmtpsroutes", 2)

    def test_routes_of_unusable_protocol_ignored(self, home: Path, beside: Path) -> None:
        """Routes of a protocol that is not installed do not count."""
        write_control(
            home, "protocols", "x:1:0:N:N:not-installed\nsmtp:25:0:N:N:mxf-remote-smtpc\n"
        )
        write_control(home, "xroutes", ":relay\n")
        assert read_control(str(home), str(beside)).routes == {}

    def test_unrelated_files_ignored(self, home: Path, beside: Path) -> None:
        """Files the dispatcher does not use (me, helohost, timeoutremote) are not parsed."""
        write_control(home, "timeoutremote", "not a number\r\n")
        write_control(home, "me", "\r\n")
        read_control(str(home), str(beside))

    def test_executable_bits_checked(self, home: Path, beside: Path) -> None:
        """A program that lost its execute bit makes its protocol unusable."""
        (beside / "mxf-remote-smtpc").chmod(stat.S_IRUSR | stat.S_IWUSR)
        if os.geteuid() == 0:
            # root may execute a file only when some execute bit is set: same outcome.
            assert not os.access(beside / "mxf-remote-smtpc", os.X_OK)
        result = read_control(str(home), str(beside))
        assert [p.service for p in result.usable_protocols] == ["qmtps", "qmtp"]
