"""DANE (MXFDANE) and WebPKI (MXFWEBPKI) in the TLS engine: real clients, real TLS servers.

mxf-remote-ucspitlsc and mxf-remote-tlsc run as processes with the connection on fds 6/7,
against loopback TLS servers presenting certificates made by ``tests.danekit``: a
self-signed leaf (DANE-EE), a leaf issued by an intermediate sent with it (DANE-TA on the
intermediate), and the ones that must fail.  The record parser and the DER walk are also
tested alone, hostile input first.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from mxf_remote.tls import dane
from mxf_remote.tls.certinfo import DERError, spki
from mxf_remote.tls.envblock import encode_failure_block, parse_failure
from tests import tlskit
from tests.danekit import DanePki, Issued

NAME = "mx.dane.test"
UCSPI = "mxf-remote-ucspitlsc"
TLSC = "mxf-remote-tlsc"
NO_MATCH = "DANE: no TLSA record matched the certificate"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DanePki:
    """A root, an intermediate (the DANE-TA anchor) and the leaves below."""
    return DanePki(tmp_path_factory.mktemp("dane"))


@pytest.fixture(scope="module")
def leaves(pki: DanePki) -> dict[str, Issued]:
    """Every leaf the tests present, by role."""
    return {
        "ee": pki.self_signed("ee", NAME),
        "ee-expired": pki.self_signed("ee-expired", NAME, expired=True),
        "ee-other-name": pki.self_signed("ee-other-name", "elsewhere.test"),
        "ta": pki.issued("ta", NAME),
        "ta-expired": pki.issued("ta-expired", NAME, expired=True),
        "ta-other-name": pki.issued("ta-other-name", "elsewhere.test"),
    }


class Bench:
    """A TLS server presenting one leaf, and the clients run against it."""

    def __init__(self, tmp: Path, leaf: Issued) -> None:
        import ssl

        self.tmp = tmp
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(leaf.chain_path, leaf.key_path)
        self.servers: list[tlskit.Server] = []

    def server(self, handler: tlskit.Handler) -> tlskit.Server:
        server = tlskit.Server(handler, self.context)
        self.servers.append(server)
        return server

    def run(
        self, client: str, handler: tlskit.Handler, mode: str, **env: str
    ) -> tuple[int, bytes, dict[str, Any] | None, Any]:
        """(status, fd 1+2, prog's record or None, the server handler's outcome)."""
        server = self.server(handler)
        out = self.tmp / "prog.json"
        out.unlink(missing_ok=True)
        argv = [
            *tlskit.client_command(client),
            "-k",
            NAME,
            "--",
            sys.executable,
            str(tlskit.PROG),
            mode,
        ]
        status, output = tlskit.run_client(argv, server.connect(), tlskit.base_env(self.tmp, **env))
        record = tlskit.prog_result(self.tmp) if out.exists() else None
        outcome = server.results.get(timeout=tlskit.TIMEOUT)
        return status, output, record, outcome

    def close(self) -> None:
        for server in self.servers:
            server.close()


@pytest.fixture
def bench(tmp_path: Path, leaves: dict[str, Issued]) -> Iterator[Any]:
    """``bench(role)``: a Bench for that leaf; servers closed afterwards."""
    made: list[Bench] = []

    def make(role: str) -> Bench:
        made.append(Bench(tmp_path, leaves[role]))
        return made[-1]

    yield make
    for item in made:
        item.close()


def serve_starttls_watch(server: tlskit.Server, conn: Any) -> dict[str, Any]:
    """STARTTLS, then TLS: every application byte the client sends, until it goes.

    Unlike ``tlskit.serve_starttls`` no send may fail the outcome: after a failed check the
    client closes at once, and the server's session tickets may meet a closed socket.
    """
    import contextlib
    import ssl

    conn.sendall(b"220 ready\r\n")
    command = tlskit._readline(conn).strip()
    conn.sendall(b"220 go ahead\r\n")
    assert server.context is not None
    tls = tlskit.ServerTLS(conn, server.context)
    received = bytearray()
    try:
        tls.handshake()
    except (ssl.SSLError, OSError) as exc:
        return {"command": command, "handshake": type(exc).__name__, "received": b""}
    with contextlib.suppress(ssl.SSLError, OSError):
        while data := tls.recv():
            received += data
            tls.send(data)
    return {"command": command, "handshake": "done", "received": bytes(received)}


def starttls_ok(bench: Bench, **env: str) -> dict[str, str | None]:
    """Under ucspitlsc with ``Y``: the handshake and check pass; the block prog got."""
    status, output, record, outcome = bench.run(UCSPI, serve_starttls_watch, "ucspi-Y", **env)
    assert (status, output) == (0, b"")
    assert record is not None and record["block"] is not None, record
    assert record["echo"] == "hello\n"
    assert outcome["received"] == b"hello\n"  # the watching server does see data
    block: dict[str, str | None] = record["block"]
    return block


def starttls_refused(bench: Bench, **env: str) -> str:
    """Under ucspitlsc with ``Y``: the check fails; the failure entry prog got.

    Not one byte of application data crosses: after a DANE check the server completes its
    handshake and then hears only close_notify; a WebPKI failure aborts the handshake
    itself (the server gets an alert).
    """
    status, output, record, outcome = bench.run(UCSPI, serve_starttls_watch, "ucspi-Y", **env)
    assert (status, output) == (0, b"")
    assert record is not None and record["block"] is None
    assert record["rest"] == ""
    assert outcome["command"] == b"STARTTLS"
    assert outcome["received"] == b""
    if "MXFWEBPKI" in env and "MXFDANE" not in env:
        assert outcome["handshake"] == "SSLError", "an alert inside the handshake"
    raw = bytes.fromhex(record["block_raw"])
    assert raw.endswith(b"\0") and raw.count(b"\0") == 1, "one entry, no closing NUL"
    failure = parse_failure(raw)
    assert failure is not None
    return " ".join(failure)


class TestDaneEE:
    """DANE-EE (usage 3): the leaf's key or certificate, no name or date checks."""

    @pytest.mark.parametrize("params", [(1, 1), (0, 1), (1, 2), (0, 0), (1, 0), (0, 2)])
    def test_matching_record_passes(
        self, bench: Any, leaves: dict[str, Issued], params: tuple[int, int]
    ) -> None:
        """3 S M naming the leaf: TLS runs, and SSL_DANE says which record at depth 0."""
        selector, mtype = params
        record = leaves["ee"].tlsa(3, selector, mtype)
        block = starttls_ok(bench("ee"), MXFDANE=record)
        assert block["SSL_DANE"] == f"3 {selector} {mtype} depth 0"
        assert block["SSL_TLS_SNI_SERVERNAME"] == NAME

    def test_other_key_fails(self, bench: Any, leaves: dict[str, Issued], pki: DanePki) -> None:
        """A leaf with another key than the record names: validation-failure, no data."""
        record = pki.rekeyed("ee-rekeyed", leaves["ee"]).tlsa(3, 1, 1)
        assert starttls_refused(bench("ee"), MXFDANE=record) == f"validation-failure {NO_MATCH}"

    @pytest.mark.parametrize("role", ["ee-expired", "ee-other-name"])
    def test_expired_or_wrong_name_still_passes(
        self, bench: Any, leaves: dict[str, Issued], role: str
    ) -> None:
        """RFC 7672 §3.1.1: an expired leaf or another name does not matter under DANE-EE."""
        block = starttls_ok(bench(role), MXFDANE=leaves[role].tlsa(3, 1, 1))
        assert block["SSL_DANE"] == "3 1 1 depth 0"

    def test_second_record_matches(self, bench: Any, leaves: dict[str, Issued]) -> None:
        """Several records (``;``), hex in lower case: any one matching is enough."""
        records = f"3 1 1 {'ab' * 32};{leaves['ee'].tlsa(3, 0, 1).lower()}"
        assert starttls_ok(bench("ee"), MXFDANE=records)["SSL_DANE"] == "3 0 1 depth 0"

    def test_cafile_is_ignored(self, bench: Any, leaves: dict[str, Issued], pki: DanePki) -> None:
        """MXFDANE wins over CAFILE (whose CA never issued the self-signed leaf)."""
        record = leaves["ee"].tlsa(3, 1, 1)
        block = starttls_ok(bench("ee"), MXFDANE=record, CAFILE=str(pki.root.cert_path))
        assert block["SSL_DANE"] == "3 1 1 depth 0"


