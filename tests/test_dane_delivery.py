"""DANE end to end: signed zones -> validating resolver -> mxf-remote -> TLS client -> server.

A real DNSSEC lab (``tests/infra/dnsseclab.py``: knotd signing ``test.`` and ``dane.test.``,
unbound validating with the DS of ``test.`` as its only trust anchor, ``plain.test.``
delegated without DS), ``control/dane`` saying ``on``, the installed ``mxf-remote`` with the
default protocols (QMTPS, QMTP, SMTP under ``mxf-remote-ucspitlsc``), and aiosmtpd
exchangers with STARTTLS whose certificates come from ``tests/danekit.py``.  Every outcome
is checked byte for byte on fd 1, with nothing on fd 2 and exit 0, and so is where the
message went -- above all, where it must *not* have gone.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.danekit import DanePki, Issued
from tests.infra.dnsseclab import DnssecLab, missing_tools
from tests.infra.netns import listen_tcp
from tests.remotekit import MXF_REMOTE, Delivery, QmailHome, run_remote
from tests.sinkkit import SmtpSink

pytestmark = [pytest.mark.knot, pytest.mark.usefixtures("netns")]

SENDER = "alice@example.org"
RECIPIENTS = ("bob@example.org",)
MESSAGE = b"Subject: dane\n\nchecked\n"
ACCEPTED = b"r\0K%s accepted message.\nRemote host said: 250 2.0.0 OK queued\n\0"

EE = "127.0.54.1"
WRONG_KEY = "127.0.54.2"
TA = "127.0.54.3"
BOGUS_TLSA = "127.0.54.4"
NO_STARTTLS = "127.0.54.5"
BOTH = "127.0.54.6"
INSECURE = "127.0.54.7"
EE_EXPIRED = "127.0.54.8"
TA_EXPIRED = "127.0.54.9"
UNUSABLE = "127.0.54.10"
TA_WRONG_NAME = "127.0.54.11"
CNAME_TARGET = "127.0.54.12"
CNAME_TARGET_WRONG_KEY = "127.0.54.13"


class Lab:
    """The PKI, the zones made from it, the lab and the exchangers."""

    def __init__(self, directory: Path) -> None:
        pki = DanePki(directory)
        self.pki = pki
        self.ee = pki.self_signed("ee", "mx-ee.dane.test")
        self.other = pki.rekeyed("other", like=self.ee)
        self.ta = pki.issued("ta", "mx-ta.dane.test")
        self.ta_expired = pki.issued("taexp", "mx-taexp.dane.test", expired=True)
        self.ta_wrong_name = pki.issued("tawrong", "wrong-name.dane.test")
        self.ee_expired = pki.self_signed("eeexp", "somebody.else.example", expired=True)
        self.target = pki.issued("target", "mx-target.dane.test")  # only the CNAME's target
        ee311 = self.ee.tlsa(3, 1, 1)
        anchor = pki.intermediate.tlsa(2, 1, 1)
        self.zones = {
            "test.": "",
            "dane.test.": f"""
