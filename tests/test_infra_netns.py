"""Tests for tests/infra/netns.py.

Everything that changes the network runs in a fresh child process that calls
enter_private_netns() itself: the pytest process running these tests may or may not be in
a namespace already, and must not be moved or have its firewall changed by a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra import netns

ROOT = Path(__file__).resolve().parent.parent
NOBODY = ("--reuid=65534", "--regid=65534", "--clear-groups")
CHILD_IMPORTS = "contextlib, ctypes, errno, ipaddress, json, os, shutil, socket, subprocess, time"
"""The modules the children and tests/infra/netns.py import: the standard library only."""

_PRELUDE = """
import json, os, socket, sys, time
sys.path.insert(0, {root!r})
from tests.infra import netns
result = {{}}
"""
_ENTER = """
reason = netns.enter_private_netns()
if reason is not None:
    print(json.dumps({"skip": reason}))
    sys.exit(0)
"""


def _child(
    body: str,
    *,
    enter: bool = True,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    root: Path = ROOT,
) -> dict[str, Any]:
    """Run `body` in a new Python process (in its own namespace when `enter`).

    The body fills the dict `result`, which comes back parsed from JSON. A child that could
    not make a namespace makes the calling test skip with the child's reason. `root` is
    where the child imports `tests.infra.netns` from, and its working directory.
    """
    code = _PRELUDE.format(root=str(root))
    if enter:
        code += _ENTER
    code += textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    if env is None:
        child_env = {k: v for k, v in os.environ.items() if k != netns.NETNS_ENV}
    else:
        child_env = dict(env)
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env,
        cwd=root,
        check=False,
    )
    assert proc.returncode == 0, f"child failed:\n{proc.stderr}"
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(f"no private network namespace: {out['skip']}")
    return out


@contextlib.contextmanager
def _readable_copy() -> Iterator[Path]:
    """tests/infra/netns.py and its packages, copied to a temporary tree anyone can read.

    An unprivileged child cannot import them from a checkout it cannot traverse (a clone
    into a mode-700 directory); the copy has mode-755 directories and mode-644 files.
    """
    top = Path(tempfile.mkdtemp(prefix="mxf-netns-"))
    try:
        package = top / "tests" / "infra"
        package.mkdir(parents=True)
        (top / "tests" / "__init__.py").write_text("")
        shutil.copyfile(ROOT / "tests" / "infra" / "__init__.py", package / "__init__.py")
        shutil.copyfile(netns.__file__, package / "netns.py")
        for directory in (top, top / "tests", package):
            directory.chmod(0o755)
        for file in (top / "tests" / "__init__.py", package / "__init__.py", package / "netns.py"):
            file.chmod(0o644)
        yield top
    finally:
        shutil.rmtree(top)


def _interpreter_problem(prefix: tuple[str, ...], env: dict[str, str]) -> str | None:
    """Why this interpreter cannot run the child under `prefix`, or None when it can."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", f"import {CHILD_IMPORTS}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
        check=False,
    )
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return f"exit {proc.returncode}: {lines[-1] if lines else 'no message'}"


def _need_nft() -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft (nftables) is not installed")


class TestTestAddresses:
    """The address helpers (pure functions)."""

    def test_ipv4_addresses(self) -> None:
        """ipv4_test_address(n) is 127.0.0.0+n, never 127.0.0.1, spread over 127/8."""
        assert netns.ipv4_test_address(2) == "127.0.0.2"
        assert netns.ipv4_test_address(254) == "127.0.0.254"
        assert netns.ipv4_test_address(258) == "127.0.1.2"
        for bad in (0, 1, 2**24 - 1):
            with pytest.raises(ValueError):
                netns.ipv4_test_address(bad)

    def test_ipv6_addresses(self) -> None:
        """ipv6_test_address(n) is fd6d:7866::N in hex."""
        assert netns.ipv6_test_address(1) == "fd6d:7866::1"
        assert netns.ipv6_test_address(0x2A) == "fd6d:7866::2a"
        assert netns.ipv6_test_address(0x10000) == "fd6d:7866::1:0"
        with pytest.raises(ValueError):
            netns.ipv6_test_address(0)


