"""Tests for mxf_remote/explain.py: which report a failed race gets (spec §3's outcome table).

Every expected text is spec §3's, byte for byte, with the single NUL of spec §7 added.
"""

from __future__ import annotations

import pytest

from mxf_remote.control import Protocol, Route, parse_routes
from mxf_remote.destination import make_destination
from mxf_remote.explain import explain_failure
from mxf_remote.knowledge import MX, SRV, Answer, Knowledge, Status, dns_name
from mxf_remote.plan import Attempt, build_plan
from mxf_remote.race import AttemptFate, Fate, Lost

# spec §3, the outcome table (bytes as printed, NUL-terminated)
DNS_TEMPORARY = b"ZSorry, I couldn't find any host by that name. (#4.1.2)\n\0"
NO_EXCHANGER_ADDRESS = b"DSorry, I couldn't find a mail exchanger or IP address. (#5.4.4)\n\0"
WE_ARE_BEST_MX = (
    b"DSorry. Although I'm listed as a best-preference MX or A for that host,\n"
    b"it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n\0"
)
NO_CONNECTION = b"ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n\0"


def no_such_host(host: bytes) -> bytes:
    """spec §3: ``DSorry, I couldn't find any host named HOST. (#5.1.2)``."""
    return b"DSorry, I couldn't find any host named " + host + b". (#5.1.2)\n\0"


def null_mx(host: bytes) -> bytes:
    """spec §3: ``DSorry, HOST does not accept mail (null MX). (#5.1.10)``."""
    return b"DSorry, " + host + b" does not accept mail (null MX). (#5.1.10)\n\0"


def protocol(service: str, port: int, mxps: int) -> Protocol:
    """An installed protocol."""
    return Protocol(service, port, mxps, False, False, service, program_path=f"/bin/{service}")


QMTPS = protocol("qmtps", 6209, -1)
QMTP = protocol("qmtp", 209, 1)
SMTP = protocol("smtp", 25, 0)
DEFAULT = (QMTPS, QMTP, SMTP)

US = "198.51.100.2"
LOCAL = frozenset({"0.0.0.0", "::", "127.0.0.1", "::1", US})

PENDING: Answer[str] = Answer(Status.PENDING)
NXDOMAIN: Answer[str] = Answer(Status.NXDOMAIN)
NODATA: Answer[str] = Answer(Status.NODATA)
TEMPFAIL: Answer[str] = Answer(Status.TEMPFAIL)

HostValue = list[str] | tuple[Answer[str], Answer[str]]


def v4(*addresses: str) -> Answer[str]:
    """An OK answer with these addresses."""
    return Answer(Status.OK, addresses)


def knowledge(
    *,
    mx: Answer[MX] | None,
    srv: dict[str, Answer[SRV]] | None = None,
    hosts: dict[str, HostValue] | None = None,
) -> Knowledge:
    """Knowledge after resolution: SRV NXDOMAIN unless given, hosts as (AAAA, A) or lists."""
    result = Knowledge(mx=mx)
    result.srv = {p.service: Answer(Status.NXDOMAIN) for p in DEFAULT}
    result.srv.update(srv or {})
    for name, value in (hosts or {}).items():
        if isinstance(value, list):
            ipv6 = tuple(a for a in value if ":" in a)
            ipv4 = tuple(a for a in value if ":" not in a)
            pair = (
                Answer(Status.OK, ipv6) if ipv6 else NODATA,
                Answer(Status.OK, ipv4) if ipv4 else NODATA,
            )
        else:
            pair = value
        result.ipv6[dns_name(name)], result.ipv4[dns_name(name)] = pair
    return result


def mx_answer(*records: MX) -> Answer[MX]:
    """An OK MX answer."""
    return Answer(Status.OK, records)


