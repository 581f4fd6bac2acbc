"""TLS-RPT (RFC 8460): the per-session spool, and ``mxf-remote-tlsrpt``, its daily reporter.

A delivery is a process of its own, so nothing can be counted in memory across sessions.
Each TLS session's outcome is instead appended, as one JSON line, to a spool file per UTC
day, ``<mtasts dir>/tlsrpt/YYYY-MM-DD``; once a day ``mxf-remote-tlsrpt DATE`` reads a
day's file, groups the sessions by policy domain, finds each domain's reporting addresses
(``TXT _smtp._tls.<domain>``) and prints one RFC 8460 report per domain.  Sending them
(gzip, mail or HTTPS POST) is the admin's cron job: the reporter neither mails nor posts.

The spool writer runs in every delivery, in ``mxf-remote-smtpc`` at the end of a session,
so it imports nothing beyond ``os`` and ``time``, not even ``json`` (see "JSON without
json" below); only the reporter uses ``json``, ``asyncio`` and c-ares.  Each line is one
``write`` on a descriptor opened with ``O_APPEND``: on a local file system concurrent
deliveries' lines land whole, one after the other.  It never raises: losing one report
line is better than losing, or delaying, the mail.

Who says what goes in: the dispatcher, which knows the policy, puts it in the client's
environment as ``MXFTLSRPT`` (``policy_variable``); the client, which knows how the
session went, calls ``record_from_environment``.  That variable, like every spool line
read back, is hostile input: malformed JSON, wrong types, a relative directory, or absurd
sizes mean nothing is written (or the line is skipped), never an exception.

Spool line keys: ``time`` (UTC, ``YYYY-MM-DDTHH:MM:SSZ``), ``policy`` (RFC 8460 §4.4's
``policy-type``, ``policy-string``, ``policy-domain``, ``mx-host``), ``result``
(``success`` or an RFC 8460 §4.3 result type), ``sending-mta-ip``, ``receiving-ip``,
``receiving-mx-hostname`` and ``failure-reason-code`` (free text, may be empty).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any, NoReturn

    from mxf_remote.resolution import Lookup

POLICY_VARIABLE = "MXFTLSRPT"
SPOOL_DIRECTORY = "tlsrpt"
POLICY_TYPES = ("sts", "tlsa", "no-policy-found")
SUCCESS = "success"

MAX_VARIABLE_BYTES = 128 * 1024
"""Linux's limit for one environment string (MAX_ARG_STRLEN): a longer one cannot be passed."""
MAX_LINE_BYTES = 64 * 1024
MAX_STRINGS = 256
"""At most this many ``policy-string`` or ``mx-host`` entries."""
MAX_STRING = 1024
"""Characters of one entry, one host name, one reason (reasons are cut, not refused)."""

EXIT_OK = 0
EXIT_USAGE = 100
EXIT_TROUBLE = 111
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


# ---------------------------------------------------------------- the spool writer


def policy_variable(spool: str, policy: dict[str, object], mx: str) -> str:
    """The ``MXFTLSRPT`` value for one attempt: where to write, the policy, the MX host."""
    return encode_json({"dir": spool, "policy": policy, "mx": mx})


def record(
    spool: str,
    policy: dict[str, object],
    result: str,
    *,
    sending_ip: str,
    receiving_ip: str,
    receiving_mx: str,
    reason: str = "",
    now: float | None = None,
) -> None:
    """Append one session's outcome to ``<spool>/tlsrpt/<UTC date>``; never raises."""
    try:
        line = _spool_line(policy, result, sending_ip, receiving_ip, receiving_mx, reason, now)
        if line is None or not isinstance(spool, str) or not _absolute_path(spool):
            return
        when = time.gmtime(time.time() if now is None else now)
        _append(os.path.join(spool, SPOOL_DIRECTORY), time.strftime("%Y-%m-%d", when), line)
    except (OSError, ValueError, TypeError, OverflowError, RecursionError):
        return


