"""Tests for mxf_remote/tlspolicy.py and its place in the plan: DANE and MTA-STS verdicts.

Pure, like test_plan.py: knowledge written by hand, every row of the module's table, and
the rule that matters most -- nothing reaches a protected exchanger without the check,
through QMTP or through a race won before the TLSA answer arrived.
"""

from __future__ import annotations

from typing import Any

import pytest

from mxf_remote.destination import Destination
from mxf_remote.knowledge import MX, TLSA, Answer, Knowledge, Status
from mxf_remote.mtasts import Policy
from mxf_remote.plan import Attempt, Waiting, build_plan
from mxf_remote.tlspolicy import (
    DANE,
    DANE_UNAUTHENTICATED,
    MTA_STS,
    MTA_STS_TESTING,
    NO_REQUIREMENT,
    Refusal,
    Requirement,
    StsView,
    Wait,
    usable_tlsa,
    verdict,
)
from tests.test_plan import DEFAULT, LOCAL, QMTP, SMTP

EE = TLSA(3, 1, 1, bytes(range(32)))
TA = TLSA(2, 0, 2, bytes(64))
PKIX = TLSA(1, 1, 1, bytes(32))
SHORT = TLSA(3, 1, 1, bytes(31))
NO_STS = StsView()


def secure(*records: object) -> Answer[object]:
    return Answer(Status.OK, records, secure=True)


def insecure(*records: object) -> Answer[object]:
    return Answer(Status.OK, records)


def knowledge(
    *,
    a: Answer[str] | None = None,
    aaaa: Answer[str] | None = None,
    tlsa: Answer[TLSA] | None = None,
    name: str = "mx1.example.org",
    preference: int = 10,
) -> Knowledge:
    known = Knowledge(mx=secure(MX(preference, name)))  # type: ignore[arg-type]
    known.ipv4[name] = a if a is not None else secure("192.0.2.1")  # type: ignore[assignment]
    known.ipv6[name] = aaaa if aaaa is not None else Answer(Status.NODATA, secure=True)
    if tlsa is not None:
        known.tlsa[(name, 25)] = tlsa
    return known


def smtp(address: str = "192.0.2.1", name: str = "mx1.example.org") -> Attempt:
    return Attempt(SMTP, name, address, 25, "mx", 10)


def qmtp(address: str = "192.0.2.1", name: str = "mx1.example.org") -> Attempt:
    return Attempt(QMTP, name, address, 209, "mx", 10)


