"""Delivery cost: mxf-remote-smtpc alone, and 200 deliveries through mxf-remote at once.

Run: ``python bench/delivery.py [runs] [deliveries] [concurrency]`` as root (defaults 40,
200, 20).  The benchmark makes its own private network namespace first (as the tests
do), then:

(a) **the client alone**: ``mxf-remote-smtpc`` delivering one small message to a local
    SMTP sink over a connection the benchmark opens and puts on fds 6 and 7 (as
    mxf-remote leaves it; the message is a regular file on fd 0), interleaved with
    ``python -c pass`` from the same interpreter, spawned the same way.  Wall time from
    spawn to exit; CPU is user+system of the child (``RUSAGE_CHILDREN``).
(b) **throughput**: ``deliveries`` deliveries, ``concurrency`` at a time, each one a
    real ``mxf-remote host sender recip`` run as qmail-rspawn runs it: real DNS from a
    knot server, the race, the exec of ``mxf-remote-smtpc`` (found beside mxf-remote),
    SMTP to a local server.  Each message carries a token; the server logs the tokens it
    accepts and the benchmark checks that every delivery arrived exactly once and that
    every report is ``r`` + ``K``.  Client CPU is ``RUSAGE_CHILDREN`` over the batch (the
    mxf-remote processes, which become the smtpc processes); server CPU is the server's
    process tree from /proc (its own time plus reaped children plus live children).

Servers for (b), each in its own process(es):

* ``threaded sink``: this file's minimal SMTP sink, a thread per connection, replies
  from a fixed table (EHLO offers PIPELINING, 8BITMIME, SIZE), TCP_NODELAY, no storage
  but the token; it is also the sink of (a);
* ``aiosmtpd``: aiosmtpd 1.4 ``SMTP`` on the default asyncio loop, a handler that logs
  the token;
* ``postfix``: Debian's Postfix started in the foreground from a temporary directory
  (``tests.clientkit.PostfixServer``), mail put on hold in its queue; tokens are read
  back with ``postcat``.  Skipped when postfix is not installed.

Under each table, the machine's state while it was measured (``machine.py``: CPUs, load
averages before and after, the share of the CPU other processes used).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from judge import spread_text
from machine import Watch, busy_seconds, tree_cpu

from tests.infra.netns import enter_private_netns, listen_tcp

TOKEN_HEADER = b"X-Bench-Token: "
SINK_SMTPC = "127.0.5.100"
ZONE = """
thr          MX   10 mx.thr
mx.thr       A    127.0.5.101
aio          MX   10 mx.aio
mx.aio       A    127.0.5.102
pf           MX   10 mx.pf
mx.pf        A    127.0.5.103
"""
SERVERS = {
    "threaded sink": ("thr.bench.test", "127.0.5.101"),
    "aiosmtpd": ("aio.bench.test", "127.0.5.102"),
    "postfix": ("pf.bench.test", "127.0.5.103"),
}
PROTOCOLS = "qmtp:209:1:N:N:mxf-remote-qmtpc\nsmtp:25:0:N:N:mxf-remote-smtpc\n"
BIN = os.path.dirname(sys.executable)
SMTPC = os.path.join(BIN, "mxf-remote-smtpc")
MXF_REMOTE = os.path.join(BIN, "mxf-remote")


# -- the servers (run as ``delivery.py --serve KIND ADDRESS PORT LOG``) ---------------


def _token(content: bytes) -> bytes:
    start = content.find(TOKEN_HEADER)
    if start < 0:
        return b"?"
    start += len(TOKEN_HEADER)
    return content[start : content.index(b"\r\n", start)]


def serve_threaded(sock: socket.socket, log: int) -> None:
    """The minimal sink: a thread per connection, a fixed reply table."""

    def session(conn: socket.socket) -> None:
        try:
            converse(conn)
        except OSError:  # a client that hangs up early (python -c pass in (a))
            pass
        finally:
            conn.close()

    def converse(conn: socket.socket) -> None:
        # Without TCP_NODELAY, the second of two pipelined replies waits for a delayed
        # ACK (40 ms on Linux), as asyncio's transports (aiosmtpd) avoid by default.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn.makefile("rb") as lines:
            conn.sendall(b"220 sink.bench ESMTP\r\n")
            while True:
                line = lines.readline(65538)
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    body = bytearray()
                    for data in iter(lambda: lines.readline(65538), b""):
                        if data == b".\r\n":
                            break
                        body += data
                    os.write(log, _token(bytes(body)) + b"\n")
                    conn.sendall(b"250 2.0.0 OK queued\r\n")
                elif verb == b"EHLO":
                    conn.sendall(
                        b"250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 67108864\r\n"
                    )
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 OK\r\n")

    while True:
        conn, _ = sock.accept()
        threading.Thread(target=session, args=(conn,), daemon=True).start()


def serve_aiosmtpd(sock: socket.socket, log: int) -> None:
    """aiosmtpd's SMTP on the default asyncio loop; the handler logs the token."""
    import asyncio

    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            os.write(log, _token(envelope.original_content) + b"\n")  # type: ignore[attr-defined]
            return "250 2.0.0 OK queued"

    loop = asyncio.new_event_loop()
    handler = Handler()
    loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="sink.bench", data_size_limit=64 << 20), sock=sock
        )
    )
    loop.run_forever()