class TestDaneTA:
    """DANE-TA (usage 2): the intermediate anchors a path that must validate, names checked."""

    @pytest.mark.parametrize("selector", [0, 1])
    def test_intermediate_passes(self, bench: Any, pki: DanePki, selector: int) -> None:
        """2 S 1 naming the intermediate the server sends: SSL_DANE says depth 1."""
        record = pki.intermediate.tlsa(2, selector, 1)
        block = starttls_ok(bench("ta"), MXFDANE=record, MXFDANENAMES=f"{NAME} mx.other.test")
        assert block["SSL_DANE"] == f"2 {selector} 1 depth 1"

    def test_second_reference_name_passes(self, bench: Any, pki: DanePki) -> None:
        """The leaf's name may be any of MXFDANENAMES (the MX name before CNAME expansion)."""
        block = starttls_ok(
            bench("ta"),
            MXFDANE=pki.intermediate.tlsa(2, 1, 1),
            MXFDANENAMES=f"cname-target.test {NAME.upper()}.",
        )
        assert block["SSL_DANE"] == "2 1 1 depth 1"

    def test_without_names_the_k_name_is_used(self, bench: Any, pki: DanePki) -> None:
        """No MXFDANENAMES: the -k name is the reference identifier."""
        block = starttls_ok(bench("ta"), MXFDANE=pki.intermediate.tlsa(2, 1, 1))
        assert block["SSL_DANE"] == "2 1 1 depth 1"

    def test_expired_leaf_fails(self, bench: Any, pki: DanePki) -> None:
        """Under DANE-TA the leaf's dates count: certificate-expired."""
        failure = starttls_refused(bench("ta-expired"), MXFDANE=pki.intermediate.tlsa(2, 1, 1))
        assert failure == "certificate-expired DANE: certificate at depth 0 has expired"

    def test_wrong_name_fails(self, bench: Any, pki: DanePki) -> None:
        """Under DANE-TA the leaf must carry a reference name: certificate-host-mismatch."""
        failure = starttls_refused(
            bench("ta-other-name"), MXFDANE=pki.intermediate.tlsa(2, 1, 1), MXFDANENAMES=NAME
        )
        assert failure == f"certificate-host-mismatch DANE: certificate not valid for {NAME}"

    def test_record_matching_nothing_fails(self, bench: Any, pki: DanePki) -> None:
        """A DANE-TA record naming the root (never sent) matches nothing."""
        failure = starttls_refused(bench("ta"), MXFDANE=pki.root.tlsa(2, 1, 1))
        assert failure == f"validation-failure {NO_MATCH}"

    def test_leaf_is_no_trust_anchor(self, bench: Any, leaves: dict[str, Issued]) -> None:
        """A usage-2 record naming the leaf itself does not make it its own anchor."""
        failure = starttls_refused(bench("ee"), MXFDANE=leaves["ee"].tlsa(2, 1, 1))
        assert failure == f"validation-failure {NO_MATCH}"


