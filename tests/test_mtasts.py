"""MTA-STS parsing, MX matching and the policy cache (``mxf_remote.mtasts``).

Everything parsed here is hostile input (DNS answers, HTTPS bodies, files other processes
write): the hostile cases come first in each class.  The cache is tested on a real
directory, with a reader process racing the writer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mxf_remote.mtasts import (
    MAX_AGE_CAP,
    CachedPolicy,
    Policy,
    PolicyCache,
    PolicyError,
    StsRecord,
    mx_matches,
    parse_policy,
    parse_sts_record,
    policy_domain,
    policy_strings,
)

GOOD = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.net\r\nmx: *.example.org\r\n"
    b"max_age: 86400\r\n"
)

CACHED = (
    b"mxf-remote mta-sts cache 1\nid abc\nfetched 1000.000000\nexpires 87400.000000\n\n"
    b"version: STSv1\nmode: enforce\nmx: mx1.example.net\nmx: *.example.org\nmax_age: 86400\n"
)


class TestStsRecord:
    """RFC 8461 §3.1: the ``_mta-sts`` TXT record."""

    @pytest.mark.parametrize(
        "records",
        [
            [],
            [b"v=STSv1; id=one;", b"v=STSv1; id=two;"],
            [b"v=STSv1;"],
            [b"v=STSv1; id=;"],
            [b"v=STSv1; id=" + b"a" * 33 + b";"],
            [b"v=STSv1; id=abc-def;"],
            [b"v=STSv1; id=abc\x00;"],
            [b"v=STSv1; id=abc\xc3\xa9;"],
            [b"v=STSv1; id=abc; id=abc;"],
            [b"v=STSv1;; id=abc"],
            [b"v=STSv1; id=abc; ext=a=b"],
            [b"v=STSv1; id=abc; =x"],
            [b"v=STSv1; id=abc\r\n"],
            [b"V=STSv1; id=abc;"],
            [b"v=STSv10; id=abc;"],
            [b" v=STSv1; id=abc;"],
        ],
    )
    def test_hostile_or_ambiguous_records_give_no_policy(self, records: list[bytes]) -> None:
        """None for zero or two records, a missing/empty/long/non-alphanumeric/duplicate id,
        NUL, 8-bit, empty fields, bad extensions, CRLF, a wrong case or version."""
        assert parse_sts_record(records) is None

    def test_other_records_are_discarded(self) -> None:
        """TXT records not starting with ``v=STSv1`` do not count (SPF, verification tokens)."""
        records = [b"v=spf1 -all", b"v=STSv1; id=20261201T000000;", b"google-site=x"]
        assert parse_sts_record(records) == StsRecord("20261201T000000")

    @pytest.mark.parametrize(
        ("record", "record_id"),
        [
            (b"v=STSv1; id=abc", "abc"),
            (b"v=STSv1;id=abc;", "abc"),
            (b"v=STSv1 ;\tid=A1b2 ; ", "A1b2"),
            (b"v=STSv1; ext-1.x=val!ue; id=" + b"9" * 32 + b";", "9" * 32),
        ],
    )
    def test_valid_records(self, record: bytes, record_id: str) -> None:
        """Whitespace around delimiters, a final delimiter or none, extensions are fine."""
        assert parse_sts_record([record]) == StsRecord(record_id)


class TestPolicyHostile:
    """RFC 8461 §3.2 policies that must be refused, each with its reason."""

    def test_fields_in_any_order(self) -> None:
        """RFC 8461 §3.2's ABNF fixes no order: ``version`` may come after ``mode``."""
        policy = parse_policy(b"mode: enforce\nversion: STSv1\nmx: a.example\nmax_age: 1\n")
        assert (policy.mode, policy.mx, policy.max_age) == ("enforce", ("a.example",), 1)

    @pytest.mark.parametrize(
        ("body", "why"),
        [
            (GOOD.replace(b"\r\nmode", b"\rmode"), "control character"),
            (GOOD.replace(b"enforce", b"enf\x00orce"), "control character"),
            (GOOD + b"x-comment: caf\xc3\xa9\n", "not ASCII"),
            (GOOD.replace(b"enforce", b"enforce\xff"), "not ASCII"),
            (GOOD.replace(b"version: STSv1\r\n", b""), "no 'version: STSv1'"),
            (GOOD.replace(b"STSv1", b"STSv2"), "no 'version: STSv1'"),
            (GOOD.replace(b"enforce", b"Enforce"), "mode"),
            (GOOD.replace(b"enforce", b"enforcing"), "mode"),
            (GOOD.replace(b"mode: enforce\r\n", b""), "no mode"),
            (GOOD + b"mode: none\n", "mode given twice"),
            (GOOD + b"max_age: 1\n", "max_age given twice"),
            (GOOD + b"version: STSv1\n", "version given twice"),
            (GOOD.replace(b"86400", b"99999999999"), "max_age"),
            (GOOD.replace(b"86400", b"-1"), "max_age"),
            (GOOD.replace(b"86400", b"1e5"), "max_age"),
            (GOOD.replace(b"86400", b"\xd9\xa1"), "not ASCII"),
            (GOOD.replace(b"max_age: 86400\r\n", b""), "no max_age"),
            (b"version: STSv1\nmode: testing\nmax_age: 5\n", "without mx"),
            (GOOD.replace(b"mx1.example.net", b"mx1.example.net/x"), "bad mx"),
            (GOOD.replace(b"mx1.example.net", b"*.*.example.net"), "bad mx"),
            (GOOD.replace(b"mx1.example.net", b"*."), "bad mx"),
            (GOOD.replace(b"mx1.example.net", b"mx..example.net"), "bad mx"),
            (GOOD.replace(b"mx: mx1", b"mx mx1"), "no ':'"),
            (GOOD.replace(b"mx: mx1.example.net", b"mx:"), "no value"),
            (GOOD.replace(b"mx: mx1", b"-x: mx1"), "bad key"),
            (b"", "empty"),
            (b"\n\r\n", "empty"),
            (b"<html>404</html>", "no ':'"),
            (b"hello: world\n", "no 'version: STSv1'"),
        ],
    )
    def test_refused(self, body: bytes, why: str) -> None:
        """CR alone, NUL, 8-bit, no or late version, mode typos, duplicates, max_age out of the
        ABNF, missing mx, bad patterns and lines: PolicyError saying why."""
        with pytest.raises(PolicyError, match=why):
            parse_policy(body)


