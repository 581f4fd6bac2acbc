"""MTA-STS end to end: knot -> mxf-remote -> an HTTPS policy host -> TLS client -> server.

knot serves ``sts.test`` (MX, ``_mta-sts`` TXT, ``mta-sts.<domain>`` A, ``_smtp._tls`` TXT);
a real HTTPS server on 127.0.55.80:443 answers ``/.well-known/mta-sts.txt`` per ``Host``
(certificate for every ``mta-sts.<domain>`` from a trustme CA); aiosmtpd exchangers offer
STARTTLS with certificates from the same CA.  The CA is the whole WebPKI of the test:
``SSL_CERT_DIR`` in mxf-remote's environment names a hashed directory holding only it,
which both the policy fetch and the TLS client's check read as "the system's CAs".
``control/mtasts`` names a cache directory; TLS-RPT lines land in its ``tlsrpt/``.
"""

from __future__ import annotations

import datetime
import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trustme

from mxf_remote.mtasts import PolicyCache
from tests.infra.knot import KnotServer
from tests.infra.netns import listen_tcp
from tests.remotekit import MXF_REMOTE, Delivery, QmailHome, run_remote
from tests.sinkkit import SmtpSink
from tests.stskit import PolicyHost

pytestmark = [pytest.mark.knot, pytest.mark.usefixtures("netns")]

POLICY_HOST = "127.0.55.80"
STALL_SECONDS = 3.0
"""How long the stalled policy host holds a fetch: past the 2 s connect phase of its test,
short of the test suite's check for descriptors left open."""
GOOD = "127.0.55.1"
WRONG_NAME = "127.0.55.2"
PLAIN = "127.0.55.3"
BOTH = "127.0.55.4"
TESTING = "127.0.55.5"

DOMAINS = (
    "enforce",
    "nomatch",
    "wrongname",
    "nostarttls",
    "testing",
    "testingok",
    "redirect",
    "stall",
    "qmtp",
    "cached",
    "xn--bcher-kva",  # bücher
)

ZONE = f"""
enforce             MX    10 mx.enforce
mx.enforce          A     {GOOD}
nomatch             MX    10 mx.nomatch
mx.nomatch          A     {GOOD}
wrongname           MX    10 mx.wrongname
mx.wrongname        A     {WRONG_NAME}
nostarttls          MX    10 mx.nostarttls
mx.nostarttls       A     {PLAIN}
testingok           MX    10 mx.testingok
mx.testingok        A     {GOOD}
testing             MX    10 mx.testing
mx.testing          A     {TESTING}
redirect            MX    10 mx.redirect
mx.redirect         A     {GOOD}
stall               MX    10 mx.stall
mx.stall            A     {GOOD}
qmtp                MX    12801 mx.qmtp
mx.qmtp             A     {BOTH}
xn--bcher-kva       MX    10 mx.nomatch
cached              MX    10 mx.cached
mx.cached           A     {GOOD}
_smtp._tls.enforce  TXT   "v=TLSRPTv1; rua=mailto:tlsrpt@enforce.sts.test"
_smtp._tls.wrongname TXT  "v=TLSRPTv1; rua=mailto:reports@wrongname.sts.test,https://r.example/x"
""" + "".join(
    f'_mta-sts.{d}        TXT   "v=STSv1; id=20261201T000000;"\nmta-sts.{d}   A  {POLICY_HOST}\n'
    for d in DOMAINS
)
ZONES = {"sts.test": ZONE}


def policy(mode: str, *patterns: str, max_age: int = 86400) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {p}" for p in patterns)]
    return ("\r\n".join([*lines, f"max_age: {max_age}"]) + "\r\n").encode()


POLICIES: dict[str, tuple[int, bytes]] = {
    "enforce": (200, policy("enforce", "mx.enforce.sts.test")),
    "nomatch": (200, policy("enforce", "other.sts.test")),
    "wrongname": (200, policy("enforce", "*.wrongname.sts.test")),
    "nostarttls": (200, policy("enforce", "mx.nostarttls.sts.test")),
    "testing": (200, policy("testing", "mx.testing.sts.test")),
    "testingok": (200, policy("testing", "mx.testingok.sts.test")),
    "redirect": (301, b""),
    "qmtp": (200, policy("enforce", "mx.qmtp.sts.test")),
    "cached": (200, policy("enforce", "mx.cached.sts.test")),
    "xn--bcher-kva": (200, policy("enforce", "mx.xn--bcher-kva.sts.test")),
}