HOSTILE_RECORDS = [
    "3 1 1 abc",  # odd hex
    "3 1 1 zz" + "00" * 31,  # not hex
    "3 1 1 " + "00" * 31,  # a SHA-256 digest of 31 bytes
    "3 1 2 " + "00" * 32,  # a SHA-512 digest of 32 bytes
    "3 1 1",  # missing data
    "3 1",  # missing fields
    "3 1 1 00 00",  # one field too many
    "1 1 1 " + "00" * 32,  # PKIX-EE: unusable for SMTP
    "0 0 1 " + "00" * 32,  # PKIX-TA: unusable for SMTP
    "4 1 1 " + "00" * 32,  # no such usage
    "3 2 1 " + "00" * 32,  # no such selector
    "3 1 3 " + "00" * 32,  # no such matching type
    "3 1 1 " + "00" * 32 + ";1 1 1 " + "00" * 32,  # one usable, one not
    "\u0663 1 1 " + "00" * 32,  # an Arabic-Indic three: a digit to str.isdigit
    "3\t1\t1\t" + "00" * 32,  # tabs
    ";",  # no record at all
    " ",
    "3 1 0 " + "00" * 20000,  # one huge record
    ";".join(["3 1 1 " + "00" * 32] * 1000),  # too much altogether
]