def serve(kind: str, address: str, port: int, log_path: str) -> int:
    """Serve until killed; ``ready`` on stdout once listening."""
    sock = listen_tcp(address, port, backlog=128)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    {"threaded": serve_threaded, "aiosmtpd": serve_aiosmtpd}[kind](sock, log)
    return 0


class ServerProcess:
    """A ``--serve`` child of this script."""

    def __init__(self, kind: str, address: str, port: int, log_path: Path) -> None:
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, address, str(port), str(log_path)],
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        if not ready or self.process.stdout.readline() != b"ready\n":
            self.stop()
            raise RuntimeError(f"{kind} server did not start")

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def tokens(self) -> list[str]:
        """Every token logged so far."""
        return self.log_path.read_text().split()

    def stop(self) -> None:
        """Terminate and reap."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- measuring ------------------------------------------------------------------------


def children_cpu() -> float:
    """User + system seconds of every reaped child so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summary(values: list[float]) -> str:
    """``median (p10..p90)`` in milliseconds."""
    return spread_text(values, width=6)


def spawn_measured(
    argv: list[str], env: dict[str, str], stdin_path: Path, connection: socket.socket
) -> tuple[float, float, bytes]:
    """(wall s, CPU s, stdout) of one child with ``connection`` on fds 6 and 7."""
    fd = connection.fileno()

    def hand_off() -> None:
        os.dup2(fd, 6)
        os.dup2(fd, 7)
        os.dup2(1, 2)

    cpu_before = children_cpu()
    with open(stdin_path, "rb") as stdin:
        started = time.monotonic()
        child = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            env=env,
            preexec_fn=hand_off,  # noqa: PLW1509 - no threads in (a)
            close_fds=False,
        )
        output, _ = child.communicate()
        wall = time.monotonic() - started
    return wall, children_cpu() - cpu_before, output


