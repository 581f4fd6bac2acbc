"""TLS-RPT (``mxf_remote.tlsrpt``): the spool writer and the ``mxf-remote-tlsrpt`` reporter.

The writer is tested on real files (two processes appending at once, hostile
``MXFTLSRPT`` values); the reporter's parsing and grouping with a scripted ``Lookup``
(exact JSON for a fixed spool), and the program itself as a real process over a qmail
home in a temporary directory, with knot serving ``_smtp._tls`` records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxf_remote import tlsrpt
from mxf_remote.knowledge import Answer, Status
from mxf_remote.tlsrpt import (
    POLICY_VARIABLE,
    decode_json,
    encode_json,
    parse_tlsrpt_record,
    policy_variable,
    record,
    record_from_environment,
)
from tests.importkit import modules_loaded_by
from tests.measured import measured

NOW = 1796083200.0  # 2026-12-01T00:00:00Z
DAY = "2026-12-01"
STS: dict[str, Any] = {
    "policy-type": "sts",
    "policy-string": ["version: STSv1", "mode: enforce", "mx: mx.example.net", "max_age: 86400"],
    "policy-domain": "Example.NET",
    "mx-host": ["mx.example.net"],
}
TLSA: dict[str, Any] = {
    "policy-type": "tlsa",
    "policy-string": ["3 1 1 abcd"],
    "policy-domain": "dane.test",
}
NONE: dict[str, Any] = {"policy-type": "no-policy-found", "policy-domain": "plain.test"}


def spool_lines(spool: Path, day: str = DAY) -> list[dict[str, Any]]:
    """The JSON objects of one day's spool file."""
    text = (spool / "tlsrpt" / day).read_text(encoding="ascii")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def write(spool: Path, policy: dict[str, Any], result: str, **fields: Any) -> None:
    """``record`` with defaults for the addresses."""
    record(
        str(spool),
        policy,
        result,
        sending_ip=fields.get("sending_ip", "192.0.2.1"),
        receiving_ip=fields.get("receiving_ip", "198.51.100.7"),
        receiving_mx=fields.get("receiving_mx", "mx.example.net"),
        reason=fields.get("reason", ""),
        now=fields.get("now", NOW + 60),
    )


