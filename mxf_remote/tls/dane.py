"""DANE for SMTP (RFC 7672): the peer's certificates against the exchanger's TLSA records.

Python's ``ssl`` has no DANE and no verify callback, so the engine runs a CERT_NONE
handshake and decides here, after the handshake and before prog hears ``+`` or gets its
environment block: nothing has been sent under TLS yet, so failing now is as safe as
failing inside the handshake (what OpenSSL does for Postfix).

The records come from the dispatcher in ``MXFDANE`` (``usage selector mtype hex;...``),
already filtered to the usable ones (RFC 7672 §3.1.3).  Anything else in there — usage
0/1, an odd hex string, a digest of the wrong length, a missing field — is a contract
violation and a configuration error: never a silent downgrade to no checking.

* **DANE-EE (3)**, stdlib only: the leaf (selector 0: its whole DER; 1: its
  SubjectPublicKeyInfo, ``certinfo.spki``) matches, exactly (mtype 0) or by SHA-256/512.
  No name and no date checks (RFC 7672 §3.1.1; OpenSSL's ``NO_DANE_EE_NAMECHECKS``).
* **DANE-TA (2)**: a certificate the server sent above the leaf matches, the path from the
  leaf up to it validates, and the leaf's names match ``MXFDANENAMES`` (RFC 7672
  §3.1.2, §3.2).  That needs signature checks, hence ``cryptography`` (~38 ms to import),
  loaded only when no DANE-EE record matched and a DANE-TA record exists.  The checks
  are made by hand, link by link, to accept what OpenSSL (Postfix) accepts — the WebPKI
  profile of ``cryptography.x509.verification`` rejects CN-only leaves and chains without
  AKI/SKI that Postfix delivers to (reference/dane-mta-sts.md §4.3): each link's
  signature and issuer name, basicConstraints CA (and pathLenConstraint) on every issuer,
  the dates of the leaf and the intermediates, an extendedKeyUsage (when present) that
  allows serverAuth, and the leaf's SAN dNSNames (its CN only when it has none), a
  wildcard only as the whole leftmost label.  Not done: a ``2 1 x`` record naming the
  key of an issuer the server did not send (RFC 7672 §3.1.2 allows it; OpenSSL does it).
"""

from __future__ import annotations

import hashlib

from mxf_remote.tls.certinfo import DERError, spki

TYPE_CHECKING = False  # typing costs an import in the engine; annotations are strings
if TYPE_CHECKING:
    from cryptography import x509

USAGE_TA = 2
USAGE_EE = 3
_DIGESTS = {1: (hashlib.sha256, 32), 2: (hashlib.sha512, 64)}
MAX_VARIABLE = 65536
"""Characters of MXFDANE we read at all: a TLSA RRset fits in one 64 KiB DNS message."""
MAX_RECORD_BYTES = 16384
"""Bytes of one ``x x 0`` record's data (a whole certificate or key)."""
MAX_CHAIN = 16
"""Certificates of the peer's chain we look at."""
MAX_NAMES = 16
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")

NO_MATCH = "no TLSA record matched the certificate"
VALIDATION_FAILURE = "validation-failure"
HOST_MISMATCH = "certificate-host-mismatch"
EXPIRED = "certificate-expired"


class DaneError(ValueError):
    """``MXFDANE`` or ``MXFDANENAMES`` is malformed (a configuration error)."""


class Record:
    """One usable TLSA record."""

    __slots__ = ("data", "mtype", "selector", "usage")

    def __init__(self, usage: int, selector: int, mtype: int, data: bytes) -> None:
        self.usage = usage
        self.selector = selector
        self.mtype = mtype
        self.data = data

    def label(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype}"


class Verdict:
    """The outcome: ``ok``; else an RFC 8460 result type and a reason for the report."""

    __slots__ = ("entry", "ok", "reason", "result_type")

    def __init__(
        self, ok: bool, *, entry: str = "", result_type: str = "", reason: str = ""
    ) -> None:
        self.ok = ok
        self.entry = entry
        """``SSL_DANE``'s value on success: ``usage selector mtype depth n``."""
        self.result_type = result_type
        self.reason = reason


def _field(text: str, allowed: tuple[int, ...], what: str) -> int:
    if len(text) != 1 or not text.isascii() or not text.isdigit() or int(text) not in allowed:
        raise DaneError(f"{what} {text[:20]!r} is not one of {allowed}")
    return int(text)