def bench_client_alone(runs: int, home: Path, tmp: Path) -> list[str]:
    """(a): smtpc alone next to ``python -c pass``; the table lines."""
    log = tmp / "a.tokens"
    sink = ServerProcess("threaded", SINK_SMTPC, 25, log)
    message = tmp / "a.message"
    message.write_bytes(b"Subject: bench\n" + TOKEN_HEADER + b"a\n\nbody\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "MXF_QMAIL": str(home),
        "PROTO": "TCP",
        "TCPREMOTEIP": SINK_SMTPC,
        "TCPREMOTEPORT": "25",
        "TCPLOCALIP": "127.0.0.1",
        "MXFHOST": "mx.bench.test",
        "MXFPROTOCOL": "smtp",
    }
    scenarios = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "mxf-remote-smtpc, one message": [SMTPC, "bench.test", "a@b.test", "c@d.test"],
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in scenarios}
    try:
        with Watch() as watch:
            for run in range(runs + 2):  # two warm-up rounds, interleaved so load hits both
                for name, argv in scenarios.items():
                    with socket.create_connection((SINK_SMTPC, 25), timeout=10) as connection:
                        wall, cpu, output = spawn_measured(argv, env, message, connection)
                    if argv[0] == SMTPC:
                        assert output.startswith(b"r\0K127.0.5.100 accepted message."), output
                    if run >= 2:
                        results[name].append((wall, cpu))
        delivered = len(sink.tokens())
    finally:
        sink.stop()
    assert delivered == runs + 2, f"{delivered} messages arrived, {runs + 2} sent"
    floor_wall = statistics.median(w for w, _ in results["python -c pass"])
    floor_cpu = statistics.median(c for _, c in results["python -c pass"])
    lines = [
        f"(a) {runs} runs each (+2 warm-up), interleaved; sink: the threaded sink in its own"
        " process; CPU = RUSAGE_CHILDREN of the child",
        "",
        "| program | wall ms, median (p10..p90) | CPU ms, median (p10..p90) |"
        " wall - floor ms | CPU - floor ms |",
        "|---|---|---|---|---|",
    ]
    for name, samples in results.items():
        walls = [w for w, _ in samples]
        cpus = [c for _, c in samples]
        lines.append(
            f"| {name} | {summary(walls)} | {summary(cpus)} |"
            f" {(statistics.median(walls) - floor_wall) * 1000:+.1f} |"
            f" {(statistics.median(cpus) - floor_cpu) * 1000:+.1f} |"
        )
    return [*lines, "", watch.line()]


