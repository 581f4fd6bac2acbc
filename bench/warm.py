"""The warm path's figures (issue 11): CPU, wall and deliveries/s of whole deliveries.

Run: ``python bench/warm.py`` as root, with the tox environment's python (``.tox/py311``
or ``.tox/bench``; ``python3 -m tox -e bench -- --warm`` runs it too), about 2 minutes
with the defaults; ``--rounds 1 --count 10 --serial 5 --handoff-runs 5`` for a quick try.
Prints markdown and writes it to ``bench/results/warm.md`` (``--out``; ``--no-write``).

Before measuring, ``python -m compileall -q mxf_remote`` (this interpreter): with
``PYTHONDONTWRITEBYTECODE=1`` in the environment a stale ``.pyc`` is never rewritten, and
every start would compile the changed module again.

The chain measured is the whole delivery, every process counted:

* the **launcher tree**: ``mxf-remote`` as qmail-rspawn starts it, and what it becomes
  or starts -- the client exec'd or run in its process, ``mxf-remote-ucspitlsc`` and its
  TLS engine.  This process is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so the
  engine, orphaned when the client exits, comes back to it and is reaped too.  Every
  delivery is reaped with ``os.wait4``: its own CPU exactly; the orphans' CPU is added
  to the batch.  The sum equals ``RUSAGE_CHILDREN`` over the batch (checked);
* **mxf-remoted**: its CPU over the batch, ``/proc/PID/stat`` utime + stime deltas, and
  those of its TLS forker with cutime + cstime (the TLS engines the forker forks, waited
  for until reaped); clock ticks of
  10 ms: about 0.2 ms per delivery over a batch of 60, 0.5 ms over 20;
* the **SMTP sink**: a small threaded SMTP server in its own process (``--sink``, this
  file), measured the same way, so its share is attributable.  It offers PIPELINING,
  8BITMIME, SIZE and, for (b), STARTTLS with a trustme certificate.

Per delivery, CPU = its own wait4 CPU + (orphans + server + sink CPU of the batch) / the
batch's deliveries: the spread comes from the launcher tree, the shared parts are an
average.  Wall = from just before its start to its reaping.  Deliveries/s = the batch's
deliveries / the batch's wall time, one sample per round.

Rows, side by side in one run (every round runs every row, at every concurrency, in
turn, so load shifts them alike):

* **cold**: no ``control/remotedsocket``: mxf-remote resolves, races and execs the client
  in its own process, as without the server;
* **warm**: ``control/remotedsocket`` names the socket of an ``mxf-remoted`` (default
  options): our smtpc runs in the launcher's process; with STARTTLS, whatever server and
  launcher do for ucspitlsc + smtpc (a TLS engine the server forks and reaps is in the
  server's CPU, one ucspitlsc forks is an orphan of this process: both are counted);
* **warm, --exec-clients**: the same, with a second server started ``--exec-clients``:
  the launcher execs every client;
* ``python -c pass`` and ``python -I -S -c pass`` (this interpreter): what any Python
  process costs, and the least a Python process can cost;
* C qmail-remote: "not built" unless ``/var/qmail/bin/qmail-remote(.orig)`` is an ELF file;
  even then it is not run (its qmail home is compiled in: it cannot be given this bench's
  control files).

Tables: (a) clear SMTP (``control/protocols`` = ``smtp:PORT:0:N:N:mxf-remote-smtpc``) and
(b) the default ``control/protocols`` (SMTP with STARTTLS through
``mxf-remote-ucspitlsc``), both routed by ``control/smtproutes`` (``:[127.0.0.1]:PORT``:
no DNS, no self-check).  Then the **handoff**: one delivery at a time with ``MXF_TRACE``,
the trace's ``handoff`` mark: ``t`` (ms since the launcher's ``STARTED``, taken when
launcher.py is imported) and ``mono`` against the moment just before the process was
started (what qmail-rspawn sees, the interpreter's start included), routed and -- with a
real knotd, in the private network namespace -- through DNS for a healthy exchanger
(MX, AAAA and A).  Each target is judged by ``judge.py`` (met, missed, within noise).

Everything stays on loopback, in a private network namespace when one can be made (as the
other bench scripts), else on the host's 127.0.0.1 with free ports.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from delivery import TOKEN_HEADER, message_files  # noqa: E402
from judge import Judgement, Spread, judge, spread_text  # noqa: E402
from machine import TICK, MachineState, Watch, process_ticks  # noqa: E402

BIN = os.path.dirname(sys.executable)
if not os.path.exists(os.path.join(BIN, "mxf-remoted")):
    BIN = str(ROOT / ".tox" / "py311" / "bin")
MXF_REMOTE = os.path.join(BIN, "mxf-remote")
MXF_REMOTED = os.path.join(BIN, "mxf-remoted")
PYTHON = os.path.join(BIN, "python")
RESULTS = HERE / "results" / "warm.md"

PR_SET_CHILD_SUBREAPER = 36
SENDER, RECIPIENT = "alice@example.org", "bob@example.org"
DOMAIN = "warm.test"
ZONE = """
healthy          MX    10 mx.healthy
mx.healthy       AAAA  fd6d:7866::391
mx.healthy       A     127.0.9.1
"""
HEALTHY = [("fd6d:7866::391", 25), ("127.0.9.1", 25)]
READY_SECONDS = 30.0
BATCH_SECONDS = 300.0

CPU_CLEAR_LIMIT, CPU_CLEAR_MOONSHOT, CPU_TLS_LIMIT = 20.0, 10.0, 25.0
RATE_TARGET = 100.0
HANDOFF_LIMIT = 15.0


# -- the SMTP sink (``warm.py --sink LOG CERT KEY ADDRESS:PORT...``) ----------------------

EHLO = b"250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 67108864\r\n"
EHLO_STARTTLS = (
    b"250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 67108864\r\n250 STARTTLS\r\n"
)


def _token(body: bytes) -> bytes:
    start = body.find(TOKEN_HEADER)
    if start < 0:
        return b"?"
    start += len(TOKEN_HEADER)
    end = body.find(b"\r\n", start)
    return body[start : end if end >= 0 else len(body)]


def sink_session(conn: socket.socket, context: ssl.SSLContext | None, log: int) -> None:
    """One SMTP session: fixed replies, STARTTLS when there is a context, a token logged."""
    conn.settimeout(60)
    # Without TCP_NODELAY the second of two pipelined replies waits for a delayed ACK.
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = False
    lines = conn.makefile("rb")
    try:
        conn.sendall(b"220 sink.bench ESMTP\r\n")
        while line := lines.readline(65538):
            verb = line[:4].upper()
            if verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                body = bytearray()
                while (data := lines.readline(65538)) and data != b".\r\n":
                    body += data
                os.write(log, _token(bytes(body)) + b"\n")
                conn.sendall(b"250 2.0.0 OK queued\r\n")
            elif verb in (b"EHLO", b"HELO"):
                conn.sendall(EHLO_STARTTLS if context is not None and not tls else EHLO)
            elif line[:8].upper() == b"STARTTLS" and context is not None and not tls:
                conn.sendall(b"220 2.0.0 go ahead\r\n")
                conn = context.wrap_socket(conn, server_side=True)
                lines = conn.makefile("rb")
                tls = True
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 OK\r\n")
    except (OSError, ssl.SSLError):
        return  # a client that hangs up early
    finally:
        conn.close()


def sink_main(argv: list[str]) -> int:
    """Serve until SIGTERM; ``ready PORT...`` on stdout once listening."""
    from tests.infra.netns import listen_tcp

    log_path, cert, key, *addresses = argv
    context = None
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    listeners = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        listeners.append(listen_tcp(host.strip("[]"), int(port), backlog=256))

    def accept(listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=sink_session, args=(conn, context, log), daemon=True).start()

    for listener in listeners:
        threading.Thread(target=accept, args=(listener,), daemon=True).start()
    ports = " ".join(str(listener.getsockname()[1]) for listener in listeners)
    sys.stdout.write(f"ready {ports}\n")
    sys.stdout.flush()
    threading.Event().wait()
    return 0


class Sink:
    """A ``--sink`` child of this script: its pid (for its CPU), its ports, its tokens."""

    def __init__(self, log: Path, addresses: list[str], cert: str = "", key: str = "") -> None:
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(log), cert, key, *addresses],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], READY_SECONDS)
        words = self.process.stdout.readline().split() if ready else []
        if words[:1] != [b"ready"]:
            self.stop()
            raise RuntimeError("the SMTP sink did not start")
        self.ports = [int(word) for word in words[1:]]

    @property
    def pid(self) -> int:
        return self.process.pid

    def tokens(self) -> Counter[str]:
        """How often each token arrived so far."""
        return Counter(self.log.read_text().split()) if self.log.exists() else Counter()

    def stop(self) -> None:
        """SIGTERM and reap."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- mxf-remoted -----------------------------------------------------------------------