class TestEnter:
    """enter_private_netns() in a child process."""

    def test_new_namespace_with_loopback_only(self) -> None:
        """The child gets a different netns whose interface addresses are 127.0.0.1 and ::1."""
        out = _child(
            """
            result["inode"] = os.stat("/proc/self/ns/net").st_ino
            result["addrs"] = sorted(netns.interface_addresses())
            result["inside"] = netns.in_private_netns()
            result["env"] = os.environ.get(netns.NETNS_ENV)
            """
        )
        assert out["inode"] != os.stat("/proc/self/ns/net").st_ino
        assert set(out["addrs"]) <= {"127.0.0.1", "::1"}
        assert "127.0.0.1" in out["addrs"]
        assert out["inside"] is True
        assert out["env"] == str(out["inode"])

    def test_idempotent(self) -> None:
        """A second call returns None and keeps the same namespace."""
        out = _child(
            """
            before = os.stat("/proc/self/ns/net").st_ino
            result["again"] = netns.enter_private_netns()
            result["same"] = before == os.stat("/proc/self/ns/net").st_ino
            """
        )
        assert out == {"again": None, "same": True}

    def test_refuses_when_threads_exist(self) -> None:
        """With a second thread running it does not unshare and says why."""
        out = _child(
            """
            import threading
            stop = threading.Event()
            t = threading.Thread(target=stop.wait)
            t.start()
            before = os.stat("/proc/self/ns/net").st_ino
            result["reason"] = netns.enter_private_netns()
            result["same"] = before == os.stat("/proc/self/ns/net").st_ino
            stop.set()
            t.join()
            """,
            enter=False,
        )
        assert "threads" in out["reason"]
        assert out["same"] is True

    def test_works_without_root(self) -> None:
        """As an unprivileged user it goes through a user namespace and still works."""
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0 or setpriv is None:
            pytest.skip("needs root and setpriv to become an unprivileged user")
        env = {k: v for k, v in os.environ.items() if k != netns.NETNS_ENV}
        env["HOME"] = "/tmp"
        prefix = (setpriv, *NOBODY)
        problem = _interpreter_problem(prefix, env)
        if problem is not None:
            pytest.skip(f"{sys.executable} cannot run as uid 65534 ({problem})")
        with _readable_copy() as readable:
            out = _child(
                """
                result["uid"] = os.geteuid()
                srv = netns.listen_tcp(netns.ipv4_test_address(9))
                c = socket.create_connection(srv.getsockname()[:2], timeout=1.0)
                result["connected"] = True
                c.close(); srv.close()
                """,
                env=env,
                prefix=prefix,
                root=readable,
            )
        assert out == {"uid": 0, "connected": True}


class TestListen:
    """Test servers on addresses that are not interface addresses."""

    def test_anyip_ipv6_listen_and_connect(self) -> None:
        """An fd6d:7866:: address can be listened on and connected to, and is no ipme."""
        out = _child(
            """
            addr = netns.ipv6_test_address(0x25)
            srv = netns.listen_tcp(addr)
            port = srv.getsockname()[1]
            c = socket.create_connection((addr, port), timeout=1.0)
            peer = srv.accept()[0]
            c.sendall(b"hi")
            result["got"] = peer.recv(2).decode()
            result["peer"] = c.getpeername()[0]
            result["ipme"] = addr in netns.interface_addresses()
            """
        )
        assert out == {"got": "hi", "peer": "fd6d:7866::25", "ipme": False}

    def test_ipv4_test_address_listen_and_connect(self) -> None:
        """A 127.x test address works through the local route and is not an interface one."""
        out = _child(
            """
            addr = netns.ipv4_test_address(300)
            srv = netns.listen_tcp(addr, backlog=4)
            c = socket.create_connection(srv.getsockname(), timeout=1.0)
            result["peer"] = c.getpeername()[0]
            result["ipme"] = addr in netns.interface_addresses()
            """
        )
        assert out == {"peer": "127.0.1.44", "ipme": False}