def explain(
    host: str,
    known: Knowledge,
    *,
    started: frozenset[tuple[str, int]] = frozenset(),
    protocols: tuple[Protocol, ...] = DEFAULT,
    routes: dict[str, dict[bytes, Route | None]] | None = None,
) -> bytes:
    """The report bytes for a race on ``host`` that started the ``started`` attempts."""
    destination = make_destination(host, protocols, routes or {})
    plan = build_plan(destination, known, LOCAL)
    if not started:
        assert plan.attempts == (), "the race would have started an attempt"
    return explain_failure(plan, lost(started)).encode()


def lost(started: frozenset[tuple[str, int]] = frozenset()) -> Lost:
    """A lost race that made attempts to ``started``, each refused."""
    return Lost(
        tuple(
            AttemptFate(Attempt(SMTP, address, address, port, "mx", 0), 0.0, 1.0, Fate.FAILED)
            for address, port in sorted(started)
        )
    )


class TestMxTemporary:
    """MX lookup fails temporarily: #4.1.2."""

    @pytest.mark.parametrize("mx_status", [Status.TEMPFAIL, Status.PENDING])
    def test_mx_tempfail(self, mx_status: Status) -> None:
        """A temporary (or never answered) MX lookup is #4.1.2, whatever the host's A says."""
        known = knowledge(mx=Answer(mx_status), hosts={"example.com": ["192.0.2.5"]})
        assert explain("example.com", known) == DNS_TEMPORARY

    def test_mx_tempfail_with_dead_srv_target(self) -> None:
        """MX tempfail with SRV targets that had no address is still #4.1.2."""
        known = knowledge(
            mx=Answer(Status.TEMPFAIL),
            srv={"smtp": Answer(Status.OK, (SRV(0, 0, 25, "s.example"),))},
            hosts={"s.example": (NXDOMAIN, NXDOMAIN)},
        )
        assert explain("example.com", known) == DNS_TEMPORARY