class TestDane:
    def test_secure_usable_records_make_tls_mandatory_and_checked(self) -> None:
        decided = verdict(smtp(), knowledge(tlsa=secure(EE, PKIX)), NO_STS)  # type: ignore[arg-type]
        assert decided == Requirement(DANE, (EE,), ("mx1.example.org",))
        assert decided.mandatory

    def test_secure_but_no_usable_record_is_tls_without_authentication(self) -> None:
        decided = verdict(smtp(), knowledge(tlsa=secure(PKIX, SHORT)), NO_STS)  # type: ignore[arg-type]
        assert decided == Requirement(DANE_UNAUTHENTICATED, (), ("mx1.example.org",))
        assert decided.mandatory

    @pytest.mark.parametrize(
        "answer",
        [Answer(Status.NODATA, secure=True), Answer(Status.NXDOMAIN, secure=True), insecure(EE)],
    )
    def test_no_tlsa_or_an_insecure_one_is_no_dane(self, answer: Answer[TLSA]) -> None:
        assert verdict(smtp(), knowledge(tlsa=answer), NO_STS) == NO_REQUIREMENT

    def test_a_failed_tlsa_lookup_refuses_the_exchanger(self) -> None:
        decided = verdict(smtp(), knowledge(tlsa=Answer(Status.TEMPFAIL)), NO_STS)
        assert decided == Refusal(
            "TLSA lookup error for mx1.example.org:25", "tlsa", "dnssec-invalid"
        )

    def test_an_outstanding_tlsa_is_waited_for(self) -> None:
        decided = verdict(smtp(), knowledge(tlsa=Answer(Status.PENDING)), NO_STS)
        assert decided == Wait("TLSA of mx1.example.org")

    def test_insecure_addresses_switch_dane_off_even_with_a_bogus_tlsa(self) -> None:
        known = knowledge(a=insecure("192.0.2.1"), tlsa=Answer(Status.TEMPFAIL))  # type: ignore[arg-type]
        assert verdict(smtp(), known, NO_STS) == NO_REQUIREMENT

    def test_security_is_per_address_family(self) -> None:
        known = knowledge(aaaa=insecure("2001:db8::1"), tlsa=secure(EE))  # type: ignore[arg-type]
        assert verdict(smtp("2001:db8::1"), known, NO_STS) == NO_REQUIREMENT
        assert verdict(smtp("192.0.2.1"), known, NO_STS).kind == DANE  # type: ignore[union-attr]

    def test_an_insecure_mx_answer_does_not_switch_dane_off(self) -> None:
        known = knowledge(tlsa=secure(EE))  # type: ignore[arg-type]
        known.mx = insecure(MX(10, "mx1.example.org"))  # type: ignore[assignment]
        assert verdict(smtp(), known, NO_STS).kind == DANE  # type: ignore[union-attr]

    def test_a_relay_with_secure_addresses_gets_dane_too(self) -> None:
        """smtproutes relays are checked as Postfix checks ``[host]`` next-hops."""
        known = knowledge(name="relay.example.net", tlsa=secure(EE))  # type: ignore[arg-type]
        attempt = Attempt(SMTP, "relay.example.net", "192.0.2.1", 25, "route", 0)
        assert verdict(attempt, known, NO_STS).kind == DANE  # type: ignore[union-attr]

    def test_a_literal_never_gets_dane(self) -> None:
        attempt = Attempt(SMTP, "192.0.2.1", "192.0.2.1", 25, "literal", 0, named=False)
        assert verdict(attempt, knowledge(tlsa=secure(EE)), NO_STS) == NO_REQUIREMENT  # type: ignore[arg-type]


class TestNoDowngrade:
    def test_qmtp_to_a_protected_exchanger_is_refused(self) -> None:
        decided = verdict(qmtp(), knowledge(tlsa=secure(EE)), NO_STS)  # type: ignore[arg-type]
        assert isinstance(decided, Refusal)
        assert "protected by DANE" in decided.text

    @pytest.mark.parametrize("tlsa", [secure(PKIX), Answer(Status.TEMPFAIL)])
    def test_qmtp_is_refused_whenever_smtp_would_need_tls(self, tlsa: Answer[TLSA]) -> None:
        assert isinstance(verdict(qmtp(), knowledge(tlsa=tlsa), NO_STS), Refusal)

    def test_qmtp_waits_for_the_tlsa_of_the_exchanger(self) -> None:
        decided = verdict(qmtp(), knowledge(tlsa=Answer(Status.PENDING)), NO_STS)
        assert decided == Wait("TLSA of mx1.example.org")

    def test_qmtp_to_an_unprotected_exchanger_goes_ahead(self) -> None:
        known = knowledge(tlsa=Answer(Status.NODATA, secure=True))
        assert verdict(qmtp(), known, NO_STS) == NO_REQUIREMENT

    def test_the_plan_holds_qmtp_behind_a_marker_while_smtp_races(self) -> None:
        destination = Destination("example.org", DEFAULT)  # MXPS slice 1: QMTP, then SMTP
        known = knowledge(tlsa=Answer(Status.PENDING), preference=12801)
        plan = build_plan(destination, known, LOCAL, tls=lambda a: verdict(a, known, NO_STS))
        assert plan.entries[0] == Waiting("TLSA of mx1.example.org")
        assert [a.protocol.service for a in plan.attempts] == ["smtp"]

    def test_the_plan_drops_refused_attempts_and_says_why(self) -> None:
        destination = Destination("example.org", DEFAULT)
        known = knowledge(tlsa=secure(EE), preference=12801)  # type: ignore[arg-type]
        plan = build_plan(destination, known, LOCAL, tls=lambda a: verdict(a, known, NO_STS))
        assert [a.protocol.service for a in plan.attempts] == ["smtp"]
        assert [a.protocol.service for a, _ in plan.facts.refused] == ["qmtp"]


