"""MTA-STS (RFC 8461): the TXT record, the policy, MX matching, and the on-disk cache.

Pure and lean: nothing here does network I/O (``stsfetch`` fetches, the dispatcher asks
DNS), and the only imports are ``os`` and ``typing`` (which the dispatcher has loaded
already), and ``stat`` when a cache file is read.

Every byte parsed here crossed a boundary: the TXT record and the policy body come from
the recipient's side, the cache files from a directory other processes write.  So the
parsers are strict (RFC 8461's ABNF, plus the rules below), and anything they do not
accept means "no policy" (a ``None`` or a ``PolicyError``), never an exception of
another kind:

* a policy body is ASCII.  RFC 8461 allows UTF-8 in the values of extension keys, which
  nobody uses; refusing it keeps NUL, 8-bit bytes and stray code points out of the cache,
  the TLS-RPT spool and the environment of the TLS client;
* lines end in LF or CRLF; a CR alone is an error (it would let one line read as two);
* ``version: STSv1`` is the first line: a body that does not start like a policy is not
  one (an error page served as text/plain, say);
* ``version``, ``mode`` and ``max_age`` may appear once: a policy that says two things
  says nothing;
* ``max_age`` is 1 to 10 digits (the ABNF), capped at 31557600 s (one year, §3.2);
* ``mx`` patterns are host names, optionally ``*.``-prefixed, stored lower-case; at least
  one unless the mode is ``none``.

The cache (§5): one file per policy domain, named after it: a first line naming the
format, ``id <TXT id>``, ``fetched <seconds>``, ``expires <seconds>``, an empty line, then
the policy text, which is parsed again on every load -- so a file edited or damaged on
disk can only yield a valid policy or none.  (Plain text, not JSON: ``json`` would cost
the dispatcher 1.5 ms of imports.)  Files are written
to a temporary name in the same directory and renamed over the old one: a reader sees the
old policy or the new one, never half of either.  Temporary names begin with a dot, which
no valid domain (hence no cache file name) does.  A crash may leave such a file behind;
it is never read.  No fsync: after a crash a cache file can at worst be empty, which reads
as "no cached policy" and costs one more fetch.
"""

from __future__ import annotations

import os
from typing import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without the name lookup at start-up
if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_AGE_CAP = 31557600
"""RFC 8461 §3.2: a policy lives at most a year (plus a quarter day), whatever it says."""
MAX_CACHE_FILE_BYTES = 128 * 1024
"""A cache file larger than this is not one we wrote (policies are at most 64 KiB)."""
MODES = ("enforce", "testing", "none")
CACHE_MAGIC = "mxf-remote mta-sts cache 1"
"""The first line of every cache file."""

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_LDH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_EXT_NAME = _ALNUM | frozenset("_-.")
_WSP = " \t"


class PolicyError(Exception):
    """A policy body that is not a valid MTA-STS policy: says why."""


class StsRecord(NamedTuple):
    """The ``_mta-sts`` TXT record (RFC 8461 §3.1): only its ``id`` matters."""

    id: str


class Policy(NamedTuple):
    """A parsed policy (RFC 8461 §3.2)."""

    mode: str
    """``enforce``, ``testing`` or ``none``."""
    mx: tuple[str, ...]
    """The ``mx`` patterns, lower-case, in the order given (``*.example.net`` allowed)."""
    max_age: int
    """Seconds, already capped at ``MAX_AGE_CAP``."""
    text: str
    """The body as parsed (ASCII, LF line ends): what the cache stores."""


class CachedPolicy(NamedTuple):
    """A policy from the cache, with the TXT ``id`` it was fetched for."""

    id: str
    policy: Policy
    fetched: float
    """When it was fetched (seconds since the epoch)."""
    expires: float
    """``fetched + max_age``."""

    def fresh(self, now: float) -> bool:
        """True while the policy may still be used (RFC 8461 §5: until ``max_age`` ends)."""
        return now < self.expires


def _valid_id(text: str) -> bool:
    """RFC 8461 §3.1: ``id`` is 1 to 32 ASCII letters and digits."""
    return 1 <= len(text) <= 32 and all(char in _ALNUM for char in text)


def parse_sts_record(records: Sequence[bytes]) -> StsRecord | None:
    """The one ``v=STSv1`` record among ``records`` (TXT strings joined); else None.

    RFC 8461 §3.1: records that do not begin with ``v=STSv1`` are discarded; when not
    exactly one is left, or it is not valid, the domain has no available policy.
    """
    candidates = [record for record in records if _is_sts_record(record)]
    if len(candidates) != 1:
        return None
    return _parse_sts_fields(candidates[0])