class Remoted:
    """The installed mxf-remoted in a qmail home of its own, ready when constructed."""

    def __init__(self, home: Path, socket_path: Path, *options: str) -> None:
        (home / "control").mkdir(parents=True, exist_ok=True)
        (home / "control" / "remotedsocket").write_text(f"{socket_path}\n")
        self.socket_path = socket_path
        self.log = home / "remoted.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [MXF_REMOTED, *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={"PATH": f"{BIN}:/usr/bin:/bin", "MXF_QMAIL": str(home)},
            )
        deadline = time.monotonic() + READY_SECONDS
        while not self._accepts():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"mxf-remoted did not start: {self.log.read_text()}")
            time.sleep(0.01)

    def _accepts(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.socket_path))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int | None:
        """SIGTERM; the exit status (None if it had to be killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


# -- measuring -------------------------------------------------------------------------


def ticks_of(pid: int | None) -> float:
    """CPU seconds of a live process (all its threads, its reaped children) so far."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        return process_ticks(stat.read()) / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def live_children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as listing:
            found.update(int(pid) for pid in listing.read().split())
    return found


def children_of(pid: int) -> set[int]:
    """The live children of another process (every thread's)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(child) for child in f.read().split())
    return found


def wait_for_children(pid: int | None, deadline: float) -> None:
    """Until ``pid`` has no live child (so their CPU is in its cutime/cstime)."""
    if pid is None:
        return
    while children_of(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"pid {pid} still has children: {sorted(children_of(pid))}")
        time.sleep(0.001)


def become_subreaper() -> None:
    """Orphaned descendants (the TLS engines) are reparented to us, so we reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@dataclass