class TestRecord:
    """One JSON line per session, appended, never an exception."""

    def test_line_content(self, tmp_path: Path) -> None:
        """The line holds the normalised policy, result, addresses, MX, reason and UTC time."""
        write(tmp_path, STS, "certificate-expired", reason="expired 2026-11-30")
        assert spool_lines(tmp_path) == [
            {
                "time": "2026-12-01T00:01:00Z",
                "policy": {
                    "policy-type": "sts",
                    "policy-string": STS["policy-string"],
                    "policy-domain": "example.net",
                    "mx-host": ["mx.example.net"],
                },
                "result": "certificate-expired",
                "sending-mta-ip": "192.0.2.1",
                "receiving-ip": "198.51.100.7",
                "receiving-mx-hostname": "mx.example.net",
                "failure-reason-code": "expired 2026-11-30",
            }
        ]
        assert oct(os.stat(tmp_path / "tlsrpt").st_mode & 0o777) == "0o755"

    def test_appends_and_splits_by_utc_day(self, tmp_path: Path) -> None:
        """Sessions are appended in order; one second before midnight UTC is the day before."""
        write(tmp_path, STS, "success")
        write(tmp_path, NONE, "success")
        write(tmp_path, TLSA, "success", now=NOW - 1)
        assert [line["policy"]["policy-type"] for line in spool_lines(tmp_path)] == [
            "sts",
            "no-policy-found",
        ]
        assert [line["time"] for line in spool_lines(tmp_path, "2026-11-30")] == [
            "2026-11-30T23:59:59Z"
        ]

    def test_hostile_text_stays_on_one_line(self, tmp_path: Path) -> None:
        """Newlines, NUL, 8-bit and huge reasons are escaped or cut: still one ASCII line."""
        write(tmp_path, STS, "validation-failure", reason="a\nb\x00\u00e9" + "x" * 5000)
        write(tmp_path, STS, "success", receiving_mx="mx\r\n.example.net")
        lines = spool_lines(tmp_path)
        assert len(lines) == 2
        assert lines[0]["failure-reason-code"].startswith("a b \u00e9x")
        assert len(lines[0]["failure-reason-code"]) == tlsrpt.MAX_STRING
        assert lines[1]["receiving-mx-hostname"] == "mx  .example.net"

    @pytest.mark.parametrize(
        ("policy", "result"),
        [
            ({**STS, "policy-type": "dane"}, "success"),
            ({**STS, "policy-domain": "../../etc"}, "success"),
            ({**STS, "policy-domain": 7}, "success"),
            ({**STS, "policy-string": "version: STSv1"}, "success"),
            ({**STS, "policy-string": [1]}, "success"),
            (STS, "Success"),
            (STS, ""),
            (STS, "a b"),
            (STS, "x" * 65),
        ],
    )
    def test_unusable_arguments_write_nothing(
        self, tmp_path: Path, policy: dict[str, Any], result: str
    ) -> None:
        """A bad policy type, domain, string list, or result: nothing written, no exception."""
        write(tmp_path, policy, result)
        assert not (tmp_path / "tlsrpt").exists()

    def test_a_huge_policy_is_recorded_shortened(self, tmp_path: Path) -> None:
        """A valid policy of 1000 lines, or one line of 2000 characters, is still the
        domain's: its session is recorded, the strings cut (a domain must not lose its
        reports for publishing a big policy)."""
        write(tmp_path, {**STS, "policy-string": ["x"] * 1000}, "success")
        write(tmp_path, {**STS, "mx-host": ["x" * 2000]}, "success")
        first, second = spool_lines(tmp_path)
        assert len(first["policy"]["policy-string"]) == tlsrpt.MAX_STRINGS
        assert second["policy"]["mx-host"] == ["x" * tlsrpt.MAX_STRING]

    @pytest.mark.parametrize("spool", ["relative/dir", "", "/no/such/dir", "/a\x00b"])
    def test_bad_spool_never_raises(self, spool: str) -> None:
        """A relative, empty, missing or NUL-holding directory: nothing, no exception."""
        record(spool, STS, "success", sending_ip="", receiving_ip="", receiving_mx="")

    def test_unwritable_spool_file_never_raises(self, tmp_path: Path) -> None:
        """A directory (or a dangling symlink) where the day's file should be: no exception."""
        (tmp_path / "tlsrpt" / DAY).mkdir(parents=True)
        write(tmp_path, STS, "success")
        (tmp_path / "tlsrpt" / DAY).rmdir()
        (tmp_path / "tlsrpt" / DAY).symlink_to(tmp_path / "target")
        write(tmp_path, STS, "success")
        assert not (tmp_path / "target").exists()

    def test_two_processes_append_whole_lines(self, tmp_path: Path) -> None:
        """Two processes appending 400 lines each at the same time: 800 whole lines."""
        script = (
            "import sys\n"
            "from mxf_remote.tlsrpt import record\n"
            "policy = {'policy-type': 'sts', 'policy-domain': 'example.net',\n"
            "          'policy-string': ['x' * 900] * 3}\n"
            "sys.stdin.read()\n"
            "for n in range(400):\n"
            "    record(sys.argv[1], policy, 'success', sending_ip=sys.argv[2],\n"
            f"           receiving_ip=str(n), receiving_mx='mx', now={NOW})\n"
        )
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path), who],
                stdin=subprocess.PIPE,
            )
            for who in ("one", "two")
        ]
        for writer in writers:  # both start writing at about the same moment
            assert writer.stdin is not None
            writer.stdin.close()
        assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
        lines = spool_lines(tmp_path)
        assert len(lines) == 800
        for who in ("one", "two"):
            numbers = [int(line["receiving-ip"]) for line in lines if line["sending-mta-ip"] == who]
            assert numbers == list(range(400))