def _is_sts_record(record: bytes) -> bool:
    """Does the record begin with ``v=STSv1`` (followed by a delimiter, not ``v=STSv10``)?"""
    rest = record[7:8]
    return record.startswith(b"v=STSv1") and rest in (b"", b";", b" ", b"\t")


def _parse_sts_fields(record: bytes) -> StsRecord | None:
    """``v=STSv1; id=...;`` with extensions (ABNF of §3.1); None when anything is off."""
    if not all(0x20 <= byte < 0x7F or byte == 0x09 for byte in record):
        return None
    fields = record.decode("ascii").split(";")
    if fields[-1].strip(_WSP) == "":
        fields.pop()  # the optional final delimiter
    if fields[0].rstrip(_WSP) != "v=STSv1":
        return None
    record_id: str | None = None
    for field in fields[1:]:
        name, equals, value = field.strip(_WSP).partition("=")
        if not equals or not _valid_extension(name, value):
            return None
        if name == "id":
            if record_id is not None or not _valid_id(value):
                return None
            record_id = value
    return None if record_id is None else StsRecord(record_id)


def _valid_extension(name: str, value: str) -> bool:
    """``sts-ext-name "=" sts-ext-value``: a short name, a value without space, ``=``, ``;``."""
    if not 1 <= len(name) <= 32 or name[0] not in _ALNUM:
        return False
    if not all(char in _EXT_NAME for char in name):
        return False
    return value != "" and all("!" <= char <= "~" and char not in "=;" for char in value)


def valid_hostname(name: str) -> bool:
    """An LDH host name in lower case, without trailing dot: labels of 1-63 letters, digits
    and hyphens, neither first nor last a hyphen, 253 characters at most."""
    if not 1 <= len(name) <= 253:
        return False
    for label in name.split("."):
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(char in _LDH for char in label):
            return False
    return True


def policy_domain(domain: str) -> str | None:
    """``domain`` as cache and reports name it (lower case, no trailing dot); None unless it
    is an LDH name of two labels or more (so no ``/``, no ``..``, no leading dot, and never
    the single label ``tlsrpt`` of the spool directory)."""
    name = domain.lower()
    name = name[:-1] if name.endswith(".") else name
    if not name.isascii() or "." not in name or not valid_hostname(name):
        return None
    return name


def parse_policy(body: bytes) -> Policy:
    """The policy in ``body`` (RFC 8461 §3.2 and the module's rules), or PolicyError."""
    if not body.isascii():
        raise PolicyError("policy is not ASCII")
    lines = body.decode("ascii").split("\n")
    values: dict[str, str] = {}
    mx: list[str] = []
    kept: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line.strip(_WSP) == "":
            continue
        key, value = _policy_line(number, line)
        kept.append(line.rstrip(_WSP))
        if key == "mx":
            mx.append(_mx_pattern(number, value))
        elif key in ("version", "mode", "max_age"):
            if key in values:
                raise PolicyError(f"line {number}: {key} given twice")
            values[key] = value
    if not kept:
        raise PolicyError("empty policy")
    if values.get("version") != "STSv1":  # RFC 8461 §3.2 fixes no order of the fields
        raise PolicyError("no 'version: STSv1'")
    mode = values.get("mode")
    if mode not in MODES:
        raise PolicyError(
            f"mode {mode[:20]!r} is not enforce, testing or none" if mode else "no mode"
        )
    max_age = values.get("max_age")
    if max_age is None or not (1 <= len(max_age) <= 10 and max_age.isdigit()):
        raise PolicyError("max_age is not 1 to 10 digits" if max_age else "no max_age")
    if mode != "none" and not mx:
        raise PolicyError(f"mode {mode} without mx patterns")
    text = "".join(line + "\n" for line in kept)
    return Policy(mode, tuple(mx), min(int(max_age), MAX_AGE_CAP), text)


def _policy_line(number: int, line: str) -> tuple[str, str]:
    """``key ":" *WSP value``, trailing WSP dropped; PolicyError for anything else."""
    if any((char < " " and char != "\t") or char == "\x7f" for char in line):
        raise PolicyError(f"line {number}: control character")
    key, colon, value = line.partition(":")
    if not colon:
        raise PolicyError(f"line {number}: no ':'")
    if not 1 <= len(key) <= 32 or key[0] not in _ALNUM or not all(c in _EXT_NAME for c in key):
        raise PolicyError(f"line {number}: bad key {key[:40]!r}")
    value = value.strip(_WSP)
    if not value:
        raise PolicyError(f"line {number}: {key} has no value")
    return key, value