def parse_record(text: str) -> Record:
    """``usage selector mtype hexdata``, usable for SMTP (RFC 7672 §3.1.3) or DaneError."""
    fields = [field for field in text.split(" ") if field]
    if len(fields) != 4:
        raise DaneError(f"a record needs 4 fields, not {len(fields)}")
    usage = _field(fields[0], (USAGE_TA, USAGE_EE), "usage")
    selector = _field(fields[1], (0, 1), "selector")
    mtype = _field(fields[2], (0, 1, 2), "matching type")
    hexdata = fields[3]
    if not hexdata.isascii() or len(hexdata) % 2:
        raise DaneError("the data is not an even number of hex digits")
    try:
        data = bytes.fromhex(hexdata)
    except ValueError:
        raise DaneError("the data is not hex") from None
    expected = _DIGESTS[mtype][1] if mtype in _DIGESTS else None
    if expected is not None and len(data) != expected:
        raise DaneError(f"matching type {mtype} needs {expected} bytes, not {len(data)}")
    if not data or len(data) > MAX_RECORD_BYTES:
        raise DaneError(f"{len(data)} bytes of data")
    return Record(usage, selector, mtype, data)


def parse_records(text: str) -> list[Record]:
    """The records of ``MXFDANE``: ``;``-separated, at least one; else DaneError."""
    if len(text) > MAX_VARIABLE:
        raise DaneError(f"longer than {MAX_VARIABLE} characters")
    records = [parse_record(part) for part in text.split(";") if part.strip(" ")]
    if not records:
        raise DaneError("no record")
    return records


def parse_names(text: str, fallback: str | None) -> list[str]:
    """``MXFDANENAMES`` (space-separated DNS names), else ``[fallback]`` (the ``-k`` name).

    Lower case, without a final dot; a name that is not a DNS name is a DaneError.
    """
    names = [name for name in text.split(" ") if name]
    if not names and fallback:
        names = [fallback]
    if len(names) > MAX_NAMES:
        raise DaneError(f"more than {MAX_NAMES} names")
    return [_reference_name(name) for name in names]


def _reference_name(raw: str) -> str:
    name = raw.lower().removesuffix(".")
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not set(name) <= _NAME_CHARACTERS
        or not all(0 < len(label) <= 63 for label in labels)
    ):
        raise DaneError(f"{raw[:80]!r} is not a DNS name")
    return name


def matches(record: Record, der: bytes) -> bool:
    """True when ``der`` (a certificate) is what ``record`` designates."""
    try:
        blob = der if record.selector == 0 else spki(der)
    except (DERError, IndexError):
        return False
    if record.mtype == 0:
        return blob == record.data
    return _DIGESTS[record.mtype][0](blob).digest() == record.data


def check(records: list[Record], chain: list[bytes], names: list[str]) -> Verdict:
    """RFC 7672's decision for the peer's ``chain`` (DER, leaf first)."""
    if not chain:
        return Verdict(False, result_type=VALIDATION_FAILURE, reason="no peer certificate")
    chain = chain[:MAX_CHAIN]
    for record in records:
        if record.usage == USAGE_EE and matches(record, chain[0]):
            return Verdict(True, entry=f"{record.label()} depth 0")
    anchors = [
        (record, depth)
        for record in records
        if record.usage == USAGE_TA
        for depth in range(1, len(chain))
        if matches(record, chain[depth])
    ]
    if not anchors:
        return Verdict(False, result_type=VALIDATION_FAILURE, reason=NO_MATCH)
    failure = None
    for record, depth in anchors:
        verdict = check_ta_path(chain, depth, names)
        if verdict.ok:
            return Verdict(True, entry=f"{record.label()} depth {depth}")
        failure = failure or verdict
    assert failure is not None
    return failure


def check_ta_path(chain: list[bytes], depth: int, names: list[str]) -> Verdict:
    """The path ``chain[0]`` … ``chain[depth]`` (the trust anchor) and the leaf's names."""
    try:
        from cryptography import x509
    except ImportError:
        return _fail("DANE-TA needs the cryptography package")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain[: depth + 1]]
    except ValueError:
        return _fail("a certificate of the chain is not DER")
    problem = _path_problem(certs)
    if problem is not None:
        return problem
    if not names:
        return Verdict(False, result_type=HOST_MISMATCH, reason="no name to check")
    presented = leaf_names(certs[0])
    if not any(name_matches(pattern, name) for pattern in presented for name in names):
        return Verdict(
            False, result_type=HOST_MISMATCH, reason=f"certificate not valid for {names[0]}"
        )
    return Verdict(True)


def _fail(reason: str) -> Verdict:
    return Verdict(False, result_type=VALIDATION_FAILURE, reason=reason)