def message_files(directory: Path, label: str, count: int) -> list[Path]:
    """``count`` small messages, each with its token ``label-N`` (bench/warm.py too)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = directory / f"{label}.{number}"
        path.write_bytes(
            b"Received: (qmail 1 invoked by uid 0); 25 Nov 2026 12:00:00 -0000\n"
            b"From: alice@example.org\nTo: bob@example.org\n"
            b"Date: Wed, 25 Nov 2026 12:00:00 +0000\n"
            b"Message-ID: <"
            + label.encode()
            + b"-%d@bench.test>\n" % number
            + b"Subject: bench %d\n" % number
            + TOKEN_HEADER
            + label.encode()
            + b"-%d\n\n" % number
            + b"A small message, as most mail is.\n" * 20
        )
        paths.append(path)
    return paths


def deliver_batch(
    host: str, count: int, *, concurrency: int, env: dict[str, str], tmp: Path, label: str
) -> tuple[float, float, list[bytes]]:
    """(elapsed s, client CPU s, reports) of ``count`` mxf-remote runs, ``concurrency`` at once."""
    messages = message_files(tmp, label, count)

    def one(path: Path) -> bytes:
        with open(path, "rb") as stdin:
            done = subprocess.run(
                [MXF_REMOTE, host, "alice@example.org", "bob@example.org"],
                stdin=stdin,
                capture_output=True,
                env=env,
                timeout=300,
                check=False,
            )
        return done.stdout + done.stderr + (b"" if done.returncode == 0 else b"exit!")

    cpu_before = children_cpu()
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        outputs = list(pool.map(one, messages))
    elapsed = time.monotonic() - started
    return elapsed, children_cpu() - cpu_before, outputs


def check_arrivals(tokens: list[str], label: str, count: int) -> str:
    """'all N once', or what went wrong."""
    seen = Counter(t for t in tokens if t.startswith(label + "-"))
    expected = {f"{label}-{n}" for n in range(count)}
    missing = expected - set(seen)
    twice = {t for t, n in seen.items() if n > 1}
    if not missing and not twice and set(seen) == expected:
        return f"all {count} exactly once"
    return f"MISSING {len(missing)}, DUPLICATED {len(twice)}"


def postfix_tokens(server: object) -> list[str]:
    """The tokens of every message Postfix holds."""
    root = Path(server.root)  # type: ignore[attr-defined]
    postcat = os.path.join(os.path.dirname(server.postfix), "postcat")  # type: ignore[attr-defined]
    tokens = []
    for path in sorted((root / "spool" / "hold").glob("*")):
        content = subprocess.run(
            [postcat, "-c", server.config, "-bh", str(path)],  # type: ignore[attr-defined]
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        start = content.find(TOKEN_HEADER)
        if start >= 0:
            start += len(TOKEN_HEADER)
            tokens.append(content[start : content.index(b"\n", start)].decode())
    return tokens


def bench_throughput(count: int, concurrency: int, home: Path, tmp: Path) -> list[str]:
    """(b): ``count`` deliveries through mxf-remote per server; the table lines."""
    from tests.clientkit import PostfixServer, postfix_binaries
    from tests.infra.knot import KnotServer

    lines = [
        f"(b) {count} deliveries through mxf-remote -> mxf-remote-smtpc, {concurrency} at a"
        f" time, knot DNS, {os.cpu_count()} cores; client CPU = RUSAGE_CHILDREN over the"
        " batch; server CPU = the server's process tree",
        "",
        "| server | deliveries/s | elapsed s | client CPU s / delivery |"
        " server CPU s / delivery | reports | arrived | machine busy, % of all cores |"
        " of which not client or server (knot, this script, other sessions) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with Watch() as watch, KnotServer({"bench.test": ZONE}) as knot:
        env = {"PATH": "/usr/bin:/bin", "MXF_QMAIL": str(home), **knot.env}
        for name, (host, address) in SERVERS.items():
            label = name.split()[0]
            server: object
            tokens: Callable[[], list[str]]
            if name == "postfix":
                binaries = postfix_binaries()
                if binaries is None or os.geteuid() != 0:
                    lines.append(
                        f"| {name} | skipped: postfix not installed or not root | | | | | | | |"
                    )
                    continue
                server = PostfixServer(*binaries, 25, address=address)
                pid = server.process.pid  # type: ignore[attr-defined]

                def tokens(server: object = server) -> list[str]:
                    return postfix_tokens(server)
            else:
                server = ServerProcess(name.split()[0], address, 25, tmp / f"{label}.tokens")
                pid = server.pid  # type: ignore[attr-defined]
                tokens = server.tokens  # type: ignore[attr-defined]
            try:
                deliver_batch(
                    host, 4, concurrency=4, env=env, tmp=tmp, label=f"warm{label}"
                )  # warm caches, pools
                busy_before = busy_seconds()
                server_before = tree_cpu(pid)
                elapsed, client_cpu, outputs = deliver_batch(
                    host, count, concurrency=concurrency, env=env, tmp=tmp, label=label
                )
                server_cpu = tree_cpu(pid) - server_before
                busy = busy_seconds() - busy_before
                capacity = elapsed * (os.cpu_count() or 1)
                good = sum(
                    o.startswith(b"r\0K" + address.encode() + b" accepted message.")
                    and o.endswith(b"\0")
                    and o.count(b"\0") == 2
                    for o in outputs
                )
                time.sleep(0.5 if name == "postfix" else 0.1)  # the last hold files
                arrived = check_arrivals(tokens(), label, count)
            finally:
                server.stop()  # type: ignore[attr-defined]
            lines.append(
                f"| {name} | {count / elapsed:.1f} | {elapsed:.2f} | {client_cpu / count:.3f} |"
                f" {server_cpu / count:.4f} | {good}/{count} r+K | {arrived} |"
                f" {busy / capacity:.0%} | {(busy - client_cpu - server_cpu) / capacity:.0%} |"
            )
            if good != count:
                bad = next(o for o in outputs if not o.startswith(b"r\0K"))
                lines.append(f"|   first bad report: {bad[:200]!r} | | | | | | | | |")
    return [*lines, "", watch.line()]


def main() -> int:
    """Measure (a) and (b) and print both tables."""
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    problem = enter_private_netns()
    if problem is not None:
        print(f"bench: no private network namespace: {problem}", file=sys.stderr)
        return 1
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    with tempfile.TemporaryDirectory(prefix="mxf-bench-") as directory:
        tmp = Path(directory)
        home = tmp / "qmail"
        (home / "control").mkdir(parents=True)
        (home / "control" / "protocols").write_text(PROTOCOLS)
        (home / "control" / "me").write_text("me.bench.test\n")
        print(
            f"CPython {sys.version.split()[0]}, {os.cpu_count()} cores,"
            f" load average at start {os.getloadavg()[0]:.1f}\n"
        )
        for line in bench_client_alone(runs, home, tmp):
            print(line, flush=True)
        print()
        for line in bench_throughput(count, concurrency, home, tmp):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