class Batch:
    """One batch of deliveries (or processes) at one concurrency."""

    count: int
    elapsed: float
    walls: list[float]
    own: list[float]
    """Each process's own CPU (wait4), the client it became included."""
    orphans: float
    """CPU of orphans reaped during the batch (TLS engines)."""
    rusage_children: float
    server: float
    sink: float
    failures: int = 0
    first_failure: bytes = b""
    arrived: str = ""

    @property
    def shared(self) -> float:
        """The CPU seconds shared out evenly: orphans, the server, the sink."""
        return self.orphans + self.server + self.sink

    @property
    def cpus(self) -> list[float]:
        """Per-delivery CPU seconds, every process counted."""
        share = self.shared / self.count
        return [own + share for own in self.own]

    @property
    def rate(self) -> float:
        return self.count / self.elapsed


def run_batch(
    argvs: list[list[str]],
    env: dict[str, str],
    stdins: list[Path],
    concurrency: int,
    outdir: Path,
    *,
    keep: set[int],
    server: int | None,
    sink: int | None,
    good: Callable[[bytes, int], bool],
) -> Batch:
    """Run every ``argvs[i]`` with ``stdins[i]`` on fd 0, ``concurrency`` at a time."""
    count = len(argvs)
    outdir.mkdir(parents=True, exist_ok=True)
    walls = [0.0] * count
    own = [0.0] * count
    status_of = [0] * count
    running: dict[int, tuple[int, float]] = {}
    orphans = 0.0
    next_index = done = 0
    children_before = children_cpu()
    family = [] if server is None else [server, *sorted(children_of(server))]  # + TLS forker
    server_before, sink_before = sum(ticks_of(p) for p in family), ticks_of(sink)
    origin = time.monotonic()
    deadline = origin + BATCH_SECONDS
    while done < count:
        while len(running) < concurrency and next_index < count:
            index = next_index
            next_index += 1
            with open(stdins[index], "rb") as stdin, open(outdir / f"{index}", "wb") as out:
                started = time.monotonic()
                proc = subprocess.Popen(argvs[index], stdin=stdin, stdout=out, stderr=out, env=env)
            proc.returncode = 0  # reaped below by wait4, never by Popen
            running[proc.pid] = (index, started)
        pid, status, usage = os.wait4(-1, 0)
        ended = time.monotonic()
        cpu = usage.ru_utime + usage.ru_stime
        if pid in running:
            index, started = running.pop(pid)
            walls[index] = ended - started
            own[index] = cpu
            status_of[index] = status
            done += 1
        elif pid in keep:
            raise RuntimeError(f"a long-lived process of the bench died (pid {pid})")
        else:
            orphans += cpu
        if ended > deadline:
            raise RuntimeError("a batch ran for more than {BATCH_SECONDS:.0f} s")
    elapsed = time.monotonic() - origin
    drain_deadline = time.monotonic() + 30
    while left := live_children() - keep:  # engines still finishing
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                reaped, _, usage = os.wait4(pid, os.WNOHANG)
                if reaped:
                    orphans += usage.ru_utime + usage.ru_stime
        if time.monotonic() > drain_deadline:
            raise RuntimeError(f"processes still running after the batch: {sorted(left)}")
        time.sleep(0.001)
    for forker in family[1:]:  # the engines mxf-remoted's TLS forker forked and reaps
        wait_for_children(forker, drain_deadline)
    batch = Batch(
        count,
        elapsed,
        walls,
        own,
        orphans,
        children_cpu() - children_before,
        sum(ticks_of(p) for p in family) - server_before,
        ticks_of(sink) - sink_before,
    )
    for index in range(count):
        output = (outdir / f"{index}").read_bytes()
        if not good(output, status_of[index]):
            batch.failures += 1
            if not batch.first_failure:
                batch.first_failure = output[:300] or b"exit status %d" % status_of[index]
    shutil.rmtree(outdir)
    return batch


def delivered(address: str) -> Callable[[bytes, int], bool]:
    """A check for a delivery's output: exit 0, one K report from ``address``, nothing else."""
    prefix = b"r\0K" + address.encode() + b" accepted message."

    def good(output: bytes, status: int) -> bool:
        return status == 0 and output.startswith(prefix) and output.count(b"\0") == 2

    return good


def exited_zero(output: bytes, status: int) -> bool:
    return status == 0 and not output


# -- the world ---------------------------------------------------------------------------


@dataclass
class Row:
    """One contender of a table."""

    key: str
    title: str
    argv: Callable[[str], list[str]] | None = None
    """``argv(host)``; None: not measured (``absent`` says why)."""
    home: Path | None = None
    server: Remoted | None = None
    absent: str = ""

    @property
    def delivers(self) -> bool:
        return self.home is not None


@dataclass
class Mode:
    """One table: a protocol setting, its sink, its rows."""

    key: str
    title: str
    sink: Sink
    address: str
    rows: list[Row]
    batches: dict[tuple[str, int], list[Batch]] = field(default_factory=dict)
    machine: MachineState | None = None


def make_home(
    path: Path, *, port: int, protocols: str | None, socket_path: Path | None, route: bool = True
) -> Path:
    """A qmail home: ``me``, a route to the sink, perhaps protocols and remotedsocket."""
    (path / "control").mkdir(parents=True)
    (path / "control" / "me").write_text("bench.example\n")
    if route:
        (path / "control" / "smtproutes").write_text(f":[127.0.0.1]:{port}\n")
    if protocols is not None:
        (path / "control" / "protocols").write_text(protocols)
    if socket_path is not None:
        (path / "control" / "remotedsocket").write_text(f"{socket_path}\n")
    return path