class TestNoSuchHost:
    """No MX, no SRV, no A/AAAA, all hard: #5.1.2 naming the host."""

    @pytest.mark.parametrize("mx_status", [Status.NXDOMAIN, Status.NODATA, Status.OK])
    @pytest.mark.parametrize(
        "host_answers",
        [(NXDOMAIN, NXDOMAIN), (NODATA, NODATA), (NODATA, NXDOMAIN), (NXDOMAIN, NODATA)],
    )
    def test_hard(self, mx_status: Status, host_answers: tuple[Answer[str], Answer[str]]) -> None:
        """Every hard combination gives #5.1.2 with the host's name."""
        known = knowledge(mx=Answer(mx_status), hosts={"example.com": host_answers})
        assert explain("example.com", known) == no_such_host(b"example.com")

    def test_host_as_given(self) -> None:
        """The host is printed as given (case kept), not as looked up."""
        known = knowledge(mx=Answer(Status.NXDOMAIN), hosts={"example.com": (NODATA, NODATA)})
        assert explain("Example.COM", known) == no_such_host(b"Example.COM")

    def test_host_sanitised(self) -> None:
        """Bytes outside 33..126 in the host print as ``?``, one per byte."""
        host = "exa mple\x01\x7f.\u00e9x"
        known = knowledge(mx=Answer(Status.NXDOMAIN), hosts={host: (NXDOMAIN, NXDOMAIN)})
        assert explain(host, known) == no_such_host(b"exa?mple??.??x")

    def test_undecodable_host_byte(self) -> None:
        """A non-UTF-8 byte from argv (surrogate-escaped) prints as one ``?``."""
        host = "caf\udce9.example"
        known = knowledge(mx=Answer(Status.NXDOMAIN), hosts={host: (NXDOMAIN, NXDOMAIN)})
        assert explain(host, known) == no_such_host(b"caf?.example")

    def test_relay_named_when_routed(self) -> None:
        """When a route applied, the report names the relay, as written in the routes file."""
        routes = {"smtp": parse_routes(["example.com:Relay.Example"], "smtproutes")}
        known = knowledge(mx=None, hosts={"relay.example": (NXDOMAIN, NODATA)})
        assert explain("example.com", known, routes=routes) == no_such_host(b"Relay.Example")

    def test_first_relay_named(self) -> None:
        """With several routed protocols all failing hard, the first relay is named."""
        routes = {
            "qmtp": parse_routes([":q-relay.example"], "qmtproutes"),
            "smtp": parse_routes([":s-relay.example"], "smtproutes"),
        }
        known = knowledge(
            mx=None,
            hosts={"q-relay.example": (NXDOMAIN, NXDOMAIN), "s-relay.example": (NODATA, NODATA)},
        )
        assert explain("example.com", known, routes=routes) == no_such_host(b"q-relay.example")

    def test_relay_tempfail(self) -> None:
        """A relay whose lookup failed temporarily is #4.1.2."""
        routes = {"smtp": parse_routes([":relay.example"], "smtproutes")}
        known = knowledge(mx=None, hosts={"relay.example": (NXDOMAIN, TEMPFAIL)})
        assert explain("example.com", known, routes=routes) == DNS_TEMPORARY

    def test_one_relay_tempfail_among_hard(self) -> None:
        """Any temporary relay failure makes the report temporary."""
        routes = {
            "qmtp": parse_routes([":q-relay.example"], "qmtproutes"),
            "smtp": parse_routes([":s-relay.example"], "smtproutes"),
        }
        known = knowledge(
            mx=None,
            hosts={"q-relay.example": (NXDOMAIN, NXDOMAIN), "s-relay.example": (TEMPFAIL, NODATA)},
        )
        assert explain("example.com", known, routes=routes) == DNS_TEMPORARY

    @pytest.mark.parametrize(
        "host_answers", [(NXDOMAIN, TEMPFAIL), (TEMPFAIL, NODATA), (TEMPFAIL, TEMPFAIL)]
    )
    def test_host_tempfail(self, host_answers: tuple[Answer[str], Answer[str]]) -> None:
        """When in doubt, Z: a temporary failure of the host's lookups is #4.1.2, not D."""
        known = knowledge(mx=Answer(Status.NXDOMAIN), hosts={"example.com": host_answers})
        assert explain("example.com", known) == DNS_TEMPORARY

    def test_srv_tempfail_is_not_fatal(self) -> None:
        """A temporary SRV failure alone does not turn #5.1.2 into a Z."""
        known = knowledge(
            mx=Answer(Status.NXDOMAIN),
            srv={p.service: Answer(Status.TEMPFAIL) for p in DEFAULT},
            hosts={"example.com": (NXDOMAIN, NXDOMAIN)},
        )
        assert explain("example.com", known) == no_such_host(b"example.com")


class TestNullMx:
    """A single MX 0 . : #5.1.10 naming the host."""

    def test_null_mx(self) -> None:
        """A null MX and no SRV target: the domain does not accept mail."""
        known = knowledge(mx=mx_answer(MX(0, "")), hosts={"example.com": ["192.0.2.5"]})
        assert explain("example.com", known) == null_mx(b"example.com")

    def test_host_sanitised(self) -> None:
        """The host in #5.1.10 is sanitised like #5.1.2's."""
        known = knowledge(mx=mx_answer(MX(0, "")))
        assert explain("Ex ample.com", known) == null_mx(b"Ex?ample.com")

    def test_srv_tempfail_is_not_fatal(self) -> None:
        """A temporary SRV failure does not turn a null MX into a Z."""
        known = knowledge(mx=mx_answer(MX(0, "")), srv={"smtp": Answer(Status.TEMPFAIL)}, hosts={})
        assert explain("example.com", known) == null_mx(b"example.com")

    def test_null_mx_with_dead_srv_target(self) -> None:
        """A null MX beside an SRV target without address is about the target: #5.4.4."""
        known = knowledge(
            mx=mx_answer(MX(0, "")),
            srv={"smtp": Answer(Status.OK, (SRV(0, 0, 25, "s.example"),))},
            hosts={"s.example": (NXDOMAIN, NODATA)},
        )
        assert explain("example.com", known) == NO_EXCHANGER_ADDRESS