class TestSilence:
    """Silent hosts made with nftables."""

    def test_silenced_port_times_out_other_port_connects(self) -> None:
        """A silenced address+port times out; another port on that address still connects."""
        _need_nft()
        out = _child(
            """
            nft = netns.nft_available()
            if nft is not None:
                print(json.dumps({"skip": nft})); sys.exit(0)
            addr = netns.ipv4_test_address(50)
            quiet, loud = netns.listen_tcp(addr), netns.listen_tcp(addr)
            qport, lport = quiet.getsockname()[1], loud.getsockname()[1]
            netns.silence(addr, qport)
            t0 = time.monotonic()
            try:
                socket.create_connection((addr, qport), timeout=0.5)
                result["silenced"] = "connected"
            except socket.timeout:
                result["silenced"] = "timeout"
            result["elapsed"] = time.monotonic() - t0
            socket.create_connection((addr, lport), timeout=0.5).close()
            result["other"] = "connected"
            result["removed"] = netns.unsilence(addr, qport)
            socket.create_connection((addr, qport), timeout=0.5).close()
            result["after"] = "connected"
            """
        )
        assert out["silenced"] == "timeout"
        assert 0.45 <= out["elapsed"] < 1.5
        assert (out["other"], out["removed"], out["after"]) == ("connected", 1, "connected")

    def test_silenced_ipv6_address_all_ports(self) -> None:
        """Silencing an fd6d:7866:: address without a port silences every port of it."""
        _need_nft()
        out = _child(
            """
            nft = netns.nft_available()
            if nft is not None:
                print(json.dumps({"skip": nft})); sys.exit(0)
            addr = netns.ipv6_test_address(0x51)
            other = netns.ipv6_test_address(0x52)
            a1, a2, b = netns.listen_tcp(addr), netns.listen_tcp(addr), netns.listen_tcp(other)
            netns.silence(addr)
            outcomes = []
            for sock, host in ((a1, addr), (a2, addr), (b, other)):
                try:
                    socket.create_connection((host, sock.getsockname()[1]), timeout=0.5).close()
                    outcomes.append("connected")
                except socket.timeout:
                    outcomes.append("timeout")
            result["outcomes"] = outcomes
            netns.unsilence_all()
            socket.create_connection((addr, a1.getsockname()[1]), timeout=0.5).close()
            result["after"] = "connected"
            """
        )
        assert out == {"outcomes": ["timeout", "timeout", "connected"], "after": "connected"}

    def test_closed_port_refuses_at_once(self) -> None:
        """A closed port on a test address refuses at once (no rule needed)."""
        out = _child(
            """
            addr = netns.ipv4_test_address(60)
            srv = netns.listen_tcp(addr)
            port = srv.getsockname()[1]
            srv.close()
            t0 = time.monotonic()
            try:
                socket.create_connection((addr, port), timeout=1.0)
                result["outcome"] = "connected"
            except ConnectionRefusedError:
                result["outcome"] = "refused"
            result["fast"] = time.monotonic() - t0 < 0.1
            """
        )
        assert out == {"outcome": "refused", "fast": True}

    def test_refuses_outside_private_namespace(self) -> None:
        """Without enter_private_netns() (or with a forged marker) silence() raises."""
        env = {k: v for k, v in os.environ.items() if k != netns.NETNS_ENV}
        for marker in (None, "12345"):
            if marker is not None:
                env[netns.NETNS_ENV] = marker
            out = _child(
                """
                try:
                    netns.silence("127.0.0.5", 25)
                    result["silence"] = "ran"
                except netns.NotInPrivateNetns:
                    result["silence"] = "refused"
                try:
                    netns.unsilence_all()
                    result["unsilence_all"] = "ran"
                except netns.NotInPrivateNetns:
                    result["unsilence_all"] = "refused"
                result["nft"] = netns.nft_available()
                """,
                enter=False,
                env=env,
            )
            assert out["silence"] == out["unsilence_all"] == "refused"
            assert out["nft"] == "not in the private test network namespace"