class TestEnvironment:
    """``MXFTLSRPT``: what the dispatcher passes, what the client trusts of it."""

    def test_round_trip(self, tmp_path: Path) -> None:
        """``policy_variable`` then ``record_from_environment`` writes the session with its MX."""
        value = policy_variable(str(tmp_path), STS, "mx.example.net")
        record_from_environment(
            {POLICY_VARIABLE: value},
            "starttls-not-supported",
            sending_ip="192.0.2.1",
            receiving_ip="198.51.100.7",
            reason="no STARTTLS in EHLO",
        )
        (line,) = spool_lines_today(tmp_path)
        assert line["result"] == "starttls-not-supported"
        assert line["receiving-mx-hostname"] == "mx.example.net"
        assert line["failure-reason-code"] == "no STARTTLS in EHLO"

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "{",
            "null",
            "[]",
            '"x"',
            '{"dir": "DIR", "policy": {}, "mx": "mx"}',
            '{"dir": "DIR", "policy": POLICY}',
            '{"dir": "DIR", "policy": POLICY, "mx": 5}',
            '{"dir": "DIR", "policy": "sts", "mx": "mx"}',
            '{"dir": 1, "policy": POLICY, "mx": "mx"}',
            '{"dir": "relative", "policy": POLICY, "mx": "mx"}',
            '{"dir": "DIR/../x\\u0000", "policy": POLICY, "mx": "mx"}',
            '{"policy": POLICY, "mx": "mx"}',
            '{"dir": "DIR", "policy": POLICY, "mx": "mx", "pad": "' + "x" * 140000 + '"}',
            "[" * 100000 + "]" * 100000,
            '{"dir": "DIR", "policy": POLICY, "mx": "mx"}\x00',
        ],
    )
    def test_hostile_values_write_nothing(self, tmp_path: Path, value: str) -> None:
        """Malformed JSON, wrong types, missing keys, a relative or NUL-holding directory, a
        huge or deeply nested value: nothing written, no exception."""
        value = value.replace("DIR", str(tmp_path)).replace("POLICY", json.dumps(STS))
        record_from_environment({POLICY_VARIABLE: value}, "success", sending_ip="", receiving_ip="")
        assert list(tmp_path.iterdir()) == []

    def test_absent_writes_nothing(self, tmp_path: Path) -> None:
        """No variable (no policy work for this delivery): nothing."""
        record_from_environment({}, "success", sending_ip="", receiving_ip="")


def spool_lines_today(spool: Path) -> list[dict[str, Any]]:
    """The lines of the only day file in the spool (written with the real clock)."""
    (day,) = os.listdir(spool / "tlsrpt")
    return spool_lines(spool, day)


JSON_VALUES = st.recursive(
    st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


class TestLean:
    """What the spool writer costs the SMTP client: no ``json``, ``re``, ``typing``."""

    HEAVY = frozenset(
        {"json", "re", "typing", "asyncio", "enum", "mxf_remote.mtasts", "contextlib"}
    )

    def test_import(self) -> None:
        """Importing the module loads none of the heavy modules."""
        assert modules_loaded_by("mxf_remote.tlsrpt") & self.HEAVY == set()

    def test_writing_a_line(self, tmp_path: Path) -> None:
        """Writing a line from ``MXFTLSRPT`` loads no module at all."""
        script = (
            "import os, sys\n"
            "from mxf_remote import tlsrpt\n"
            "before = set(sys.modules)\n"
            "tlsrpt.record_from_environment(os.environ, 'success', sending_ip='192.0.2.1',\n"
            "                               receiving_ip='192.0.2.2')\n"
            "print(sorted(set(sys.modules) - before))\n"
        )
        variable = policy_variable(str(tmp_path), STS, "mx.example.net")
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=measured({POLICY_VARIABLE: variable}),
            timeout=60,
            check=True,
        )
        assert done.stdout == "[]\n"
        assert len(spool_lines_today(tmp_path)) == 1

    @pytest.mark.parametrize(
        "domain",
        [
            "Example.NET.",
            "a.b",
            "xn--e1a.test",
            "tlsrpt",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b.c",
            "exämple.org",
            "a/b.c",
            "a" * 64 + ".b",
            ("a" * 60 + ".") * 5 + "b",
            ".a.b",
            "",
        ],
    )
    def test_domain_check_agrees_with_mtasts(self, domain: str) -> None:
        """The writer's own domain check (no ``mtasts`` import) accepts and normalises exactly
        what ``mtasts.policy_domain`` does."""
        from mxf_remote.mtasts import policy_domain

        clean = tlsrpt.clean_policy({"policy-type": "sts", "policy-domain": domain})
        assert (None if clean is None else clean["policy-domain"]) == policy_domain(domain)