class TestNoExchangerAddress:
    """Exchangers exist but none has an address: #5.4.4 if all hard, else #4.1.2."""

    def test_all_hard(self) -> None:
        """Every exchanger's AAAA and A failed hard: #5.4.4."""
        known = knowledge(
            mx=mx_answer(MX(10, "a.example"), MX(20, "b.example")),
            hosts={
                "a.example": (NXDOMAIN, NXDOMAIN),
                "b.example": (NODATA, NODATA),
                "example.com": ["192.0.2.5"],
            },
        )
        assert explain("example.com", known) == NO_EXCHANGER_ADDRESS

    def test_several_null_targets(self) -> None:
        """MX records whose targets are all "." (not a lone null MX): #5.4.4, as qmail."""
        known = knowledge(mx=mx_answer(MX(0, ""), MX(10, "")))
        assert explain("example.com", known) == NO_EXCHANGER_ADDRESS

    def test_srv_targets_only(self) -> None:
        """No MX, SRV targets without addresses: the exchangers-exist row, #5.4.4."""
        known = knowledge(
            mx=Answer(Status.NXDOMAIN),
            srv={"qmtp": Answer(Status.OK, (SRV(0, 0, 209, "q.example"),))},
            hosts={"q.example": (NXDOMAIN, NXDOMAIN), "example.com": ["192.0.2.5"]},
        )
        assert explain("example.com", known) == NO_EXCHANGER_ADDRESS

    @pytest.mark.parametrize(
        "answers", [(TEMPFAIL, NODATA), (NXDOMAIN, TEMPFAIL), (TEMPFAIL, TEMPFAIL)]
    )
    def test_one_tempfail(self, answers: tuple[Answer[str], Answer[str]]) -> None:
        """One temporary failure among the exchangers' lookups gives #4.1.2."""
        known = knowledge(
            mx=mx_answer(MX(10, "a.example"), MX(20, "b.example")),
            hosts={"a.example": (NXDOMAIN, NXDOMAIN), "b.example": answers},
        )
        assert explain("example.com", known) == DNS_TEMPORARY

    def test_srv_target_tempfail(self) -> None:
        """A temporary failure of an SRV target's address lookup counts as well."""
        known = knowledge(
            mx=mx_answer(MX(10, "a.example")),
            srv={"smtp": Answer(Status.OK, (SRV(0, 0, 25, "s.example"),))},
            hosts={"a.example": (NXDOMAIN, NXDOMAIN), "s.example": (NODATA, TEMPFAIL)},
        )
        assert explain("example.com", known) == DNS_TEMPORARY

    def test_srv_tempfail_is_not_fatal(self) -> None:
        """A temporary SRV failure does not turn #5.4.4 into a Z."""
        known = knowledge(
            mx=mx_answer(MX(10, "a.example")),
            srv={"smtp": Answer(Status.TEMPFAIL), "qmtp": Answer(Status.TEMPFAIL)},
            hosts={"a.example": (NXDOMAIN, NODATA)},
        )
        assert explain("example.com", known) == NO_EXCHANGER_ADDRESS

    def test_irrelevant_host_lookup_ignored(self) -> None:
        """With MX records, the host's own A/AAAA (asked early) does not matter."""
        known = knowledge(
            mx=mx_answer(MX(10, "a.example")),
            hosts={"a.example": (NXDOMAIN, NXDOMAIN), "example.com": (TEMPFAIL, TEMPFAIL)},
        )
        assert explain("example.com", known) == NO_EXCHANGER_ADDRESS