def _path_problem(certs: list[x509.Certificate]) -> Verdict | None:
    """Why the path does not validate (signatures, CA, dates, EKU), or None."""
    import datetime

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.UTC)
    anchor = len(certs) - 1
    for depth, cert in enumerate(certs):
        if depth < anchor:
            if now > cert.not_valid_after_utc:
                return Verdict(
                    False,
                    result_type=EXPIRED,
                    reason=f"certificate at depth {depth} has expired",
                )
            if now < cert.not_valid_before_utc:
                return _fail(f"certificate at depth {depth} is not yet valid")
            try:
                usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                usages = None
            except ValueError:
                return _fail(f"certificate at depth {depth} has malformed extensions")
            if usages is not None and not {
                ExtendedKeyUsageOID.SERVER_AUTH,
                ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
            } & set(usages):
                return _fail(f"certificate at depth {depth} is not for TLS servers")
        if depth:
            problem = _issuer_problem(certs[depth - 1], cert, depth)
            if problem is None:
                problem = _constraint_problem(cert, leaf_names(certs[0]), depth)
            if problem is not None:
                return _fail(problem)
        if _unhandled_critical(cert):
            return _fail(f"certificate at depth {depth} has a critical extension not understood")
    return None


def _issuer_problem(child: x509.Certificate, issuer: x509.Certificate, depth: int) -> str | None:
    """Why ``issuer`` (at ``depth``) did not issue ``child``, or None."""
    from cryptography import x509

    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"certificate at depth {depth} is not a CA"
    except ValueError:
        return f"certificate at depth {depth} has malformed extensions"
    if not constraints.ca:
        return f"certificate at depth {depth} is not a CA"
    if constraints.path_length is not None and depth - 1 > constraints.path_length:
        return f"certificate at depth {depth} allows {constraints.path_length} intermediates"
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    except ValueError:
        return f"certificate at depth {depth} has malformed extensions"
    if usage is not None and not usage.key_cert_sign:
        return f"certificate at depth {depth} may not sign certificates"
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError):
        return f"certificate at depth {depth - 1} was not issued by the one at depth {depth}"
    except Exception:  # InvalidSignature, UnsupportedAlgorithm: the signature does not hold
        return f"bad signature on the certificate at depth {depth - 1}"
    return None


def _unhandled_critical(cert: x509.Certificate) -> bool:
    """A critical extension nobody here understands: RFC 5280 §4.2 says reject."""
    from cryptography import x509

    try:
        return any(
            ext.critical and isinstance(ext.value, x509.UnrecognizedExtension)
            for ext in cert.extensions
        )
    except ValueError:
        return True


def _within(name: str, subtree: str) -> bool:
    """RFC 5280 §4.2.1.10 for DNS names: ``name`` is ``subtree`` or below it."""
    subtree = subtree.lower().rstrip(".")
    if subtree.startswith("."):
        return name.endswith(subtree)
    return name == subtree or name.endswith("." + subtree)


def _constraint_problem(issuer: x509.Certificate, names: list[str], depth: int) -> str | None:
    """Why the leaf's DNS ``names`` break the issuer's nameConstraints, or None."""
    from cryptography import x509

    try:
        constraints = issuer.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        return f"certificate at depth {depth} has malformed name constraints"
    permitted = [
        str(n.value) for n in constraints.permitted_subtrees or () if isinstance(n, x509.DNSName)
    ]
    excluded = [
        str(n.value) for n in constraints.excluded_subtrees or () if isinstance(n, x509.DNSName)
    ]
    for name in (n.lower().rstrip(".") for n in names):
        if permitted and not any(_within(name, tree) for tree in permitted):
            return f"{name} is outside the names the certificate at depth {depth} permits"
        if any(_within(name, tree) for tree in excluded):
            return f"{name} is a name the certificate at depth {depth} excludes"
    return None


def leaf_names(cert: x509.Certificate) -> list[str]:
    """The SAN dNSNames, else the CNs (RFC 7672 §3.2.3; what OpenSSL checks)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = [str(name) for name in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        dns = []
    except ValueError:
        return []
    if dns:
        return dns
    try:
        return [
            str(attribute.value)
            for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    except ValueError:
        return []


def name_matches(pattern: str, name: str) -> bool:
    """``pattern`` (from the certificate) covers ``name``; ``*`` only as the leftmost label."""
    pattern = pattern.lower().removesuffix(".")
    if not pattern or not pattern.isascii():
        return False
    if pattern.startswith("*."):
        suffix = pattern[2:]
        head, dot, rest = name.partition(".")
        return bool(dot and head and "*" not in suffix and "." in suffix) and rest == suffix
    return "*" not in pattern and pattern == name