def arrivals(tokens: Counter[str], label: str, count: int) -> str:
    """'all N once', or what went wrong."""
    seen = {t: n for t, n in tokens.items() if t.startswith(label + "-")}
    expected = {f"{label}-{n}" for n in range(count)}
    missing = expected - set(seen)
    twice = [t for t, n in seen.items() if n > 1]
    if not missing and not twice and set(seen) == expected:
        return "ok"
    return f"{len(missing)} missing, {len(twice)} twice"


C_QMAIL_REMOTE = ("/var/qmail/bin/qmail-remote.orig", "/var/qmail/bin/qmail-remote")


def find_c_qmail_remote() -> str | None:
    """A C qmail-remote built on this machine (an ELF file, not a link to us), or None."""
    for path in C_QMAIL_REMOTE:
        with contextlib.suppress(OSError), open(path, "rb") as program:
            if program.read(4) == b"\x7fELF":
                return path
    return None


# -- running a table ---------------------------------------------------------------------


def run_mode(mode: Mode, options: argparse.Namespace, tmp: Path, keep: set[int]) -> None:
    """Every round, every concurrency, every row in turn."""
    counter = 0

    def batch(row: Row, concurrency: int, count: int, label: str) -> Batch:
        nonlocal counter
        counter += 1
        assert row.argv is not None
        argvs = [row.argv("bench.example")] * count
        if row.delivers:
            stdins = message_files(tmp / "messages" / label, label, count)
            env = {"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(row.home)}
            good = delivered(mode.address)
        else:
            stdins = [Path(os.devnull)] * count
            env = {"PATH": "/usr/bin:/bin"}
            good = exited_zero
        result = run_batch(
            argvs,
            env,
            stdins,
            concurrency,
            tmp / "out" / label,
            keep=keep,
            server=row.server.pid if row.server else None,
            sink=mode.sink.pid if row.delivers else None,
            good=good,
        )
        if row.delivers:
            time.sleep(0.05)  # the sink's last log lines
            result.arrived = arrivals(mode.sink.tokens(), label, count)
            shutil.rmtree(tmp / "messages" / label)
        check = result.rusage_children - sum(result.own) - result.orphans
        if abs(check) > 0.002 * count + 0.02:
            print(
                f"bench: {label}: RUSAGE_CHILDREN differs from wait4 by {check:+.3f} s",
                file=sys.stderr,
            )
        return result

    measured = [row for row in mode.rows if row.argv is not None]
    for row in measured:  # warm-up and a check of every contender
        warm = batch(row, 1, 3, f"{mode.key}-{row.key}-warmup")
        if warm.failures or warm.arrived not in ("", "ok"):
            raise RuntimeError(
                f"{mode.key} {row.key}: warm-up failed: {warm.first_failure!r} {warm.arrived}"
            )
    with Watch() as watch:
        for round_number in range(options.rounds):
            for concurrency in options.concurrency:
                count = options.serial if concurrency == 1 else options.count
                for row in measured:
                    label = f"{mode.key}-{row.key}-{round_number}-{concurrency}"
                    result = batch(row, concurrency, count, label)
                    mode.batches.setdefault((row.key, concurrency), []).append(result)
                print(
                    f"bench: {mode.key} round {round_number + 1}/{options.rounds}, "
                    f"concurrency {concurrency} done",
                    file=sys.stderr,
                    flush=True,
                )
    mode.machine = watch.state


def mode_table(mode: Mode, options: argparse.Namespace) -> list[str]:
    rounds = options.rounds
    lines = [
        f"### ({mode.key}) {mode.title}",
        "",
        f"{rounds} round(s); per round and row: {options.serial} deliveries at concurrency 1,"
        f" {options.count} at each of {', '.join(map(str, options.concurrency[1:]))};"
        " rows interleaved. CPU and wall per delivery: median (p10..p90) over every delivery"
        " of the rounds; deliveries/s: median (p10..p90) over the rounds; CPU-bound ceiling:"
        f" {os.cpu_count()} CPUs / the mean CPU per delivery (what an otherwise idle machine"
        " would allow); the CPU columns after the total are means per delivery.",
        "",
        "| row | conc. | deliveries/s | CPU-bound ceiling /s | wall ms | CPU ms, every process |"
        " launcher tree (wait4) | orphans (TLS engines) | mxf-remoted | sink | failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in mode.rows:
        if row.argv is None:
            lines.append(f"| {row.title} | | {row.absent} | | | | | | | | |")
            continue
        for concurrency in options.concurrency:
            batches = mode.batches[(row.key, concurrency)]
            walls = [w for b in batches for w in b.walls]
            cpus = [c for b in batches for c in b.cpus]
            total = sum(b.count for b in batches)
            rates = [b.rate for b in batches]
            per = {
                "own": sum(sum(b.own) for b in batches) / total,
                "orphans": sum(b.orphans for b in batches) / total,
                "server": sum(b.server for b in batches) / total,
                "sink": sum(b.sink for b in batches) / total,
            }
            failures = sum(b.failures for b in batches)
            bad_arrivals = [b.arrived for b in batches if b.arrived not in ("", "ok")]
            failed = f"{failures}/{total}" + (
                f"; arrivals: {bad_arrivals[0]}" if bad_arrivals else ""
            )
            if failures:
                first = next(b.first_failure for b in batches if b.failures)
                failed += f" (first: {first[:80]!r})"

            def cell(key: str, *, shown: bool = True, per: dict[str, float] = per) -> str:
                return f"{per[key] * 1000:.1f}" if shown else "-"

            lines.append(
                f"| {row.title} | {concurrency} | {Spread.of(rates).format(1)} |"
                f" {(os.cpu_count() or 1) / sum(per.values()):.0f} | {spread_text(walls)} |"
                f" {spread_text(cpus)} | {cell('own')} |"
                f" {cell('orphans', shown=mode.key == 'b' and row.delivers)} |"
                f" {cell('server', shown=row.server is not None)} |"
                f" {cell('sink', shown=row.delivers)} | {failed} |"
            )
    assert mode.machine is not None
    return [*lines, "", mode.machine.line(f"table {mode.key}")]


# -- the handoff ---------------------------------------------------------------------------


@dataclass
class Handoff:
    """Handoff samples of one variant, in ms."""

    since_spawn: list[float] = field(default_factory=list)
    """From just before the process was started to the trace's handoff mark."""
    since_launcher: list[float] = field(default_factory=list)
    """The mark's ``t``: from the launcher's STARTED (its module's import)."""
    to_start_mark: list[float] = field(default_factory=list)
    """The ``start`` mark's ``t`` (warm: when the server began the delivery)."""
    interpreter: list[float] = field(default_factory=list)
    """From just before the process was started to the trace's origin."""
    cpu: list[float] = field(default_factory=list)
    """The whole delivery's own CPU (wait4), ms."""


def one_traced(
    argv: list[str],
    env: dict[str, str],
    message: Path,
    trace: Path,
    check: Callable[[bytes, int], bool],
) -> tuple[float, float, float, float, float]:
    """(since spawn, t, start t, to origin, CPU), ms, of one traced delivery."""
    trace.unlink(missing_ok=True)
    with open(message, "rb") as stdin:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**env, "MXF_TRACE": str(trace)},
        )
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        proc.stdout.close()
    if not check(output, status):
        raise RuntimeError(f"traced delivery failed: {output[:300]!r}")
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    handoff = next(e for e in events if e["event"] == "handoff")
    start = next((e for e in events if e["event"] == "start"), {"t": float("nan")})
    since_spawn = (handoff["mono"] - started) * 1000
    origin = handoff["mono"] * 1000 - handoff["t"] - started * 1000
    return since_spawn, handoff["t"], start["t"], origin, (usage.ru_utime + usage.ru_stime) * 1000