def answer_policy(domain: str) -> tuple[int, bytes] | None:
    """What the policy host answers for ``mta-sts.<domain>``; ``stall`` never answers."""
    name = domain.removesuffix(".sts.test")
    return None if name == "stall" else POLICIES.get(name, (404, b""))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """The test's whole WebPKI: one CA, in a hashed directory (``SSL_CERT_DIR``)."""
    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("webpki")
    pem = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pem)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    os.symlink("ca.pem", directory / f"{subject_hash}.0")
    return ca, directory


def context_for(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def exchangers(ca: tuple[trustme.CA, Path]) -> Iterator[dict[str, Any]]:
    authority = ca[0]
    made: dict[str, Any] = {}
    try:
        served = ("enforce", "nomatch", "redirect", "stall", "cached", "testingok")
        names = [f"mx.{d}.sts.test" for d in served]
        made[GOOD] = SmtpSink(GOOD, 25, context_for(authority, *names))
        made[WRONG_NAME] = SmtpSink(WRONG_NAME, 25, context_for(authority, "somebody.else"))
        made[PLAIN] = SmtpSink(PLAIN, 25, None)
        made[BOTH] = SmtpSink(BOTH, 25, context_for(authority, "mx.qmtp.sts.test"))
        made[TESTING] = SmtpSink(TESTING, 25, context_for(authority, "somebody.else"))
        made["qmtp"] = listen_tcp(BOTH, 209)
        made["policy"] = PolicyHost(
            POLICY_HOST,
            context_for(authority, *(f"mta-sts.{d}.sts.test" for d in DOMAINS)),
            answer_policy,
            stall_seconds=STALL_SECONDS,
        )
        yield made
    finally:
        for server in made.values():
            server.close()


class World(NamedTuple):
    """What every test here uses: a qmail home with MTA-STS on, and the servers."""

    home: QmailHome
    knot: KnotServer
    ca: tuple[trustme.CA, Path]
    exchangers: dict[str, Any]


@pytest.fixture
def world(
    home: QmailHome, knot: KnotServer, ca: tuple[trustme.CA, Path], exchangers: dict[str, Any]
) -> World:
    return World(home, knot, ca, exchangers)


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control("me", "me.example\n")
    cache = tmp_path / "mtasts"
    cache.mkdir()
    qmail.control("mtasts", f"{cache}\n")
    return qmail


def deliver(home: QmailHome, host: str, knot: KnotServer, ca: tuple[trustme.CA, Path]) -> Delivery:
    env = {**knot.env, "SSL_CERT_DIR": str(ca[1])}
    return run_remote(home, host, env=env, sender="a@example.org", recipients=("b@example.org",))


ACCEPTED = b"r\0K%s accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"


def spool_lines(home: QmailHome) -> list[dict[str, Any]]:
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    path = home.root.parent / "mtasts" / "tlsrpt" / day
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_report(delivery: Delivery, report: bytes) -> None:
    assert (delivery.stdout, delivery.stderr, delivery.returncode) == (report, b"", 0)


def assert_nothing_arrived(exchangers: dict[str, Any]) -> None:
    for server in exchangers.values():
        if isinstance(server, SmtpSink):
            assert server.no_arrival()


class TestEnforce:
    def test_listed_mx_with_a_valid_certificate_gets_the_message_over_tls(
        self, world: World
    ) -> None:
        home, knot, ca, exchangers = world
        delivery = deliver(home, "enforce.sts.test", knot, ca)
        assert_report(delivery, ACCEPTED % GOOD.encode())
        assert exchangers[GOOD].arrival().tls in ("TLSv1.2", "TLSv1.3")
        cached = PolicyCache(str(home.root.parent / "mtasts")).load("enforce.sts.test")
        assert cached is not None
        assert (cached.id, cached.policy.mode) == ("20261201T000000", "enforce")
        (line,) = spool_lines(home)
        assert line["result"] == "success"
        assert line["policy"]["policy-type"] == "sts"
        assert line["policy"]["mx-host"] == ["mx.enforce.sts.test"]

    def test_an_mx_outside_the_policy_is_never_used(self, world: World) -> None:
        home, knot, ca, exchangers = world
        """The race wins before the policy arrives; the handoff waits for it and refuses."""
        delivery = deliver(home, "nomatch.sts.test", knot, ca)
        assert_report(
            delivery,
            b"ZSorry, mx.nomatch.sts.test is not an MX host of the MTA-STS policy of "
            b"nomatch.sts.test. (#4.7.5)\n\0",
        )
        assert_nothing_arrived(exchangers)

    def test_an_international_domain_s_policy_is_found_under_its_a_labels(
        self, world: World
    ) -> None:
        home, knot, ca, exchangers = world
        delivery = deliver(home, "bücher.sts.test", knot, ca)
        assert_report(
            delivery,
            b"ZSorry, mx.nomatch.sts.test is not an MX host of the MTA-STS policy of "
            b"xn--bcher-kva.sts.test. (#4.7.5)\n\0",
        )
        assert_nothing_arrived(exchangers)

    def test_a_certificate_for_another_name_is_refused(self, world: World) -> None:
        home, knot, ca, exchangers = world
        delivery = deliver(home, "wrongname.sts.test", knot, ca)
        assert delivery.stdout.startswith(
            b"ZTLS with %s failed after STARTTLS: MTA-STS: " % WRONG_NAME.encode()
        ), delivery.stdout
        assert delivery.stdout.endswith(b". (#4.7.5)\n\0")
        assert_nothing_arrived(exchangers)
        (line,) = spool_lines(home)
        assert line["result"] in ("certificate-host-mismatch", "validation-failure")

    def test_no_starttls_is_never_clear_text(self, world: World) -> None:
        home, knot, ca, exchangers = world
        delivery = deliver(home, "nostarttls.sts.test", knot, ca)
        assert_report(
            delivery,
            b"ZConnected to %s but STARTTLS is not offered, and MTA-STS requires TLS. (#4.7.5)\n\0"
            % PLAIN.encode(),
        )
        assert_nothing_arrived(exchangers)
        (line,) = spool_lines(home)
        assert line["result"] == "starttls-not-supported"

    def test_qmtp_is_never_raced_under_enforce(self, world: World) -> None:
        home, knot, ca, exchangers = world
        delivery = deliver(home, "qmtp.sts.test", knot, ca)
        assert_report(delivery, ACCEPTED % BOTH.encode())
        assert exchangers[BOTH].arrival().tls in ("TLSv1.2", "TLSv1.3")
        listener = exchangers["qmtp"]
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


class TestPolicySources:
    def test_testing_mode_delivers_as_today_and_records(self, world: World) -> None:
        home, knot, ca, exchangers = world
        delivery = deliver(home, "testing.sts.test", knot, ca)
        assert_report(delivery, ACCEPTED % TESTING.encode())
        assert exchangers[TESTING].arrival().tls in ("TLSv1.2", "TLSv1.3")
        (line,) = spool_lines(home)
        assert line["policy"]["policy-type"] == "sts"
        assert "mode: testing" in line["policy"]["policy-string"]
        # the certificate is for somebody.else: enforcing would have failed, so TLS-RPT hears
        assert line["result"] == "certificate-host-mismatch"

    def test_testing_mode_records_success_when_enforcing_would_have_passed(
        self, world: World
    ) -> None:
        home, knot, ca, exchangers = world
        delivery = deliver(home, "testingok.sts.test", knot, ca)
        assert_report(delivery, ACCEPTED % GOOD.encode())
        exchangers[GOOD].arrival()
        (line,) = spool_lines(home)
        assert (line["result"], line["receiving-ip"]) == ("success", GOOD)

    def test_a_redirect_is_not_followed_and_mail_goes_as_today(self, world: World) -> None:
        home, knot, ca, exchangers = world
        delivery = deliver(home, "redirect.sts.test", knot, ca)
        assert_report(delivery, ACCEPTED % GOOD.encode())
        exchangers[GOOD].arrival()
        (line,) = spool_lines(home)
        assert line["result"] == "sts-policy-fetch-error"

    def test_a_stalled_policy_host_costs_no_more_than_the_connect_phase(self, world: World) -> None:
        home, knot, ca, exchangers = world
        """The first delivery to a new domain goes without the policy after timeoutconnect."""
        home.control("timeoutconnect", "2\n")
        delivery = deliver(home, "stall.sts.test", knot, ca)
        assert_report(delivery, ACCEPTED % GOOD.encode())
        exchangers[GOOD].arrival()
        assert delivery.seconds < 8  # the fetch itself would take 10 s to time out

    def test_a_cached_policy_with_the_same_id_is_not_fetched_again(self, world: World) -> None:
        home, knot, ca, exchangers = world
        hits = exchangers["policy"].hits
        before = hits.get("cached.sts.test", 0)
        for _ in range(2):
            assert_report(deliver(home, "cached.sts.test", knot, ca), ACCEPTED % GOOD.encode())
            exchangers[GOOD].arrival()
        assert hits.get("cached.sts.test", 0) == before + 1


def test_tlsrpt_prints_the_day_s_report_with_its_rua(
    world: World,
) -> None:
    home, knot, ca, exchangers = world
    deliver(home, "wrongname.sts.test", knot, ca)
    assert_report(deliver(home, "enforce.sts.test", knot, ca), ACCEPTED % GOOD.encode())
    exchangers[GOOD].arrival()
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    program = str(Path(MXF_REMOTE).with_name("mxf-remote-tlsrpt"))
    done = subprocess.run(
        [program, day],
        env={"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(home.root), **knot.env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reports = {r["policy-domain"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert reports["wrongname.sts.test"]["rua"] == [
        "mailto:reports@wrongname.sts.test",
        "https://r.example/x",
    ]
    summary = reports["enforce.sts.test"]["report"]["policies"][0]["summary"]
    assert summary == {"total-successful-session-count": 1, "total-failure-session-count": 0}
    failed = reports["wrongname.sts.test"]["report"]["policies"][0]
    assert failed["summary"]["total-failure-session-count"] == 1
    assert failed["failure-details"][0]["receiving-ip"] == WRONG_NAME


class TestRefresh:
    """mxf-remoted's renewal of the policies its deliveries used (``stsrefresh.py``)."""

    def remembered(self, knot: KnotServer, ca: tuple[trustme.CA, Path]) -> Any:
        from mxf_remote.stsrefresh import Remembered

        return Remembered(tuple(knot.nameservers), False, {"SSL_CERT_DIR": str(ca[1])}, 5.0)

    def run_round(self, cache_dir: Path, knot: KnotServer, ca: tuple[trustme.CA, Path]) -> int:
        import asyncio

        from mxf_remote.cares import CaresLookup
        from mxf_remote.stsrefresh import PolicyRefresher

        async def one_round() -> int:
            made: list[CaresLookup] = []

            def lookup_for(nameservers: list[str], dane: bool) -> CaresLookup:
                made.append(CaresLookup(nameservers, asyncio.get_running_loop()))
                return made[-1]

            refresher = PolicyRefresher(lookup_for)
            refresher.remember(str(cache_dir), "enforce.sts.test", self.remembered(knot, ca))
            try:
                return await refresher.refresh_due()
            finally:
                for lookup in made:
                    await lookup.close()

        return asyncio.run(one_round())

    def test_a_policy_near_its_end_is_fetched_again(self, world: World) -> None:
        home, knot, ca, exchangers = world
        from mxf_remote.mtasts import parse_policy

        cache_dir = home.root.parent / "mtasts"
        old = parse_policy(POLICIES["enforce"][1])
        PolicyCache(str(cache_dir)).store("enforce.sts.test", "old1", old, time.time() - 80_000)
        hits = exchangers["policy"].hits
        before = hits.get("enforce.sts.test", 0)
        assert self.run_round(cache_dir, knot, ca) == 1
        assert hits.get("enforce.sts.test", 0) == before + 1
        renewed = PolicyCache(str(cache_dir)).load("enforce.sts.test")
        assert renewed is not None
        assert renewed.id == "20261201T000000"
        assert renewed.expires > time.time() + 80_000

    def test_a_fresh_policy_is_left_alone(self, world: World) -> None:
        home, knot, ca, exchangers = world
        from mxf_remote.mtasts import parse_policy

        cache_dir = home.root.parent / "mtasts"
        policy = parse_policy(POLICIES["enforce"][1])
        PolicyCache(str(cache_dir)).store(
            "enforce.sts.test", "20261201T000000", policy, time.time()
        )
        before = exchangers["policy"].hits.get("enforce.sts.test", 0)
        assert self.run_round(cache_dir, knot, ca) == 0
        assert exchangers["policy"].hits.get("enforce.sts.test", 0) == before


@pytest.mark.cold_only("the probe runs its own dispatch")
def test_probe_shows_the_policy_it_used(
    world: World,
) -> None:
    home, knot, ca, _ = world
    probe = str(Path(MXF_REMOTE).with_name("mxf-remote-probe"))
    env = {"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(home.root), "SSL_CERT_DIR": str(ca[1])}
    done = subprocess.run(
        [probe, "--json", "nomatch.sts.test"],
        env={**env, **knot.env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    result = json.loads(done.stdout)
    assert result["tls"]["sts"] == {
        "state": "policy",
        "domain": "nomatch.sts.test",
        "source": "fetched",
        "mode": "enforce",
        "mx": ["other.sts.test"],
        "max_age": 86400,
    }
    assert result["report"] == (
        "ZSorry, mx.nomatch.sts.test is not an MX host of the MTA-STS policy of "
        "nomatch.sts.test. (#4.7.5)\n"
    )
    assert [r["exchanger"] for r in result["facts"]["refused"]] == ["mx.nomatch.sts.test"]
    # A failed fetch is no delivery's: the probe (often run as root) records no TLS-RPT line.
    subprocess.run(
        [probe, "redirect.sts.test"], env={**env, **knot.env}, capture_output=True, check=False
    )
    assert spool_lines(home) == []