def _mx_pattern(number: int, value: str) -> str:
    """An ``mx`` value: a host name, or ``*.`` and a host name; lower-cased."""
    pattern = value.lower()
    name = pattern[2:] if pattern.startswith("*.") else pattern
    if not valid_hostname(name):
        raise PolicyError(f"line {number}: bad mx pattern {value[:80]!r}")
    return pattern


def mx_matches(policy: Policy, host: str) -> bool:
    """RFC 8461 §4.1: does ``host`` match one of the policy's ``mx`` patterns?

    Case does not matter, nor one trailing dot; ``*.example.net`` matches exactly one more
    leftmost label (``mx1.example.net``, not ``example.net`` nor ``a.b.example.net``).
    """
    name = host.lower()
    name = name[:-1] if name.endswith(".") else name
    if not name:
        return False
    head, _, parent = name.partition(".")
    for pattern in policy.mx:
        if pattern.startswith("*."):
            if head and parent == pattern[2:]:
                return True
        elif pattern == name:
            return True
    return False


def policy_strings(policy: Policy) -> list[str]:
    """The policy's lines, for TLS-RPT's ``policy-string`` (RFC 8460 §4.4)."""
    return policy.text.splitlines()


class PolicyCache:
    """The policy cache: one file per policy domain in ``directory`` (``control/mtasts``)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, domain: str) -> str | None:
        name = policy_domain(domain)
        return None if name is None else os.path.join(self.directory, name)

    def load(self, domain: str) -> CachedPolicy | None:
        """The cached policy for ``domain``; None when absent, unreadable or not valid."""
        path = self._path(domain)
        if path is None:
            return None
        data = _read_small_file(path, MAX_CACHE_FILE_BYTES)
        return None if data is None else _decode_entry(data)

    def store(self, domain: str, record_id: str, policy: Policy, now: float) -> bool:
        """Save ``policy`` for ``domain`` (atomically); False when it could not be saved."""
        path = self._path(domain)
        if path is None or not _valid_id(record_id):
            return False
        expires = now + policy.max_age
        if not 0 <= now <= expires < 1e12:  # NaN too: what load would refuse is not written
            return False
        head = f"{CACHE_MAGIC}\nid {record_id}\nfetched {now:.6f}\nexpires {expires:.6f}\n\n"
        try:
            data = (head + policy.text).encode("ascii")
        except UnicodeEncodeError:  # a Policy made by hand, not by parse_policy
            return False
        return _replace_file(path, data)


def _read_small_file(path: str, limit: int) -> bytes | None:
    """The contents of the regular file ``path`` (symlinks not followed) if at most ``limit``
    bytes; None otherwise or on any error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return None if size > limit else b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _decode_entry(data: bytes) -> CachedPolicy | None:
    """A cache file's contents as a ``CachedPolicy``; None for anything we did not write."""
    head, blank, body = data.partition(b"\n\n")
    lines = head.split(b"\n")
    if not blank or len(lines) != 4 or lines[0] != CACHE_MAGIC.encode("ascii"):
        return None
    fields = [line.partition(b" ") for line in lines[1:]]
    if [name for name, _, _ in fields] != [b"id", b"fetched", b"expires"]:
        return None
    record_id = fields[0][2].decode("ascii", "replace")
    fetched, expires = _time_value(fields[1][2]), _time_value(fields[2][2])
    if not _valid_id(record_id) or fetched is None or expires is None:
        return None
    try:
        policy = parse_policy(body)
    except PolicyError:
        return None
    # never longer than the policy allows from when it was fetched (a file edited by hand,
    # or planted, cannot make a policy immortal)
    return CachedPolicy(record_id, policy, fetched, min(expires, fetched + policy.max_age))


def _time_value(text: bytes) -> float | None:
    """A time as ``store`` writes it (digits, one dot, six decimals at most); else None."""
    whole, dot, fraction = text.partition(b".")
    if not (1 <= len(whole) <= 12 and whole.isdigit() and fraction.isdigit() == bool(dot)):
        return None
    if len(fraction) > 6 or not whole.isascii() or not fraction.isascii():
        return None
    return float(text)


def _replace_file(path: str, data: bytes) -> bool:
    """Write ``data`` to a temporary file beside ``path`` and rename it to ``path``."""
    # Not named after the domain: ".<253 octets>.<pid>.<hex>" would pass NAME_MAX.
    directory = os.path.dirname(path)
    temporary = os.path.join(directory, f".tmp.{os.getpid()}.{os.urandom(6).hex()}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(temporary, path)
    except OSError:
        _remove(temporary)
        return False
    return True


def _remove(path: str) -> None:
    """Remove ``path`` if possible (a temporary file after a failed write)."""
    try:
        os.unlink(path)
    except OSError:
        return
