"""Source addresses and address families: the control files, the lookup, the plan and race.

``control/outgoingip``/``outgoingip6`` bind every connection of a family to a local
address; ``control/addressfamilies`` says per destination which families count and which
leads.  Hostile input first: malformed lines, wrong families, non-local addresses.  Then
the lookup rules, the plan, and the race on the virtual clock (``tests/scripted.py``):
a family left out is never asked about and never connected.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from pathlib import Path
from typing import Any

import pytest

from mxf_remote import report
from mxf_remote.addresses import (
    DEFAULT_FAMILIES,
    IPV4,
    IPV6,
    Sources,
    interleave_families_rfc8305,
)
from mxf_remote.control import (
    Control,
    ControlError,
    Route,
    check_sources_local,
    lookup_route,
    parse_address_families,
    read_control,
    read_sources,
)
from mxf_remote.destination import Destination, make_destination
from mxf_remote.dispatch import Dispatched, dispatch
from mxf_remote.explain import explain_failure
from mxf_remote.knowledge import Answer
from mxf_remote.plan import Attempt, Facts, Plan
from mxf_remote.prelude import Prepared, Stopped, prepare
from mxf_remote.race import AttemptFate, Fate, Lost, Won, connect_tcp, tcp_connector
from mxf_remote.timeline import dispatch_events
from tests.scripted import (
    NODATA,
    SMTP,
    ScriptedConnector,
    ScriptedLookup,
    VirtualClockLoop,
    control,
    mx,
    ok,
)

HOST = "example.test"


def home_with(tmp_path: Path, **files: str | bytes) -> Path:
    """A qmail home whose control directory holds ``files``."""
    (tmp_path / "control").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = tmp_path / "control" / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return tmp_path


def control_error(tmp_path: Path, **files: str | bytes) -> str:
    """The detail of the ControlError that reading these control files raises."""
    home = home_with(tmp_path, **files)
    with pytest.raises(ControlError) as caught:
        read_control(str(home), "/nonexistent", search_path="")
    return caught.value.detail()


def families_error(text: str) -> str:
    """The detail of the ControlError that parsing this addressfamilies text raises."""
    with pytest.raises(ControlError) as caught:
        parse_address_families(text.split("\n"))
    return caught.value.detail()


# ---------------------------------------------------------------------------------------
# control/outgoingip and control/outgoingip6


class TestSourceFilesHostile:
    """A bad outgoingip/outgoingip6 is a ControlError naming the file, line and problem."""

    @pytest.mark.parametrize(
        ("name", "text", "problem"),
        [
            ("outgoingip", "not-an-address\n", "'not-an-address' is not an IPv4 address"),
            ("outgoingip", "192.0.2.1/24\n", "'192.0.2.1/24' is not an IPv4 address"),
            ("outgoingip", " 192.0.2.1\n", "' 192.0.2.1' is not an IPv4 address"),
            ("outgoingip", "2001:db8::1\n", "2001:db8::1 is an IPv6 address, expected IPv4"),
            ("outgoingip6", "192.0.2.1\n", "192.0.2.1 is an IPv4 address, expected IPv6"),
            ("outgoingip6", "fe80::1%lo\n", "'fe80::1%lo' is not an IPv6 address"),
            ("outgoingip", "", "empty, expected an IPv4 address (0.0.0.0 for the system"),
            ("outgoingip6", "\n", "empty, expected an IPv6 address (:: for the system"),
        ],
    )
    def test_malformed_first_line(self, tmp_path: Path, name: str, text: str, problem: str) -> None:
        """Garbage, a prefix, a blank, the wrong family or nothing: line 1 is named."""
        detail = control_error(tmp_path, **{name: text})
        assert detail.startswith(f"control/{name} line 1: {problem}")

    def test_crlf(self, tmp_path: Path) -> None:
        """A CRLF file is an error, not an address with a CR."""
        detail = control_error(tmp_path, outgoingip=b"192.0.2.1\r\n")
        assert detail == (
            "control/outgoingip line 1: line ends in a carriage return (CRLF line ends?)"
        )

    def test_not_a_regular_file(self, tmp_path: Path) -> None:
        """A directory where the file should be is an error for the whole file."""
        home = home_with(tmp_path)
        (home / "control" / "outgoingip6").mkdir()
        with pytest.raises(ControlError) as caught:
            read_sources(str(home))
        assert caught.value.detail() == "control/outgoingip6: cannot read: Is a directory"

    def test_an_address_not_of_this_machine(self) -> None:
        """check_sources_local names the file and the address that is not ours."""
        with pytest.raises(ControlError) as caught:
            check_sources_local(Sources(ipv6="2001:db8::25"), frozenset({"::1", "127.0.0.1"}))
        assert caught.value.detail() == (
            "control/outgoingip6 line 1: 2001:db8::25 is not an address of this machine"
        )

    def test_a_non_local_address_stops_the_delivery(self, tmp_path: Path) -> None:
        """prepare turns it into ``ZUnable to read control files. (#4.3.0)`` plus the detail."""
        home = home_with(tmp_path, protocols="smtp:25:0:N:N:/bin/sh\n", outgoingip="192.0.2.7\n")
        stopped = prepare("[192.0.2.9]", {"MXF_QMAIL": str(home)}, beside="/nonexistent")
        assert isinstance(stopped, Stopped)
        assert stopped.report == report.control_error(
            "control/outgoingip line 1: 192.0.2.7 is not an address of this machine"
        )
        assert stopped.report.encode() == (
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/outgoingip line 1: 192.0.2.7 is not an address of this machine\n\0"
        )


class TestSourceFiles:
    """What a good outgoingip/outgoingip6 means."""

    def test_no_files_is_the_systems_choice(self, tmp_path: Path) -> None:
        """Neither file: nothing is bound."""
        assert read_sources(str(home_with(tmp_path))) == Sources(None, None)

    def test_unspecified_addresses_are_the_systems_choice(self, tmp_path: Path) -> None:
        """``0.0.0.0`` and ``::`` (also spelt ``0:0::0``) bind nothing, as notqmail's patch."""
        home = home_with(tmp_path, outgoingip="0.0.0.0\n", outgoingip6="0:0::0\n")
        assert read_sources(str(home)) == Sources(None, None)

    def test_first_line_canonical_later_lines_ignored(self, tmp_path: Path) -> None:
        """The first line, trailing blanks stripped, in canonical form; line 2 is not read."""
        home = home_with(tmp_path, outgoingip="127.0.0.1 \t\ngarbage\n", outgoingip6="0::0:1\n")
        assert read_sources(str(home)) == Sources("127.0.0.1", "::1")

    def test_local_addresses_pass_the_check(self, tmp_path: Path) -> None:
        """Addresses of this machine are accepted by prepare and given to the dispatch."""
        home = home_with(
            tmp_path,
            protocols="smtp:25:0:N:N:/bin/sh\n",
            outgoingip="127.0.0.1\n",
            outgoingip6="::1\n",
        )
        prepared = prepare("[192.0.2.9]", {"MXF_QMAIL": str(home)}, beside="/nonexistent")
        assert isinstance(prepared, Prepared)
        assert prepared.control.sources == Sources("127.0.0.1", "::1")

    def test_for_address_picks_the_family(self) -> None:
        """An IPv6 peer gets the IPv6 source, an IPv4 peer the IPv4 one."""
        sources = Sources("192.0.2.1", "2001:db8::1")
        assert sources.for_address("2001:db8::25") == "2001:db8::1"
        assert sources.for_address("198.51.100.25") == "192.0.2.1"
        assert Sources(ipv6="2001:db8::1").for_address("198.51.100.25") is None


# ---------------------------------------------------------------------------------------
# control/addressfamilies


class TestFamiliesFileHostile:
    """A malformed addressfamilies line is a ControlError naming file, line and problem."""

    @pytest.mark.parametrize(
        ("text", "detail"),
        [
            ("example.com:ipv5", "line 1: 'ipv5' is not ipv4 or ipv6 (in 'ipv5')"),
            ("# c\nexample.com:ipv4,ipv4", "line 2: ipv4 is listed twice (in 'ipv4,ipv4')"),
            ("a.example:ipv4,ipv6,ipv4", "line 1: ipv4 is listed twice (in 'ipv4,ipv6,ipv4')"),
            ("example.com:", "line 1: no families after the colon (expected ipv6,ipv4,"),
            ("example.com: ", "line 1: no families after the colon"),
            ("example.com:ipv4,", "line 1: an empty family is not ipv4 or ipv6 (in 'ipv4,')"),
            ("example.com:ipv4,,ipv6", "line 1: an empty family is not ipv4 or ipv6"),
            ("example.com", "line 1: 'example.com' has no colon (expected domain:families)"),
            ("\n\ngarbage!", "line 3: 'garbage!' has no colon"),
            ("exa mple.com:ipv4", "line 1: domain 'exa mple.com' contains blanks"),
            ("ex\x01.com:ipv4", "line 1: domain 'ex\\x01.com' contains blanks or control bytes"),
            ("example.com:ipv4 ipv6", "line 1: 'ipv4 ipv6' is not ipv4 or ipv6"),
            ("example.com:inet6", "line 1: 'inet6' is not ipv4 or ipv6"),
            (
                "Example.COM:ipv4\nexample.com:ipv6",
                "line 2: 'example.com' is listed twice (first on line 1)",
            ),
            (":ipv4\n:ipv6", "line 2: the default (empty domain) is listed twice"),
        ],
    )
    def test_malformed_line(self, text: str, detail: str) -> None:
        """Each bad line is named with its number and what is wrong with it."""
        assert families_error(text).startswith(f"control/addressfamilies {detail}")

    def test_crlf(self, tmp_path: Path) -> None:
        """CRLF line ends are named as such, with the line."""
        detail = control_error(tmp_path, addressfamilies=b"gmail.com:ipv4\r\n")
        assert detail == (
            "control/addressfamilies line 1: line ends in a carriage return (CRLF line ends?)"
        )

    def test_read_control_raises_for_a_bad_file(self, tmp_path: Path) -> None:
        """read_control reads addressfamilies and stops at its first bad line."""
        detail = control_error(tmp_path, addressfamilies="gmail.com:ipv4\n.google.com:ipv5\n")
        assert detail == "control/addressfamilies line 2: 'ipv5' is not ipv4 or ipv6 (in 'ipv5')"

    def test_prepare_reports_a_bad_file(self, tmp_path: Path) -> None:
        """Through prepare: the control-files Z with the line's detail, never a D."""
        home = home_with(tmp_path, protocols="smtp:25:0:N:N:/bin/sh\n", addressfamilies="x:4\n")
        stopped = prepare("example.org", {"MXF_QMAIL": str(home)}, beside="/nonexistent")
        assert isinstance(stopped, Stopped)
        assert stopped.report.encode() == (
            b"ZUnable to read control files. (#4.3.0)\n"
            b"control/addressfamilies line 1: '4' is not ipv4 or ipv6 (in '4')\n\0"
        )


class TestFamiliesFile:
    """Good addressfamilies lines."""

    def test_the_four_values(self) -> None:
        """Each allowed value, in order; case and blanks around commas do not matter."""
        table = parse_address_families(
            ["a:ipv6,ipv4", "b:ipv4,ipv6", "c:ipv4", "d:IPv6", "e: ipv4 , ipv6"]
        )
        assert table == {
            b"a": (IPV6, IPV4),
            b"b": (IPV4, IPV6),
            b"c": (IPV4,),
            b"d": (IPV6,),
            b"e": (IPV4, IPV6),
        }

    def test_comments_blank_lines_and_literal_keys(self) -> None:
        """``#`` lines and blank lines are skipped; the domain ends at the *last* colon."""
        table = parse_address_families(
            ["# rDNS only for IPv4", "", "[IPv6:2001:db8::1]:ipv6", ":ipv4"]
        )
        assert table == {b"[ipv6:2001:db8::1]": (IPV6,), b"": (IPV4,)}

    def test_no_file_is_the_default(self, tmp_path: Path) -> None:
        """Without the file the table is empty and every destination gets ipv6,ipv4."""
        ctl = read_control(str(home_with(tmp_path)), "/nonexistent", search_path="")
        assert dict(ctl.address_families) == {}
        assert make_destination(HOST, (SMTP,), {}, ctl.address_families).families == (
            DEFAULT_FAMILIES
        )


class TestFamiliesLookup:
    """The routes rules: exact host, then ``.parent`` suffixes longest first, then ``""``."""

    TABLE = parse_address_families(
        [
            "gmail.com:ipv4",
            ".google.com:ipv4",
            "v6.google.com:ipv6",
            ".mail.google.com:ipv4,ipv6",
            ":ipv6",
        ]
    )

    @pytest.mark.parametrize(
        ("host", "families"),
        [
            ("gmail.com", (IPV4,)),
            ("GMail.COM", (IPV4,)),
            ("aspmx.l.google.com", (IPV4,)),
            ("v6.google.com", (IPV6,)),
            ("x.mail.google.com", (IPV4, IPV6)),
            ("google.com", (IPV6,)),
            ("mail.gmail.com", (IPV6,)),
            ("example.org", (IPV6,)),
        ],
    )
    def test_lookup(self, host: str, families: tuple[str, ...]) -> None:
        """Exact beats suffix, the longer suffix beats the shorter, the default catches all."""
        assert make_destination(host, (SMTP,), {}, self.TABLE).families == families

    def test_without_a_default_line(self) -> None:
        """No line matches and no ``:families`` line: both families, IPv6 first."""
        table = parse_address_families(["gmail.com:ipv4"])
        assert make_destination("example.org", (SMTP,), {}, table).families == DEFAULT_FAMILIES

    def test_the_same_function_as_routes(self) -> None:
        """lookup_route serves both tables: a families table and a routes table."""
        assert lookup_route(self.TABLE, "a.google.com") == (IPV4,)
        routes = {b".example.org": Route("relay", None)}
        assert lookup_route(routes, "a.example.org") == Route("relay", None)

    def test_a_routed_host_keeps_its_policy(self) -> None:
        """The policy is looked up for the host, and goes with it to its relays."""
        destination = make_destination(
            "gmail.com", (SMTP,), {"smtp": {b"": Route("relay.example", None)}}, self.TABLE
        )
        assert destination.relays and destination.families == (IPV4,)


class TestLiterals:
    """A literal of a family the policy leaves out gets a Z naming the file."""

    @pytest.mark.parametrize(
        ("host", "policy", "family"),
        [
            ("[IPv6:2001:db8::1]", ":ipv4\n", "IPv6"),
            ("[2001:db8::1]", "[2001:db8::1]:ipv4\n", "IPv6"),
            ("192.0.2.9", ":ipv6\n", "IPv4"),
            ("[192.0.2.9]", ":ipv6,ipv6x\n", None),
        ],
    )
    def test_forbidden_literal(
        self, tmp_path: Path, host: str, policy: str, family: str | None
    ) -> None:
        """Its Z report, in qmail-remote's style; a malformed policy wins with its own Z."""
        home = home_with(tmp_path, protocols="smtp:25:0:N:N:/bin/sh\n", addressfamilies=policy)
        stopped = prepare(host, {"MXF_QMAIL": str(home)}, beside="/nonexistent")
        assert isinstance(stopped, Stopped)
        if family is None:
            assert stopped.report.text.startswith(b"Unable to read control files. (#4.3.0)\n")
            return
        assert stopped.report.encode() == (
            b"ZSorry, control/addressfamilies does not allow "
            + family.encode()
            + b" for this host. (#4.3.0)\n\0"
        )
        assert "control/addressfamilies" in stopped.why

    def test_allowed_literal(self, tmp_path: Path) -> None:
        """A literal of an allowed family goes on as before."""
        home = home_with(tmp_path, protocols="smtp:25:0:N:N:/bin/sh\n", addressfamilies=":ipv4\n")
        prepared = prepare("[192.0.2.9]", {"MXF_QMAIL": str(home)}, beside="/nonexistent")
        assert isinstance(prepared, Prepared)
        assert prepared.destination.families == (IPV4,)

    def test_routed_literal_relays(self) -> None:
        """Every literal relay forbidden: stopped; one allowed: the other is not planned."""
        qmtp = SMTP._replace(service="qmtp", default_port=209)
        routes: dict[str, dict[bytes, Route | None]] = {
            "qmtp": {b"": Route("[2001:db8::25]", None)},
            "smtp": {b"": Route("192.0.2.25", None)},
        }
        only6 = make_destination(HOST, (qmtp, SMTP), routes, {b"": (IPV6,)})
        assert only6.forbidden_literal is None
        plan = plan_of(only6)
        assert [(a.address, a.protocol.service) for a in plan.attempts] == [
            ("2001:db8::25", "qmtp")
        ]
        routes["qmtp"] = {b"": Route("[192.0.2.26]", None)}
        assert make_destination(HOST, (qmtp, SMTP), routes, {b"": (IPV6,)}).forbidden_literal == (
            "192.0.2.26"
        )


def plan_of(destination: Destination) -> Plan:
    """The plan for a destination that needs no DNS."""
    from mxf_remote.knowledge import Knowledge
    from mxf_remote.plan import build_plan

    return build_plan(destination, Knowledge(), frozenset())


# ---------------------------------------------------------------------------------------
# The interleave, the plan and the race on the virtual clock


class TestInterleave:
    """RFC 8305's interleave with the policy's order and families."""

    ADDRESSES = ("192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2", "2001:db8::3")

    def test_default_leads_with_ipv6(self) -> None:
        """Without a policy: IPv6, IPv4, IPv6, IPv4, IPv6."""
        assert interleave_families_rfc8305(list(self.ADDRESSES)) == [
            "2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "2001:db8::3",
        ]  # fmt: skip

    def test_ipv4_first(self) -> None:
        """``ipv4,ipv6``: IPv4 leads."""
        assert interleave_families_rfc8305(list(self.ADDRESSES), (IPV4, IPV6)) == [
            "192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2", "2001:db8::3",
        ]  # fmt: skip

    def test_one_family_drops_the_other(self) -> None:
        """``ipv4`` alone keeps only IPv4, ``ipv6`` alone only IPv6."""
        addresses = list(self.ADDRESSES)
        assert interleave_families_rfc8305(addresses, (IPV4,)) == ["192.0.2.1", "192.0.2.2"]
        assert interleave_families_rfc8305(addresses, (IPV6,)) == addresses[2:]


DUAL_STACK = {
    (HOST, "MX"): (0.0, mx((10, "mx1"), (20, "mx2"))),
    ("mx1", "A"): (0.010, ok("192.0.2.1")),
    ("mx1", "AAAA"): (0.020, ok("2001:db8::1")),
    ("mx2", "A"): (0.010, ok("192.0.2.2")),
    ("mx2", "AAAA"): (0.010, ok("2001:db8::2")),
}


def race(
    families: tuple[str, ...],
    connector: ScriptedConnector,
    dns: dict[tuple[str, str], tuple[float, Answer[Any]]] | None = None,
    ctl: Control | None = None,
) -> tuple[Dispatched[Any], ScriptedLookup]:
    """Resolution and race for HOST under ``families`` on the virtual clock."""
    ctl = ctl or control()
    destination = Destination(HOST, ctl.usable_protocols, families=families)
    lookup = ScriptedLookup(DUAL_STACK if dns is None else dns)
    loop = VirtualClockLoop()
    try:
        result = loop.run_until_complete(
            dispatch(destination, ctl, lookup, local=frozenset(), connect=connector)
        )
    finally:
        loop.close()
    return result, lookup


class TestRace:
    """The policy in the race: what is asked, what is connected, which family leads."""

    def test_ipv4_only_asks_no_aaaa_and_connects_only_ipv4(self) -> None:
        """``ipv4`` for a dual-stack MX: no AAAA question at all, only IPv4 attempts."""
        connector = ScriptedConnector({("192.0.2.2", 25): (0.1, "ok")})
        result, lookup = race((IPV4,), connector)
        assert {rtype for _, _, rtype in lookup.asked} == {"MX", "SRV", "A"}
        assert [name for _, name, rtype in lookup.asked if rtype == "A"] == [HOST, "mx1", "mx2"]
        assert [address for _, address, _ in connector.starts] == ["192.0.2.1", "192.0.2.2"]
        assert isinstance(result.outcome, Won)
        assert result.outcome.attempt.address == "192.0.2.2"

    def test_ipv4_only_needs_no_resolution_delay(self) -> None:
        """With no AAAA asked, the A answer at 10 ms is used at once, not after 50 ms."""
        connector = ScriptedConnector({("192.0.2.1", 25): (0.1, "ok")})
        race((IPV4,), connector)
        assert connector.starts[0] == (0.01, "192.0.2.1", 25)

    def test_ipv4_first_leads_with_ipv4(self) -> None:
        """``ipv4,ipv6``: mx1's IPv4 starts first, its IPv6 a connection delay later."""
        connector = ScriptedConnector({("2001:db8::2", 25): (0.1, "ok")})
        race((IPV4, IPV6), connector)
        assert [address for _, address, _ in connector.starts] == [
            "192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2",
        ]  # fmt: skip

    @pytest.mark.parametrize(
        ("a_at", "first_start"),
        [(0.030, (0.03, "192.0.2.1", 25)), (0.100, (0.06, "2001:db8::1", 25))],
    )
    def test_ipv4_first_holds_an_early_aaaa(
        self, a_at: float, first_start: tuple[float, str, int]
    ) -> None:
        """``ipv4,ipv6`` swaps the Resolution Delay: AAAA at 10 ms waits for A up to 50 ms."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx1"))),
            ("mx1", "AAAA"): (0.010, ok("2001:db8::1")),
            ("mx1", "A"): (a_at, ok("192.0.2.1")),
        }
        connector = ScriptedConnector({("192.0.2.1", 25): (0.0, "ok"),
                                       ("2001:db8::1", 25): (0.0, "ok")})  # fmt: skip
        result, _ = race((IPV4, IPV6), connector, dns)
        assert connector.starts[0] == first_start
        assert [name for name, _ in result.delays_over] == (["mx1"] if a_at > 0.06 else [])

    def test_default_leads_with_ipv6(self) -> None:
        """No policy: mx1's IPv6 leads, as before (its A is held for the AAAA)."""
        connector = ScriptedConnector({("2001:db8::1", 25): (0.1, "ok")})
        race(DEFAULT_FAMILIES, connector)
        assert connector.starts[0] == (0.02, "2001:db8::1", 25)

    def test_ipv6_only_asks_no_a_and_connects_only_ipv6(self) -> None:
        """``ipv6`` alone: no A question, only IPv6 attempts."""
        connector = ScriptedConnector()
        result, lookup = race((IPV6,), connector, ctl=control(timeout=1.0))
        assert {rtype for _, _, rtype in lookup.asked} == {"MX", "SRV", "AAAA"}
        assert [address for _, address, _ in connector.starts] == ["2001:db8::1", "2001:db8::2"]
        assert isinstance(result.outcome, Lost)

    def test_a_dotted_quad_exchanger_is_not_connected_under_ipv6(self) -> None:
        """An MX target spelt as an IPv4 address (a qmail quirk) is IPv4: not under ``ipv6``."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "192.0.2.9"), (20, "mx2"))),
            ("mx2", "AAAA"): (0.0, ok("2001:db8::2")),
        }
        connector = ScriptedConnector({("2001:db8::2", 25): (0.0, "ok")})
        result, _ = race((IPV6,), connector, dns)
        assert [address for _, address, _ in connector.starts] == ["2001:db8::2"]
        assert isinstance(result.outcome, Won)

    def test_only_addresses_of_the_other_family(self) -> None:
        """``ipv4`` and an IPv6-only MX: no attempt, and qmail-remote's own report for an
        exchanger without an A record (what C qmail-remote, IPv4 only, says too)."""
        dns = {
            (HOST, "MX"): (0.0, mx((10, "mx6"))),
            ("mx6", "AAAA"): (0.0, ok("2001:db8::6")),
        }
        connector = ScriptedConnector()
        result, lookup = race((IPV4,), connector, dns)
        assert connector.starts == []
        assert ("mx6", "AAAA") not in {(name, rtype) for _, name, rtype in lookup.asked}
        assert isinstance(result.outcome, Lost)
        assert explain_failure(result.plan, result.outcome) == report.NO_EXCHANGER_ADDRESS

    def test_an_ipv4_only_implicit_mx(self) -> None:
        """No MX: the host's own A is asked, its AAAA is not, and IPv4 is connected."""
        dns = {
            (HOST, "MX"): (0.0, NODATA),
            (HOST, "A"): (0.0, ok("192.0.2.30")),
            (HOST, "AAAA"): (0.0, ok("2001:db8::30")),
        }
        connector = ScriptedConnector({("192.0.2.30", 25): (0.0, "ok")})
        result, lookup = race((IPV4,), connector, dns)
        assert (HOST, "AAAA") not in {(name, rtype) for _, name, rtype in lookup.asked}
        assert isinstance(result.outcome, Won)
        assert result.outcome.attempt.address == "192.0.2.30"


# ---------------------------------------------------------------------------------------
# Binding, and what the trace shows


class TestTrace:
    """The ``attempt`` event names the source address when the attempt was bound."""

    def test_source_address_only_for_the_bound_family(self) -> None:
        """An IPv4 attempt under ``outgoingip`` has it; an IPv6 one without outgoingip6 not."""
        ipv4 = Attempt(SMTP, "mx1", "192.0.2.1", 25, "mx", 10)
        ipv6 = Attempt(SMTP, "mx1", "2001:db8::1", 25, "mx", 10)
        fates = (
            AttemptFate(ipv6, 0.0, 5.0, Fate.FAILED, "ECONNREFUSED"),
            AttemptFate(ipv4, 5.0, 9.0, Fate.FAILED, "ECONNREFUSED"),
        )
        dispatched: Dispatched[Any] = Dispatched(
            Lost(fates), Plan((), Facts("dns", HOST)), sources=Sources(ipv4="192.0.2.200")
        )
        starts = [e for e in dispatch_events(dispatched) if e["event"] == "attempt"]
        assert [e.get("source_address") for e in starts] == [None, "192.0.2.200"]
        assert "source_address" not in starts[0]


class TestConnect:
    """connect_tcp binds before it connects; a bind that fails fails the attempt."""

    def test_bound_to_the_source(self) -> None:
        """The connection's local address is the source given (127.0.0.1 is always ours)."""
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            attempt = Attempt(SMTP, "localhost", "127.0.0.1", port, "literal", 0, named=False)
            connect = tcp_connector(Sources(ipv4="127.0.0.1", ipv6="::1"))

            async def connected() -> socket.socket:
                return await connect(attempt)

            sock = asyncio.run(connected())
            try:
                peer, _ = server.accept()
                with peer:
                    assert sock.getsockname()[0] == "127.0.0.1"
                    assert peer.getpeername() == sock.getsockname()
            finally:
                sock.close()

    def test_a_source_that_is_not_ours_fails_the_attempt(self) -> None:
        """EADDRNOTAVAIL from bind is the attempt's failure; the socket is closed."""
        attempt = Attempt(SMTP, "x", "127.0.0.1", 9, "literal", 0, named=False)
        with pytest.raises(OSError) as caught:
            asyncio.run(connect_tcp(attempt, "192.0.2.254"))
        assert caught.value.errno == errno.EADDRNOTAVAIL