class TestWeAreTheBestMx:
    """The self-check leaves nothing: #5.4.6, the two-line text."""

    def test_best_mx(self) -> None:
        """Our address at the best preference: #5.4.6."""
        known = knowledge(
            mx=mx_answer(MX(10, "us.example"), MX(20, "b.example")),
            hosts={"us.example": [US], "b.example": ["192.0.2.3"]},
        )
        assert explain("example.com", known) == WE_ARE_BEST_MX

    @pytest.mark.parametrize("host", ["[127.0.0.1]", "127.0.0.1", f"[{US}]", "[IPv6:::1]"])
    def test_own_literal(self, host: str) -> None:
        """A literal naming this machine: #5.4.6 (qmail's [127.0.0.1] case)."""
        assert explain(host, Knowledge()) == WE_ARE_BEST_MX

    def test_implicit_mx_to_us(self) -> None:
        """No MX and the host's A is ours: #5.4.6."""
        known = knowledge(mx=Answer(Status.NXDOMAIN), hosts={"example.com": [US]})
        assert explain("example.com", known) == WE_ARE_BEST_MX

    def test_better_exchanger_tempfail(self) -> None:
        """When in doubt, Z: a better exchanger whose lookup failed temporarily gives #4.1.2."""
        known = knowledge(
            mx=mx_answer(MX(10, "better.example"), MX(20, "us.example")),
            hosts={"better.example": (NODATA, TEMPFAIL), "us.example": [US]},
        )
        assert explain("example.com", known) == DNS_TEMPORARY

    def test_better_exchanger_hard(self) -> None:
        """A better exchanger that does not exist changes nothing: #5.4.6."""
        known = knowledge(
            mx=mx_answer(MX(10, "better.example"), MX(20, "us.example")),
            hosts={"better.example": (NXDOMAIN, NXDOMAIN), "us.example": [US]},
        )
        assert explain("example.com", known) == WE_ARE_BEST_MX

    def test_aaaa_failure_beside_our_a(self) -> None:
        """An AAAA failure beside a good A is no failure of that host: still #5.4.6.

        spec §3: "An AAAA failure with a good A (or the reverse) is not a failure of that
        host."  Our exchanger's A is ours; its AAAA SERVFAIL changes nothing.
        """
        known = knowledge(
            mx=mx_answer(MX(10, "us.example")),
            hosts={"us.example": (TEMPFAIL, v4(US))},
        )
        assert explain("example.com", known) == WE_ARE_BEST_MX

    def test_host_lookup_irrelevant_with_mx(self) -> None:
        """The host's own A/AAAA (asked early, unused when MX exists) cannot change #5.4.6."""
        known = knowledge(
            mx=mx_answer(MX(10, "us.example")),
            hosts={"us.example": [US], "example.com": (TEMPFAIL, NODATA)},
        )
        assert explain("example.com", known) == WE_ARE_BEST_MX

    def test_worse_exchanger_tempfail(self) -> None:
        """A worse exchanger's temporary failure cannot make anyone better than us: #5.4.6.

        qmail-remote (contract §3.1 step 5, §3.3) goes on to the self-check as soon as some
        address was found, and answers #5.4.6 here.
        """
        known = knowledge(
            mx=mx_answer(MX(10, "us.example"), MX(20, "worse.example")),
            hosts={"us.example": [US], "worse.example": (TEMPFAIL, TEMPFAIL)},
        )
        assert explain("example.com", known) == WE_ARE_BEST_MX

    def test_implicit_mx_to_us_with_aaaa_failure(self) -> None:
        """Implicit MX: our A beside a failed AAAA is still #5.4.6 (nothing is better)."""
        known = knowledge(mx=Answer(Status.NODATA), hosts={"example.com": (TEMPFAIL, v4(US))})
        assert explain("example.com", known) == WE_ARE_BEST_MX


