"""The private network namespace the test session runs in, and what can be done inside it.

Why: "silent hosts" (SYNs dropped, so a connect hangs until the client's own timeout) need
firewall rules, and test servers need addresses that are not this machine's interface
addresses (mxf-remote refuses to connect to "ipme" addresses, as qmail-remote does). Doing
that on the real machine would change its network, so the test process moves itself into a
brand-new network namespace first (`unshare(CLONE_NEWNET)`, through a user namespace when
not root) and does everything there:

- `lo` is brought up; 127.0.0.1 and ::1 are its only interface addresses.
- IPv4 test servers listen on 127.0.0.2 and up: the kernel's 127/8 *local route* makes them
  reachable without being interface addresses.
- IPv6 test servers listen inside fd6d:7866::/64, an "AnyIP" local route on lo
  (`ip -6 route add local fd6d:7866::/64 dev lo`); binding there needs IP_FREEBIND.
- nftables table `inet mxftest` drops SYNs to silenced address/port pairs.

A process records the namespace it made in $MXF_TEST_NETNS (its inode), so the functions
that change the network refuse to run anywhere else, child processes included.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

__all__ = [
    "ANYIP_PREFIX",
    "NETNS_ENV",
    "NotInPrivateNetns",
    "added_interface_address",
    "enter_private_netns",
    "in_private_netns",
    "interface_addresses",
    "ipv4_test_address",
    "ipv6_test_address",
    "listen_tcp",
    "nft_available",
    "silence",
    "silenced",
    "unsilence",
    "unsilence_all",
]

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
IP_FREEBIND = 15
ANYIP_PREFIX = "fd6d:7866::/64"
NETNS_ENV = "MXF_TEST_NETNS"
NFT_TABLE = "mxftest"
_CMD_TIMEOUT = 10.0

_state: dict[str, str | None] = {}


class NotInPrivateNetns(RuntimeError):
    """A network-changing helper was called outside the namespace made by this process."""


def _netns_inode() -> str:
    return str(os.stat("/proc/self/ns/net").st_ino)


def in_private_netns() -> bool:
    """True when this process runs in the namespace that enter_private_netns() made.

    Child processes of that process inherit both the namespace and $MXF_TEST_NETNS.
    """
    recorded = os.environ.get(NETNS_ENV)
    try:
        return recorded is not None and recorded == _netns_inode()
    except OSError:
        return False


def _require_netns() -> None:
    if not in_private_netns():
        raise NotInPrivateNetns(
            "refusing to change the network outside the private test namespace "
            "(call tests.infra.netns.enter_private_netns() first)"
        )


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=_CMD_TIMEOUT, check=False)


def _run_checked(argv: list[str], what: str) -> None:
    proc = _run(argv)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(argv)}): {proc.stderr.strip()}")


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _unshare(flags: int) -> int:
    """Call unshare(2); return 0 or the errno."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        return ctypes.get_errno()
    return 0


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def _make_namespace() -> str | None:
    """unshare into a new network namespace; return None or a reason."""
    if _thread_count() > 1:
        return (
            f"process has {_thread_count()} threads; unshare(CLONE_NEWNET) would move only "
            "the calling thread (call enter_private_netns() before any thread starts)"
        )
    err = _unshare(CLONE_NEWNET)
    if err == 0:
        return None
    if err != errno.EPERM or os.geteuid() == 0:
        return f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}"
    uid, gid = os.geteuid(), os.getegid()
    err = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    if err != 0:
        return f"unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: {os.strerror(err)} (not root)"
    try:
        with contextlib.suppress(FileNotFoundError):
            _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    except OSError as exc:
        return f"cannot write the user namespace id maps: {exc}"
    return None


def _setup_loopback() -> str | None:
    """Bring lo up, add the AnyIP route, check both families; return None or a reason."""
    ip = shutil.which("ip")
    if ip is None:
        return "the 'ip' command (iproute2) is missing"
    proc = _run([ip, "link", "set", "lo", "up"])
    if proc.returncode != 0:
        return f"ip link set lo up failed: {proc.stderr.strip()}"
    proc = _run([ip, "-6", "route", "add", "local", ANYIP_PREFIX, "dev", "lo"])
    if proc.returncode != 0 and "File exists" not in proc.stderr:
        return f"adding the IPv6 AnyIP route failed: {proc.stderr.strip()}"
    for addr in ("127.0.0.1", ipv4_test_address(2), ipv6_test_address(1)):
        reason = _loopback_check(addr)
        if reason is not None:
            return reason
    return None