ee              MX    10 mx-ee
mx-ee           A     {EE}
_25._tcp.mx-ee  TLSA  {ee311}
wrongkey        MX    10 mx-wrongkey
mx-wrongkey     A     {WRONG_KEY}
_25._tcp.mx-wrongkey TLSA {ee311}
ta              MX    10 mx-ta
mx-ta           A     {TA}
_25._tcp.mx-ta  TLSA  {anchor}
badtlsa         MX    10 mx9
mx9             A     {BOGUS_TLSA}
nostarttls      MX    10 mx-plain
mx-plain        A     {NO_STARTTLS}
_25._tcp.mx-plain TLSA {ee311}
downgrade       MX    12801 mx-both
mx-both         A     {BOTH}
_25._tcp.mx-both TLSA {ee311}
eeexpired       MX    10 mx-eeexp
mx-eeexp        A     {EE_EXPIRED}
_25._tcp.mx-eeexp TLSA {self.ee_expired.tlsa(3, 0, 1)}
taexpired       MX    10 mx-taexp
mx-taexp        A     {TA_EXPIRED}
_25._tcp.mx-taexp TLSA {anchor}
tawrongname     MX    10 mx-tawrong
mx-tawrong      A     {TA_WRONG_NAME}
_25._tcp.mx-tawrong TLSA {anchor}
cname           MX    10 mx-alias
mx-alias        CNAME mx-target
mx-target       A     {CNAME_TARGET}
_25._tcp.mx-target TLSA {anchor}
cnamebad        MX    10 mx-alias2
mx-alias2       CNAME mx-target2
mx-target2      A     {CNAME_TARGET_WRONG_KEY}
_25._tcp.mx-target2 TLSA {ee311}
unusable        MX    10 mx-unusable
mx-unusable     A     {UNUSABLE}
_25._tcp.mx-unusable TLSA {self.ee.tlsa(1, 1, 1)}
""",
            "_tcp.mx9.dane.test.": f"_25  TLSA  {ee311}\n",
            "plain.test.": f"""
insecure        MX    10 mx
mx              A     {INSECURE}
_25._tcp.mx     TLSA  {ee311}
""",
        }
        self.signed = ("test.", "dane.test.", "_tcp.mx9.dane.test.")
        self.broken = ("_tcp.mx9.dane.test.",)
        self.sinks: dict[str, SmtpSink] = {}
        self.listeners: list[socket.socket] = []

    def serve(self) -> None:
        """Start every exchanger."""
        serving = {
            EE: self.ee,
            WRONG_KEY: self.other,
            TA: self.ta,
            BOGUS_TLSA: self.ee,
            BOTH: self.ee,
            INSECURE: self.other,
            EE_EXPIRED: self.ee_expired,
            TA_EXPIRED: self.ta_expired,
            TA_WRONG_NAME: self.ta_wrong_name,
            UNUSABLE: self.other,
            CNAME_TARGET: self.target,
            CNAME_TARGET_WRONG_KEY: self.target,
        }
        for address, issued in serving.items():
            self.sinks[address] = SmtpSink(address, 25, server_context(issued))
        self.sinks[NO_STARTTLS] = SmtpSink(NO_STARTTLS, 25, None)
        for port in (209, 6209):  # QMTP and QMTPS beside the protected SMTP
            self.listeners.append(listen_tcp(BOTH, port))

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()
        for listener in self.listeners:
            listener.close()


def server_context(issued: Issued) -> ssl.SSLContext:
    """A server context presenting ``issued`` and its chain."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(issued.chain_path), str(issued.key_path))
    return context


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, DnssecLab]]:
    """The PKI, the signed zones, the validating resolver and the exchangers."""
    problem = missing_tools()
    if problem is not None:
        pytest.skip(f"no DNSSEC lab: {problem}")
    made = Lab(tmp_path_factory.mktemp("dane-pki"))
    with DnssecLab(made.zones, signed=made.signed, broken_ds=made.broken) as dns:
        try:
            made.serve()
            yield made, dns
        finally:
            made.close()


@pytest.fixture
def home(tmp_path: Path) -> QmailHome:
    """A qmail home with DANE on and the default protocols."""
    qmail = QmailHome(tmp_path / "qmail")
    qmail.control("me", "me.example\n")
    qmail.control("dane", "on\n")
    return qmail


def deliver(home: QmailHome, host: str, lab: tuple[Lab, DnssecLab]) -> Delivery:
    return run_remote(
        home, host, env=lab[1].env, sender=SENDER, recipients=RECIPIENTS, message=MESSAGE
    )


def assert_report(delivery: Delivery, report: bytes) -> None:
    assert (delivery.stdout, delivery.stderr, delivery.returncode) == (report, b"", 0)


