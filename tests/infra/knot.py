"""A real authoritative DNS server (Knot DNS) for tests, as a context manager.

Why knot: it reads ordinary zone files, runs in the foreground as any user, answers about
15 ms after start and stops within milliseconds of SIGTERM, so every test (or module) can
have its own server with exactly the zones it needs. SERVFAIL comes from a zone declared
with a missing zone file; truncation (TC=1, forcing a retry over TCP) from `mod-noudp`.
Readiness is checked with real UDP queries (tests/infra/dnswire.py), one per zone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from . import dnswire

__all__ = ["KnotServer", "KnotStartError", "ipv6_loopback_available", "pick_free_port"]

_START_TIMEOUT = 5.0
_STOP_GRACE = 2.0
_START_ATTEMPTS = 3
_SOA_RE = re.compile(r"(?im)^[^;\n]*\bSOA\b")
_NS_RE = re.compile(r"(?im)^[^;\n]*\bIN\s+NS\b|^[^;\n]*\s+NS\s+\S")
_TTL_RE = re.compile(r"(?im)^\s*\$TTL\b")


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up before any fork (a forked child must not load libraries)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL knotd if the test process dies without stop()."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class KnotStartError(RuntimeError):
    """knotd did not start or did not answer in time; the message carries its stderr."""


def ipv6_loopback_available() -> bool:
    """True when a socket can be bound to ::1 (IPv6 loopback configured and enabled)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def pick_free_port(addresses: Sequence[str], *, attempts: int = 50) -> int:
    """A port free for both UDP and TCP on every address (the same port on all of them).

    Another process may take it before the caller binds it; callers should retry.
    """
    for _ in range(attempts):
        with socket.socket(_family(addresses[0]), socket.SOCK_STREAM) as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            with contextlib.ExitStack() as stack:
                for addr in addresses:
                    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                        sock = stack.enter_context(socket.socket(_family(addr), kind))
                        sock.bind((addr, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return port
    raise OSError(errno.EADDRINUSE, f"no common free port on {list(addresses)}")


def _with_defaults(origin: str, text: str) -> str:
    """Add $ORIGIN, $TTL and a default SOA/NS when the zone text lacks them."""
    head = [f"$ORIGIN {origin}."]
    if not _TTL_RE.search(text):
        head.append("$TTL 300")
    if not _SOA_RE.search(text):
        head.append(f"@ 300 IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 60")
        if not _NS_RE.search(text):
            # An out-of-zone name needs no glue record, so this adds no A/AAAA to the zone.
            head.append("@ 300 IN NS ns.invalid.")
    return "\n".join(head) + "\n" + text.strip("\n") + "\n"


def _norm_zone(name: str) -> str:
    return name.strip().rstrip(".").lower()


class ServesDns:
    """What a DNS server fixture tells its users: where it listens, as mxf-remote wants it."""

    listen: list[str]
    port: int

    def start(self) -> None:
        """Start serving."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving and release everything."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def nameservers(self) -> list[str]:
        """c-ares style server list: ["127.0.0.1:PORT", "[::1]:PORT"]."""
        return [f"[{a}]:{self.port}" if ":" in a else f"{a}:{self.port}" for a in self.listen]

    @property
    def env(self) -> dict[str, str]:
        """Environment for mxf-remote pointing it at this server."""
        return {"MXF_NAMESERVERS": ",".join(self.nameservers)}

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the first listen address, e.g. as a DnsProxy upstream."""
        return self.listen[0], self.port


class KnotServer(ServesDns):
    """knotd serving `zones` (origin -> zone-file text) on a free port.

    `servfail_zones` answer SERVFAIL for every name at or below them; `noudp_zones` answer
    over UDP with TC=1 and no records (knot's mod-noudp), so clients retry over TCP. The same
    port is used on every `listen` address; "::1" is skipped when IPv6 loopback is missing.
    """

    def __init__(
        self,
        zones: Mapping[str, str],
        *,
        servfail_zones: Sequence[str] = (),
        noudp_zones: Sequence[str] = (),
        listen: Sequence[str] = ("127.0.0.1", "::1"),
    ) -> None:
        self.zones = {_norm_zone(k): v for k, v in zones.items()}
        self.servfail_zones = [_norm_zone(z) for z in servfail_zones]
        self.noudp_zones = [_norm_zone(z) for z in noudp_zones]
        unknown = set(self.noudp_zones) - set(self.zones)
        if unknown:
            raise ValueError(f"noudp_zones not in zones: {sorted(unknown)}")
        overlap = set(self.servfail_zones) & set(self.zones)
        if overlap:
            raise ValueError(f"zones both served and SERVFAIL: {sorted(overlap)}")
        if not self.zones and not self.servfail_zones:
            raise ValueError("KnotServer needs at least one zone")
        have_v6 = ipv6_loopback_available()
        self.listen = [a for a in listen if _family(a) == socket.AF_INET or have_v6]
        if not self.listen:
            raise ValueError(f"none of the listen addresses is usable: {list(listen)}")
        self.port = 0
        self.startup_seconds = 0.0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_path: Path | None = None

    # -- public view --------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The temp dir holding the config, zone files and knot's state."""
        if self._dir is None:
            raise RuntimeError("KnotServer is not running")
        return self._dir

    def stderr_text(self) -> str:
        """What knotd wrote to stderr so far (its log)."""
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Write the config, start knotd and wait until every zone answers."""
        if self._proc is not None:
            raise RuntimeError("KnotServer already started")
        knotd = shutil.which("knotd") or next(
            (p for p in ("/usr/sbin/knotd", "/sbin/knotd") if os.access(p, os.X_OK)), None
        )
        if knotd is None:
            raise KnotStartError("knotd not found (Debian package 'knot')")
        self._dir = Path(tempfile.mkdtemp(prefix="mxf-knot-"))
        last_error = ""
        try:
            for _attempt in range(_START_ATTEMPTS):
                self.port = pick_free_port(self.listen)
                conf = self._write_files()
                t0 = time.monotonic()
                self._spawn(knotd, conf)
                try:
                    self._wait_ready()
                except KnotStartError as exc:
                    last_error = str(exc)
                    self._terminate()
                    if "in use" not in self.stderr_text().lower():
                        break
                    continue
                self.startup_seconds = time.monotonic() - t0
                return
            raise KnotStartError(last_error)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM knotd, SIGKILL after 2 s, and remove the temp dir."""
        self._terminate()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- internals ----------------------------------------------------------------------
    def _write_files(self) -> Path:
        d = self.directory
        listen = ", ".join(f"{a}@{self.port}" for a in self.listen)
        lines = [
            "server:",
            f'    rundir: "{d}"',
            f"    listen: [ {listen} ]",
            "    udp-workers: 1",
            "    tcp-workers: 1",
            "    background-workers: 1",
            "control:",
            f'    listen: "{d}/knot.sock"',
            "log:",
            "  - target: stderr",
            "    any: info",
            "database:",
            f'    storage: "{d}"',
            "template:",
            "  - id: default",
            f'    storage: "{d}"',
            "    zonefile-sync: -1",
            "    zonefile-load: whole",
            "    journal-content: none",
            "    semantic-checks: off",
        ]
        if self.noudp_zones:
            lines += ["mod-noudp:", "  - id: tc"]
        lines.append("zone:")
        for i, (origin, text) in enumerate(self.zones.items()):
            path = d / f"zone{i}.zone"
            path.write_text(_with_defaults(origin, text))
            lines += [f'  - domain: "{origin}."', f'    file: "{path}"']
            if origin in self.noudp_zones:
                lines.append("    module: mod-noudp/tc")
        for origin in self.servfail_zones:
            lines += [f'  - domain: "{origin}."', f'    file: "{d}/missing-{origin}.zone"']
        conf = d / "knot.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _spawn(self, knotd: str, conf: Path) -> None:
        self._stderr_path = self.directory / "knotd.stderr"
        with self._stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                [knotd, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only an async-signal-safe prctl
            )

    def _wait_ready(self) -> None:
        """Poll each served zone's SOA over UDP on every address until all are NOERROR."""
        assert self._proc is not None
        pending = [(a, z) for a in self.listen for z in self.zones]
        deadline = time.monotonic() + _START_TIMEOUT
        while pending:
            if self._proc.poll() is not None:
                raise KnotStartError(
                    f"knotd exited with status {self._proc.returncode}:\n{self.stderr_text()}"
                )
            if time.monotonic() > deadline:
                raise KnotStartError(
                    f"knotd did not answer for {pending} within {_START_TIMEOUT} s:\n"
                    f"{self.stderr_text()}"
                )
            self._check_zone_errors()
            addr, zone = pending[0]
            # TCP for mod-noudp zones: their UDP answers are empty with TC=1.
            query = dnswire.query_tcp if zone in self.noudp_zones else dnswire.query_udp
            try:
                answer = query(addr, self.port, zone, "SOA", timeout=0.05)
            except (OSError, dnswire.DnsWireError):
                time.sleep(0.002)
                continue
            if answer.rcode == dnswire.RCODE_NOERROR and answer.answers:
                pending.pop(0)
            else:
                time.sleep(0.002)

    def _check_zone_errors(self) -> None:
        """Fail at once when knot could not load a served zone (instead of a 5 s timeout)."""
        log = self.stderr_text()
        if "error" not in log:
            return
        for i, origin in enumerate(self.zones):
            if f"[{origin}.] zone event 'load' failed" in log:
                path = self.directory / f"zone{i}.zone"
                numbered = "\n".join(
                    f"{n:4} {line}" for n, line in enumerate(path.read_text().splitlines(), 1)
                )
                written = f"zone file as written:\n{numbered}"
                raise KnotStartError(f"knotd could not load zone {origin}:\n{log}\n{written}")

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=_STOP_GRACE)

    def __repr__(self) -> str:
        return f"KnotServer(port={self.port}, zones={sorted(self.zones)})"
