"""SSL_PEER_CERT_HASH and SSL_PEER_CERT_SUBJECT from the peer's DER certificate.

``SSLObject.getpeercert()`` returns the parsed subject only for a certificate it has
verified; in opportunistic mode (no CAFILE/CADIR) it returns ``{}``.  The DER form is
always available, so the subject is read from it here with a tiny DER walker: Certificate
→ TBSCertificate → [version], serial, signature, issuer, validity, **subject**.

``subject_alt_names`` reads the subjectAltName extension the same way (for the probe).

The subject is printed in OpenSSL's one-line form (``/C=FR/O=Example/CN=mx.example``), what
s6-tlsc prints with its LibreSSL backend.  Consumers must treat it as opaque.
"""

from __future__ import annotations

import hashlib

_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.42": "GN",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}

_TAG_SEQUENCE = 0x30
_TAG_SET = 0x31
_TAG_OID = 0x06
_TAG_VERSION = 0xA0
_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "latin-1",  # PrintableString
    0x14: "latin-1",  # TeletexString (close enough)
    0x16: "latin-1",  # IA5String
    0x1A: "latin-1",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}


class DERError(ValueError):
    """The certificate is not DER as we expect it."""


def _item(data: bytes, position: int, limit: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER item at ``position``."""
    if position + 2 > limit:
        raise DERError("truncated item")
    tag = data[position]
    length = data[position + 1]
    position += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or position + count > limit:
            raise DERError("bad length")
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    if position + length > limit:
        raise DERError("item overruns its container")
    return tag, position, position + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    items = []
    while start < end:
        item = _item(data, start, end)
        items.append(item)
        start = item[2]
    return items


def _oid(raw: bytes) -> str:
    if not raw:
        raise DERError("empty OID")
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _printable(text: str) -> str:
    """Control characters (and NUL, which an environment cannot carry) become ``?``.

    Not ``output.printable_ascii``: this is a variable's value, not a report, and its
    non-ASCII characters stay (UTF-8 in the environment), as s6-tlsc leaves them.
    """
    return "".join("?" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)


def subject_oneline(der: bytes) -> str:
    """The subject DN of a DER certificate as ``/KEY=value/KEY=value``."""
    _, cert_start, cert_end = _item(der, 0, len(der))
    tbs_tag, tbs_start, tbs_end = _item(der, cert_start, cert_end)
    if tbs_tag != _TAG_SEQUENCE:
        raise DERError("no TBSCertificate")
    fields = _children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == _TAG_VERSION:
        fields = fields[1:]
    if len(fields) < 5:
        raise DERError("TBSCertificate too short")
    _, name_start, name_end = fields[4]  # serial, signature, issuer, validity, subject
    parts = []
    for set_tag, set_start, set_end in _children(der, name_start, name_end):
        if set_tag != _TAG_SET:
            raise DERError("RDN is not a SET")
        for _, atv_start, atv_end in _children(der, set_start, set_end):
            atv = _children(der, atv_start, atv_end)
            if len(atv) != 2 or atv[0][0] != _TAG_OID:
                raise DERError("bad AttributeTypeAndValue")
            oid = _oid(der[atv[0][1] : atv[0][2]])
            value_tag, value_start, value_end = atv[1]
            raw = der[value_start:value_end]
            codec = _STRING_CODECS.get(value_tag)
            value = raw.decode(codec, "replace") if codec else "#" + raw.hex()
            parts.append(f"/{_SHORT_NAMES.get(oid, oid)}={_printable(value)}")
    return "".join(parts)


def cert_hash(der: bytes) -> str:
    """``SHA256:<hex>`` of the DER end-entity certificate (s6's SSL_PEER_CERT_HASH)."""
    return "SHA256:" + hashlib.sha256(der).hexdigest()


_SAN_OID = "2.5.29.17"
_GENERAL_NAMES = {0x81: "email", 0x82: "DNS", 0x86: "URI", 0x87: "IP"}
"""GeneralName choices shown (context tags 1, 2, 6, 7); others are skipped."""


def subject_alt_names(der: bytes, *, limit: int = 100, longest: int = 255) -> list[str]:
    """The subjectAltNames of a DER certificate, OpenSSL-style (``DNS:name``).

    At most ``limit`` names of at most ``longest`` characters each: the certificate
    comes from a server we do not trust.
    """
    import ipaddress

    _, cert_start, cert_end = _item(der, 0, len(der))
    _, tbs_start, tbs_end = _item(der, cert_start, cert_end)
    names: list[str] = []
    for tag, start, end in _children(der, tbs_start, tbs_end):
        if tag != 0xA3:  # [3] extensions
            continue
        _, list_start, list_end = _item(der, start, end)
        for _, ext_start, ext_end in _children(der, list_start, list_end):
            parts = _children(der, ext_start, ext_end)
            if len(parts) < 2 or parts[0][0] != 0x06 or parts[-1][0] != 0x04:
                continue
            if _oid(der[parts[0][1] : parts[0][2]]) != _SAN_OID:
                continue
            _, names_start, names_end = _item(der, parts[-1][1], parts[-1][2])
            for name_tag, value_start, value_end in _children(der, names_start, names_end):
                kind = _GENERAL_NAMES.get(name_tag)
                raw = der[value_start:value_end]
                if kind is None:
                    continue
                if kind == "IP" and len(raw) in (4, 16):
                    value = str(ipaddress.ip_address(raw))
                else:
                    value = _printable(raw.decode("utf-8", "replace"))
                names.append(f"{kind}:{value[:longest]}")
                if len(names) >= limit:
                    return names
    return names


def spki(der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo (tag and length included) of a DER certificate.

    What a TLSA record with selector 1 hashes (RFC 6698 §2.1.2): the 7th field of
    TBSCertificate, or the 6th when the ``[0]`` version is absent (v1 certificates).
    """
    _, cert_start, cert_end = _item(der, 0, len(der))
    tbs_tag, tbs_start, tbs_end = _item(der, cert_start, cert_end)
    if tbs_tag != _TAG_SEQUENCE:
        raise DERError("no TBSCertificate")
    fields = _children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == _TAG_VERSION:
        fields = fields[1:]
    if len(fields) < 6 or fields[5][0] != _TAG_SEQUENCE:
        raise DERError("no SubjectPublicKeyInfo")
    return der[fields[4][2] : fields[5][2]]  # from the end of the subject: tag and length