class TestNoConnection:
    """Attempts were started but none connected: #4.4.1."""

    @pytest.mark.parametrize(
        "known",
        [
            knowledge(mx=mx_answer(MX(10, "a.example")), hosts={"a.example": ["192.0.2.1"]}),
            knowledge(mx=Answer(Status.TEMPFAIL)),
            knowledge(mx=mx_answer(MX(0, ""))),
            knowledge(mx=Answer(Status.NXDOMAIN), hosts={"example.com": (NXDOMAIN, NXDOMAIN)}),
        ],
        ids=["answered", "mx-tempfail", "null-mx", "no-host"],
    )
    def test_started(self, known: Knowledge) -> None:
        """Once any attempt was started the answer is #4.4.1, whatever DNS said."""
        destination = make_destination("example.com", DEFAULT, {})
        plan = build_plan(destination, known, LOCAL)
        started = frozenset({("192.0.2.77", 25)})
        assert explain_failure(plan, lost(started)).encode() == NO_CONNECTION

    def test_planned_attempt_started(self) -> None:
        """A started attempt that is still in the plan gives #4.4.1, also after a cut."""
        known = knowledge(
            mx=mx_answer(MX(10, "a.example"), MX(20, "us.example")),
            hosts={"a.example": ["192.0.2.1"], "us.example": [US]},
        )
        started = frozenset({("192.0.2.1", 25)})
        assert explain("example.com", known, started=started) == NO_CONNECTION

    def test_started_attempts_all_cut_later(self) -> None:
        """Attempts made before the self-check cut them all: #5.4.6, as if never started.

        MX 20 was tried while MX 10's addresses were still unknown; MX 10 turned out to
        be us, so MX 20 was never a valid destination.
        """
        known = knowledge(
            mx=mx_answer(MX(10, "us.example"), MX(20, "b.example")),
            hosts={"us.example": [US], "b.example": ["192.0.2.3"]},
        )
        started = frozenset({("192.0.2.3", 25)})
        assert explain("example.com", known, started=started) == WE_ARE_BEST_MX

    def test_literal_started(self) -> None:
        """A literal whose attempts all failed: #4.4.1."""
        started = frozenset({("192.0.2.9", 25), ("192.0.2.9", 209)})
        assert explain("[192.0.2.9]", Knowledge(), started=started) == NO_CONNECTION

    def test_routed_started(self) -> None:
        """A routed host whose relay did not connect: #4.4.1."""
        routes = {"smtp": parse_routes([":[192.0.2.50]"], "smtproutes")}
        started = frozenset({("192.0.2.50", 25)})
        assert explain("example.com", Knowledge(), started=started, routes=routes) == NO_CONNECTION

    def test_addresses_but_no_protocol(self) -> None:
        """Exchangers with addresses but no protocol their slice allows: #4.4.1, not a D."""
        known = knowledge(mx=mx_answer(MX(10, "a.example")), hosts={"a.example": ["192.0.2.1"]})
        assert explain("example.com", known, protocols=(QMTPS, QMTP)) == NO_CONNECTION

    def test_literal_without_attempt(self) -> None:
        """A literal that is not ours and yet had no attempt (no protocol) is #4.4.1."""
        assert explain("[192.0.2.9]", Knowledge(), protocols=()) == NO_CONNECTION

    def test_literal_relay_not_started(self) -> None:
        """Routes only to literal relays, nothing started: #4.4.1 (no DNS to blame)."""
        routes = {"smtp": parse_routes([":[192.0.2.50]"], "smtproutes")}
        destination = make_destination("example.com", DEFAULT, routes)
        plan = build_plan(destination, Knowledge(), LOCAL)
        assert explain_failure(plan, lost()).encode() == NO_CONNECTION


class TestEveryProtocolDeclined:
    """Every protocol is declined by SRV "." records: a deferral."""

    def test_declined(self) -> None:
        """When in doubt, Z: the report is temporary."""
        known = knowledge(
            mx=mx_answer(MX(10, "a.example")),
            srv={p.service: Answer(Status.OK, (SRV(0, 0, 0, ""),)) for p in DEFAULT},
            hosts={"a.example": ["192.0.2.1"]},
        )
        report = explain("example.com", known)
        assert report.startswith(b"Z")
        assert report.endswith(b"\n\0")
        assert report.count(b"\0") == 1
