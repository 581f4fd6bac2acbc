"""Tests for tests/infra/dnsseclab.py and tests/danekit.py.

The lab is proved the way DANE code will use it: real queries with AD=1 to the validating
resolver (unbound), which must answer secure data with AD=1, bogus data with SERVFAIL and
insecure data with AD=0, authenticated denial (NXDOMAIN, NODATA) with AD=1, and a name
whose address records are secure while its TLSA is bogus with exactly that split.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mxf_remote.nameservers import parse_nameserver
from tests.danekit import DanePki, tlsa_association, tlsa_rdata
from tests.infra import dnswire
from tests.infra.dnsseclab import DnssecLab, DnssecLabError, break_ds

pytestmark = pytest.mark.knot

ROOT = Path(__file__).resolve().parent.parent
SPKI_MX1 = "952FACD1D72B71A83D61D2C7699221ADA0EEB7C919D18CE5D70D0D8EC4E8FF97"
SPKI_MX9 = "AB" * 32

DNSSEC_ZONES = {
    "test.": "",
    "dane.test.": f"""
@             MX    10 mx1
@             MX    20 mx2
mx1           A     127.0.0.25
mx1           AAAA  fd6d:7866::25
mx2           A     127.0.0.26
mx9           A     127.0.0.29
_25._tcp.mx1  TLSA  3 1 1 {SPKI_MX1}
_mta-sts      TXT   "v=STSv1; id=20261201T000000;"
""",
    # Everything in here is bogus: its DS in test. matches no key.
    "bogus.test.": f"""
@             MX    10 mx1
mx1           A     127.0.0.25
_25._tcp.mx1  TLSA  3 1 1 {SPKI_MX1}
""",
    # Unsigned and delegated without DS: insecure.
    "plain.test.": f"""