def record_from_environment(
    environ: Mapping[str, str],
    result: str,
    *,
    sending_ip: str,
    receiving_ip: str,
    reason: str = "",
) -> None:
    """``record`` with the spool, policy and MX host of ``MXFTLSRPT``; nothing if unusable."""
    value = environ.get(POLICY_VARIABLE)
    if not value or len(value) > MAX_VARIABLE_BYTES:
        return
    try:
        given = decode_json(value)
    except ValueError:
        return
    if not isinstance(given, dict):
        return
    spool, policy, mx = given.get("dir"), given.get("policy"), given.get("mx")
    if not (isinstance(spool, str) and isinstance(policy, dict) and isinstance(mx, str)):
        return
    record(
        spool,
        policy,
        result,
        sending_ip=sending_ip,
        receiving_ip=receiving_ip,
        receiving_mx=mx,
        reason=reason,
    )


def _absolute_path(path: str) -> bool:
    return path.startswith("/") and "\0" not in path and len(path) < 4096


def _spool_line(  # noqa: PLR0917 (one line's fields, in the order of the line)
    policy: object,
    result: object,
    sending_ip: object,
    receiving_ip: object,
    receiving_mx: object,
    reason: object,
    now: float | None,
) -> bytes | None:
    """The JSON line for one session (newline included); None when an argument is unusable."""
    clean = clean_policy(policy)
    if clean is None or not _valid_result(result):
        return None
    texts = (sending_ip, receiving_ip, receiving_mx, reason)
    if not all(isinstance(text, str) for text in texts):
        return None
    when = time.gmtime(time.time() if now is None else now)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", when),
        "policy": clean,
        "result": result,
        "sending-mta-ip": _short(str(sending_ip)),
        "receiving-ip": _short(str(receiving_ip)),
        "receiving-mx-hostname": _short(str(receiving_mx)),
        "failure-reason-code": _short(str(reason)),
    }
    return (encode_json(entry) + "\n").encode("ascii")


def _short(text: str) -> str:
    """``text`` cut to ``MAX_STRING`` characters, control characters made spaces."""
    text = text[:MAX_STRING]
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else " " for char in text)


def _valid_result(result: object) -> bool:
    """``success`` or a result-type token (RFC 8460 §4.3's are lower-case words and ``-``)."""
    return isinstance(result, str) and 0 < len(result) <= 64 and set(result) <= _TOKEN


def clean_policy(policy: object) -> dict[str, object] | None:
    """The RFC 8460 §4.4 policy object in ``policy``, checked and normalised; None if bad.

    ``policy-type`` one of ``POLICY_TYPES``; ``policy-domain`` a domain name (stored lower
    case); ``policy-string`` and ``mx-host`` lists of strings (optional, empty if absent).
    Other keys are dropped.
    """
    if not isinstance(policy, dict):
        return None
    kind, domain = policy.get("policy-type"), policy.get("policy-domain")
    if kind not in POLICY_TYPES or not isinstance(domain, str):
        return None
    name = _policy_domain(domain)
    strings, hosts = _strings(policy.get("policy-string", [])), _strings(policy.get("mx-host", []))
    if name is None or strings is None or hosts is None:
        return None
    clean: dict[str, object] = {"policy-type": kind, "policy-string": strings}
    clean["policy-domain"] = name
    if hosts:
        clean["mx-host"] = hosts
    return clean


def _strings(value: object) -> list[str] | None:
    """A list of strings, None if it is not one; cut to ``MAX_STRINGS`` strings of at most
    ``MAX_STRING`` characters (a huge but valid policy is still reported, shortened)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return [_short(item) for item in value[:MAX_STRINGS]]


def _append(directory: str, name: str, line: bytes) -> None:
    """One ``write`` of ``line`` at the end of ``directory/name`` (both made if missing)."""
    _make_directory(directory)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(os.path.join(directory, name), flags, 0o644)
    try:
        if os.write(fd, line) < len(line):  # a full disk, a file size limit: cut short
            os.write(fd, b"\n")  # end it, so that only this line is lost, not the next
    finally:
        os.close(fd)


def _make_directory(path: str) -> None:
    """``mkdir`` unless it exists (not makedirs: the spool directory itself must exist;
    no contextlib: ~3 ms of imports for every delivery)."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def _policy_domain(text: str) -> str | None:
    """``mtasts.policy_domain`` without importing it (``mtasts`` needs ``typing``, ~5 ms in
    the SMTP client): an LDH name of two labels or more, lower case, no trailing dot."""
    name = text.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not set(name) <= _NAME_CHARS:
        return None
    if any(not 1 <= len(label) <= 63 or "-" in (label[0], label[-1]) for label in labels):
        return None
    return name