def run_handoffs(
    variants: dict[str, tuple[list[str], dict[str, str], str]],
    runs: int,
    message: Path,
    tmp: Path,
    keep: set[int],
) -> dict[str, Handoff]:
    results = {name: Handoff() for name in variants}
    trace = tmp / "trace.jsonl"
    for number in range(runs + 2):  # two warm-up rounds
        for name, (argv, env, address) in variants.items():
            sample = one_traced(argv, env, message, trace, delivered(address))
            drain(keep)
            if number >= 2:
                handoff = results[name]
                handoff.since_spawn.append(sample[0])
                handoff.since_launcher.append(sample[1])
                handoff.to_start_mark.append(sample[2])
                handoff.interpreter.append(sample[3])
                handoff.cpu.append(sample[4])
    return results


def drain(keep: set[int]) -> None:
    """Reap orphans (none expected on the clear path)."""
    deadline = time.monotonic() + 10
    while left := live_children() - keep:
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            return
        time.sleep(0.001)


def ms_spread(values: list[float]) -> str:
    return spread_text(values, scale=1.0) if values else "-"


def handoff_table(
    results: dict[str, Handoff], runs: int, machine: MachineState, dns_note: str
) -> list[str]:
    lines = [
        "### Handoff: from the launcher's start to the server's handoff mark",
        "",
        f"{runs} runs per variant, one delivery at a time, interleaved (+2 warm-up rounds),"
        f" clear SMTP, `MXF_TRACE` set. {dns_note}",
        "",
        "| variant | to the handoff mark, from the process start (ms) |"
        " the mark's `t`, from the launcher's import (ms) |"
        " process start to the trace's origin (ms) | `start` mark's `t` (ms) |"
        " whole delivery's CPU (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, handoff in results.items():
        lines.append(
            f"| {name} | {ms_spread(handoff.since_spawn)} | {ms_spread(handoff.since_launcher)} |"
            f" {ms_spread(handoff.interpreter)} | {ms_spread(handoff.to_start_mark)} |"
            f" {ms_spread(handoff.cpu)} |"
        )
    return [*lines, "", machine.line("the handoff runs")]


# -- targets -------------------------------------------------------------------------------


def target_line(
    name: str,
    figure: str,
    judgement: Judgement,
    unit: str = "ms",
    reverse: Callable[[float], str] | None = None,
) -> str:
    ours = judgement.ours
    shown = (
        f"{ours.format(1)} {unit}"
        if reverse is None
        else f"{reverse(ours.p50)} ({reverse(ours.p90)}..{reverse(ours.p10)})"
    )
    limit = f"{judgement.limit:.1f} {unit}" if reverse is None else reverse(judgement.limit)
    return f"| {name} | {figure} | {shown} | {limit} | {judgement.cell} |"


def targets(
    modes: dict[str, Mode],
    handoffs: dict[str, Handoff],
    options: argparse.Namespace,
    handoff_key: str,
) -> list[str]:
    lines = [
        "### Targets (issue 11), judged on the spread (`judge.py`)",
        "",
        "met: our p90 within the limit; missed: our p10 beyond it; within noise: the limit"
        " lies inside our p10..p90. Throughput is judged as wall ms per delivery of the"
        f" batch (1000 / rate, limit {1000 / RATE_TARGET:.0f} ms), one sample per round.",
        "",
        "| target | figure | ours: median (p10..p90) | limit | verdict |",
        "|---|---|---|---|---|",
    ]
    for row_key, title in (("warm", "warm"), ("exec", "warm, --exec-clients")):
        for mode_key, limits in (
            ("a", ((CPU_CLEAR_LIMIT, "clear"), (CPU_CLEAR_MOONSHOT, "clear, moonshot"))),
            ("b", ((CPU_TLS_LIMIT, "STARTTLS"),)),
        ):
            mode = modes.get(mode_key)
            if mode is None:
                continue
            for concurrency in options.concurrency:
                cpus = [c * 1000 for b in mode.batches[(row_key, concurrency)] for c in b.cpus]
                for limit, what in limits:
                    lines.append(
                        target_line(
                            f"CPU per whole delivery, {what} (≤ {limit:.0f} ms)",
                            f"{title}, concurrency {concurrency}",
                            judge(cpus, limit),
                        )
                    )
    if 50 in options.concurrency:
        for mode in modes.values():
            for row_key, title in (("warm", "warm"), ("exec", "warm, --exec-clients")):
                batches = mode.batches[(row_key, 50)]
                per_delivery = [1000 / b.rate for b in batches]
                lines.append(
                    target_line(
                        f"deliveries/s at concurrency 50 (≥ {RATE_TARGET:.0f}/s)",
                        f"({mode.key}) {title}",
                        judge(per_delivery, 1000 / RATE_TARGET),
                        reverse=lambda v: f"{1000 / v:.1f}/s",
                    )
                )
    for name, handoff in handoffs.items():
        if not name.startswith("warm"):
            continue
        primary = " (the target's figure)" if name == handoff_key else ""
        lines.append(
            target_line(
                f"warm-cache healthy handoff ≤ {HANDOFF_LIMIT:.0f} ms wall",
                f"{name}, from the process start{primary}",
                judge(handoff.since_spawn, HANDOFF_LIMIT),
            )
        )
        lines.append(
            target_line(
                f"warm-cache healthy handoff ≤ {HANDOFF_LIMIT:.0f} ms wall",
                f"{name}, the mark's `t` (from the launcher's import)",
                judge(handoff.since_launcher, HANDOFF_LIMIT),
            )
        )
    return lines


# -- main ----------------------------------------------------------------------------------


def compile_bytecode() -> str:
    """``python -m compileall -q mxf_remote``; what was done, for the output."""
    started = time.monotonic()
    done = subprocess.run(
        [PYTHON, "-m", "compileall", "-q", str(ROOT / "mxf_remote")],
        capture_output=True,
        check=False,
        timeout=300,
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        return (
            f"`{PYTHON} -m compileall -q mxf_remote` FAILED ({done.returncode}):"
            f" {done.stdout.decode(errors='replace')[:200]}"
        )
    setting = os.environ.get("PYTHONDONTWRITEBYTECODE")
    why = (
        f"this environment sets PYTHONDONTWRITEBYTECODE={setting}, so a stale .pyc would"
        " be compiled again at every start"
        if setting
        else "so no start compiles a changed module"
    )
    return f"`python -m compileall -q mxf_remote` ran first ({took:.1f} s; {why})"


def tree_state() -> str:
    """The commit measured, and how many files of mxf_remote/ differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False, timeout=30
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "not a git checkout"
    changed = git("status", "--porcelain", "--", "mxf_remote").splitlines()
    if not changed:
        return f"commit {commit}, mxf_remote/ as committed"
    return (
        f"commit {commit} with {len(changed)} file(s) of mxf_remote/ changed or new in the"
        " working tree (measured as they were)"
    )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every batch (3)")
    parser.add_argument(
        "--count", type=int, default=60, help="deliveries per batch at concurrency 20 and 50 (60)"
    )
    parser.add_argument(
        "--serial", type=int, default=20, help="deliveries per batch at concurrency 1 (20)"
    )
    parser.add_argument(
        "--concurrency",
        default="1,20,50",
        help="concurrencies, comma-separated, the first 1 (1,20,50)",
    )
    parser.add_argument(
        "--handoff-runs", type=int, default=30, help="traced deliveries per handoff variant (30)"
    )
    parser.add_argument("--modes", default="a,b", help="tables: a (clear), b (STARTTLS)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the markdown file written")
    parser.add_argument("--no-write", action="store_true", help="print only")
    options = parser.parse_args(argv)
    options.concurrency = [int(c) for c in options.concurrency.split(",")]
    if options.concurrency[0] != 1:
        options.concurrency.insert(0, 1)
    options.modes = [m for m in options.modes.split(",") if m in ("a", "b")]
    return options


@dataclass
class World:
    """What one run sets up: the sinks, the two servers, the homes' directory."""

    tmp: Path
    clear_sink: Sink
    tls_sink: Sink
    warm_server: Remoted
    exec_server: Remoted
    c_qmail_remote: str | None
    keep: set[int] = field(default_factory=set)
    """Long-lived children of this process: never reaped as a batch's orphans."""


def launcher(host: str) -> list[str]:
    """``mxf-remote host sender recip``, as qmail-rspawn runs it."""
    return [MXF_REMOTE, host, SENDER, RECIPIENT]


def reference_rows(world: World) -> list[Row]:
    """``python -c pass``, ``python -I -S -c pass``, and C qmail-remote (if built)."""
    rows = [
        Row("pass", "`python -c pass`", lambda host: [PYTHON, "-c", "pass"]),
        Row("isolated", "`python -I -S -c pass`", lambda host: [PYTHON, "-I", "-S", "-c", "pass"]),
    ]
    if world.c_qmail_remote is None:
        rows.append(Row("c", "C qmail-remote", absent="not built"))
    else:
        rows.append(
            Row(
                "c",
                "C qmail-remote",
                absent=(
                    f"found at {world.c_qmail_remote}, not measured: its qmail home is compiled in,"
                    " so it cannot be given this bench's control files"
                ),
            )
        )
    return rows


def make_mode(world: World, key: str) -> Mode:
    """Table ``a`` (clear SMTP) or ``b`` (the default protocols, STARTTLS)."""
    sink = world.clear_sink if key == "a" else world.tls_sink
    port = sink.ports[0]
    protocols = f"smtp:{port}:0:N:N:mxf-remote-smtpc\n" if key == "a" else None
    base = world.tmp / f"home-{key}"

    def home(name: str, server: Remoted | None) -> Path:
        return make_home(
            base / name,
            port=port,
            protocols=protocols,
            socket_path=server.socket_path if server else None,
        )

    rows = [
        Row("cold", "cold: no `control/remotedsocket`", launcher, home("cold", None)),
        Row(
            "warm",
            "warm: mxf-remoted, our client in the launcher's process",
            launcher,
            home("warm", world.warm_server),
            world.warm_server,
        ),
        Row(
            "exec",
            "warm: mxf-remoted `--exec-clients`",
            launcher,
            home("exec", world.exec_server),
            world.exec_server,
        ),
        *reference_rows(world),
    ]
    if key == "a":
        title = (
            f"clear SMTP: `control/protocols` = `smtp:{port}:0:N:N:mxf-remote-smtpc`,"
            f" route `:[127.0.0.1]:{port}`"
        )
    else:
        title = (
            "the default `control/protocols`: SMTP with STARTTLS through"
            " `mxf-remote-ucspitlsc` (the sink offers STARTTLS), route"
            f" `:[127.0.0.1]:{port}`"
        )
    return Mode(key, title, sink, "127.0.0.1", rows)


Variants = dict[str, tuple[list[str], dict[str, str], str]]


def routed_variants(world: World) -> Variants:
    """Cold and warm, clear SMTP, routed to the clear sink (no DNS)."""
    port = world.clear_sink.ports[0]
    protocols = f"smtp:{port}:0:N:N:mxf-remote-smtpc\n"
    variants: Variants = {}
    for name, server in (("cold", None), ("warm", world.warm_server)):
        home = make_home(
            world.tmp / "home-handoff" / name,
            port=port,
            protocols=protocols,
            socket_path=server.socket_path if server else None,
        )
        variants[f"{name}, routed"] = (
            launcher("bench.example"),
            {"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(home)},
            "127.0.0.1",
        )
    return variants


def dns_variants(world: World, dns_env: dict[str, str]) -> Variants:
    """Cold and warm, clear SMTP, to the healthy exchanger found through DNS."""
    variants: Variants = {}
    for name, server in (("cold", None), ("warm", world.warm_server)):
        home = make_home(
            world.tmp / "home-handoff" / f"dns-{name}",
            port=25,
            protocols="smtp:25:0:N:N:mxf-remote-smtpc\n",
            socket_path=server.socket_path if server else None,
            route=False,
        )
        variants[f"{name}, healthy (DNS)"] = (
            launcher(f"healthy.{DOMAIN}"),
            {"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(home), **dns_env},
            HEALTHY[0][0],
        )
    return variants


@dataclass
class Results:
    """Everything measured, for the report."""

    modes: dict[str, Mode] = field(default_factory=dict)
    handoffs: dict[str, Handoff] = field(default_factory=dict)
    handoff_key: str = ""
    """The handoff variant the target is judged on."""
    handoff_machine: MachineState | None = None
    dns_note: str = ""
    statuses: list[int | None] = field(default_factory=list)
    """mxf-remoted's exit statuses after SIGTERM."""


def measure_handoffs(
    world: World, options: argparse.Namespace, results: Results, dns_possible: bool
) -> None:
    """The traced deliveries: routed always, through knot when there is a namespace."""
    variants = routed_variants(world)
    results.handoff_key = "warm, routed"
    results.dns_note = "Routed: `control/smtproutes`, no DNS."
    knot = None
    if dns_possible:
        from tests.infra.knot import KnotServer

        try:
            knot = KnotServer({DOMAIN: ZONE})
            knot.start()
        except Exception as error:
            results.dns_note += f" No DNS variants: knot did not start ({error})."
            knot = None
    else:
        results.dns_note += " No DNS variants: no private network namespace."
    try:
        if knot is not None:
            world.keep |= live_children()  # knotd
            variants |= dns_variants(world, knot.env)
            results.handoff_key = "warm, healthy (DNS)"
            results.dns_note += (
                " Healthy (DNS): a real knotd, MX 10 with AAAA and A, both listening (IPv6"
                " wins); the warm server's DNS cache holds the answers after the warm-up."
            )
        with Watch() as watch:
            results.handoffs = run_handoffs(
                variants, options.handoff_runs, write_message(world.tmp), world.tmp, world.keep
            )
        results.handoff_machine = watch.state
    finally:
        if knot is not None:
            knot.stop()


def measure(
    options: argparse.Namespace, tmp: Path, netns_problem: str | None, began: float
) -> Results:
    """Start the sinks and servers, run the tables and the handoffs, stop everything."""
    from tests import tlskit

    results = Results()
    sockets = tmp / "sockets"
    sockets.mkdir(mode=0o700)
    sockets.chmod(0o700)
    certs = tlskit.Certs(tmp)
    cert, key = certs.named_files(tmp, "sink.bench", "127.0.0.1")
    clear_addresses = ["127.0.0.1:0"]
    if netns_problem is None:  # the healthy exchanger's addresses, for the DNS handoffs
        clear_addresses += [f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in HEALTHY]
    started: list[Sink | Remoted] = []
    try:
        clear_sink = Sink(tmp / "clear.tokens", clear_addresses)
        started.append(clear_sink)
        tls_sink = Sink(tmp / "tls.tokens", ["127.0.0.1:0"], str(cert), str(key))
        started.append(tls_sink)
        warm_server = Remoted(tmp / "server-warm", sockets / "warm.sock")
        started.append(warm_server)
        exec_server = Remoted(tmp / "server-exec", sockets / "exec.sock", "--exec-clients")
        started.append(exec_server)
        world = World(
            tmp,
            clear_sink,
            tls_sink,
            warm_server,
            exec_server,
            find_c_qmail_remote(),
            {p.pid for p in started},
        )
        for key in options.modes:
            mode = make_mode(world, key)
            results.modes[key] = mode
            run_mode(mode, options, tmp, world.keep)
            print(
                f"bench: table {key} done ({time.monotonic() - began:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        if options.handoff_runs > 0:
            measure_handoffs(world, options, results, netns_problem is None)
    finally:
        for process in started:
            status = process.stop()
            if isinstance(process, Remoted):
                results.statuses.append(status)
    return results


def report(results: Results, options: argparse.Namespace, header: list[str], elapsed: float) -> str:
    """The markdown: the tables, the handoff, the targets."""
    text = [*header]
    for mode in results.modes.values():
        text += [*mode_table(mode, options), ""]
    if results.handoffs and results.handoff_machine is not None:
        text += [
            *handoff_table(
                results.handoffs, options.handoff_runs, results.handoff_machine, results.dns_note
            ),
            "",
        ]
    text += [*targets(results.modes, results.handoffs, options, results.handoff_key), ""]
    statuses = ", ".join(str(status) for status in results.statuses)
    text.append(
        f"The whole run took {elapsed:.0f} s; both mxf-remoted stopped on SIGTERM,"
        f" exit statuses {statuses}."
    )
    return "\n".join(text) + "\n"


def main() -> int:
    """Measure, print, write ``results/warm.md``; or, with ``--sink``, be the sink."""
    if sys.argv[1:2] == ["--sink"]:
        return sink_main(sys.argv[2:])
    options = parse(sys.argv[1:])
    from tests.infra.netns import enter_private_netns

    netns_problem = enter_private_netns()  # before any thread
    began = time.monotonic()
    compiled = compile_bytecode()
    print(f"bench: {compiled}", file=sys.stderr)
    become_subreaper()
    header = [
        f"# bench/warm.py, {datetime.date.today()}, {os.cpu_count()} CPUs,"
        f" CPython {platform.python_version()}, {ssl.OPENSSL_VERSION}",
        "",
        f"- {compiled}.",
        f"- Programs: `{BIN}/mxf-remote`, `mxf-remoted` and the clients beside them;"
        f" {tree_state()}.",
        "- Network: "
        + (
            "a private network namespace, loopback only."
            if netns_problem is None
            else f"the host's loopback (no private namespace: {netns_problem})."
        ),
        f"- Options: {' '.join(sys.argv[1:]) or '(the defaults)'}.",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="mxf-bench-warm-") as directory:
        results = measure(options, Path(directory), netns_problem, began)
    if any(status != 0 for status in results.statuses):
        print(f"bench: mxf-remoted exit statuses {results.statuses}", file=sys.stderr)
    output = report(results, options, header, time.monotonic() - began)
    print(output)
    if not options.no_write:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(output)
        print(f"bench: wrote {options.out}", file=sys.stderr)
    return 0


def write_message(tmp: Path) -> Path:
    """The message of the traced deliveries."""
    return message_files(tmp / "handoff-message", "handoff", 1)[0]


if __name__ == "__main__":
    sys.exit(main())