def _loopback_check(addr: str) -> str | None:
    """Connect to a listener on addr; return None or a reason."""
    try:
        with listen_tcp(addr) as srv:
            port = srv.getsockname()[1]
            with socket.create_connection((addr, port), timeout=2.0):
                pass
    except OSError as exc:
        return f"loopback {addr} does not work in the new namespace: {exc}"
    return None


def enter_private_netns() -> str | None:
    """Move this (single-threaded) process into a new network namespace and set it up.

    Returns None on success, or a short reason why no namespace could be made (callers skip
    namespace-dependent tests with it). A second call in the same process returns the first
    call's result without doing anything. Sets $MXF_TEST_NETNS on success.
    """
    key = str(os.getpid())
    if key in _state:
        return _state[key]
    if not sys.platform.startswith("linux") or not os.path.exists("/proc/self/ns/net"):
        reason: str | None = "network namespaces need Linux"
    else:
        try:
            before = _netns_inode()
            reason = _make_namespace()
            if reason is None and _netns_inode() == before:
                reason = "unshare succeeded but the network namespace did not change"
            if reason is None:
                reason = _setup_loopback()
        except OSError as exc:
            reason = f"cannot make a network namespace: {exc}"
    if reason is None:
        os.environ[NETNS_ENV] = _netns_inode()
    _state[key] = reason
    return reason


def ipv4_test_address(n: int) -> str:
    """The n-th IPv4 test address: 127.0.0.0 + n, n >= 2 (127.0.0.1 is an interface address).

    Reachable through the 127/8 local route without being configured on an interface.
    """
    if not 2 <= n <= 0xFFFFFE:
        raise ValueError(f"IPv4 test address index must be in [2, 16777214], not {n}")
    return str(ipaddress.IPv4Address("127.0.0.0") + n)


def ipv6_test_address(n: int) -> str:
    """The n-th IPv6 test address: fd6d:7866::N (hex), n >= 1, inside the AnyIP route."""
    if not 1 <= n < 2**64 - 1:
        raise ValueError(f"IPv6 test address index must be in [1, 2**64-2], not {n}")
    net = ipaddress.IPv6Network(ANYIP_PREFIX)
    return str(net.network_address + n)