@             MX    10 mx1
mx1           A     127.0.0.25
_25._tcp.mx1  TLSA  3 1 1 {SPKI_MX1}
""",
    # mx9.dane.test's A is secure, but its TLSA lives below a broken delegation: bogus.
    "_tcp.mx9.dane.test.": f"_25 TLSA 3 1 1 {SPKI_MX9}\n",
}
DNSSEC_SIGNED = ["test.", "dane.test.", "bogus.test.", "_tcp.mx9.dane.test."]
DNSSEC_BROKEN_DS = ["bogus.test.", "_tcp.mx9.dane.test."]

# Addresses for the labs a test starts itself, next to the module's shared one.
OTHER_KNOT, OTHER_RESOLVER = "127.0.53.11", "127.0.53.12"


def _own_lab(zones: dict[str, str], signed: list[str]) -> DnssecLab:
    """A lab of the test's own, on addresses the module's lab does not use."""
    return DnssecLab(zones, signed=signed, knot_address=OTHER_KNOT, resolver_address=OTHER_RESOLVER)


def _tlsa(answer: dnswire.Message) -> list[tuple[int, int, int, str]]:
    """The TLSA records of an answer as (usage, selector, mtype, HEX)."""
    out = []
    for data in answer.answer_data("TLSA"):
        assert isinstance(data, bytes)
        out.append((data[0], data[1], data[2], data[3:].hex().upper()))
    return out


def _process_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TestSecure:
    """Signed zones with a good chain of trust answer with AD=1."""

    @pytest.mark.parametrize(
        ("name", "qtype", "expected"),
        [
            ("dane.test", "MX", [(10, "mx1.dane.test"), (20, "mx2.dane.test")]),
            ("mx1.dane.test", "A", ["127.0.0.25"]),
            ("mx1.dane.test", "AAAA", ["fd6d:7866::25"]),
            ("_mta-sts.dane.test", "TXT", [(b"v=STSv1; id=20261201T000000;",)]),
        ],
    )
    def test_secure_records_have_ad(
        self, dnssec_lab: DnssecLab, name: str, qtype: str, expected: list[object]
    ) -> None:
        """MX, A, AAAA and TXT in dane.test come back NOERROR with AD=1 and their data."""
        answer = dnssec_lab.query(name, qtype)
        assert answer.rcode == dnswire.RCODE_NOERROR
        assert answer.ad
        assert sorted(answer.answer_data(qtype)) == expected  # type: ignore[type-var]

    def test_secure_tlsa(self, dnssec_lab: DnssecLab) -> None:
        """The TLSA record of mx1.dane.test is validated (AD=1) and intact."""
        answer = dnssec_lab.query("_25._tcp.mx1.dane.test", "TLSA")
        assert (answer.rcode, answer.ad) == (dnswire.RCODE_NOERROR, True)
        assert _tlsa(answer) == [(3, 1, 1, SPKI_MX1)]

    def test_authenticated_nxdomain(self, dnssec_lab: DnssecLab) -> None:
        """A name that does not exist in a signed zone is NXDOMAIN with AD=1 (NSEC proof)."""
        answer = dnssec_lab.query("_25._tcp.nosuch.dane.test", "TLSA")
        assert (answer.rcode, answer.ad) == (dnswire.RCODE_NXDOMAIN, True)
        assert not answer.answers

    def test_authenticated_nodata(self, dnssec_lab: DnssecLab) -> None:
        """A type a signed name lacks is NOERROR, no answer, AD=1 (NODATA proof)."""
        answer = dnssec_lab.query("mx2.dane.test", "AAAA")
        assert (answer.rcode, answer.ad) == (dnswire.RCODE_NOERROR, True)
        assert not answer.answers

    def test_no_ad_unless_asked(self, dnssec_lab: DnssecLab) -> None:
        """Without AD=1 in the query unbound answers AD=0 even for secure data (RFC 6840)."""
        host, port = dnssec_lab.resolver
        answer = dnswire.query_udp(host, port, "mx1.dane.test", "A")
        assert answer.rcode == dnswire.RCODE_NOERROR
        assert answer.answer_data("A") == ["127.0.0.25"]
        assert not answer.ad

    def test_ad_over_tcp(self, dnssec_lab: DnssecLab) -> None:
        """The validated answer is the same over TCP."""
        host, port = dnssec_lab.resolver
        answer = dnswire.query_tcp(host, port, "_25._tcp.mx1.dane.test", "TLSA", ad=True)
        assert answer.ad
        assert _tlsa(answer) == [(3, 1, 1, SPKI_MX1)]

    def test_knot_is_authoritative_and_never_ad(self, dnssec_lab: DnssecLab) -> None:
        """knotd itself answers with AA and without AD: only the resolver validates."""
        answer = dnssec_lab.query("mx1.dane.test", "A", authoritative=True)
        assert answer.aa
        assert not answer.ad
        assert answer.answer_data("A") == ["127.0.0.25"]


class TestBogus:
    """A signed zone whose DS in the parent matches no key validates as bogus."""

    @pytest.mark.parametrize(
        ("name", "qtype"),
        [("bogus.test", "MX"), ("mx1.bogus.test", "A"), ("_25._tcp.mx1.bogus.test", "TLSA")],
    )
    def test_bogus_is_servfail(self, dnssec_lab: DnssecLab, name: str, qtype: str) -> None:
        """Every name in bogus.test is SERVFAIL through unbound, though knot serves it."""
        answer = dnssec_lab.query(name, qtype)
        assert answer.rcode == dnswire.RCODE_SERVFAIL
        assert not answer.answers
        served = dnssec_lab.query(name, qtype, authoritative=True)
        assert served.rcode == dnswire.RCODE_NOERROR
        assert served.answer_data(qtype)

    def test_tlsa_only_bogus(self, dnssec_lab: DnssecLab) -> None:
        """mx9.dane.test: its A is secure, its TLSA (below a broken delegation) is bogus."""
        address = dnssec_lab.query("mx9.dane.test", "A")
        assert (address.rcode, address.ad) == (dnswire.RCODE_NOERROR, True)
        assert address.answer_data("A") == ["127.0.0.29"]
        tlsa = dnssec_lab.query("_25._tcp.mx9.dane.test", "TLSA")
        assert tlsa.rcode == dnswire.RCODE_SERVFAIL
        served = dnssec_lab.query("_25._tcp.mx9.dane.test", "TLSA", authoritative=True)
        assert _tlsa(served) == [(3, 1, 1, SPKI_MX9)]

    def test_published_ds_is_the_broken_one(self, dnssec_lab: DnssecLab) -> None:
        """test. publishes the altered DS of bogus.test and the true DS of dane.test."""
        for child, broken in (("bogus.test", True), ("dane.test", False)):
            answer = dnssec_lab.query(child, "DS", authoritative=True)
            served = sorted(d.hex() for d in answer.answer_data("DS"))  # type: ignore[attr-defined]
            wanted = dnssec_lab.published_ds(child)
            assert served == sorted(_ds_rdata_hex(line) for line in wanted)
            assert (wanted != dnssec_lab.ds(child)) is broken


def _ds_rdata_hex(line: str) -> str:
    """The wire rdata (hex) of a presentation DS line 'owner DS tag alg dtype digest'."""
    _owner, _ds, tag, alg, dtype, digest = line.split()
    return (int(tag).to_bytes(2, "big") + bytes([int(alg), int(dtype)])).hex() + digest.lower()


class TestInsecure:
    """An unsigned zone delegated without DS: answers, but never AD=1."""

    @pytest.mark.parametrize(
        ("name", "qtype"),
        [("plain.test", "MX"), ("mx1.plain.test", "A"), ("_25._tcp.mx1.plain.test", "TLSA")],
    )
    def test_insecure_no_ad(self, dnssec_lab: DnssecLab, name: str, qtype: str) -> None:
        """plain.test answers NOERROR with its data and AD=0."""
        answer = dnssec_lab.query(name, qtype)
        assert (answer.rcode, answer.ad) == (dnswire.RCODE_NOERROR, False)
        assert answer.answer_data(qtype)

    def test_insecure_nxdomain(self, dnssec_lab: DnssecLab) -> None:
        """A missing name in plain.test is NXDOMAIN without AD."""
        answer = dnssec_lab.query("nosuch.plain.test", "A")
        assert (answer.rcode, answer.ad) == (dnswire.RCODE_NXDOMAIN, False)


class TestLabInterface:
    """What the lab tells the tests that use it."""

    def test_nameservers_and_env(self, dnssec_lab: DnssecLab) -> None:
        """The resolver is given in mxf-remote's nameserver syntax, and in MXF_NAMESERVERS."""
        assert dnssec_lab.nameservers == ["127.0.53.2:53"]
        assert [parse_nameserver(s) for s in dnssec_lab.nameservers] == dnssec_lab.nameservers
        assert dnssec_lab.env == {"MXF_NAMESERVERS": "127.0.53.2:53"}
        assert dnssec_lab.authoritative == ("127.0.53.1", 53)

    def test_anchor_is_the_ds_of_test(self, dnssec_lab: DnssecLab) -> None:
        """unbound's trust anchor file holds exactly the DS records of test."""
        anchor = (dnssec_lab.directory / "anchor.ds").read_text().split("\n")
        assert [line for line in anchor if line] == dnssec_lab.ds("test.")
        assert all(line.startswith("test. DS ") for line in dnssec_lab.ds("test"))

    def test_ds_of_unsigned_zone_is_an_error(self, dnssec_lab: DnssecLab) -> None:
        """Asking for the DS of an unsigned zone raises KeyError."""
        with pytest.raises(KeyError):
            dnssec_lab.ds("plain.test")

    def test_dnskey_is_served_and_secure(self, dnssec_lab: DnssecLab) -> None:
        """Signed zones publish one DNSKEY (the CSK, flags 257, ECDSA P-256 = 13)."""
        answer = dnssec_lab.query("dane.test", "DNSKEY")
        assert answer.ad
        (key,) = answer.answer_data("DNSKEY")
        assert isinstance(key, bytes)
        assert (int.from_bytes(key[:2], "big"), key[2], key[3]) == (257, 3, 13)

    def test_second_lab_on_same_addresses_is_refused(self, dnssec_lab: DnssecLab) -> None:
        """Starting another lab on addresses in use fails at once, saying which, leaving
        no temp dir or process behind."""
        before = set(Path(tempfile.gettempdir()).glob("mxf-dnsseclab-*"))
        lab = DnssecLab({"test": ""}, signed=["test"])
        with pytest.raises(DnssecLabError, match=r"127\.0\.53\.1:53/UDP: in use"):
            lab.start()
        after = set(Path(tempfile.gettempdir()).glob("mxf-dnsseclab-*"))
        assert after == before