# ---------------------------------------------------------------- JSON without ``json``
#
# ``json`` costs the SMTP client 6.5 ms of CPU per delivery (it brings ``re`` along), more
# than the rest of this module by far.  The spool line and ``MXFTLSRPT`` hold only strings,
# lists and objects, so a writer for those and a strict reader for that subset do.  Output
# is what ``json.dumps(value)`` prints (ASCII, ``", "`` and ``": "``); the reporter reads
# it back with ``json``.

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_UNESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")
_JSON_SPACE = " \t\n\r"
MAX_JSON_DEPTH = 8


def encode_json(value: object) -> str:
    """``value`` (strings, lists, tuples and string-keyed dicts; anything else is ``null``)
    as ASCII JSON, exactly as ``json.dumps`` writes it."""
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(encode_json(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{_json_string(str(key))}: {encode_json(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    return "null"


def _json_string(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    parts = []
    for char in text:
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif " " <= char <= "~":
            parts.append(char)
        elif ord(char) > 0xFFFF:
            code = ord(char) - 0x10000
            parts.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
        else:
            parts.append(f"\\u{ord(char):04x}")
    return '"' + "".join(parts) + '"'


def decode_json(text: str) -> object:
    """The value of ``text``: objects, arrays, strings, ``true``, ``false``, ``null`` only,
    ASCII, nested at most ``MAX_JSON_DEPTH`` deep, no duplicate keys; else ValueError."""
    if not text.isascii():
        raise ValueError("not ASCII")
    value, end = _json_value(text, _json_skip(text, 0), 0)
    if _json_skip(text, end) != len(text):
        raise ValueError(f"trailing data at {end}")
    return value


def _json_skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _JSON_SPACE:
        pos += 1
    return pos


def _json_value(text: str, pos: int, depth: int) -> tuple[object, int]:
    char = text[pos : pos + 1]
    if char in ("{", "[") and depth >= MAX_JSON_DEPTH:
        raise ValueError("nested too deep")
    if char == '"':
        return _json_string_at(text, pos + 1)
    if char == "{":
        return _json_object(text, _json_skip(text, pos + 1), depth + 1)
    if char == "[":
        return _json_array(text, _json_skip(text, pos + 1), depth + 1)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, pos):
            return value, pos + len(word)
    raise ValueError(f"unexpected {char!r} at {pos}")


def _json_object(text: str, pos: int, depth: int) -> tuple[dict[str, object], int]:
    result: dict[str, object] = {}
    if text[pos : pos + 1] == "}":
        return result, pos + 1
    while True:
        if text[pos : pos + 1] != '"':
            raise ValueError(f"expected a key at {pos}")
        key, pos = _json_string_at(text, pos + 1)
        pos = _json_skip(text, pos)
        if text[pos : pos + 1] != ":" or key in result:
            raise ValueError(f"expected ':' after a new key at {pos}")
        result[key], pos = _json_value(text, _json_skip(text, pos + 1), depth)
        pos = _json_skip(text, pos)
        if text[pos : pos + 1] == "}":
            return result, pos + 1
        if text[pos : pos + 1] != ",":
            raise ValueError(f"expected ',' or '}}' at {pos}")
        pos = _json_skip(text, pos + 1)


def _json_array(text: str, pos: int, depth: int) -> tuple[list[object], int]:
    result: list[object] = []
    if text[pos : pos + 1] == "]":
        return result, pos + 1
    while True:
        item, pos = _json_value(text, pos, depth)
        result.append(item)
        pos = _json_skip(text, pos)
        if text[pos : pos + 1] == "]":
            return result, pos + 1
        if text[pos : pos + 1] != ",":
            raise ValueError(f"expected ',' or ']' at {pos}")
        pos = _json_skip(text, pos + 1)


def _json_string_at(text: str, pos: int) -> tuple[str, int]:
    """The string whose opening quote is just before ``pos``, and the position after it."""
    parts: list[str] = []
    while True:
        quote, backslash = text.find('"', pos), text.find("\\", pos)
        if quote < 0:
            raise ValueError("unterminated string")
        end = quote if backslash < 0 else min(quote, backslash)
        segment = text[pos:end]
        if not segment.isprintable():
            raise ValueError("control character in a string")
        parts.append(segment)
        if end == quote:
            return "".join(parts), quote + 1
        code = text[end + 1 : end + 2]
        if code in _UNESCAPES and code:
            parts.append(_UNESCAPES[code])
            pos = end + 2
            continue
        if code != "u":
            raise ValueError(f"bad escape at {end}")
        unit, pos = _json_hex(text, end + 2), end + 6
        if 0xD800 <= unit < 0xDC00 and text.startswith("\\u", pos):
            low = _json_hex(text, pos + 2)
            if 0xDC00 <= low < 0xE000:
                unit, pos = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), pos + 6
        if 0xD800 <= unit < 0xE000:
            raise ValueError("lone surrogate")
        parts.append(chr(unit))


def _json_hex(text: str, pos: int) -> int:
    digits = text[pos : pos + 4]
    if len(digits) != 4 or not set(digits) <= _HEX:
        raise ValueError(f"bad \\u escape at {pos}")
    return int(digits, 16)


# ---------------------------------------------------------------- the reporter


def parse_spool_line(line: bytes) -> dict[str, Any] | None:
    """One spool line as a session dict (keys as written); None when it is not a valid one."""
    import json

    if len(line) > MAX_LINE_BYTES:
        return None
    try:
        entry = json.loads(line.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(entry, dict):
        return None
    policy = clean_policy(entry.get("policy"))
    result = entry.get("result")
    if policy is None or not _valid_result(result):
        return None
    session: dict[str, Any] = {"policy": policy, "result": result}
    for key in ("sending-mta-ip", "receiving-ip", "receiving-mx-hostname", "failure-reason-code"):
        value = entry.get(key, "")
        if not isinstance(value, str):
            return None
        session[key] = _short(value)
    return session


_DETAIL_KEYS = ("sending-mta-ip", "receiving-mx-hostname", "receiving-ip")


def aggregate(sessions: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Sessions grouped by policy domain, then by policy: RFC 8460 §4.4 ``policies`` entries.

    Each entry has ``policy``, ``summary`` (successful and failed session counts) and
    ``failure-details`` grouped by (result-type, sending-mta-ip, receiving-mx-hostname,
    receiving-ip), with the first non-empty ``failure-reason-code`` of the group.  Empty
    addresses and names are left out of a detail.  Order: domains, policies and details
    sorted, so the same spool always gives the same reports.
    """
    import json

    domains: dict[str, dict[str, dict[str, Any]]] = {}
    for session in sessions:
        policy = session["policy"]
        key = json.dumps(policy, sort_keys=True)
        entry = domains.setdefault(str(policy["policy-domain"]), {}).setdefault(
            key, {"policy": policy, "ok": 0, "failed": 0, "details": {}}
        )
        if session["result"] == SUCCESS:
            entry["ok"] += 1
            continue
        entry["failed"] += 1
        group = (session["result"], *(session[name] for name in _DETAIL_KEYS))
        detail = entry["details"].setdefault(group, [0, ""])
        detail[0] += 1
        detail[1] = detail[1] or session["failure-reason-code"]
    return {
        domain: [_policy_entry(policies[key]) for key in sorted(policies)]
        for domain, policies in sorted(domains.items())
    }


def _policy_entry(entry: dict[str, Any]) -> dict[str, Any]:
    details = []
    for group, (count, reason) in sorted(entry["details"].items()):
        detail: dict[str, Any] = {"result-type": group[0]}
        detail.update(
            (name, value) for name, value in zip(_DETAIL_KEYS, group[1:], strict=True) if value
        )
        detail["failed-session-count"] = count
        if reason:
            detail["failure-reason-code"] = reason
        details.append(detail)
    summary = {
        "total-successful-session-count": entry["ok"],
        "total-failure-session-count": entry["failed"],
    }
    return {"policy": entry["policy"], "summary": summary, "failure-details": details}


def build_report(date: str, domain: str, policies: list[dict[str, Any]], me: str) -> dict[str, Any]:
    """The RFC 8460 §4.4 report on ``domain`` for the UTC day ``date``, sent by host ``me``."""
    return {
        "organization-name": me,
        "date-range": {
            "start-datetime": f"{date}T00:00:00Z",
            "end-datetime": f"{date}T23:59:59Z",
        },
        "contact-info": f"postmaster@{me}",
        "report-id": f"{date}_{domain}@{me}",
        "policies": policies,
    }


def parse_tlsrpt_record(records: Sequence[bytes]) -> tuple[list[str], str | None]:
    """The ``rua`` URIs of the one ``v=TLSRPTv1`` record among ``records`` (RFC 8460 §3).

    Returns (uris, None) -- no record at all is ``([], None)``: the domain wants no
    reports -- or ([], why) when there are several records or the one is invalid.  Only
    ``mailto:`` and ``https:`` URIs are kept (the schemes RFC 8460 defines).
    """
    candidates = [
        record
        for record in records
        if record.startswith(b"v=TLSRPTv1") and record[10:11] in (b"", b";", b" ", b"\t")
    ]
    if not candidates:
        return [], None
    if len(candidates) > 1:
        return [], f"{len(candidates)} TLSRPTv1 records"
    record = candidates[0]
    if not all(0x20 <= byte < 0x7F or byte == 0x09 for byte in record):
        return [], "TLSRPTv1 record is not printable ASCII"
    fields = [field.strip(" \t") for field in record.decode("ascii").split(";")]
    if fields[-1] == "":
        fields.pop()
    rua: list[str] | None = None
    for field in fields[1:]:
        name, equals, value = field.partition("=")
        if not equals or not name or not value:
            return [], f"bad field {field[:40]!r} in TLSRPTv1 record"
        if name == "rua":
            if rua is not None:
                return [], "rua given twice"
            rua = [uri.strip(" \t") for uri in value.split(",")]
    if not rua or not all(rua) or any(" " in uri or "\t" in uri for uri in rua):
        return [], "no valid rua in TLSRPTv1 record"
    return [uri for uri in rua if uri.lower().startswith(("mailto:", "https:"))], None


async def lookup_rua(
    domains: Iterable[str], lookup: Lookup
) -> dict[str, tuple[list[str], str | None]]:
    """``parse_tlsrpt_record`` of ``TXT _smtp._tls.<domain>`` for every domain, at once."""
    import asyncio

    from mxf_remote.knowledge import HARD, Status

    async def one(domain: str) -> tuple[list[str], str | None]:
        name = f"_smtp._tls.{domain}"
        try:
            answer = await lookup(name, "TXT")
        except Exception as error:  # a lookup that raises is a resolver bug: report, go on
            return [], f"DNS lookup of {name} failed: {type(error).__name__}"
        if answer.status in HARD:
            return [], None
        if answer.status is not Status.OK:
            return [], f"temporary DNS failure for TXT {name}"
        records = [bytes(record) for record in answer.records if isinstance(record, bytes)]
        return parse_tlsrpt_record(records)

    names = list(domains)
    results = await asyncio.gather(*(one(domain) for domain in names))
    return dict(zip(names, results, strict=True))


def report_lines(
    date: str,
    reports: dict[str, list[dict[str, Any]]],
    rua: Mapping[str, tuple[list[str], str | None]],
    me: str,
) -> list[str]:
    """The program's output: one JSON object per policy domain (see the man page)."""
    import json

    lines = []
    for domain, policies in reports.items():
        uris, error = rua.get(domain, ([], "not looked up"))
        line: dict[str, Any] = {"policy-domain": domain, "rua": uris}
        if error is not None:
            line["error"] = error
        line["report"] = build_report(date, domain, policies, me)
        lines.append(json.dumps(line, ensure_ascii=True))
    return lines


class ReporterError(Exception):
    """Temporary trouble that stops the reporter (exit 111): says what."""


def _valid_date(text: str) -> bool:
    """``YYYY-MM-DD``, a real calendar day."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    if not (text[:4] + text[5:7] + text[8:]).isdigit() or not text.isascii():
        return False
    import datetime

    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _settings(environ: Mapping[str, str]) -> tuple[str, str]:
    """(spool directory, ``me``) from ``control/mtasts`` and ``control/me``."""
    from mxf_remote.controlfile import ControlError, qmail_home, read_first_line

    home = qmail_home(environ)
    try:
        directory = read_first_line(home, "mtasts")
        me = read_first_line(home, "me")
    except ControlError as error:
        raise ReporterError(error.detail()) from None
    if not directory:
        raise ReporterError("control/mtasts is missing or empty")
    if not _absolute_path(directory):
        raise ReporterError("control/mtasts: not an absolute path")
    if not me:
        raise ReporterError("control/me is missing or empty")
    return directory, me


LINE_START = b'{"time": "'
"""How every spool line begins (``encode_json`` of ``record``'s entry)."""


def read_spool(path: str) -> tuple[list[dict[str, Any]], int]:
    """The valid sessions in the spool file ``path`` and how many lines were skipped.

    A missing file is a day without sessions; any other error is ReporterError.
    """
    sessions: list[dict[str, Any]] = []
    skipped = 0
    try:
        with open(path, "rb") as spool:
            for line in spool:
                session = parse_spool_line(line.rstrip(b"\n"))
                start = line.rfind(LINE_START)
                if session is None and start > 0:
                    # a line cut short (full disk, file size limit) with the next writer's
                    # line right after it: the cut one is lost, the whole one is not
                    session = parse_spool_line(line[start:].rstrip(b"\n"))
                    skipped += 1
                if session is None:
                    skipped += 1
                else:
                    sessions.append(session)
    except FileNotFoundError:
        return [], 0
    except OSError as error:
        raise ReporterError(f"cannot read {path}: {error.strerror or error}") from None
    return sessions, skipped


async def _lookup_all(domains: list[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """``lookup_rua`` through c-ares with the configured name servers."""
    import asyncio

    from mxf_remote.cares import CaresLookup
    from mxf_remote.nameservers import configured_nameservers

    try:
        nameservers = configured_nameservers(environ)
    except ValueError as error:
        raise ReporterError(str(error)) from None
    lookup = CaresLookup(nameservers, asyncio.get_running_loop())
    try:
        return await lookup_rua(domains, lookup)
    finally:
        await lookup.close()


def run(argv: Sequence[str], environ: Mapping[str, str], lookup: Lookup | None = None) -> int:
    """The reporter: print the reports for the day ``argv[1]``; return the exit status."""
    import asyncio
    import sys

    if len(argv) != 2 or not _valid_date(argv[1]):
        print("usage: mxf-remote-tlsrpt YYYY-MM-DD", file=sys.stderr)
        return EXIT_USAGE
    date = argv[1]
    try:
        directory, me = _settings(environ)
        sessions, skipped = read_spool(os.path.join(directory, SPOOL_DIRECTORY, date))
        if skipped:
            print(f"mxf-remote-tlsrpt: {skipped} malformed spool lines skipped", file=sys.stderr)
        reports = aggregate(sessions)
        if not reports:
            return EXIT_OK
        if lookup is None:
            rua = asyncio.run(_lookup_all(list(reports), environ))
        else:
            rua = asyncio.run(lookup_rua(list(reports), lookup))
    except ReporterError as error:
        print(f"mxf-remote-tlsrpt: {error}", file=sys.stderr)
        return EXIT_TROUBLE
    for line in report_lines(date, reports, rua, me):
        print(line)
    return EXIT_OK


def main() -> NoReturn:
    """Console entry point (``mxf-remote-tlsrpt DATE``); never a traceback."""
    import sys

    try:
        code = run(sys.argv, os.environ)
    except KeyboardInterrupt:
        print("mxf-remote-tlsrpt: interrupted", file=sys.stderr)
        code = EXIT_TROUBLE
    except BaseException as error:  # no traceback, ever
        print(
            f"mxf-remote-tlsrpt: internal error: {type(error).__name__}: {error}", file=sys.stderr
        )
        code = EXIT_TROUBLE
    try:
        sys.stdout.flush()
    except OSError:
        code = EXIT_TROUBLE
    sys.exit(code)


if __name__ == "__main__":
    main()