def listen_tcp(address: str, port: int = 0, backlog: int = 16) -> socket.socket:
    """A listening TCP socket on address:port, bound with IP_FREEBIND (AnyIP needs it)."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        if fam == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Accepted sockets inherit TCP_NODELAY: without it a server writing its replies in
        # pieces (aiosmtpd's EHLO) waits ~40 ms for each delayed ACK (Nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def interface_addresses() -> set[str]:
    """Addresses configured on interfaces in the current namespace (`ip -o addr`)."""
    ip = shutil.which("ip")
    if ip is None:
        raise RuntimeError("the 'ip' command (iproute2) is missing")
    proc = _run([ip, "-o", "addr", "show"])
    if proc.returncode != 0:
        raise RuntimeError(f"ip -o addr show failed: {proc.stderr.strip()}")
    found: set[str] = set()
    for line in proc.stdout.splitlines():
        fields = line.split()
        for i, word in enumerate(fields[:-1]):
            if word in ("inet", "inet6"):
                addr = fields[i + 1].split("/")[0].split("%")[0]
                found.add(str(ipaddress.ip_address(addr)))
    return found


@contextlib.contextmanager
def added_interface_address(address: str) -> Iterator[str]:
    """``address`` configured on ``lo`` (a /32 or /128, no DAD) for a with-block; removed after.

    An interface address is "this machine" for mxf-remote (its self-check, and the source
    addresses ``control/outgoingip``/``outgoingip6`` may name), unlike the route-local test
    addresses.  Only inside the private namespace (raises NotInPrivateNetns elsewhere).
    """
    _require_netns()
    ip = shutil.which("ip")
    if ip is None:
        raise RuntimeError("the 'ip' command (iproute2) is missing")
    parsed = ipaddress.ip_address(address)
    prefix = f"{parsed}/{parsed.max_prefixlen}"
    family = "-4" if parsed.version == 4 else "-6"
    extra = [] if parsed.version == 4 else ["nodad"]
    _run_checked([ip, family, "addr", "add", prefix, "dev", "lo", *extra], "ip addr add")
    try:
        yield str(parsed)
    finally:
        _run_checked([ip, family, "addr", "del", prefix, "dev", "lo"], "ip addr del")


# -- nftables -------------------------------------------------------------------------------


def nft_available() -> str | None:
    """None when silence() can work here, else the reason why not."""
    if not in_private_netns():
        return "not in the private test network namespace"
    nft = shutil.which("nft")
    if nft is None:
        return "the 'nft' command (nftables) is missing"
    try:
        _ensure_table()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"nftables does not work here: {exc}"
    return None


def _nft(script: str) -> subprocess.CompletedProcess[str]:
    nft = shutil.which("nft")
    if nft is None:
        raise RuntimeError("the 'nft' command (nftables) is missing")
    return subprocess.run(
        [nft, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=_CMD_TIMEOUT,
        check=False,
    )


def _ensure_table() -> None:
    _require_netns()
    # 'add' is idempotent: it keeps an existing table/chain and its rules.
    proc = _nft(
        f"add table inet {NFT_TABLE}\n"
        f"add chain inet {NFT_TABLE} input "
        "{ type filter hook input priority -10; policy accept; }\n"
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nft: {proc.stderr.strip()}")


def _rule_tag(address: str, port: int | None) -> str:
    return f"mxf-silence {address} {port if port is not None else '*'}"


def silence(address: str, port: int | None = None) -> None:
    """Drop TCP SYNs to address (and port), so connects there hang: a "silent host".

    Only inside the private namespace (raises NotInPrivateNetns elsewhere).
    """
    _require_netns()
    ip = ipaddress.ip_address(address)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    _ensure_table()
    family = "ip" if ip.version == 4 else "ip6"
    match = f"{family} daddr {ip}"
    if port is not None:
        match += f" tcp dport {port}"
    tag = _rule_tag(str(ip), port)
    proc = _nft(
        f"add rule inet {NFT_TABLE} input {match} "
        f'tcp flags & (syn | ack) == syn counter drop comment "{tag}"\n'
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nft add rule failed: {proc.stderr.strip()}")


def unsilence(address: str, port: int | None = None) -> int:
    """Remove the rules silence(address, port) added; return how many were removed."""
    _require_netns()
    _ensure_table()
    tag = _rule_tag(str(ipaddress.ip_address(address)), port)
    nft = shutil.which("nft") or "nft"
    listing = _run([nft, "-a", "list", "chain", "inet", NFT_TABLE, "input"])
    if listing.returncode != 0:
        raise RuntimeError(f"nft list failed: {listing.stderr.strip()}")
    handles = [
        line.rsplit("# handle", 1)[1].strip()
        for line in listing.stdout.splitlines()
        if f'comment "{tag}"' in line and "# handle" in line
    ]
    if handles:
        script = "".join(f"delete rule inet {NFT_TABLE} input handle {h}\n" for h in handles)
        proc = _nft(script)
        if proc.returncode != 0:
            raise RuntimeError(f"nft delete rule failed: {proc.stderr.strip()}")
    return len(handles)


def unsilence_all() -> None:
    """Remove every silence() rule."""
    _require_netns()
    _ensure_table()
    proc = _nft(f"flush chain inet {NFT_TABLE} input\n")
    if proc.returncode != 0:
        raise RuntimeError(f"nft flush failed: {proc.stderr.strip()}")


@contextlib.contextmanager
def silenced(address: str, port: int | None = None) -> Iterator[None]:
    """silence(address, port) for the duration of a with-block."""
    silence(address, port)
    try:
        yield
    finally:
        unsilence(address, port)
