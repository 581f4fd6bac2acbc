"""Which DNS servers to ask: ``MXF_NAMESERVERS``, else ``/etc/resolv.conf`` (spec §3).

mxf-remote reads resolv.conf itself and hands c-ares an explicit server list, so that
what is asked is exactly what the admin configured (c-ares' own configuration reading
also honours options and environment variables qmail never knew about).  The list is
in the form c-ares' ``servers`` takes: ``ip:port``, ``[ipv6]:port``.
"""

from __future__ import annotations

from collections.abc import Mapping

from mxf_remote.addresses import canonical_address


def parse_nameserver(text: str) -> str:
    """One server as c-ares takes it: ``ip``, ``ip:port``, ``[v6]:port`` or a bare IPv6."""
    text = text.strip()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        address = canonical_address(inside)
        port = rest[1:] if rest.startswith(":") else None
        if not bracket or address is None or ":" not in address or (rest and port is None):
            raise ValueError(f"{text!r} is not an address")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        address = canonical_address(host)
        if address is None or ":" in address:
            raise ValueError(f"{text!r} is not an address")
    else:
        address, port = canonical_address(text), None
        if address is None:
            raise ValueError(f"{text!r} is not an address")
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{text!r} has a bad port")
    if ":" in address:
        return f"[{address}]:{port or 53}"
    return f"{address}:{port or 53}"


def nameservers_from_env(value: str) -> list[str]:
    """``MXF_NAMESERVERS``: comma-separated servers; ValueError names the bad one."""
    servers = [parse_nameserver(part) for part in value.split(",") if part.strip()]
    if not servers:
        raise ValueError("MXF_NAMESERVERS is empty")
    return servers


def configured_nameservers(environ: Mapping[str, str]) -> list[str]:
    """``MXF_NAMESERVERS`` when set (ValueError, naming it, when malformed), else resolv.conf."""
    configured = environ.get("MXF_NAMESERVERS")
    if configured is None:
        return nameservers_from_resolv_conf()
    try:
        return nameservers_from_env(configured)
    except ValueError as error:
        raise ValueError(f"MXF_NAMESERVERS: {error}") from None


def nameservers_from_resolv_conf(path: str = "/etc/resolv.conf") -> list[str]:
    """The ``nameserver`` lines of resolv.conf (bad ones skipped, as libc does).

    With none at all, libc's default applies: a server on this machine (127.0.0.1).
    """
    servers: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as conf:
            for line in conf:
                words = line.split("#", 1)[0].split(";", 1)[0].split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        servers.append(parse_nameserver(words[1]))
                    except ValueError:
                        continue
    except OSError:
        pass
    return servers or ["127.0.0.1:53"]