class TestPolicy:
    """Valid policies and what they parse to."""

    def test_enforce_with_crlf(self) -> None:
        """The usual policy: mode, patterns lower-cased in order, max_age, LF-normalised text."""
        policy = parse_policy(GOOD.replace(b"mx1.example.net", b"MX1.Example.NET"))
        assert policy == Policy(
            "enforce",
            ("mx1.example.net", "*.example.org"),
            86400,
            "version: STSv1\nmode: enforce\nmx: MX1.Example.NET\nmx: *.example.org\n"
            "max_age: 86400\n",
        )

    def test_lf_unknown_keys_and_blank_lines(self) -> None:
        """LF line ends, an unknown key, blank lines and no final newline are accepted."""
        body = b"version: STSv1\n\nmode:testing\nx-note: hello there\nmx: a.example\t\nmax_age: 0"
        policy = parse_policy(body)
        assert (policy.mode, policy.mx, policy.max_age) == ("testing", ("a.example",), 0)
        assert policy_strings(policy) == [
            "version: STSv1",
            "mode:testing",
            "x-note: hello there",
            "mx: a.example",
            "max_age: 0",
        ]

    def test_huge_max_age_is_capped(self) -> None:
        """A ten-digit max_age is valid and capped at one year (31557600 s)."""
        assert parse_policy(GOOD.replace(b"86400", b"9999999999")).max_age == MAX_AGE_CAP
        assert parse_policy(GOOD.replace(b"86400", b"31557600")).max_age == MAX_AGE_CAP
        assert parse_policy(GOOD.replace(b"86400", b"0000000007")).max_age == 7

    def test_mode_none_needs_no_mx(self) -> None:
        """``mode: none`` (a domain leaving MTA-STS) is valid without mx lines."""
        assert parse_policy(b"version: STSv1\nmode: none\nmax_age: 60\n").mx == ()


