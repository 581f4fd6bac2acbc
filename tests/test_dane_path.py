"""DANE-TA path rules beyond signatures and dates (mxf_remote/tls/dane.py, RFC 5280 via RFC
7672 §3.1.2): name constraints, keyCertSign, critical extensions nobody understands.

Pure: chains built here with ``cryptography``, checked with ``dane.check_ta_path`` as the
engine checks them after the handshake; each rule has a passing twin, so a test cannot
pass by refusing everything.
"""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mxf_remote.tls import dane

NOW = datetime.datetime.now(datetime.UTC)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> bytes:
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(Encoding.DER)


def chain(
    *,
    leaf_name: str = "mx.example.org",
    constraints: x509.NameConstraints | None = None,
    sub_usage: x509.KeyUsage | None = None,
    leaf_extra: list[tuple[x509.ExtensionType, bool]] | None = None,
) -> list[bytes]:
    """leaf <- sub-CA <- anchor, the sub-CA with the given constraints and key usage."""
    anchor_key, sub_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = (x509.BasicConstraints(ca=True, path_length=None), True)
    anchor = _cert("anchor", anchor_key, None, [ca])
    sub_ext = [ca]
    if constraints is not None:
        sub_ext.append((constraints, True))
    if sub_usage is not None:
        sub_ext.append((sub_usage, True))
    sub = _cert("sub", sub_key, ("anchor", anchor_key), sub_ext)
    leaf_ext: list[tuple[x509.ExtensionType, bool]] = [
        (x509.SubjectAlternativeName([x509.DNSName(leaf_name)]), False),
        *(leaf_extra or []),
    ]
    leaf = _cert(leaf_name, leaf_key, ("sub", sub_key), leaf_ext)
    return [leaf, sub, anchor]


def usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


ONLY_EXAMPLE_ORG = x509.NameConstraints([x509.DNSName("example.org")], None)


def check(certs: list[bytes], name: str = "mx.example.org") -> dane.Verdict:
    return dane.check_ta_path(certs, 2, [name])


def test_the_plain_chain_passes() -> None:
    assert check(chain()).ok


def test_a_name_inside_the_permitted_subtree_passes() -> None:
    assert check(chain(constraints=ONLY_EXAMPLE_ORG)).ok


def test_a_name_outside_the_permitted_subtree_fails() -> None:
    """A sub-CA constrained to example.org cannot vouch for mx.victim.net (OpenSSL: error 47,
    permitted subtree violation)."""
    verdict = check(chain(leaf_name="mx.victim.net", constraints=ONLY_EXAMPLE_ORG), "mx.victim.net")
    assert not verdict.ok
    assert "outside the names" in verdict.reason


def test_an_excluded_subtree_fails() -> None:
    excluded = x509.NameConstraints(None, [x509.DNSName("example.org")])
    verdict = check(chain(constraints=excluded))
    assert not verdict.ok and "excludes" in verdict.reason


@pytest.mark.parametrize(("cert_sign", "ok"), [(True, True), (False, False)])
def test_an_issuer_must_be_allowed_to_sign_certificates(cert_sign: bool, ok: bool) -> None:
    assert check(chain(sub_usage=usage(cert_sign=cert_sign))).ok is ok


def test_a_critical_extension_nobody_understands_fails() -> None:
    strange = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    assert check(chain(leaf_extra=[(strange, False)])).ok
    verdict = check(chain(leaf_extra=[(strange, True)]))
    assert not verdict.ok and "critical extension" in verdict.reason