class TestHostileConfiguration:
    """A malformed MXFDANE is a configuration error: never a handshake without the check."""

    @pytest.mark.parametrize("value", HOSTILE_RECORDS)
    def test_parser_refuses(self, value: str) -> None:
        """Each malformed value raises DaneError."""
        with pytest.raises(dane.DaneError):
            dane.parse_records(value)

    @pytest.mark.parametrize("value", ["1 1 1 " + "00" * 32, "3 1 1 abc", "3 1 1"])
    def test_tlsc_reports_configuration_error(self, bench: Any, value: str) -> None:
        """mxf-remote-tlsc: Z configuration error, prog never runs, no handshake at all."""
        status, output, record, outcome = bench("ee").run(
            TLSC, tlskit.serve_echo, "hello", **{"MXFDANE": value}
        )
        assert status == 0
        assert output.startswith(b"ZTLS client configuration error: MXFDANE: ")
        assert output.endswith(b". (#4.3.0)\n\0")
        assert record is None
        assert isinstance(outcome, Exception), "the server saw no ClientHello"

    def test_ucspitlsc_sends_a_failure_block(self, bench: Any) -> None:
        """mxf-remote-ucspitlsc: after Y, the failure entry; prog reads EOF, no TLS."""
        status, output, record, outcome = bench("ee").run(
            UCSPI, tlskit.serve_starttls, "ucspi-Y", MXFDANE="3 1 1 abc"
        )
        assert (status, output) == (0, b"")
        assert record is not None and record["block"] is None and record["rest"] == ""
        failure = parse_failure(bytes.fromhex(record["block_raw"]))
        assert failure is not None
        assert failure[0] == "validation-failure"
        assert failure[1].startswith("TLS client configuration error: MXFDANE: ")
        assert isinstance(outcome, Exception), "the server saw no ClientHello"

    def test_policy_reading(self) -> None:
        """read_policy: names matter only for DANE-TA; WebPKI needs -k; empty is no policy."""
        from mxf_remote.tls.context import ConfigError, read_policy
        from mxf_remote.tls.options import Options

        options = Options()
        ee, ta = "3 1 1 " + "00" * 32, "2 1 1 " + "00" * 32
        assert read_policy(options, {"MXFDANE": "", "MXFWEBPKI": ""}) is None
        options.servername = "\u00fc.test"  # not a DNS name, but DANE-EE checks no name
        policy = read_policy(options, {"MXFDANE": ee})
        assert policy is not None and policy.label == "DANE" and policy.names == []
        with pytest.raises(ConfigError, match=r"^MXFDANENAMES: "):
            read_policy(options, {"MXFDANE": ta})
        with pytest.raises(ConfigError, match=r"^MXFDANENAMES: "):
            read_policy(options, {"MXFDANE": ta, "MXFDANENAMES": "bad_name!"})
        options.servername = None
        with pytest.raises(ConfigError, match="need MXFDANENAMES or -k"):
            read_policy(options, {"MXFDANE": ta})
        with pytest.raises(ConfigError, match="needs -k"):
            read_policy(options, {"MXFWEBPKI": "1"})
        policy = read_policy(options, {"MXFDANE": ta, "MXFDANENAMES": "MX.Example.ORG. b.test"})
        assert policy is not None and policy.names == ["mx.example.org", "b.test"]

    @pytest.mark.parametrize("names", ["bad_name!", "a..b", "x" * 64 + ".test", "é.test"])
    def test_bad_reference_names(self, names: str) -> None:
        """MXFDANENAMES must be DNS names."""
        with pytest.raises(dane.DaneError):
            dane.parse_names(names, None)

    def test_bad_webpki_value(self, bench: Any) -> None:
        """MXFWEBPKI is 1, report or unset: anything else is a configuration error."""
        status, output, record, _ = bench("ta").run(
            TLSC, tlskit.serve_echo, "hello", MXFWEBPKI="yes"
        )
        assert status == 0
        assert (
            output == b"ZTLS client configuration error: MXFWEBPKI must be 1 or report, not 'yes'."
            b" (#4.3.0)\n\0"
        )
        assert record is None