ENFORCE = Policy("enforce", ("mx1.example.org", "*.mail.example.org"), 86400, "")
TESTING = Policy("testing", ("mx1.example.org",), 86400, "")


def sts(policy: Policy | None, state: str = "policy") -> StsView:
    return StsView(state, "example.org", policy, "cache")


class TestMtaSts:
    def test_enforce_makes_webpki_tls_mandatory_for_a_listed_mx(self) -> None:
        decided = verdict(smtp(), knowledge(), sts(ENFORCE))
        assert decided == Requirement(MTA_STS, (), ("mx1.example.org",))

    def test_enforce_refuses_an_mx_outside_the_patterns(self) -> None:
        attempt = smtp(name="a.b.mail.example.org")
        decided = verdict(attempt, knowledge(name="a.b.mail.example.org"), sts(ENFORCE))
        assert isinstance(decided, Refusal)
        assert decided.text == (
            "a.b.mail.example.org is not an MX host of the MTA-STS policy of example.org"
        )

    def test_enforce_refuses_qmtp(self) -> None:
        assert isinstance(verdict(qmtp(), knowledge(), sts(ENFORCE)), Refusal)

    def test_testing_delivers_as_today_but_records(self) -> None:
        assert verdict(smtp(), knowledge(), sts(TESTING)).kind == MTA_STS_TESTING  # type: ignore[union-attr]

    def test_a_pending_policy_is_waited_for(self) -> None:
        assert verdict(smtp(), knowledge(), sts(None, "pending")) == Wait("MTA-STS policy")

    def test_relays_are_not_subject_to_mta_sts(self) -> None:
        attempt = Attempt(SMTP, "relay.example.net", "192.0.2.9", 25, "route", 0)
        assert verdict(attempt, knowledge(), sts(ENFORCE)) == NO_REQUIREMENT

    def test_dane_wins_over_mta_sts(self) -> None:
        known = knowledge(tlsa=secure(EE))  # type: ignore[arg-type]
        assert verdict(smtp(), known, sts(ENFORCE)).kind == DANE  # type: ignore[union-attr]

    def test_a_failing_dane_is_never_overridden_by_mta_sts(self) -> None:
        known = knowledge(tlsa=Answer(Status.TEMPFAIL))
        assert isinstance(verdict(smtp(), known, sts(ENFORCE)), Refusal)

    def test_mta_sts_waits_while_dane_might_still_apply(self) -> None:
        attempt = smtp(name="a.b.mail.example.org")
        known = knowledge(name="a.b.mail.example.org", tlsa=Answer(Status.PENDING))
        assert isinstance(verdict(attempt, known, sts(ENFORCE)), Wait)

    def test_no_dane_falls_through_to_mta_sts(self) -> None:
        known = knowledge(tlsa=Answer(Status.NODATA, secure=True))
        assert verdict(smtp(), known, sts(ENFORCE)).kind == MTA_STS  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("record", "usable"),
    [
        (TLSA(3, 1, 1, bytes(32)), True),
        (TLSA(2, 0, 2, bytes(64)), True),
        (TLSA(3, 0, 0, b"\x30\x82"), True),
        (TLSA(3, 0, 0, b""), False),
        (TLSA(0, 1, 1, bytes(32)), False),
        (TLSA(1, 1, 1, bytes(32)), False),
        (TLSA(4, 1, 1, bytes(32)), False),
        (TLSA(3, 2, 1, bytes(32)), False),
        (TLSA(3, 1, 3, bytes(32)), False),
        (TLSA(3, 1, 1, bytes(64)), False),
        (TLSA(3, 1, 2, bytes(32)), False),
    ],
)
def test_usable_records(record: TLSA, usable: bool) -> None:
    """RFC 7672 §3.1.3: only DANE-TA and DANE-EE, with known selectors and matching types."""
    assert usable_tlsa([record]) == ((record,) if usable else ())


