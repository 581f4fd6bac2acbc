"""A DNSSEC lab for tests: knotd serving signed zones, unbound validating them.

Why: DANE (RFC 7672) turns on the AD bit of a *validating* resolver's answers, so its tests
need a resolver that really validates: AD=1 for secure data, SERVFAIL for bogus data, AD=0
for insecure data. Mocking that would test our idea of DNSSEC, not DNSSEC. Instead, inside
the test process's private network namespace:

- knotd (on 127.0.53.1:53) serves every zone; the `signed` ones are signed on load with a
  key made by `keymgr` *before* knotd starts (one ECDSA P-256 CSK per zone, never rolled),
  so that the DS records can be written into the parent zones first;
- unbound (on 127.0.53.2:53) validates, with the DS of the top zone (`anchor`, "test.") as
  its only trust anchor, and reaches `anchor` through a stub-zone pointing at knotd.

A test writes only the records it cares about: the lab adds each zone's SOA/NS when absent,
and to every served parent zone the NS delegation of each served child plus, for signed
children, its DS records. Signed children in `broken_ds` get DS records with one digest
digit changed, so no DNSKEY matches and unbound answers SERVFAIL (bogus) for everything in
them. Unsigned children get no DS: an insecure delegation, proven by the parent's NSEC.
All delegations name one server, `labns.<anchor>`, whose A record (knotd's address) lives
in the anchor zone, so no glue is ever needed.

Start-up takes about 85 ms for five zones: keymgr (a key, then the DS, for all signed zones
side by side: ~33 ms), knotd (waited for until every zone answers, signed ones with their
DNSKEY: ~11 ms), then unbound (until the anchor's SOA comes back with AD=1: ~35 ms).
unbound caps TTLs at 30 s (negative answers and bogus results at 5 s) so that caching
cannot outlive a test module by much. Addresses are fixed because a resolver on port 53 is
what a DNSSEC-aware client meets; a second lab in the same process at the same time is
refused with a clear error (pass other addresses to run two).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Collection, Mapping
from pathlib import Path

from . import dnswire
from .knot import ServesDns, _die_with_parent

__all__ = ["DnssecLab", "DnssecLabError", "break_ds", "missing_tools"]

KNOT_ADDRESS = "127.0.53.1"
RESOLVER_ADDRESS = "127.0.53.2"
_START_TIMEOUT = 5.0
_STOP_GRACE = 2.0
_TOOL_TIMEOUT = 10.0
_POLICY = "lab"
_NS_LABEL = "labns"
_SOA_RE = re.compile(r"(?im)^[^;\n]*\bSOA\b")
_NS_RE = re.compile(r"(?im)^[^;\n]*\bIN\s+NS\b|^[^;\n]*\s+NS\s+\S")
_TTL_RE = re.compile(r"(?im)^\s*\$TTL\b")
_DS_RE = re.compile(r"^(\S+)\s+DS\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9a-fA-F]+)$")


class DnssecLabError(RuntimeError):
    """The lab could not be set up or did not answer; the message carries the daemons' logs."""


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    return next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)


def missing_tools() -> str | None:
    """None when knotd, keymgr and unbound are installed; otherwise what is missing."""
    missing = [name for name in ("knotd", "keymgr", "unbound") if _tool(name) is None]
    if not missing:
        return None
    return f"{', '.join(missing)} not installed (Debian packages knot, unbound)"


def _norm(name: str) -> str:
    """A zone name in one spelling: lower case, no trailing dot ("" for the root)."""
    return name.strip().rstrip(".").lower()


def _parent_zone(origin: str, served: Collection[str]) -> str | None:
    """The nearest served zone strictly above `origin` (None when there is none)."""
    labels = origin.split(".")
    for i in range(1, len(labels)):
        candidate = ".".join(labels[i:])
        if candidate in served:
            return candidate
    return None


def break_ds(line: str) -> str:
    """The DS record `line` with the last digit of its digest changed (it matches no key)."""
    match = _DS_RE.match(line.strip())
    if match is None:
        raise ValueError(f"not a DS record: {line!r}")
    owner, tag, alg, dtype, digest = match.groups()
    last = digest[-1].lower()
    changed = digest[:-1] + ("0" if last != "0" else "1")
    return f"{owner} DS {tag} {alg} {dtype} {changed}"


