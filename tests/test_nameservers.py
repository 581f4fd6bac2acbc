"""Tests for mxf_remote/nameservers.py: which DNS servers c-ares is told to ask (spec §3)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mxf_remote import nameservers
from mxf_remote.nameservers import (
    configured_nameservers,
    nameservers_from_env,
    nameservers_from_resolv_conf,
    parse_nameserver,
)

DEFAULT = ["127.0.0.1:53"]


class TestParseNameserver:
    """One server, in c-ares' ``ip:port`` / ``[ipv6]:port`` form, port 53 by default."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("192.0.2.1", "192.0.2.1:53"),
            ("192.0.2.1:5353", "192.0.2.1:5353"),
            ("192.0.2.1:1", "192.0.2.1:1"),
            ("192.0.2.1:65535", "192.0.2.1:65535"),
            ("[2001:db8::1]:5353", "[2001:db8::1]:5353"),
            ("[2001:db8::1]", "[2001:db8::1]:53"),
            ("[::1]:53", "[::1]:53"),
            ("2001:db8::1", "[2001:db8::1]:53"),
            ("::1", "[::1]:53"),
            ("2001:DB8:0:0:0:0:0:1", "[2001:db8::1]:53"),
            ("[2001:0db8::0001]:53", "[2001:db8::1]:53"),
            ("::ffff:192.0.2.1", "[::ffff:192.0.2.1]:53"),
            ("[::ffff:192.0.2.1]:5353", "[::ffff:192.0.2.1]:5353"),
            ("  192.0.2.1  ", "192.0.2.1:53"),
            ("\t[::1]:5353\n", "[::1]:5353"),
        ],
    )
    def test_accepted(self, text: str, expected: str) -> None:
        """An address with or without a port comes out canonical, port 53 when none is given."""
        assert parse_nameserver(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "192.0.2.1:0",
            "192.0.2.1:65536",
            "192.0.2.1:99999999999999999999",
            "192.0.2.1:abc",
            "192.0.2.1:",
            "192.0.2.1:-1",
            "192.0.2.1:+53",
            "192.0.2.1: 53",
            "[::1]:0",
            "[::1]:65536",
            "[::1]:abc",
            "[::1]:",
            "[::1]:53:53",
        ],
    )
    def test_bad_ports(self, text: str) -> None:
        """Port 0, above 65535, not a number, or empty after the colon: ValueError."""
        with pytest.raises(ValueError, match="has a bad port"):
            parse_nameserver(text)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "   ",
            "ns.example.com",
            "ns.example.com:53",
            "192.0.2",
            "192.0.2.256",
            "192.0.2.1 :53",
            "192.0.2.1.5",
            "[192.0.2.1]:53",
            "[]:53",
            "[::1]x",
            "[::1] :53",
            "[nonsense]:53",
            "fe80::1%eth0",
            "2001:db8::1::2",
            "::1 ::2",
        ],
    )
    def test_garbage(self, text: str) -> None:
        """Names, bad addresses, IPv4 in brackets, junk after ``]``: ValueError naming it."""
        with pytest.raises(ValueError, match="is not an address") as info:
            parse_nameserver(text)
        assert repr(text.strip()) in str(info.value)

    @pytest.mark.parametrize("text", ["[::1", "[::1:53", "[2001:db8::1:5353"])
    def test_an_unclosed_bracket_is_garbage(self, text: str) -> None:
        """``[`` without ``]``: ValueError, never some other server."""
        with pytest.raises(ValueError, match="is not an address"):
            parse_nameserver(text)

    @pytest.mark.parametrize(
        "text", ["192.0.2.1:\u0665\u0663", "192.0.2.1:\u00b2", "[::1]:\uff15\uff13"]
    )
    def test_a_port_in_non_ascii_digits_is_bad(self, text: str) -> None:
        """A port spelt in Arabic-Indic, superscript or full-width digits: a bad port."""
        with pytest.raises(ValueError, match="has a bad port"):
            parse_nameserver(text)


class TestNameserversFromEnv:
    """``MXF_NAMESERVERS``: comma-separated servers."""

    def test_several_servers_in_order(self) -> None:
        """``ip``, ``ip:port`` and ``[v6]:port``, each normalised, order kept."""
        value = "192.0.2.1,192.0.2.2:5353,[2001:db8::1]:5353,::1"
        assert nameservers_from_env(value) == [
            "192.0.2.1:53",
            "192.0.2.2:5353",
            "[2001:db8::1]:5353",
            "[::1]:53",
        ]

    def test_empty_entries_are_skipped(self) -> None:
        """Empty and blank entries between commas, and trailing commas, are ignored."""
        assert nameservers_from_env(",192.0.2.1,, ,[::1]:5353,") == ["192.0.2.1:53", "[::1]:5353"]

    @pytest.mark.parametrize("value", ["", " ", ",", ", ,,"])
    def test_an_all_empty_value_is_an_error(self, value: str) -> None:
        """Nothing but commas and blanks: ValueError, not an empty list."""
        with pytest.raises(ValueError, match="empty"):
            nameservers_from_env(value)

    def test_the_bad_entry_is_named(self) -> None:
        """One bad entry among good ones: ValueError naming that entry."""
        with pytest.raises(ValueError, match=re.escape("'ns.example.com'")):
            nameservers_from_env("192.0.2.1,ns.example.com,[::1]")