class TestMxMatches:
    """RFC 8461 §4.1."""

    POLICY = parse_policy(GOOD)

    @pytest.mark.parametrize(
        ("host", "matches"),
        [
            ("mx1.example.net", True),
            ("MX1.EXAMPLE.NET.", True),
            ("mx2.example.net", False),
            ("a.mx1.example.net", False),
            ("mx.example.org", True),
            ("Mx.Example.Org.", True),
            ("example.org", False),
            ("a.b.example.org", False),
            (".example.org", False),
            ("mx.example.org..", False),
            ("", False),
            (".", False),
            ("xexample.org", False),
        ],
    )
    def test_patterns(self, host: str, matches: bool) -> None:
        """Exact names and ``*.`` with exactly one more leftmost label; case and one trailing
        dot do not matter."""
        assert mx_matches(self.POLICY, host) is matches


class TestPolicyDomain:
    """The names the cache accepts as file names."""

    @pytest.mark.parametrize(
        "domain",
        [
            "../etc",
            "..",
            ".",
            "",
            "/etc/passwd",
            "a/b.example",
            ".example.org",
            "example..org",
            "tlsrpt",
            "localhost",
            "ex ample.org",
            "exämple.org",
            "a\x00.example",
            "-a.example",
            "a-.example",
            "a" * 64 + ".example",
            ("a" * 60 + ".") * 5 + "example",
        ],
    )
    def test_hostile_names_refused(self, domain: str) -> None:
        """Path tricks, single labels (``tlsrpt`` is the spool directory), spaces, U-labels,
        NUL, bad hyphens and over-long labels or names are not policy domains."""
        assert policy_domain(domain) is None

    def test_normalised(self) -> None:
        """Upper case and one trailing dot are normalised away; A-labels are fine."""
        assert policy_domain("Mail.Example.ORG.") == "mail.example.org"
        assert policy_domain("xn--exmple-cua.org") == "xn--exmple-cua.org"


