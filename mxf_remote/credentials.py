"""SMTP AUTH credentials for relays: ``control/authsenders`` and ``|user|password`` routes.

The format is qmail-authentication's (s/qmail, notqmail's smtp-auth patch)::

    control/smtproutes     authdomain.com:mx.authdomain.com:587|myuser|mypass
                           :relay.example.com:587|u|p
    control/authsenders    info@example.com:relay.example.com:26|u|p
                           @example.com:relay.example.com|u|p
                           :relay.example.com:587|u|p

A route value is split at its *first* ``|``: before it the route (``relay[:port]``, parsed
by ``control.parse_route_value``), after it ``user|password`` -- the user up to the next
``|``, the password everything after it (so a password may contain ``:`` and ``|``; a
user cannot contain ``|``).  The key is everything before the first colon, as in qmail.

Lookup rules (``control.lookup_route`` for hosts, ``lookup_sender`` for senders):

* ``authsenders`` is looked up by the **sender**: the address itself, then ``@domain``
  (the part after its last ``@``), then the empty key; case-insensitively; the first key
  found decides.  A sender found there with a relay sends the delivery over SMTP to that
  relay, whatever ``smtproutes`` says about the host (authsenders is consulted first);
  an empty relay there means "no sender route" and ``smtproutes`` decides.
* ``<service>routes`` is looked up by the **host**, with qmail's smtproutes rules.

This module is the one place both sides read: ``mxf-remote`` (``control.py``) plans the
route from it -- relay and port, never the password -- and the SMTP client reads the
credentials itself, for the route it was handed (``find_credentials``: host, sender,
``MXFPROTOCOL``, ``MXFHOST``), so that no password travels in argv or in an environment
another process could read.  It imports nothing heavy: ``mxf-remote-smtpc`` starts once per
delivery.

No error text of this module (nor of ``control.py`` for a route line) shows the part after
the ``|``: a malformed line is reported to qmail's log, and the password must not be.
"""

from __future__ import annotations

from mxf_remote.controlfile import ControlError, read_lines

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TypeVar

    V = TypeVar("V")

AUTHSENDERS = "authsenders"
AUTH_SERVICE = "smtp"
"""The protocol ``control/authsenders`` routes through (its service label)."""
CREDENTIALS_FORMAT = "relay[:port]|user|password"


class Credentials:
    """A user and a password for a relay, and the file they come from.

    Its ``repr`` and ``str`` never show the password.
    """

    __slots__ = ("password", "source", "user")

    def __init__(self, user: bytes, password: bytes, source: str) -> None:
        self.user = user
        self.password = password
        self.source = source
        """The control file that holds them (``authsenders``, ``smtproutes``)."""

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, password='***', source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and (self.user, self.password, self.source) == (
            other.user,
            other.password,
            other.source,
        )

    __hash__ = None  # type: ignore[assignment]


class Entry:
    """One line's value: the route text and maybe credentials (``split_value``)."""

    __slots__ = ("credentials", "route")

    def __init__(self, route: str, credentials: Credentials | None) -> None:
        self.route = route
        """``relay[:port]`` as written; empty for "no route"."""
        self.credentials = credentials

    @property
    def relay(self) -> str:
        """The relay of ``route`` as written (``[ipv6]`` keeps its brackets)."""
        if self.route.startswith("["):
            close = self.route.find("]")
            return self.route if close < 0 else self.route[: close + 1]
        return self.route.partition(":")[0]

    def __repr__(self) -> str:
        return f"Entry(route={self.route!r}, credentials={self.credentials!r})"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def split_value(name: str, line: int, value: str) -> Entry:
    """``relay[:port]`` or ``relay[:port]|user|password`` (see the module doc).

    A ControlError for credentials with a part missing never shows the password.
    """
    route, bar, tail = value.partition("|")
    if not bar:
        return Entry(value, None)
    user, bar, password = tail.partition("|")
    if not route:
        raise ControlError(
            name, line, f"credentials without a relay (expected {CREDENTIALS_FORMAT})"
        )
    if not bar:
        raise ControlError(
            name, line, f"credentials without a password (expected {CREDENTIALS_FORMAT})"
        )
    if not user:
        raise ControlError(
            name, line, f"credentials without a user (expected {CREDENTIALS_FORMAT})"
        )
    if not password:
        raise ControlError(
            name, line, f"credentials with an empty password (expected {CREDENTIALS_FORMAT})"
        )
    if not user.isprintable() or any(c.isspace() for c in user):
        raise ControlError(name, line, "the user contains blanks or control bytes")
    if "\0" in password or "\r" in password:
        raise ControlError(name, line, "the password contains a NUL or a carriage return")
    return Entry(route, Credentials(_encode(user), _encode(password), name))