class TestJsonSubset:
    """The spool's own JSON writer and reader (``json`` costs the SMTP client 6.5 ms)."""

    @settings(max_examples=300, deadline=None)
    @given(JSON_VALUES)
    def test_writes_what_json_writes_and_reads_it_back(self, value: object) -> None:
        """Any nesting of strings (any code point), lists and dicts: byte for byte what
        ``json.dumps`` prints, and ``decode_json`` gives the value back as ``json.loads``."""
        text = encode_json(value)
        assert text == json.dumps(value)
        assert decode_json(text) == value == json.loads(text)

    def test_whitespace_and_escapes(self) -> None:
        """Whitespace between tokens, every escape, surrogate pairs, true/false/null."""
        text = (
            ' { "a" :\t[ "\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\"\\\\" ,'
            " true,false ,null ] }\r\n"
        )
        assert decode_json(text) == json.loads(text)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            " ",
            "{",
            "[",
            '"abc',
            '{"a": "b",}',
            "[1]",
            '{"a": 1.5}',
            "[-0]",
            "NaN",
            '{"a": "b"} x',
            '{"a": "b"}{}',
            '{"a" "b"}',
            '{a: "b"}',
            "{'a': 'b'}",
            '{"a": "b", "a": "c"}',
            '["\\x41"]',
            '["\\u12"]',
            '["\\u12g4"]',
            '["\\ud800"]',
            '["\\udc00\\ud800"]',
            '["a\tb"]',
            '["a\x00b"]',
            '["a\x7fb"]',
            '["\u00e9"]',
            "[" * 9 + "]" * 9,
            '["a"] \x00',
            "tru",
            "nul",
        ],
    )
    def test_refuses_anything_else(self, text: str) -> None:
        """Numbers, trailing commas or data, missing quotes or colons, duplicate keys, bad or
        lone-surrogate escapes, raw control characters, 8-bit text, deep nesting: ValueError."""
        with pytest.raises(ValueError):
            decode_json(text)

    def test_deep_but_allowed(self) -> None:
        """Eight levels are fine (MXFTLSRPT needs four)."""
        assert decode_json("[" * 8 + "]" * 8) == json.loads("[" * 8 + "]" * 8)


class TestRuaRecord:
    """RFC 8460 §3: ``TXT _smtp._tls.<domain>``."""

    @pytest.mark.parametrize(
        ("records", "rua"),
        [
            ([b"v=TLSRPTv1; rua=mailto:tls@example.net"], ["mailto:tls@example.net"]),
            (
                [b"v=spf1 -all", b"v=TLSRPTv1;rua=mailto:a@x.test , https://r.x.test/v1;"],
                ["mailto:a@x.test", "https://r.x.test/v1"],
            ),
            ([b"v=TLSRPTv1; rua=ftp://x.test, MAILTO:b@x.test"], ["MAILTO:b@x.test"]),
            ([b"v=TLSRPTv1; ext=1; rua=mailto:a@x.test"], ["mailto:a@x.test"]),
        ],
    )
    def test_valid(self, records: list[bytes], rua: list[str]) -> None:
        """Other TXT records ignored, spaces around delimiters, only mailto:/https: kept."""
        assert parse_tlsrpt_record(records) == (rua, None)

    def test_none_is_no_error(self) -> None:
        """No TLSRPTv1 record: the domain wants no reports, which is not an error."""
        assert parse_tlsrpt_record([b"v=spf1 -all"]) == ([], None)

    @pytest.mark.parametrize(
        "records",
        [
            [b"v=TLSRPTv1; rua=mailto:a@x.test", b"v=TLSRPTv1; rua=mailto:b@x.test"],
            [b"v=TLSRPTv1;"],
            [b"v=TLSRPTv1; rua="],
            [b"v=TLSRPTv1; rua=mailto:a@x.test,"],
            [b"v=TLSRPTv1; rua=mailto:a@x.test; rua=mailto:b@x.test"],
            [b"v=TLSRPTv1; rua=mailto:a b@x.test"],
            [b"v=TLSRPTv1; rua=mailto:\xff@x.test"],
            [b"v=TLSRPTv1; rua=mailto:a@x.test\n"],
            [b"v=TLSRPTv1; junk"],
        ],
    )
    def test_invalid(self, records: list[bytes]) -> None:
        """Two records, no or empty rua, duplicates, spaces, 8-bit, control characters, bare
        words: no targets, and a reason."""
        uris, error = parse_tlsrpt_record(records)
        assert uris == [] and error