def hashed_cadir(tmp: Path, pki: DanePki) -> Path:
    """A CADIR with the test root and its OpenSSL hash link."""
    cadir = tmp / "cadir"
    cadir.mkdir(exist_ok=True)
    target = cadir / "root.pem"
    target.write_bytes(pki.root.cert_path.read_bytes())
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(target)],
        capture_output=True,
        check=True,
        text=True,
        timeout=tlskit.TIMEOUT,
    ).stdout.strip()
    (cadir / f"{digest}.0").symlink_to("root.pem")
    return cadir


class TestWebPki:
    """MXFWEBPKI=1 (MTA-STS enforce): chain and -k name against CADIR/CAFILE."""

    def test_cadir_passes(self, bench: Any, pki: DanePki, tmp_path: Path) -> None:
        """The test root in CADIR, a leaf for the -k name: TLS runs, no SSL_DANE."""
        block = starttls_ok(bench("ta"), MXFWEBPKI="1", CADIR=str(hashed_cadir(tmp_path, pki)))
        assert "SSL_DANE" not in block

    def test_wrong_name_fails(self, bench: Any, pki: DanePki, tmp_path: Path) -> None:
        """A trusted chain for another name: certificate-host-mismatch."""
        failure = starttls_refused(
            bench("ta-other-name"), MXFWEBPKI="1", CADIR=str(hashed_cadir(tmp_path, pki))
        )
        assert failure == f"certificate-host-mismatch MTA-STS: certificate not valid for {NAME}"

    def test_expired_fails(self, bench: Any, pki: DanePki) -> None:
        """An expired leaf: certificate-expired."""
        failure = starttls_refused(
            bench("ta-expired"), MXFWEBPKI="1", CAFILE=str(pki.root.cert_path)
        )
        assert failure == "certificate-expired MTA-STS: certificate has expired"

    def test_untrusted_fails(self, bench: Any, pki: DanePki) -> None:
        """A self-signed leaf, the test root as the only anchor: certificate-not-trusted."""
        failure = starttls_refused(bench("ee"), MXFWEBPKI="1", CAFILE=str(pki.root.cert_path))
        assert failure.startswith("certificate-not-trusted MTA-STS: certificate not trusted (")

    def test_default_anchors_do_not_know_the_test_ca(self, bench: Any) -> None:
        """Without CADIR/CAFILE the system's anchors are used: the test root is not one."""
        failure = starttls_refused(bench("ta"), MXFWEBPKI="1")
        assert failure.startswith("certificate-not-trusted MTA-STS: ")

    def test_dane_wins_over_webpki(self, bench: Any, leaves: dict[str, Issued]) -> None:
        """Both set: DANE decides (the self-signed leaf would fail WebPKI)."""
        block = starttls_ok(bench("ee"), MXFDANE=leaves["ee"].tlsa(3, 1, 1), MXFWEBPKI="1")
        assert block["SSL_DANE"] == "3 1 1 depth 0"