class TestConfiguredNameservers:
    """``MXF_NAMESERVERS`` wins over resolv.conf; its errors name it."""

    def test_the_environment_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With MXF_NAMESERVERS set, resolv.conf is not even read."""

        def no_resolv_conf(path: str = "") -> list[str]:
            raise AssertionError("resolv.conf read although MXF_NAMESERVERS is set")

        monkeypatch.setattr(nameservers, "nameservers_from_resolv_conf", no_resolv_conf)
        environ = {"MXF_NAMESERVERS": "192.0.2.9:5353", "OTHER": "x"}
        assert configured_nameservers(environ) == ["192.0.2.9:5353"]

    def test_without_it_resolv_conf_is_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """MXF_NAMESERVERS unset: the servers resolv.conf gives."""
        monkeypatch.setattr(nameservers, "nameservers_from_resolv_conf", lambda: ["192.0.2.8:53"])
        assert configured_nameservers({"PATH": "/bin"}) == ["192.0.2.8:53"]

    @pytest.mark.parametrize(
        ("value", "named"),
        [("bogus", "'bogus'"), ("192.0.2.1:0", "bad port"), ("", "empty"), (" , ", "empty")],
    )
    def test_a_bad_value_names_the_variable(
        self, value: str, named: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Malformed or empty MXF_NAMESERVERS: ValueError starting with the variable's name."""
        monkeypatch.setattr(nameservers, "nameservers_from_resolv_conf", lambda: DEFAULT)
        with pytest.raises(ValueError, match=named) as info:
            configured_nameservers({"MXF_NAMESERVERS": value})
        assert str(info.value).startswith("MXF_NAMESERVERS: ")
        assert info.value.__cause__ is None


def resolv_conf(tmp_path: Path, text: str | bytes) -> str:
    """A resolv.conf with ``text`` in ``tmp_path``; its path."""
    path = tmp_path / "resolv.conf"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


class TestResolvConf:
    """The ``nameserver`` lines of resolv.conf, bad ones skipped, as libc does."""

    def test_nameserver_lines_in_order(self, tmp_path: Path) -> None:
        """Every nameserver line, in file order, IPv4 and IPv6."""
        path = resolv_conf(
            tmp_path, "nameserver 192.0.2.1\nnameserver 2001:db8::53\nnameserver ::1\n"
        )
        assert nameservers_from_resolv_conf(path) == [
            "192.0.2.1:53",
            "[2001:db8::53]:53",
            "[::1]:53",
        ]

    def test_comments_are_ignored(self, tmp_path: Path) -> None:
        """``#`` and ``;`` comment lines, and comments after a server, are ignored."""
        text = (
            "# nameserver 192.0.2.66\n"
            "; nameserver 192.0.2.67\n"
            "   # nameserver 192.0.2.68\n"
            "nameserver 192.0.2.1 # the first\n"
            "nameserver 192.0.2.2; the second\n"
            "nameserver 192.0.2.3#tight\n"
        )
        path = resolv_conf(tmp_path, text)
        assert nameservers_from_resolv_conf(path) == [
            "192.0.2.1:53",
            "192.0.2.2:53",
            "192.0.2.3:53",
        ]

    def test_options_and_other_lines_are_ignored(self, tmp_path: Path) -> None:
        """search, domain, options, sortlist: ignored; only the servers count."""
        text = (
            "search example.org example.net\n"
            "domain example.org\n"
            "options ndots:2 timeout:1 attempts:5 rotate\n"
            "sortlist 192.0.2.0/255.255.255.0\n"
            "nameserver 192.0.2.1\n"
        )
        assert nameservers_from_resolv_conf(resolv_conf(tmp_path, text)) == ["192.0.2.1:53"]

    def test_bad_lines_are_skipped(self, tmp_path: Path) -> None:
        """A name, junk, a bare keyword, an odd keyword case: skipped; good lines kept."""
        text = (
            "nameserver ns.example.org\n"
            "nameserver\n"
            "nameserver 192.0.2.999\n"
            "NAMESERVER 192.0.2.7\n"
            "nameserver192.0.2.8\n"
            "nameserver 192.0.2.1\n"
            "garbage line here\n"
            "\n"
            "\tnameserver\t2001:db8::1\n"
        )
        path = resolv_conf(tmp_path, text)
        assert nameservers_from_resolv_conf(path) == ["192.0.2.1:53", "[2001:db8::1]:53"]

    def test_bytes_that_are_not_utf8_do_not_stop_the_reading(self, tmp_path: Path) -> None:
        """A Latin-1 comment before a server: the server is still found."""
        path = resolv_conf(tmp_path, b"# caf\xe9 \xff\xfe\nnameserver 192.0.2.1\n")
        assert nameservers_from_resolv_conf(path) == ["192.0.2.1:53"]

    @pytest.mark.parametrize(
        "text",
        ["", "\n\n", "# only a comment\n", "search example.org\n", "nameserver bogus\n"],
    )
    def test_no_server_means_this_machine(self, tmp_path: Path, text: str) -> None:
        """No usable nameserver line: libc's default, 127.0.0.1 port 53."""
        assert nameservers_from_resolv_conf(resolv_conf(tmp_path, text)) == DEFAULT

    def test_a_missing_file_means_this_machine(self, tmp_path: Path) -> None:
        """No resolv.conf at all: 127.0.0.1 port 53."""
        assert nameservers_from_resolv_conf(str(tmp_path / "absent")) == DEFAULT

    def test_an_unreadable_path_means_this_machine(self, tmp_path: Path) -> None:
        """A directory where the file should be: 127.0.0.1 port 53, no exception."""
        assert nameservers_from_resolv_conf(str(tmp_path)) == DEFAULT