class TestHandoffEnvironment:
    """What the verdict becomes in the client's environment, and what a caller cannot set."""

    def test_dane_records_names_and_tls_required(self) -> None:
        from mxf_remote.handoff import tls_environment

        env = tls_environment(
            Requirement(DANE, (EE, TA), ("mx1.example.org",)),
            sts=NO_STS,
            domain="example.org",
            spool=None,
        )
        assert env == {
            "MXFTLSREQUIRED": "dane",
            "MXFDANE": f"3 1 1 {bytes(range(32)).hex()};2 0 2 {bytes(64).hex()}",
            "MXFDANENAMES": "mx1.example.org",
        }

    def test_mta_sts_enforce_asks_for_webpki_and_records(self, tmp_path: object) -> None:
        import json

        from mxf_remote.handoff import tls_environment

        env = tls_environment(
            Requirement(MTA_STS, (), ("mx1.example.org",)),
            sts=sts(ENFORCE),
            domain="example.org",
            spool="/var/spool/mtasts",
        )
        assert (env["MXFTLSREQUIRED"], env["MXFWEBPKI"]) == ("mta-sts", "1")
        recorded = json.loads(env["MXFTLSRPT"])
        assert recorded["dir"] == "/var/spool/mtasts"
        assert recorded["mx"] == "mx1.example.org"
        assert recorded["policy"]["policy-type"] == "sts"
        assert recorded["policy"]["mx-host"] == list(ENFORCE.mx)

    def test_a_huge_policy_is_recorded_without_its_text(self) -> None:
        import json

        from mxf_remote.handoff import MAX_TLSRPT_VARIABLE, tls_environment

        huge = Policy("enforce", tuple(f"mx{i}.example.org" for i in range(3000)), 86400, "")
        huge = huge._replace(text="\n".join(f"mx: {p}" for p in huge.mx))
        env = tls_environment(
            Requirement(MTA_STS, (), ("mx1.example.org",)),
            sts=sts(huge),
            domain="example.org",
            spool="/s",
        )
        assert len(env["MXFTLSRPT"]) <= MAX_TLSRPT_VARIABLE
        assert json.loads(env["MXFTLSRPT"])["policy"]["policy-string"] == []

    def test_no_requirement_sets_nothing(self) -> None:
        from mxf_remote.handoff import tls_environment

        assert tls_environment(NO_REQUIREMENT, sts=NO_STS, domain="x", spool="/s") == {}

    @pytest.mark.parametrize(
        "variable", ["MXFDANE", "MXFDANENAMES", "MXFWEBPKI", "MXFTLSREQUIRED", "MXFTLSRPT"]
    )
    def test_a_caller_cannot_set_a_policy_variable(self, variable: str) -> None:
        """A caller's MXFTLSRPT could make smtpc append to a file of its choosing; a stale
        MXFDANE could fail a delivery DANE does not apply to."""
        from mxf_remote.handoff import client_environment

        env = client_environment(
            {variable: "hostile", "PATH": "/bin"}, smtp(), ("192.0.2.9", 4000), ("192.0.2.1", 25)
        )
        assert variable not in env

    def test_openssl_locations_are_kept_but_ucspi_tls_variables_are_not(self) -> None:
        from mxf_remote.handoff import client_environment

        caller = {"SSL_CERT_DIR": "/etc/x", "SSL_CERT_FILE": "/etc/y", "SSL_PROTOCOL": "TLSv1.3"}
        env = client_environment(caller, smtp(), ("192.0.2.9", 4000), ("192.0.2.1", 25))
        assert (env["SSL_CERT_DIR"], env["SSL_CERT_FILE"]) == ("/etc/x", "/etc/y")
        assert "SSL_PROTOCOL" not in env


