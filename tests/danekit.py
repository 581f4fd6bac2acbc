"""Throwaway certificates for DANE tests, and the TLSA records that name them.

Why: DANE (RFC 7672) authenticates a server by a TLSA record naming either its own key or
certificate (DANE-EE, usage 3: no CA, no name or date checks) or a trust anchor in the chain
it sends (DANE-TA, usage 2: a private CA, checked like WebPKI but anchored by DNS). Tests
need both, plus the certificates that must *fail*: a wrong name under DANE-TA, an expired
leaf (passes under DANE-EE, fails under DANE-TA), a leaf whose key is not the one the TLSA
names. trustme makes WebPKI-style chains only; this kit builds exactly these shapes with
`cryptography` (ECDSA P-256, like the lab's mkcerts.sh) and computes TLSA association data
for every selector (0 full certificate, 1 SubjectPublicKeyInfo) and matching type
(0 exact, 1 SHA2-256, 2 SHA2-512), in zone presentation form.

Files are written to the directory given: `<name>.key` (PKCS#8 PEM), `<name>.crt` (the
certificate alone) and `<name>.chain.pem` (the certificate then its intermediates, what a
server sends; give it and the key to `SSLContext.load_cert_chain`).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DanePki", "Issued", "tlsa_association", "tlsa_rdata"]

_DAY = datetime.timedelta(days=1)


def tlsa_association(cert: x509.Certificate, selector: int, mtype: int) -> bytes:
    """The certificate association data of a TLSA record (RFC 6698 section 2.1)."""
    if selector == 0:
        data = cert.public_bytes(serialization.Encoding.DER)
    elif selector == 1:
        data = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        raise ValueError(f"TLSA selector must be 0 or 1, not {selector!r}")
    if mtype == 0:
        return data
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    raise ValueError(f"TLSA matching type must be 0, 1 or 2, not {mtype!r}")


def tlsa_rdata(cert: x509.Certificate, usage: int, selector: int, mtype: int) -> str:
    """A TLSA record's data in zone presentation form: "3 1 1 <HEX>"."""
    if not 0 <= usage <= 255:
        raise ValueError(f"TLSA usage must be 0..255, not {usage!r}")
    hexdata = tlsa_association(cert, selector, mtype).hex().upper()
    return f"{usage} {selector} {mtype} {hexdata}"


@dataclass(frozen=True)
class Issued:
    """A certificate, its key, the intermediates sent with it, and where they were written."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]
    cert_path: Path
    chain_path: Path
    key_path: Path

    def tlsa(self, usage: int, selector: int, mtype: int) -> str:
        """TLSA presentation data naming this certificate ("3 1 1 <HEX>")."""
        return tlsa_rdata(self.cert, usage, selector, mtype)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_extensions(
    builder: x509.CertificateBuilder, pathlen: int | None
) -> x509.CertificateBuilder:
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=pathlen), critical=True
    ).add_extension(usage, critical=True)


def _leaf_extensions(builder: x509.CertificateBuilder, hostname: str) -> x509.CertificateBuilder:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
    )


class DanePki:
    """A root CA and an intermediate (the DANE-TA anchor), and leaves made on demand.

    `root` and `intermediate` are made at once; `self_signed`, `issued`, `rekeyed` make
    leaves. Every certificate is valid from a day ago for a year unless `expired`.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.now = datetime.datetime.now(datetime.UTC)
        self.root = self._make("root", "DANE Test Root", None, ca_pathlen=1)
        self.intermediate = self._make(
            "intermediate", "DANE Test Intermediate", self.root, ca_pathlen=0
        )

    def self_signed(self, name: str, hostname: str, *, expired: bool = False) -> Issued:
        """A self-signed leaf for `hostname` (the DANE-EE case: TLSA 3 1 1 names it)."""
        return self._make(name, hostname, None, hostname=hostname, expired=expired)

    def issued(self, name: str, hostname: str, *, expired: bool = False) -> Issued:
        """A leaf for `hostname` issued by the intermediate, sent with it (DANE-TA 2 1 1)."""
        return self._make(name, hostname, self.intermediate, hostname=hostname, expired=expired)

    def rekeyed(self, name: str, like: Issued) -> Issued:
        """A leaf with `like`'s names and issuer but a new key (its TLSA 3 1 1 fails)."""
        issuer = None if like.cert.issuer == like.cert.subject else self.intermediate
        san = like.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        hostname = san.value.get_values_for_type(x509.DNSName)[0]
        return self._make(name, hostname, issuer, hostname=hostname)

    def _make(
        self,
        name: str,
        common_name: str,
        issuer: Issued | None,
        *,
        hostname: str | None = None,
        ca_pathlen: int | None = None,
        expired: bool = False,
    ) -> Issued:
        key = _new_key()
        if expired:
            not_before, not_after = self.now - 30 * _DAY, self.now - _DAY
        else:
            not_before, not_after = self.now - _DAY, self.now + 365 * _DAY
        signer_key = key if issuer is None else issuer.key
        issuer_name = _name(common_name) if issuer is None else issuer.cert.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
            )
        if hostname is not None:
            builder = _leaf_extensions(builder, hostname)
        else:
            builder = _ca_extensions(builder, ca_pathlen)
        cert = builder.sign(signer_key, hashes.SHA256())
        # A leaf is sent with the intermediates above it, never with the root.
        chain: tuple[x509.Certificate, ...] = ()
        if issuer is not None and issuer is not self.root:
            chain = (issuer.cert, *issuer.chain)
        return self._write(name, cert, key, chain)

    def _write(
        self,
        name: str,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        chain: tuple[x509.Certificate, ...],
    ) -> Issued:
        pem = cert.public_bytes(serialization.Encoding.PEM)
        cert_path = self.directory / f"{name}.crt"
        chain_path = self.directory / f"{name}.chain.pem"
        key_path = self.directory / f"{name}.key"
        cert_path.write_bytes(pem)
        chain_path.write_bytes(
            pem + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        )
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return Issued(name, cert, key, chain, cert_path, chain_path, key_path)