class TestTlsc:
    """mxf-remote-tlsc (implicit TLS): the same checks, failures as its Z report."""

    def test_dane_ee_passes(self, bench: Any, leaves: dict[str, Issued]) -> None:
        """A matching record: prog runs with SSL_DANE in its environment."""
        status, output, record, outcome = bench("ee").run(
            TLSC, tlskit.serve_echo, "hello", MXFDANE=leaves["ee"].tlsa(3, 1, 1)
        )
        assert (status, output) == (0, b"")
        assert record is not None and record["env"]["SSL_DANE"] == "3 1 1 depth 0"
        assert outcome["bytes"] == len("hello\n")

    def test_dane_ta_passes(self, bench: Any, pki: DanePki) -> None:
        """DANE-TA on the intermediate: prog runs."""
        status, output, record, _ = bench("ta").run(
            TLSC, tlskit.serve_echo, "hello", MXFDANE=pki.intermediate.tlsa(2, 1, 1)
        )
        assert (status, output) == (0, b"")
        assert record is not None and record["env"]["SSL_DANE"] == "2 1 1 depth 1"

    def test_mismatch_is_a_handshake_failure(self, bench: Any, leaves: dict[str, Issued]) -> None:
        """No record matches: Z naming DANE; prog never runs; the server got no data."""
        status, output, record, outcome = bench("ta").run(
            TLSC, tlskit.serve_echo, "hello", MXFDANE=leaves["ee"].tlsa(3, 1, 1)
        )
        assert status == 0
        assert output == f"ZTLS handshake with 127.0.0.1 failed: {NO_MATCH}. (#4.4.2)\n\0".encode()
        assert record is None
        assert outcome == {"bytes": 0, "clean": True}

    def test_webpki_wrong_name(self, bench: Any, pki: DanePki) -> None:
        """MXFWEBPKI and a certificate for another name: Z naming MTA-STS."""
        status, output, record, _ = bench("ta-other-name").run(
            TLSC, tlskit.serve_echo, "hello", MXFWEBPKI="1", CAFILE=str(pki.root.cert_path)
        )
        assert status == 0
        assert (
            output
            == (
                f"ZTLS handshake with 127.0.0.1 failed: MTA-STS: certificate not valid for {NAME}."
                " (#4.4.2)\n\0"
            ).encode()
        )
        assert record is None


class TestPieces:
    """The DER walk, the name rule and the failure block, alone."""

    def test_spki_is_cryptographys(self, leaves: dict[str, Issued], pki: DanePki) -> None:
        """certinfo.spki equals cryptography's SubjectPublicKeyInfo for every test certificate."""
        for issued in [*leaves.values(), pki.root, pki.intermediate]:
            der = issued.cert.public_bytes(serialization.Encoding.DER)
            expected = issued.cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            assert spki(der) == expected

    @pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x03\x02\x01\x01", b"\x30\x84\xff"])
    def test_spki_of_garbage(self, der: bytes) -> None:
        """Garbage is a DERError, and never matches a record."""
        with pytest.raises((DERError, IndexError)):
            spki(der)
        record = dane.parse_record("3 1 0 00")
        assert not dane.matches(record, der)

    def test_truncated_certificates_never_match(self, leaves: dict[str, Issued]) -> None:
        """Every prefix of a real certificate fails the walk rather than match."""
        der = leaves["ee"].cert.public_bytes(serialization.Encoding.DER)
        record = dane.parse_record(leaves["ee"].tlsa(3, 1, 1))
        assert dane.matches(record, der)
        assert not any(dane.matches(record, der[:cut]) for cut in range(len(der)))

    @pytest.mark.parametrize(
        ("pattern", "name", "expected"),
        [
            ("mx.dane.test", "mx.dane.test", True),
            ("MX.Dane.Test.", "mx.dane.test", True),
            ("*.dane.test", "mx.dane.test", True),
            ("*.dane.test", "a.mx.dane.test", False),
            ("*.dane.test", "dane.test", False),
            ("*.test", "dane.test", False),
            ("m*.dane.test", "mx.dane.test", False),
            ("mx.*.test", "mx.dane.test", False),
            ("", "mx.dane.test", False),
        ],
    )
    def test_name_rule(self, pattern: str, name: str, expected: bool) -> None:
        """A wildcard only as the whole leftmost label, over exactly one label."""
        assert dane.name_matches(pattern, name) is expected

    def test_failure_block_round_trip(self) -> None:
        """Control characters and NULs never reach the block; the type comes back first."""
        block = encode_failure_block("validation-failure", "DANE: bad\0thing\nhere")
        assert block.count(b"\0") == 1 and block.endswith(b"\0")
        assert parse_failure(block) == ("validation-failure", "DANE: bad thing here")
        assert parse_failure(b"SSL_PROTOCOL=TLSv1.3\0") is None
        assert parse_failure(b"") is None