@pytest.mark.parametrize(
    ("server", "loopback"),
    [
        ("127.0.0.1:53", True),
        ("127.0.53.2:5353", True),
        ("[::1]:53", True),
        ("192.0.2.53:53", False),
        ("[2001:db8::53]:53", False),
        ("10.255.255.53:53", False),
    ],
)
def test_the_probe_knows_which_nameservers_are_on_loopback(server: str, loopback: bool) -> None:
    """The probe warns about a DANE nameserver whose AD bit crosses a network."""
    from mxf_remote.probe import is_loopback_server

    assert is_loopback_server(server) is loopback


class TestTheHandoffWaits:
    """On a virtual clock: a connection whose TLSA answer is still out is parked, as for the
    self-check -- the race goes on, and a refusal leaves the other exchangers their chance."""

    SECURE_A = Answer(Status.OK, ("192.0.2.1",), secure=True)
    NO_AAAA = Answer(Status.NODATA, secure=True)

    def run(
        self,
        tlsa_at: float,
        tlsa: Answer[TLSA],
        *,
        dns: float = 30.0,
        backup: bool = False,
        timeout: float = 60.0,
    ) -> tuple[Any, float]:
        from mxf_remote.destination import Destination
        from mxf_remote.dispatch import dispatch
        from tests.scripted import (
            ScriptedConnector,
            ScriptedLookup,
            VirtualClockLoop,
            control,
            protocol,
        )

        smtp_starttls = protocol("smtp", 25, 0, explicit=True)
        ctl = control(smtp_starttls, dns=dns, timeout=timeout)._replace(dane=True)
        exchangers = [MX(10, "mx1.example.org")] + ([MX(20, "mx2.example.org")] if backup else [])
        script = {
            ("example.org", "MX"): (0.001, secure(*exchangers)),
            ("mx1.example.org", "A"): (0.001, self.SECURE_A),
            ("mx1.example.org", "AAAA"): (0.001, self.NO_AAAA),
            ("_25._tcp.mx1.example.org", "TLSA"): (tlsa_at, tlsa),
            ("mx2.example.org", "A"): (0.001, Answer(Status.OK, ("192.0.2.2",), secure=True)),
            ("mx2.example.org", "AAAA"): (0.001, self.NO_AAAA),
            ("_25._tcp.mx2.example.org", "TLSA"): (0.001, Answer(Status.NODATA, secure=True)),
        }
        connector = ScriptedConnector(
            {("192.0.2.1", 25): (0.010, "ok"), ("192.0.2.2", 25): (0.010, "ok")}
        )
        loop = VirtualClockLoop()
        try:
            result = loop.run_until_complete(
                dispatch(
                    Destination("example.org", (smtp_starttls,)),
                    ctl,
                    ScriptedLookup(script),  # type: ignore[arg-type]
                    local=frozenset(),
                    connect=connector,
                )
            )
            return result, round(loop.time(), 6)
        finally:
            loop.close()

    def test_a_late_tlsa_answer_is_waited_for_and_carried_to_the_client(self) -> None:
        from mxf_remote.race import Won

        result, ended = self.run(0.500, secure(EE))  # type: ignore[arg-type]
        assert isinstance(result.outcome, Won)
        (fate,) = result.outcome.fates
        assert fate.parked == pytest.approx(12.0)  # MX 1 ms, A 2 ms, connected at 12 ms
        assert fate.end == pytest.approx(501.0)  # ... and won when the TLSA came, at 501 ms
        assert ended == 0.501
        assert result.requirement == Requirement(DANE, (EE,), ("mx1.example.org",))

    def test_a_tlsa_that_never_comes_refuses_the_winner_at_timeoutdns(self) -> None:
        from mxf_remote.explain import explain_failure
        from mxf_remote.race import Fate, Lost
        from tests.scripted import SILENT

        result, ended = self.run(SILENT, Answer(Status.NODATA), dns=2.0, timeout=5.0)
        assert isinstance(result.outcome, Lost)
        assert ended == 2.0
        assert [f.fate for f in result.outcome.fates] == [Fate.CUT_BY_TLS_POLICY]
        report = explain_failure(result.plan, result.outcome)
        assert report.encode() == (
            b"ZSorry, TLSA lookup error for mx1.example.org:25. (#4.7.5)\n\0"
        )

    def test_a_refused_winner_leaves_the_next_exchanger_its_chance(self) -> None:
        """MX 10 connects first, its TLSA never comes; MX 20 (no TLSA, secure) gets the
        message instead of the whole delivery failing at timeoutdns (RFC 7672 §2.2)."""
        from mxf_remote.race import Fate, Won
        from tests.scripted import SILENT

        result, _ = self.run(SILENT, Answer(Status.NODATA), dns=2.0, backup=True)
        assert isinstance(result.outcome, Won)
        assert result.outcome.attempt.exchanger == "mx2.example.org"
        fates = {f.attempt.exchanger: f.fate for f in result.outcome.fates}
        assert fates == {"mx1.example.org": Fate.RUNNER_UP_CLOSED, "mx2.example.org": Fate.WON}
        assert result.requirement == NO_REQUIREMENT