def assert_arrived_over_tls(sink: SmtpSink) -> None:
    arrival = sink.arrival()
    assert (arrival.sender, arrival.recipients) == (SENDER, list(RECIPIENTS))
    assert arrival.content == MESSAGE.replace(b"\n", b"\r\n")
    assert arrival.tls in ("TLSv1.2", "TLSv1.3")
    assert sink.no_arrival()


def assert_nothing_arrived(lab: tuple[Lab, DnssecLab]) -> None:
    for sink in lab[0].sinks.values():
        assert sink.no_arrival()


class TestDelivered:
    """Delivered, and only over TLS: the certificate matches the TLSA records, or DANE asks
    for TLS without authentication, or DANE does not apply."""

    @pytest.mark.parametrize(
        ("host", "address"),
        [
            ("ee.dane.test", EE),  # DANE-EE 3 1 1, a self-signed leaf
            ("ta.dane.test", TA),  # DANE-TA 2 1 1 on the intermediate the server sends
            ("eeexpired.dane.test", EE_EXPIRED),  # DANE-EE: no expiry and no name checks
            # only a PKIX-EE (1 1 1) record: TLS mandatory, not authenticated (RFC 7672 §3.1.3)
            ("unusable.dane.test", UNUSABLE),
            # plain.test is unsigned: its (mismatching) TLSA record is ignored
            ("insecure.plain.test", INSECURE),
            # RFC 7672 §2.2.2: MX mx-alias is a secure CNAME to mx-target, whose TLSA (2 1 1)
            # counts, and whose name the DANE-TA check accepts (the certificate has no other)
            ("cname.dane.test", CNAME_TARGET),
        ],
    )
    def test_matching_certificate(
        self, home: QmailHome, lab: tuple[Lab, DnssecLab], host: str, address: str
    ) -> None:
        delivery = deliver(home, host, lab)
        assert_report(delivery, ACCEPTED % address.encode())
        assert_arrived_over_tls(lab[0].sinks[address])

    def test_no_downgrade_to_qmtp(self, home: QmailHome, lab: tuple[Lab, DnssecLab]) -> None:
        """MX 12801 (MXPS slice 1) would try QMTP first; the SMTP is DANE-protected, so QMTP
        and QMTPS are never even connected to."""
        delivery = deliver(home, "downgrade.dane.test", lab)
        assert_report(delivery, ACCEPTED % BOTH.encode())
        assert_arrived_over_tls(lab[0].sinks[BOTH])
        for listener in lab[0].listeners:
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):
                listener.accept()