def scripted(answers: dict[str, Answer[Any] | Exception]) -> Callable[..., Any]:
    """A ``Lookup`` answering TXT questions from ``answers`` (an exception is raised)."""

    async def lookup(name: str, rtype: str) -> Answer[Any]:
        assert rtype == "TXT"
        result = answers.get(name, Answer(Status.NXDOMAIN))
        if isinstance(result, Exception):
            raise result
        return result

    return lookup


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A qmail home with ``control/me`` and ``control/mtasts`` naming ``<home>/sts``."""
    (tmp_path / "control").mkdir()
    (tmp_path / "sts").mkdir()
    (tmp_path / "control" / "me").write_text("relay.sender.test\n")
    (tmp_path / "control" / "mtasts").write_text(f"{tmp_path / 'sts'}\n")
    return tmp_path


def fixed_spool(spool: Path) -> None:
    """The day used by the exact-output test: three domains, several groups."""
    write(spool, STS, "success")
    write(spool, STS, "success", receiving_ip="198.51.100.8")
    write(spool, STS, "certificate-expired", reason="expired")
    write(spool, STS, "certificate-expired", reason="later reason")
    write(spool, STS, "certificate-expired", sending_ip="192.0.2.2")
    write(spool, {**STS, "policy-string": ["version: STSv1", "mode: testing"]}, "success")
    write(spool, TLSA, "validation-failure", receiving_mx="mx.dane.test", receiving_ip="")
    write(spool, NONE, "starttls-not-supported", receiving_mx="mx.plain.test")
    write(spool, NONE, "success", receiving_mx="mx.plain.test")
    with open(spool / "tlsrpt" / DAY, "ab") as file:
        file.write(b"not json\n{}\n" + b"\xff\n")


EXPECTED_EXAMPLE = {
    "policy-domain": "example.net",
    "rua": ["mailto:tls@example.net", "https://tlsrpt.example.net/v1"],
    "report": {
        "organization-name": "relay.sender.test",
        "date-range": {
            "start-datetime": "2026-12-01T00:00:00Z",
            "end-datetime": "2026-12-01T23:59:59Z",
        },
        "contact-info": "postmaster@relay.sender.test",
        "report-id": "2026-12-01_example.net@relay.sender.test",
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": STS["policy-string"],
                    "policy-domain": "example.net",
                    "mx-host": ["mx.example.net"],
                },
                "summary": {
                    "total-successful-session-count": 2,
                    "total-failure-session-count": 3,
                },
                "failure-details": [
                    {
                        "result-type": "certificate-expired",
                        "sending-mta-ip": "192.0.2.1",
                        "receiving-mx-hostname": "mx.example.net",
                        "receiving-ip": "198.51.100.7",
                        "failed-session-count": 2,
                        "failure-reason-code": "expired",
                    },
                    {
                        "result-type": "certificate-expired",
                        "sending-mta-ip": "192.0.2.2",
                        "receiving-mx-hostname": "mx.example.net",
                        "receiving-ip": "198.51.100.7",
                        "failed-session-count": 1,
                    },
                ],
            },
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: testing"],
                    "policy-domain": "example.net",
                    "mx-host": ["mx.example.net"],
                },
                "summary": {
                    "total-successful-session-count": 1,
                    "total-failure-session-count": 0,
                },
                "failure-details": [],
            },
        ],
    },
}


class TestReporter:
    """The reporter in-process, with a scripted lookup."""

    def test_exact_reports_for_a_fixed_spool(
        self, home: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Sessions grouped by domain and policy, failures by (type, IPs, MX), with the rua
        of each domain; a temporary DNS failure and an absent record as documented; bad
        spool lines skipped and counted."""
        fixed_spool(home / "sts")
        lookup = scripted(
            {
                "_smtp._tls.example.net": Answer(
                    Status.OK,
                    (
                        b"v=TLSRPTv1; rua=mailto:tls@example.net,https://tlsrpt.example.net/v1",
                        b"v=spf1 -all",
                    ),
                ),
                "_smtp._tls.dane.test": Answer(Status.TEMPFAIL),
            }
        )
        code = tlsrpt.run(["mxf-remote-tlsrpt", DAY], {"MXF_QMAIL": str(home)}, lookup)
        out, err = capsys.readouterr()
        assert code == 0
        assert err == "mxf-remote-tlsrpt: 3 malformed spool lines skipped\n"
        lines = [json.loads(line) for line in out.splitlines()]
        assert [line["policy-domain"] for line in lines] == [
            "dane.test",
            "example.net",
            "plain.test",
        ]
        assert lines[1] == EXPECTED_EXAMPLE
        assert out.splitlines()[1] == json.dumps(EXPECTED_EXAMPLE)  # key order too
        assert lines[0]["rua"] == []
        assert lines[0]["error"] == "temporary DNS failure for TXT _smtp._tls.dane.test"
        assert lines[0]["report"]["policies"] == [
            {
                "policy": {
                    "policy-type": "tlsa",
                    "policy-string": ["3 1 1 abcd"],
                    "policy-domain": "dane.test",
                },
                "summary": {
                    "total-successful-session-count": 0,
                    "total-failure-session-count": 1,
                },
                "failure-details": [
                    {
                        "result-type": "validation-failure",
                        "sending-mta-ip": "192.0.2.1",
                        "receiving-mx-hostname": "mx.dane.test",
                        "failed-session-count": 1,
                    }
                ],
            }
        ]
        assert lines[2]["rua"] == [] and "error" not in lines[2]
        assert lines[2]["report"]["policies"][0]["summary"] == {
            "total-successful-session-count": 1,
            "total-failure-session-count": 1,
        }

    def test_raising_lookup_is_an_error_value(
        self, home: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A lookup that raises gives that domain an error, not a crash."""
        write(home / "sts", STS, "success")
        lookup = scripted({"_smtp._tls.example.net": KeyError("TXT")})
        assert tlsrpt.run(["x", DAY], {"MXF_QMAIL": str(home)}, lookup) == 0
        (line,) = capsys.readouterr().out.splitlines()
        assert json.loads(line)["error"] == "DNS lookup of _smtp._tls.example.net failed: KeyError"

    def test_no_spool_file_is_an_empty_day(
        self, home: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No file for the day: nothing printed, exit 0, no lookup."""
        assert tlsrpt.run(["x", DAY], {"MXF_QMAIL": str(home)}, scripted({})) == 0
        assert capsys.readouterr() == ("", "")


PROGRAM = os.path.join(os.path.dirname(sys.executable), "mxf-remote-tlsrpt")


def reporter(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the installed program (or ``python -m mxf_remote.tlsrpt`` before reinstall)."""
    command = [PROGRAM] if os.path.exists(PROGRAM) else [sys.executable, "-m", "mxf_remote.tlsrpt"]
    done = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=measured({"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(home), **(env or {})}),
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.usefixtures("netns")
class TestProgram:
    """``mxf-remote-tlsrpt`` as a real process over a qmail home."""

    @pytest.mark.parametrize(
        "args", [(), ("2026-12-01", "extra"), ("2026-13-01",), ("20261201",), ("../x",)]
    )
    def test_usage_errors_exit_100(self, home: Path, args: tuple[str, ...]) -> None:
        """No date, two arguments, an impossible or malformed date: usage on stderr, 100."""
        code, out, err = reporter(home, *args)
        assert (code, out) == (100, "")
        assert err == "usage: mxf-remote-tlsrpt YYYY-MM-DD\n"

    @pytest.mark.parametrize(
        ("control", "text", "message"),
        [
            ("mtasts", None, "control/mtasts is missing or empty"),
            ("mtasts", "relative/dir\n", "control/mtasts: not an absolute path"),
            ("me", None, "control/me is missing or empty"),
            ("me", "x\r\n", "control/me line 1: line ends in a carriage return"),
        ],
    )
    def test_configuration_trouble_exits_111(
        self, home: Path, control: str, text: str | None, message: str
    ) -> None:
        """Missing or unusable control files: a message naming the file, 111."""
        path = home / "control" / control
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
        code, out, err = reporter(home, DAY)
        assert (code, out) == (111, "")
        assert err.startswith(f"mxf-remote-tlsrpt: {message}")

    def test_unreadable_spool_exits_111(self, home: Path) -> None:
        """A day's spool that cannot be read (a directory): 111, naming it."""
        (home / "sts" / "tlsrpt" / DAY).mkdir(parents=True)
        code, out, err = reporter(home, DAY)
        assert (code, out) == (111, "")
        assert "cannot read" in err and DAY in err

    def test_dns_unreachable_reports_with_errors(self, home: Path) -> None:
        """With no DNS server answering, every domain is printed with ``"rua": []`` and an
        error, the reports complete; exit 0, no traceback."""
        fixed_spool(home / "sts")
        code, out, err = reporter(home, DAY, env={"MXF_NAMESERVERS": "127.0.0.61"})
        assert code == 0, err
        assert err == "mxf-remote-tlsrpt: 3 malformed spool lines skipped\n"
        lines = [json.loads(line) for line in out.splitlines()]
        assert [line["policy-domain"] for line in lines] == [
            "dane.test",
            "example.net",
            "plain.test",
        ]
        assert all(line["rua"] == [] and line["error"] for line in lines)
        expected = {key: value for key, value in EXPECTED_EXAMPLE.items() if key != "rua"}
        assert {key: value for key, value in lines[1].items() if key not in ("rua", "error")} == (
            expected
        )

    def test_bad_nameservers_exit_111(self, home: Path) -> None:
        """A malformed ``MXF_NAMESERVERS``: 111 naming it."""
        write(home / "sts", STS, "success")
        code, _, err = reporter(home, DAY, env={"MXF_NAMESERVERS": "not-an-address"})
        assert code == 111 and err.startswith("mxf-remote-tlsrpt: MXF_NAMESERVERS")


ZONES = {
    "rpt.test": """
_smtp._tls.sts      TXT  "v=TLSRPTv1; rua=mailto:tls@sts.rpt.test,https://rpt.sts.rpt.test/v1"
_smtp._tls.split    TXT  "v=TLSRPTv1; " "rua=mailto:a@split.rpt.test"
_smtp._tls.two      TXT  "v=TLSRPTv1; rua=mailto:a@two.rpt.test"
_smtp._tls.two      TXT  "v=TLSRPTv1; rua=mailto:b@two.rpt.test"
_smtp._tls.other    TXT  "v=spf1 -all"
""",
}


@pytest.mark.knot
def test_program_against_knot(home: Path, knot: Any) -> None:
    """The real program asks knot: several URIs, a record split in two strings, two records
    (an error), no TLSRPTv1 record and no name at all (no reports wanted, no error)."""
    for domain in ("sts", "split", "two", "other", "absent"):
        write(home / "sts", {**NONE, "policy-domain": f"{domain}.rpt.test"}, "success")
    code, out, err = reporter(home, DAY, env=knot.env)
    assert (code, err) == (0, "")
    lines = {json.loads(line)["policy-domain"]: json.loads(line) for line in out.splitlines()}
    assert lines["sts.rpt.test"]["rua"] == [
        "mailto:tls@sts.rpt.test",
        "https://rpt.sts.rpt.test/v1",
    ]
    assert lines["split.rpt.test"]["rua"] == ["mailto:a@split.rpt.test"]
    assert lines["two.rpt.test"]["rua"] == [] and "2 TLSRPTv1" in lines["two.rpt.test"]["error"]
    for quiet in ("other.rpt.test", "absent.rpt.test"):
        assert lines[quiet]["rua"] == [] and "error" not in lines[quiet]


def test_a_line_cut_short_by_a_file_size_limit_costs_only_itself(tmp_path: Path) -> None:
    """A partial write (full disk, ``ulimit -f``) is ended with a newline, so the next
    writer's line still stands on a line of its own and is read."""
    import resource
    import subprocess
    import sys

    write(tmp_path, STS, "success")
    day = next((tmp_path / "tlsrpt").iterdir())
    limit = day.stat().st_size + 40  # room for 40 more bytes: less than a line, more than 1

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    script = (
        "import sys, json; from mxf_remote.tlsrpt import record; "
        "record(sys.argv[1], json.loads(sys.argv[2]), 'success', sending_ip='192.0.2.1', "
        "receiving_ip='198.51.100.7', receiving_mx='mx.example.net', now=float(sys.argv[3]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), json.dumps(STS), str(NOW + 60)],
        preexec_fn=limited,  # only setrlimit, before exec
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert day.stat().st_size == limit  # the line was cut short (the newline did not fit...)
    write(tmp_path, STS, "certificate-expired")
    sessions, skipped = tlsrpt.read_spool(str(day))
    assert [s["result"] for s in sessions] == ["success", "certificate-expired"]
    assert skipped == 1