class TestCnameExchangers:
    """RFC 7672 §2.2.2: an exchanger reached through a secure CNAME chain has the chain's
    target as its TLSA base domain first, its own name second."""

    def known(self, target_tlsa: Answer[TLSA] | None, own: Answer[TLSA] | None) -> Knowledge:
        known = knowledge(tlsa=own)
        known.aliases["mx1.example.org"] = "mx.provider.net"
        if target_tlsa is not None:
            known.tlsa[("mx.provider.net", 25)] = target_tlsa
        return known

    def test_the_target_s_records_and_both_names(self) -> None:
        decided = verdict(smtp(), self.known(secure(TA), secure(EE)), NO_STS)  # type: ignore[arg-type]
        assert decided == Requirement(DANE, (TA,), ("mx.provider.net", "mx1.example.org"))

    def test_no_records_at_the_target_fall_back_to_the_own_name(self) -> None:
        nothing = Answer(Status.NODATA, secure=True)
        decided = verdict(smtp(), self.known(nothing, secure(EE)), NO_STS)  # type: ignore[arg-type]
        assert decided == Requirement(DANE, (EE,), ("mx1.example.org",))

    def test_the_target_s_lookup_is_waited_for_and_its_failure_refuses(self) -> None:
        pending = self.known(Answer(Status.PENDING), Answer(Status.NODATA, secure=True))
        assert verdict(smtp(), pending, NO_STS) == Wait("TLSA of mx.provider.net")
        failed = self.known(Answer(Status.TEMPFAIL), Answer(Status.NODATA, secure=True))
        assert isinstance(verdict(smtp(), failed, NO_STS), Refusal)

    def test_qmtp_is_refused_when_the_target_is_protected(self) -> None:
        known = self.known(secure(EE), Answer(Status.NODATA, secure=True))  # type: ignore[arg-type]
        assert isinstance(verdict(qmtp(), known, NO_STS), Refusal)

    def test_the_tls_server_name_is_the_tlsa_base_domain(self) -> None:
        from mxf_remote.handoff import client_argv

        requirement = Requirement(DANE, (TA,), ("mx.provider.net", "mx1.example.org"))
        argv = client_argv(smtp(), ["example.org", "a@b", "c@d"], requirement)
        assert argv[:3] == ["/bin/ucspitlsc", "-k", "mx.provider.net"]
        assert client_argv(smtp(), ["example.org", "a@b", "c@d"])[:3] == [
            "/bin/ucspitlsc",
            "-k",
            "mx1.example.org",
        ]