def route_key(text: str) -> bytes:
    """The lookup key of a routes or authsenders line: lower-cased bytes."""
    return _encode(text).lower()


def parse_entries(lines: list[str], name: str) -> dict[bytes, tuple[int, Entry]]:
    """Every ``key:value`` line by key, with its line number (qmail's ``constmap``).

    Lines without a colon, empty ones and ``#`` comments are ignored; for a key given
    twice the last line wins.
    """
    table: dict[bytes, tuple[int, Entry]] = {}
    for number, line in enumerate(lines, start=1):
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        table[route_key(key)] = (number, split_value(name, number, value))
    return table


def lookup_host(table: Mapping[bytes, V], host: str) -> V | None:
    """qmail's smtproutes lookup: exact host, ``.suffix`` longest first, then ``""``."""
    key = route_key(host)
    if key in table:
        return table[key]
    for position, byte in enumerate(key):
        if byte == 46 and key[position:] in table:  # "."
            return table[key[position:]]
    return table.get(b"")


def lookup_sender(table: Mapping[bytes, V], sender: str) -> V | None:
    """The authsenders lookup: the sender, then ``@domain``, then ``""``; None if no key."""
    key = route_key(sender)
    if key in table:
        return table[key]
    at = key.rfind(b"@")
    if at >= 0 and key[at:] in table:
        return table[key[at:]]
    return table.get(b"")


def _relay_identity(relay: str) -> str:
    """A relay or ``MXFHOST`` as one comparable string: a name in lower case without its
    trailing dot, an address literal as its canonical address."""
    text = relay
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    if text and all(c in "0123456789abcdefABCDEF.:" for c in text) and any(c in ".:" for c in text):
        import socket

        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                return socket.inet_ntop(family, socket.inet_pton(family, text))
            except (OSError, ValueError):
                continue
    return relay.rstrip(".").lower()


def same_relay(written: str, handed: str) -> bool:
    """True when the relay ``written`` in a control file is the exchanger ``handed`` to the
    client (``MXFHOST``: the relay's name, or its address for a literal)."""
    return bool(written) and _relay_identity(written) == _relay_identity(handed)


def sender_entry(home: str, sender: str) -> Entry | None:
    """The ``authsenders`` entry that routes ``sender``, None when none does (no file, no
    key, or an empty relay)."""
    lines = read_lines(home, AUTHSENDERS)
    if lines is None:
        return None
    found = lookup_sender(parse_entries(lines, AUTHSENDERS), sender)
    if found is None:
        return None
    entry = found[1]
    return entry if entry.route else None


def find_credentials(
    home: str, host: str, sender: str, service: str, exchanger: str
) -> Credentials | None:
    """The credentials for a delivery that ``mxf-remote`` handed to ``exchanger`` over the
    protocol ``service``; None when the route it followed has none.

    The same decision as mxf-remote's: for the ``smtp`` service, ``authsenders`` by the
    sender first; else the service's routes file by the host.  The credentials count only
    when the route's relay is ``exchanger`` (a delivery that went to an MX, or a file that
    changed under the delivery, never gets them).  ControlError for a malformed line
    (masked, as every error of this module).
    """
    if not exchanger or not service or not all(c.isalnum() or c == "-" for c in service):
        return None
    if service.lower() == AUTH_SERVICE:
        entry = sender_entry(home, sender)
        if entry is not None:
            return entry.credentials if same_relay(entry.relay, exchanger) else None
    name = f"{service.lower()}routes"
    lines = read_lines(home, name)
    if lines is None:
        return None
    found = lookup_host(parse_entries(lines, name), host)
    if found is None:
        return None
    route = found[1]
    if route.credentials is None or not same_relay(route.relay, exchanger):
        return None
    return route.credentials
