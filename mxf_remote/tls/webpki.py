"""The WebPKI verdict on a certificate chain after the handshake, for MTA-STS ``testing``.

RFC 8461 §5: in ``testing`` mode a sender delivers as if there were no policy, and
reports (TLS-RPT, RFC 8460) what enforcing it would have found.  OpenSSL checks a chain
only inside a handshake, and a failed handshake cannot be taken back, so the engine shakes
hands without checking (as opportunistic TLS does) and then asks this module what a
WebPKI check would have said: ``cryptography``'s ``x509.verification`` (the CA/Browser
Forum profile, the one MTA-STS means) against the system's CAs for the exchanger's name.

It costs what the report is worth, and only for ``testing`` domains: importing
``cryptography`` (~40 ms in a cold engine) and reading the CA bundle (a few ms).  The
verdict never fails the delivery; it only becomes the session's TLS-RPT result type.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from cryptography import x509
    from cryptography.x509.verification import ExtensionPolicy

SUCCESS = "success"
EXPIRED = "certificate-expired"
HOST_MISMATCH = "certificate-host-mismatch"
NOT_TRUSTED = "certificate-not-trusted"
VALIDATION_FAILURE = "validation-failure"

MAX_ANCHOR_BYTES = 16 << 20
"""A CA file or directory larger than this is not read further."""


def anchor_files(env: Mapping[str, str]) -> list[str]:
    """Where the trusted CAs are, as the TLS client's enforcing check would find them.

    ``CAFILE``/``CADIR`` when the admin set them; else OpenSSL's ``SSL_CERT_FILE``/
    ``SSL_CERT_DIR``; else the system's bundle file, or every file of its directory.
    """
    cafile, cadir = env.get("CAFILE", ""), env.get("CADIR", "")
    if not (cafile or cadir):
        cafile, cadir = env.get("SSL_CERT_FILE", ""), env.get("SSL_CERT_DIR", "")
    if not (cafile or cadir):
        import ssl

        paths = ssl.get_default_verify_paths()
        if paths.openssl_cafile and os.path.isfile(paths.openssl_cafile):
            cafile = paths.openssl_cafile
        else:
            cadir = paths.openssl_capath
    files = [cafile] if cafile and os.path.isfile(cafile) else []
    if cadir and os.path.isdir(cadir):
        files += sorted(os.path.join(cadir, name) for name in os.listdir(cadir))
    return files


def load_anchors(files: list[str]) -> list[x509.Certificate]:
    """Every PEM certificate in ``files`` (unreadable files and bad PEM are skipped)."""
    from cryptography import x509

    anchors: list[x509.Certificate] = []
    read = 0
    seen: set[bytes] = set()
    for path in files:
        if read > MAX_ANCHOR_BYTES:
            break
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_ANCHOR_BYTES)
        except OSError:
            continue
        read += len(data)
        if b"-----BEGIN CERTIFICATE-----" not in data or data in seen:
            continue  # a hash link to a file already read is the same data
        seen.add(data)
        try:
            anchors += x509.load_pem_x509_certificates(data)
        except ValueError:
            continue
    return anchors


def classify(message: str) -> str:
    """The RFC 8460 result type for a ``cryptography`` verification error's text."""
    text = message.lower()
    if "validation time" in text or "expired" in text:
        return EXPIRED
    if "subjectaltname" in text or ("name" in text and "match" in text):
        return HOST_MISMATCH
    if "candidates exhausted" in text or "issuer" in text or "trust" in text:
        return NOT_TRUSTED
    return VALIDATION_FAILURE


def _relaxed() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """The extension rules OpenSSL applies when the enforcing check runs in the handshake.

    ``cryptography``'s own WebPKI profile is stricter than OpenSSL's (dane-mta-sts.md §4.3):
    it refuses, for instance, a critical subjectAltName beside a non-empty subject, or a
    leaf without an authority key identifier, which OpenSSL -- and so ``mode: enforce``
    here -- accepts.  A report must say what enforcing would have done, so: any extension
    may be present, a CA must have basicConstraints and the leaf a subjectAltName.
    """
    from cryptography import x509
    from cryptography.x509.verification import Criticality, ExtensionPolicy

    agnostic = Criticality.AGNOSTIC
    return (
        ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, agnostic, None),
        ExtensionPolicy.permit_all().require_present(x509.SubjectAlternativeName, agnostic, None),
    )


def verdict(chain: list[bytes], name: str, env: Mapping[str, str]) -> tuple[str, str]:
    """``(result type, reason)`` of a WebPKI check of ``chain`` (leaf first) for ``name``.

    ``success`` with an empty reason when it would have passed.
    """
    try:
        from cryptography import x509
        from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
    except ImportError:
        return VALIDATION_FAILURE, "the cryptography package is not installed"
    if not chain:
        return VALIDATION_FAILURE, "no certificate"
    try:
        certificates = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        return VALIDATION_FAILURE, "a certificate of the chain is not DER"
    anchors = load_anchors(anchor_files(env))
    if not anchors:
        return NOT_TRUSTED, "no CA certificates to check against"
    try:
        ca_policy, ee_policy = _relaxed()
        builder = PolicyBuilder().store(Store(anchors))
        builder = builder.extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        verifier = builder.build_server_verifier(x509.DNSName(name))
        verifier.verify(certificates[0], certificates[1:])
    except VerificationError as error:
        reason = " ".join(str(error).split())[:200]
        return classify(reason), reason
    except ValueError as error:  # a name cryptography will not take, a malformed extension
        return VALIDATION_FAILURE, " ".join(str(error).split())[:200]
    return SUCCESS, ""