class TestPolicyCache:
    """One file per domain, atomic replacement, hostile files and names."""

    def test_store_then_load(self, tmp_path: Path) -> None:
        """A stored policy loads back with its id, times (fetched + max_age) and freshness."""
        cache = PolicyCache(str(tmp_path))
        policy = parse_policy(GOOD)
        assert cache.store("Example.NET.", "id1", policy, 1000.0)
        loaded = cache.load("example.net")
        assert loaded == CachedPolicy("id1", policy, 1000.0, 87400.0)
        assert loaded.fresh(87399.9) and not loaded.fresh(87400.0)
        assert sorted(os.listdir(tmp_path)) == ["example.net"]

    def test_file_format(self, tmp_path: Path) -> None:
        """The file is the documented text: format line, id, times, empty line, policy."""
        assert PolicyCache(str(tmp_path)).store("example.net", "abc", parse_policy(GOOD), 1000.0)
        assert (tmp_path / "example.net").read_bytes() == CACHED

    def test_absent(self, tmp_path: Path) -> None:
        """No file: None."""
        assert PolicyCache(str(tmp_path)).load("example.net") is None

    def test_replacing_keeps_one_file(self, tmp_path: Path) -> None:
        """A second store replaces the first; no temporary file is left behind."""
        cache = PolicyCache(str(tmp_path))
        assert cache.store("example.net", "id1", parse_policy(GOOD), 1.0)
        testing = parse_policy(GOOD.replace(b"enforce", b"testing"))
        assert cache.store("example.net", "id2", testing, 2.0)
        loaded = cache.load("example.net")
        assert loaded is not None and (loaded.id, loaded.policy.mode) == ("id2", "testing")
        assert os.listdir(tmp_path) == ["example.net"]

    @pytest.mark.parametrize("domain", ["../escape.example", "/tmp/x.example", "tlsrpt", ".a.b"])
    def test_hostile_domains_never_escape(self, tmp_path: Path, domain: str) -> None:
        """A hostile domain is neither stored nor loaded, and nothing is written anywhere."""
        directory = tmp_path / "cache"
        directory.mkdir()
        cache = PolicyCache(str(directory))
        assert cache.store(domain, "id1", parse_policy(GOOD), 1.0) is False
        assert cache.load(domain) is None
        assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache"]

    def test_bad_record_id_not_stored(self, tmp_path: Path) -> None:
        """An id that is not 1-32 alphanumerics is refused (it comes from DNS)."""
        cache = PolicyCache(str(tmp_path))
        assert cache.store("example.net", "bad id", parse_policy(GOOD), 1.0) is False
        assert os.listdir(tmp_path) == []

    @pytest.mark.parametrize("now", [float("nan"), float("inf"), -1.0, 1e13])
    def test_unreadable_times_not_stored(self, tmp_path: Path, now: float) -> None:
        """A time ``load`` would refuse (NaN, infinite, negative, absurd) is not written."""
        cache = PolicyCache(str(tmp_path))
        assert cache.store("example.net", "id1", parse_policy(GOOD), now) is False
        assert os.listdir(tmp_path) == []

    def test_non_ascii_policy_not_stored(self, tmp_path: Path) -> None:
        """A Policy built by hand with non-ASCII text: False, nothing written."""
        policy = parse_policy(GOOD)._replace(text="version: STSv1\nx: \u00e9\n")
        assert PolicyCache(str(tmp_path)).store("example.net", "id1", policy, 1.0) is False
        assert os.listdir(tmp_path) == []

    def test_unwritable_directory_is_false(self, tmp_path: Path) -> None:
        """A directory that does not exist: False, no exception."""
        cache = PolicyCache(str(tmp_path / "missing"))
        assert cache.store("example.net", "id1", parse_policy(GOOD), 1.0) is False

    @pytest.mark.parametrize(
        "content",
        [
            b"",
            CACHED[:40],
            CACHED[:-20],
            CACHED.replace(b"\n\n", b"\n"),
            CACHED.replace(b"cache 1", b"cache 2"),
            CACHED.replace(b"id abc", b"id a/b"),
            CACHED.replace(b"id abc", b"id "),
            CACHED.replace(b"id abc\n", b""),
            CACHED.replace(b"id abc\n", b"id abc\nid abd\n"),
            CACHED.replace(b"fetched 1000.000000", b"fetched nan"),
            CACHED.replace(b"fetched 1000.000000", b"fetched -1.0"),
            CACHED.replace(b"expires 87400.000000", b"expires inf"),
            CACHED.replace(b"expires 87400.000000", b"expires 1e999"),
            CACHED.replace(b"expires 87400.000000", b"expires 1_000"),
            CACHED.replace(b"expires 87400.000000", b"expires 9" * 40),
            CACHED.replace(b"expires 87400.000000", b"expires \xd9\xa1"),
            CACHED.replace(b"enforce", b"bogus"),
            CACHED.replace(b"enforce", b"enforce\xff"),
            CACHED.replace(b"\n", b"\r\n"),
            b"\x00" * 1000,
            CACHED + b"x-pad: " + b"a" * 200000 + b"\n",
        ],
    )
    def test_corrupt_files_load_as_none(self, tmp_path: Path, content: bytes) -> None:
        """Empty, truncated, another format, bad or duplicate ids, times that are not plain
        decimals (NaN, infinity, exponents, huge), invalid policies, CRLF, NUL and oversized
        files: None, no exception."""
        (tmp_path / "example.net").write_bytes(content)
        assert PolicyCache(str(tmp_path)).load("example.net") is None

    def test_symlink_and_fifo_not_followed(self, tmp_path: Path) -> None:
        """A symlink planted as a cache file is not followed; a FIFO does not block."""
        good = PolicyCache(str(tmp_path / "elsewhere"))
        (tmp_path / "elsewhere").mkdir()
        assert good.store("example.net", "id1", parse_policy(GOOD), 1.0)
        cache_dir = tmp_path / "cache"
        cache_dir.mkdir()
        (cache_dir / "example.net").symlink_to(tmp_path / "elsewhere" / "example.net")
        os.mkfifo(cache_dir / "example.org")
        cache = PolicyCache(str(cache_dir))
        assert cache.load("example.net") is None
        assert cache.load("example.org") is None

    def test_only_rename_makes_a_policy_visible(self, tmp_path: Path) -> None:
        """The policy is written under a dot-name and appears under its own name only whole:
        between the write and the rename, a reader still sees the old policy."""
        cache = PolicyCache(str(tmp_path))
        assert cache.store("example.net", "old", parse_policy(GOOD), 1.0)
        seen: list[str | None] = []
        real_rename = os.rename

        def watching_rename(source: str, target: str) -> None:
            assert os.path.basename(source).startswith(".tmp.")
            assert b"\nid new\n" in Path(source).read_bytes()  # complete already
            loaded = cache.load("example.net")
            seen.append(None if loaded is None else loaded.id)
            real_rename(source, target)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "rename", watching_rename)
            assert cache.store("example.net", "new", parse_policy(GOOD), 2.0)
        loaded = cache.load("example.net")
        assert seen == ["old"] and loaded is not None and loaded.id == "new"

    def test_concurrent_reader_never_sees_half_a_file(self, tmp_path: Path) -> None:
        """A reader process loading in a loop while this process stores 300 policies of two
        sizes sees only whole policies (never None, never a mix)."""
        cache = PolicyCache(str(tmp_path))
        small = parse_policy(GOOD)
        big = parse_policy(GOOD + b"".join(b"mx: mx%d.example.net\n" % i for i in range(2000)))
        assert cache.store("example.net", "small", small, 1.0)
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout is not None and reader.stdin is not None
        assert reader.stdout.readline() == "ready\n"
        for number in range(300):
            policy, name = (big, "big") if number % 2 else (small, "small")
            assert cache.store("example.net", name, policy, float(number))
        reader.stdin.close()  # the reader stops at EOF
        output = reader.stdout.read()
        reader.stdout.close()
        assert reader.wait(timeout=60) == 0, output
        counts = json.loads(output)
        assert counts["bad"] == 0 and counts["small"] + counts["big"] > 0, counts


READER = """
import json, sys, select
from mxf_remote.mtasts import PolicyCache
cache = PolicyCache(sys.argv[1])
counts = {"small": 0, "big": 0, "bad": 0}
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    loaded = cache.load("example.net")
    if loaded is None or len(loaded.policy.mx) != {"small": 2, "big": 2002}[loaded.id]:
        counts["bad"] += 1
    else:
        counts[loaded.id] += 1
print(json.dumps(counts))
"""


def test_a_cache_file_cannot_outlive_its_max_age(tmp_path: Path) -> None:
    """``expires`` beyond ``fetched + max_age`` (a file edited or planted) is cut back."""
    cache = PolicyCache(str(tmp_path))
    assert cache.store("example.net", "id1", parse_policy(GOOD), 1_000_000.0)
    path = tmp_path / "example.net"
    text = path.read_text().replace("expires 1086400.0", "expires 999999999999.0")
    assert "999999999999" in text
    path.write_text(text)
    loaded = cache.load("example.net")
    assert loaded is not None
    assert loaded.expires == 1_000_000.0 + 86400