class TestLifecycle:
    """Starting and stopping labs of one's own."""

    def test_stop_ends_both_daemons_and_removes_files(self) -> None:
        """After the with-block knotd and unbound are gone, ports free, temp dir removed."""
        with _own_lab({"test": "www A 127.0.0.9"}, ["test"]) as lab:
            assert lab.query("www.test", "A").ad
            pids = [p.pid for p in (lab._knot, lab._unbound) if p is not None]
            directory = lab.directory
        assert len(pids) == 2
        assert not any(_process_alive(pid) for pid in pids)
        assert not directory.exists()
        for address in (OTHER_KNOT, OTHER_RESOLVER):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, 53), timeout=1.0).close()

    def test_exception_in_block_still_stops(self) -> None:
        """An exception inside the with-block still stops both daemons."""
        lab = _own_lab({"test": ""}, ["test"])
        pids: list[int] = []
        with pytest.raises(ZeroDivisionError), lab:
            pids = [p.pid for p in (lab._knot, lab._unbound) if p is not None]
            _ = 1 / 0
        assert len(pids) == 2
        assert not any(_process_alive(pid) for pid in pids)

    def test_daemons_die_with_a_killed_test_process(self) -> None:
        """If the test process dies without stop(), knotd and unbound are killed too."""
        code = (
            f"import os, sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.infra.dnsseclab import DnssecLab\n"
            "lab = DnssecLab({'test': ''}, signed=['test'], knot_address='127.0.53.21',"
            " resolver_address='127.0.53.22'); lab.start()\n"
            "print(lab._knot.pid, lab._unbound.pid, lab.directory, flush=True); os._exit(0)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
        knot_pid, unbound_pid, directory = out.stdout.split()
        shutil.rmtree(directory, ignore_errors=True)
        pids = [int(knot_pid), int(unbound_pid)]
        deadline = time.monotonic() + 3.0
        while any(_process_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        orphans = [p for p in pids if _process_alive(p)]
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)  # the test must not leave them behind either
        assert not orphans

    def test_bad_zone_fails_with_zone_text(self) -> None:
        """A zone knot cannot load raises DnssecLabError quoting knot's log and the file."""
        lab = _own_lab({"test": "", "x.test": "www A 300.1.2.3"}, ["test"])
        with pytest.raises(DnssecLabError) as info:
            lab.start()
        assert "could not load zone x.test" in str(info.value)
        assert "www A 300.1.2.3" in str(info.value)

    def test_other_anchor(self) -> None:
        """A lab anchored at a top zone outside .test validates below it just the same."""
        zones = {"example": "", "sub.example": "www A 127.0.0.9"}
        with DnssecLab(
            zones,
            signed=["example", "sub.example"],
            anchor="example.",
            knot_address=OTHER_KNOT,
            resolver_address=OTHER_RESOLVER,
        ) as lab:
            answer = lab.query("www.sub.example", "A")
        assert (answer.rcode, answer.ad) == (dnswire.RCODE_NOERROR, True)
        assert answer.answer_data("A") == ["127.0.0.9"]

    def test_danekit_tlsa_served_and_validated(self, tmp_path: Path) -> None:
        """A TLSA record computed by danekit comes back through the lab validated and equal
        to the certificate's SPKI digest."""
        leaf = DanePki(tmp_path).self_signed("mx1", "mx1.ee.test")
        zones = {"test": "", "ee.test": f"_25._tcp.mx1 TLSA {leaf.tlsa(3, 1, 1)}"}
        with _own_lab(zones, ["test", "ee.test"]) as lab:
            answer = lab.query("_25._tcp.mx1.ee.test", "TLSA")
        assert answer.ad
        assert _tlsa(answer) == [(3, 1, 1, tlsa_association(leaf.cert, 1, 1).hex().upper())]


class TestValidation:
    """Impossible labs are refused before anything starts."""

    @pytest.mark.parametrize(
        ("zones", "signed", "broken", "problem"),
        [
            ({"test": ""}, [], [], "anchor 'test' is not signed"),
            ({"dane.test": ""}, ["dane.test"], [], "anchor 'test' is not among the zones"),
            ({"test": "", "a.test": ""}, ["test"], ["a.test"], "not signed: ['a.test']"),
            ({"test": ""}, ["test"], ["test"], "no parent DS to break"),
            ({"test": "", "example": ""}, ["test"], [], "outside the anchor"),
            ({"test": ""}, ["test", "b.test"], [], "signed zones not served"),
        ],
    )
    def test_refused(
        self, zones: dict[str, str], signed: list[str], broken: list[str], problem: str
    ) -> None:
        """Each inconsistent set-up raises ValueError naming the problem."""
        with pytest.raises(ValueError, match="DnssecLab: .*" + problem.replace("[", r"\[")):
            DnssecLab(zones, signed=signed, broken_ds=broken)

    def test_break_ds_changes_one_digit(self) -> None:
        """break_ds alters exactly the last hex digit of the digest, and rejects non-DS."""
        line = "a.test. DS 12345 13 2 " + "ab" * 32
        broken = break_ds(line)
        assert broken[:-1] == line[:-1]
        assert broken[-1] != line[-1]
        assert break_ds(line[:-1] + "0").endswith("1")
        with pytest.raises(ValueError, match="not a DS record"):
            break_ds("a.test. A 127.0.0.1")


class TestDanekit:
    """Throwaway certificates and their TLSA data."""

    def test_spki_digest_matches_openssl(self, tmp_path: Path) -> None:
        """3 1 1 data equals `openssl x509 -pubkey | openssl pkey -pubin -outform DER |
        sha256sum`."""
        if shutil.which("openssl") is None or shutil.which("sha256sum") is None:
            pytest.skip("openssl or sha256sum missing")
        leaf = DanePki(tmp_path).self_signed("mx1", "mx1.dane.test")
        pipeline = (
            f"openssl x509 -in {leaf.cert_path} -pubkey -noout"
            " | openssl pkey -pubin -outform DER | sha256sum"
        )
        out = subprocess.run(
            ["sh", "-c", pipeline], capture_output=True, text=True, timeout=30, check=True
        )
        assert leaf.tlsa(3, 1, 1) == f"3 1 1 {out.stdout.split()[0].upper()}"

    def test_selectors_and_matching_types(self, tmp_path: Path) -> None:
        """Selector 0 is the whole certificate, 1 the SPKI; mtype 0 raw, 1 SHA-256,
        2 SHA-512; anything else is refused."""
        leaf = DanePki(tmp_path).self_signed("mx1", "mx1.dane.test")
        full = leaf.cert_path.read_bytes()
        assert tlsa_association(leaf.cert, 0, 0) != tlsa_association(leaf.cert, 1, 0)
        assert b"CERTIFICATE" in full
        assert len(tlsa_association(leaf.cert, 0, 1)) == 32
        assert len(tlsa_association(leaf.cert, 1, 2)) == 64
        assert tlsa_rdata(leaf.cert, 2, 0, 0).startswith("2 0 0 3082")  # a DER SEQUENCE
        for selector, mtype in ((2, 1), (1, 3)):
            with pytest.raises(ValueError, match="TLSA"):
                tlsa_association(leaf.cert, selector, mtype)

    def test_chain_verifies_under_the_intermediate(self, tmp_path: Path) -> None:
        """DANE-TA shapes, checked by openssl: the issued leaf verifies with the
        intermediate as the only trust anchor; the expired one and the wrong name do not."""
        if shutil.which("openssl") is None:
            pytest.skip("openssl missing")
        pki = DanePki(tmp_path)
        good = pki.issued("mx2", "mx2.dane.test")
        expired = pki.issued("old", "mx2.dane.test", expired=True)
        wrong = pki.issued("mx4", "wrong-name.dane.test")
        assert good.chain == (pki.intermediate.cert,)
        assert good.chain_path.read_bytes().count(b"BEGIN CERTIFICATE") == 2

        def verify(leaf: Path) -> subprocess.CompletedProcess[str]:
            argv = ["openssl", "verify", "-partial_chain", "-purpose", "sslserver"]
            argv += ["-trusted", str(pki.intermediate.cert_path)]
            argv += ["-verify_hostname", "mx2.dane.test", str(leaf)]
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

        assert verify(good.cert_path).returncode == 0
        assert "expired" in verify(expired.cert_path).stdout + verify(expired.cert_path).stderr
        assert verify(wrong.cert_path).returncode != 0

    def test_rekeyed_leaf_has_same_name_other_key(self, tmp_path: Path) -> None:
        """rekeyed() keeps names and issuer but changes the key, so 3 1 1 differs."""
        pki = DanePki(tmp_path)
        mx1 = pki.self_signed("mx1", "mx1.dane.test")
        other = pki.rekeyed("mx1-other", mx1)
        assert other.cert.subject == mx1.cert.subject
        assert other.cert.issuer == other.cert.subject
        assert other.tlsa(3, 1, 1) != mx1.tlsa(3, 1, 1)
        assert oct(other.key_path.stat().st_mode & 0o777) == "0o600"