class TestRefused:
    """Nothing is delivered, and the report says why (Z: the mail waits)."""

    def test_bogus_tlsa_is_a_tlsa_lookup_error(
        self, home: QmailHome, lab: tuple[Lab, DnssecLab]
    ) -> None:
        delivery = deliver(home, "badtlsa.dane.test", lab)
        assert_report(delivery, b"ZSorry, TLSA lookup error for mx9.dane.test:25. (#4.7.5)\n\0")
        assert_nothing_arrived(lab)

    def test_a_tlsa_lookup_error_is_recorded_for_tls_rpt(
        self, home: QmailHome, lab: tuple[Lab, DnssecLab], tmp_path: Path
    ) -> None:
        """With control/mtasts (the TLS-RPT spool), the bogus TLSA is RFC 8460's
        ``dnssec-invalid`` for the policy domain."""
        spool = tmp_path / "spool"
        spool.mkdir()
        home.control("mtasts", f"{spool}\n")
        deliver(home, "badtlsa.dane.test", lab)
        (day,) = (spool / "tlsrpt").iterdir()
        (line,) = [json.loads(text) for text in day.read_text().splitlines()]
        assert line["policy"] == {
            "policy-type": "tlsa",
            "policy-string": [],
            "policy-domain": "badtlsa.dane.test",
        }
        assert (line["result"], line["receiving-mx-hostname"]) == (
            "dnssec-invalid",
            "mx9.dane.test",
        )
        assert_nothing_arrived(lab)

    @pytest.mark.parametrize(
        ("host", "address"),
        [
            ("wrongkey.dane.test", WRONG_KEY),
            ("taexpired.dane.test", TA_EXPIRED),
            ("tawrongname.dane.test", TA_WRONG_NAME),
            # the TLSA at the CNAME's target names another key; mx-alias2 itself has none
            ("cnamebad.dane.test", CNAME_TARGET_WRONG_KEY),
        ],
    )
    def test_certificate_not_matching(
        self, home: QmailHome, lab: tuple[Lab, DnssecLab], host: str, address: str
    ) -> None:
        delivery = deliver(home, host, lab)
        assert delivery.stdout.startswith(
            b"ZTLS with %s failed after STARTTLS: DANE: " % address.encode()
        ), delivery.stdout
        assert delivery.stdout.endswith(b". (#4.7.5)\n\0")
        assert (delivery.stderr, delivery.returncode) == (b"", 0)
        assert_nothing_arrived(lab)

    def test_no_starttls_is_never_clear_text(
        self, home: QmailHome, lab: tuple[Lab, DnssecLab]
    ) -> None:
        delivery = deliver(home, "nostarttls.dane.test", lab)
        assert_report(
            delivery,
            b"ZConnected to %s but STARTTLS is not offered, and DANE requires TLS. (#4.7.5)\n\0"
            % NO_STARTTLS.encode(),
        )
        assert_nothing_arrived(lab)


class TestOff:
    def test_without_control_dane_nothing_is_checked(
        self, home: QmailHome, lab: tuple[Lab, DnssecLab]
    ) -> None:
        """Today's behaviour: opportunistic TLS, the wrong key goes unnoticed."""
        (home.root / "control" / "dane").unlink()
        delivery = deliver(home, "wrongkey.dane.test", lab)
        assert_report(delivery, ACCEPTED % WRONG_KEY.encode())
        assert_arrived_over_tls(lab[0].sinks[WRONG_KEY])

    @pytest.mark.parametrize("text", ["yes\n", "On\n", "\n", "on \x00\n"])
    def test_a_control_dane_that_is_not_on_or_off_is_a_deferral(
        self, home: QmailHome, lab: tuple[Lab, DnssecLab], text: str
    ) -> None:
        home.control("dane", text)
        delivery = deliver(home, "ee.dane.test", lab)
        assert delivery.stdout.startswith(b"ZUnable to read control files. (#4.3.0)\ncontrol/dane")
        assert_nothing_arrived(lab)


@pytest.mark.cold_only("the probe runs its own dispatch")
def test_probe_shows_dnssec_status_tlsa_and_the_requirement(
    home: QmailHome, lab: tuple[Lab, DnssecLab]
) -> None:
    probe = str(Path(MXF_REMOTE).with_name("mxf-remote-probe"))
    done = subprocess.run(
        [probe, "--json", "ee.dane.test"],
        env={"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(home.root), **lab[1].env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    queries = {(q["type"], q["name"]): q for q in result["timeline"]["queries"]}
    assert queries[("MX", "ee.dane.test")]["dnssec"] == "secure"
    assert queries[("A", "mx-ee.dane.test")]["dnssec"] == "secure"
    assert queries[("TLSA", "_25._tcp.mx-ee.dane.test")]["dnssec"] == "secure"
    tls = result["tls"]
    assert tls["dane"] is True
    assert tls["untrusted_nameservers"] == []
    assert tls["tlsa"] == [
        {
            "name": "mx-ee.dane.test",
            "port": 25,
            "status": "ok",
            "dnssec": "secure",
            "records": [lab[0].ee.tlsa(3, 1, 1).lower()],
            "usable": [lab[0].ee.tlsa(3, 1, 1).lower()],
        }
    ]
    assert tls["requirement"]["kind"] == "dane"