def _check_port_free(address: str, port: int) -> None:
    """Raise DnssecLabError when `address:port` is taken for UDP or TCP.

    The UDP probe sets no SO_REUSEADDR: knotd and unbound set it (or SO_REUSEPORT) on their
    own sockets, so a second daemon could bind beside the first and share its queries.
    """
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:  # TIME_WAIT leftovers are no conflict
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                what = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                proto = "UDP" if kind == socket.SOCK_DGRAM else "TCP"
                raise DnssecLabError(
                    f"cannot use {address}:{port}/{proto}: {what}"
                    " (another DnssecLab still running in this process?)"
                ) from exc


class DnssecLab(ServesDns):
    """knotd serving `zones` (origin -> zone text) and unbound validating them.

    As a `ServesDns`, it is the validating resolver: `nameservers`, `env` and `address`
    name unbound, never knotd (`authoritative`).

    `signed` origins are signed by knot; `broken_ds` (a subset of `signed`) get a wrong DS
    in their parent, so they validate as bogus; the others are insecure when delegated
    without DS. Every zone must be `anchor` or below it, and `anchor` must be signed.
    """

    def __init__(
        self,
        zones: Mapping[str, str],
        *,
        signed: Collection[str],
        broken_ds: Collection[str] = (),
        anchor: str = "test.",
        knot_address: str = KNOT_ADDRESS,
        resolver_address: str = RESOLVER_ADDRESS,
        port: int = 53,
    ) -> None:
        self.zones = {_norm(k): v for k, v in zones.items()}
        self.signed = {_norm(z) for z in signed}
        self.broken_ds = {_norm(z) for z in broken_ds}
        self.anchor = _norm(anchor)
        self._validate()
        self.knot_address = knot_address
        self.resolver_address = resolver_address
        self.listen = [resolver_address]
        self.port = port
        self.startup_seconds = 0.0
        self._dir: Path | None = None
        self._knot: subprocess.Popen[bytes] | None = None
        self._unbound: subprocess.Popen[bytes] | None = None
        self._ds: dict[str, list[str]] = {}

    def _validate(self) -> None:
        if not self.anchor:
            raise ValueError("the anchor cannot be the root zone")
        problems = []
        if self.anchor not in self.zones:
            problems.append(f"anchor {self.anchor!r} is not among the zones")
        if self.anchor not in self.signed:
            problems.append(f"anchor {self.anchor!r} is not signed")
        if self.anchor in self.broken_ds:
            problems.append("the anchor has no parent DS to break")
        if unknown := self.signed - set(self.zones):
            problems.append(f"signed zones not served: {sorted(unknown)}")
        if unsigned := self.broken_ds - self.signed:
            problems.append(f"broken_ds zones that are not signed: {sorted(unsigned)}")
        outside = [z for z in self.zones if z != self.anchor and not z.endswith("." + self.anchor)]
        if outside:
            problems.append(f"zones outside the anchor {self.anchor!r}: {sorted(outside)}")
        if problems:
            raise ValueError("DnssecLab: " + "; ".join(problems))

    # -- public view --------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The temp dir holding configs, zone files, keys and logs (removed at stop)."""
        if self._dir is None:
            raise RuntimeError("DnssecLab is not running")
        return self._dir

    @property
    def resolver(self) -> tuple[str, int]:
        """(host, port) of unbound, the validating resolver (the same as `address`)."""
        return self.address

    @property
    def authoritative(self) -> tuple[str, int]:
        """(host, port) of knotd, the authoritative server (no validation, never AD=1)."""
        return self.knot_address, self.port

    @property
    def nameserver_name(self) -> str:
        """The NS name every delegation uses (its A record is knotd's address)."""
        return f"{_NS_LABEL}.{self.anchor}"

    def ds(self, origin: str) -> list[str]:
        """The correct DS records of signed `origin` ("dane.test. DS 123 13 2 ABCD...")."""
        zone = _norm(origin)
        if zone not in self._ds:
            raise KeyError(f"{origin!r} is not a signed zone of this running lab")
        return list(self._ds[zone])

    def published_ds(self, origin: str) -> list[str]:
        """The DS records of `origin` as written in its parent (wrong for broken_ds zones)."""
        records = self.ds(origin)
        return [break_ds(r) for r in records] if _norm(origin) in self.broken_ds else records

    def query(
        self, name: str, qtype: str | int, *, authoritative: bool = False, timeout: float = 2.0
    ) -> dnswire.Message:
        """One UDP query with AD=1 to unbound (or to knotd when `authoritative`)."""
        host, port = self.authoritative if authoritative else self.resolver
        return dnswire.query_udp(host, port, name, qtype, timeout=timeout, ad=True)

    def stderr_text(self) -> str:
        """What knotd, keymgr and unbound logged so far, each under a heading."""
        if self._dir is None:
            return ""
        parts = []
        for log in ("keymgr", "knotd", "unbound"):
            path = self._dir / f"{log}.log"
            if path.exists():
                parts.append(f"--- {log}:\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Make keys and zones, start knotd, then unbound; return when both answer."""
        if self._dir is not None:
            raise RuntimeError("DnssecLab already started")
        problem = missing_tools()
        if problem is not None:
            raise DnssecLabError(problem)
        t0 = time.monotonic()
        self._dir = Path(tempfile.mkdtemp(prefix="mxf-dnsseclab-"))
        try:
            _check_port_free(self.knot_address, self.port)
            _check_port_free(self.resolver_address, self.port)
            knot_conf = self._write_knot_conf()
            self._make_keys(knot_conf)
            self._write_zones()
            self._knot = self._spawn("knotd", ["-c", str(knot_conf)])
            self._wait_knot()
            self._write_unbound_conf()
            unbound_conf = str(self.directory / "unbound.conf")
            self._unbound = self._spawn("unbound", ["-d", "-c", unbound_conf])
            self._wait_unbound()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        """SIGTERM unbound and knotd, SIGKILL after a grace, remove the temp dir."""
        unbound, self._unbound = self._unbound, None
        knot, self._knot = self._knot, None
        procs = [p for p in (unbound, knot) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=_STOP_GRACE)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._ds = {}

    # -- knot ---------------------------------------------------------------------------
    def _zone_path(self, origin: str) -> Path:
        return self.directory / f"{origin or 'root'}.zone"

    def _write_knot_conf(self) -> Path:
        d = self.directory
        lines = [
            "server:",
            f'    rundir: "{d}"',
            f"    listen: [ {self.knot_address}@{self.port} ]",
            "    udp-workers: 1",
            "    tcp-workers: 1",
            "    background-workers: 1",
            "control:",
            f'    listen: "{d}/knot.sock"',
            "log:",
            "  - target: stderr",
            "    any: info",
            "database:",
            f'    storage: "{d}/db"',
            "policy:",
            f"  - id: {_POLICY}",
            "    algorithm: ecdsap256sha256",
            "    single-type-signing: on",
            "    ksk-lifetime: 0",
            "    zsk-lifetime: 0",
            "    nsec3: off",
            "    dnskey-ttl: 300",
            "    zone-max-ttl: 300",
            "    propagation-delay: 0",
            "    rrsig-lifetime: 14d",
            "    rrsig-refresh: 7d",
            "template:",
            "  - id: default",
            f'    storage: "{d}"',
            "    zonefile-sync: -1",
            "    zonefile-load: whole",
            "    journal-content: none",
            "    semantic-checks: off",
            "zone:",
        ]
        for origin in self.zones:
            lines += [f'  - domain: "{origin}."', f'    file: "{self._zone_path(origin)}"']
            if origin in self.signed:
                lines += ["    dnssec-signing: on", f"    dnssec-policy: {_POLICY}"]
        (d / "db").mkdir()  # keymgr fails with "KASP (not exists)" without it
        conf = d / "knot.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _keymgr_each(self, conf: Path, runs: list[list[str]]) -> list[str]:
        """Run keymgr once per argument list, all at once; return each one's stdout.

        Each run is mostly process start-up (~10 ms), so running them side by side halves
        the lab's start-up; the KASP database (LMDB) takes concurrent writers.
        """
        keymgr = _tool("keymgr")
        assert keymgr is not None
        procs: list[tuple[list[str], subprocess.Popen[bytes]]] = []
        try:
            for args in runs:
                proc = subprocess.Popen(
                    [keymgr, "-c", str(conf), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                procs.append((args, proc))
            outputs = []
            for args, proc in procs:
                out, err = proc.communicate(timeout=_TOOL_TIMEOUT)
                with (self.directory / "keymgr.log").open("ab") as log:
                    log.write(b"$ keymgr " + " ".join(args).encode() + b"\n" + err)
                if proc.returncode != 0:
                    raise DnssecLabError(
                        f"keymgr {' '.join(args)} failed ({proc.returncode}):\n"
                        f"{out.decode(errors='replace')}{err.decode(errors='replace')}"
                    )
                outputs.append(out.decode(errors="replace"))
            return outputs
        finally:
            for _args, proc in procs:
                if proc.poll() is None:
                    proc.kill()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                proc.wait()

    def _make_keys(self, conf: Path) -> None:
        """One CSK per signed zone, then its DS records (parents need them before load)."""
        zones = sorted(self.signed)
        generate = ["generate", "algorithm=ECDSAP256SHA256", "ksk=yes", "zsk=yes"]
        self._keymgr_each(conf, [[f"{z}.", *generate] for z in zones])
        for origin, text in zip(
            zones, self._keymgr_each(conf, [[f"{z}.", "ds"] for z in zones]), strict=True
        ):
            lines = [line for line in text.splitlines() if line]
            if not lines or not all(_DS_RE.match(line) for line in lines):
                raise DnssecLabError(f"keymgr {origin}. ds printed no DS records: {lines!r}")
            self._ds[origin] = lines

    def _zone_text(self, origin: str) -> str:
        """The test's text with $ORIGIN, $TTL, SOA, NS, delegations and DS added."""
        text = self.zones[origin]
        ns = f"{self.nameserver_name}."
        head = [f"$ORIGIN {origin}."]
        if not _TTL_RE.search(text):
            head.append("$TTL 300")
        if not _SOA_RE.search(text):
            head.append(f"@ 300 IN SOA {ns} hostmaster.{origin}. 1 3600 600 86400 60")
        if not _NS_RE.search(text):
            head.append(f"@ 300 IN NS {ns}")
        tail = []
        if origin == self.anchor:
            tail.append(f"{ns} 300 IN A {self.knot_address}")
        for child in self.zones:
            if child != origin and _parent_zone(child, self.zones) == origin:
                tail.append(f"{child}. 300 IN NS {ns}")
                if child in self.signed:
                    # No indentation: a leading blank would mean "same owner as before".
                    tail += self.published_ds(child)
        # $ORIGIN again: the test's text may have changed it.
        body = text.strip("\n")
        return "\n".join([*head, body, f"$ORIGIN {origin}.", *tail]) + "\n"

    def _write_zones(self) -> None:
        for origin in self.zones:
            self._zone_path(origin).write_text(self._zone_text(origin))

    def _spawn(self, program: str, args: list[str]) -> subprocess.Popen[bytes]:
        path = _tool(program)
        assert path is not None
        with (self.directory / f"{program}.log").open("ab") as log:
            return subprocess.Popen(
                [path, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only an async-signal-safe prctl
            )

    def _alive_or_raise(self, proc: subprocess.Popen[bytes] | None, name: str) -> None:
        assert proc is not None
        if proc.poll() is not None:
            raise DnssecLabError(
                f"{name} exited with status {proc.returncode}:\n{self.stderr_text()}"
            )

    def _wait_knot(self) -> None:
        """Until every zone's SOA answers, and every signed zone's DNSKEY too."""
        pending = [(z, "SOA") for z in self.zones] + [(z, "DNSKEY") for z in sorted(self.signed)]
        deadline = time.monotonic() + _START_TIMEOUT
        while pending:
            self._alive_or_raise(self._knot, "knotd")
            self._check_zone_errors()
            if time.monotonic() > deadline:
                raise DnssecLabError(
                    f"knotd did not answer {pending} within {_START_TIMEOUT} s:\n"
                    f"{self.stderr_text()}"
                )
            zone, rtype = pending[0]
            try:
                answer = dnswire.query_udp(self.knot_address, self.port, zone, rtype, timeout=0.05)
            except (OSError, dnswire.DnsWireError):
                time.sleep(0.002)
                continue
            if answer.rcode == dnswire.RCODE_NOERROR and answer.answer_data(rtype):
                pending.pop(0)
            else:
                time.sleep(0.002)

    def _check_zone_errors(self) -> None:
        """Fail at once when knot could not load a zone (instead of a 5 s timeout)."""
        log_path = self.directory / "knotd.log"
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if "error" not in log:
            return
        for origin in self.zones:
            if f"[{origin}.] zone event 'load' failed" in log:
                lines = self._zone_path(origin).read_text().splitlines()
                numbered = "\n".join(f"{n:4} {line}" for n, line in enumerate(lines, 1))
                raise DnssecLabError(
                    f"knotd could not load zone {origin}:\n{log}\nzone file as written:\n{numbered}"
                )

    # -- unbound ------------------------------------------------------------------------
    def _write_unbound_conf(self) -> None:
        d = self.directory
        anchor = d / "anchor.ds"
        anchor.write_text("\n".join(self.ds(self.anchor)) + "\n")
        top = self.anchor.rsplit(".", 1)[-1]
        nodefault = sorted({f"{top}.", f"{self.anchor}."})
        lines = [
            "server:",
            f"    interface: {self.resolver_address}@{self.port}",
            "    interface-automatic: no",
            "    do-ip6: no",
            "    do-daemonize: no",
            '    username: ""',
            '    chroot: ""',
            f'    directory: "{d}"',
            f'    pidfile: "{d}/unbound.pid"',
            "    use-syslog: no",
            '    logfile: ""',
            "    verbosity: 1",
            "    val-log-level: 2",
            "    num-threads: 1",
            "    outgoing-range: 512",
            "    num-queries-per-thread: 256",
            "    access-control: 127.0.0.0/8 allow",
            "    do-not-query-localhost: no",
            '    module-config: "validator iterator"',
            *(f'    local-zone: "{z}" nodefault' for z in nodefault),
            f'    trust-anchor-file: "{anchor}"',
            "    ede: yes",
            "    qname-minimisation: no",
            "    aggressive-nsec: no",
            "    prefetch: no",
            "    prefetch-key: no",
            "    serve-expired: no",
            "    cache-max-ttl: 30",
            "    cache-max-negative-ttl: 5",
            "    val-bogus-ttl: 5",
            "    msg-cache-size: 1m",
            "    rrset-cache-size: 1m",
            "    key-cache-size: 1m",
            "    neg-cache-size: 256k",
            "    infra-cache-numhosts: 100",
            "stub-zone:",
            f'    name: "{self.anchor}."',
            f"    stub-addr: {self.knot_address}@{self.port}",
            "remote-control:",
            "    control-enable: no",
        ]
        (d / "unbound.conf").write_text("\n".join(lines) + "\n")

    def _wait_unbound(self) -> None:
        """Until the anchor's SOA comes back validated (NOERROR with AD=1)."""
        deadline = time.monotonic() + _START_TIMEOUT
        last = "no answer"
        while True:
            self._alive_or_raise(self._unbound, "unbound")
            if time.monotonic() > deadline:
                raise DnssecLabError(
                    f"unbound gave no validated answer for {self.anchor}. SOA within"
                    f" {_START_TIMEOUT} s (last: {last}):\n{self.stderr_text()}"
                )
            try:
                answer = dnswire.query_udp(
                    self.resolver_address, self.port, self.anchor, "SOA", timeout=0.2, ad=True
                )
            except (OSError, dnswire.DnsWireError) as exc:
                last = repr(exc)
                time.sleep(0.002)
                continue
            if answer.rcode == dnswire.RCODE_NOERROR and answer.ad:
                return
            last = f"rcode {answer.rcode}, AD={int(answer.ad)}"
            time.sleep(0.002)

    def __repr__(self) -> str:
        return (
            f"DnssecLab(knot={self.knot_address}:{self.port},"
            f" resolver={self.resolver_address}:{self.port}, zones={sorted(self.zones)})"
        )
