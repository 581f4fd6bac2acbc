"""What TLS costs per delivery: whole ``mxf-remote`` deliveries, clear and TLS, side by side.

Run: ``python bench/tls_delivery.py [runs]`` as root (default 30 runs per scenario).

Each scenario is one complete delivery of a small message, as qmail-rspawn would run it:
``mxf-remote`` resolves through a real knot server, races, execs the protocol client
(wrapped in the TLS client where the protocol says so), and the client delivers into a
local server -- all in a private network namespace.  The qmail home has no
``control/protocols``, so the DEFAULT protocols apply (``qmtps:6209:-1:Y:N``,
``qmtp:209:1:N:N``, ``smtp:25:0:N:Y``) with this package's TLS clients:

* **SMTP clear**: an aiosmtpd server without STARTTLS.  smtpc still runs under
  ``mxf-remote-ucspitlsc`` (the default ``smtp`` line says ``Y``), whose engine is forked
  and then told no (``SSLCTLFD`` closed);
* **SMTP clear, no TLS client**: the same server, with a ``control/protocols`` of
  ``smtp:25:0:N:N`` -- what the ucspitlsc wrapper costs when TLS is not offered;
* **SMTP+STARTTLS**: aiosmtpd offering STARTTLS (trustme certificate, not verified);
* **QMTP clear**: a QMTP sink, reached through an MXPS preference (slice 1);
* **QMTPS**: a QMTP sink behind TLS from the first byte, reached through an SRV record.

Figures per delivery, median (p10..p90) over ``runs``, scenarios interleaved so that
machine load shifts them alike:

* **CPU**: user + system seconds of everything the delivery ran -- mxf-remote, the
  programs it execs, and the TLS engine.  The engine is forked by the TLS client and
  outlives it by a moment; this script is a child subreaper (``PR_SET_CHILD_SUBREAPER``),
  so the orphaned engine comes back to it and is reaped, and ``RUSAGE_CHILDREN`` counts it;
* **wall**: from starting mxf-remote to its exit (what qmail-rspawn waits for: the engine
  holds no descriptor of the report pipe).

A second table pushes a 10 MiB message through SMTP (clear and STARTTLS) and QMTPS:
wall time and MB/s of the whole delivery.  The servers run as threads of this process
and share its cores with the deliveries; their CPU is not in the figures.

Under each table, the machine's state while it was measured (``machine.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.infra.netns import enter_private_netns

NETNS_PROBLEM = enter_private_netns()

from judge import spread_text  # noqa: E402
from machine import Watch  # noqa: E402

from tests import tlskit  # noqa: E402
from tests.infra.knot import KnotServer  # noqa: E402
from tests.infra.netns import listen_tcp  # noqa: E402
from tests.remotekit import MXF_REMOTE  # noqa: E402

ZONE = """
smtp               MX    10 mx.smtp
mx.smtp            A     127.0.8.1
starttls           MX    10 mx.starttls
mx.starttls        A     127.0.8.2
qmtp               MX    12801 mx.qmtp
mx.qmtp            A     127.0.8.3
qmtps              MX    10 mx.qmtps
_qmtps._tcp.qmtps  SRV   0 0 6209 mx.qmtps
mx.qmtps           A     127.0.8.4
"""

PR_SET_CHILD_SUBREAPER = 36
MESSAGE = b"From: alice@example.org\nTo: bob@example.org\nSubject: bench\n\nbody\n"


def become_subreaper() -> None:
    """Orphaned descendants (the TLS engines) are reparented to us, so we can reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children() -> set[int]:
    """Our child processes right now."""
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/children") as listing:
            found.update(int(pid) for pid in listing.read().split())
    return found


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def serve_qmtp(server: tlskit.Server, conn: socket.socket) -> None:
    """A clear QMTP sink: one package, K for every recipient, then wait for EOF."""
    reader = conn.makefile("rb")
    with reader:

        def netstring() -> bytes:
            digits = b""
            while (byte := reader.read(1)) != b":":
                if not byte:
                    raise EOFError
                digits += byte
            data = reader.read(int(digits))
            reader.read(1)
            return data

        netstring()
        netstring()
        packed = netstring()
        count = 0
        while packed:
            length, _, rest = packed.partition(b":")
            packed = rest[int(length) + 1 :]
            count += 1
        conn.sendall(b"3:Kok," * count)
        with contextlib.suppress(OSError):
            while reader.read1(65536):
                pass


def drain(server: Any) -> None:
    """Forget what a server recorded (so its queue does not grow)."""
    results = server.arrivals if isinstance(server, tlskit.AiosmtpdServer) else server.results
    with contextlib.suppress(queue.Empty):
        while True:
            results.get_nowait()


def measure(argv: list[str], env: dict[str, str], message: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one delivery, its TLS engine included."""
    before = children()
    cpu_before = children_cpu()
    with open(message, "rb") as stdin:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, env=env)
        output, _ = proc.communicate(timeout=120)
        wall = time.monotonic() - started
    if b"accepted message." not in output:
        raise RuntimeError(f"delivery failed: {output!r}")
    deadline = time.monotonic() + 30
    while left := children() - before:  # the orphaned engine, reparented to us
        for pid in left:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            raise RuntimeError(f"engine processes still running: {sorted(left)}")
        time.sleep(0.001)
    return wall, children_cpu() - cpu_before


def summary(values: list[float], width: int = 6) -> str:
    """``median (p10..p90)`` in milliseconds."""
    return spread_text(values, width=width)


def main() -> int:
    """Measure and print the tables."""
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    if NETNS_PROBLEM is not None:
        print(f"bench: no private network namespace: {NETNS_PROBLEM}", file=sys.stderr)
        return 1
    become_subreaper()
    with tempfile.TemporaryDirectory(prefix="mxf-bench-") as tmp:
        root = Path(tmp)
        certs = tlskit.Certs(root)
        default_home = root / "default"
        clear_home = root / "clear"
        for home in (default_home, clear_home):
            (home / "control").mkdir(parents=True)
            (home / "control" / "me").write_text("bench.example\n")
        (clear_home / "control" / "protocols").write_text("smtp:25:0:N:N:mxf-remote-smtpc\n")
        small = root / "small"
        small.write_bytes(MESSAGE)
        big = root / "big"
        line = b"line of a large message, 64 bytes long, with some text in it..\n"
        big.write_bytes(MESSAGE + line * ((10 << 20) // len(line)))
        servers: list[Any] = []
        try:
            servers.append(tlskit.AiosmtpdServer("127.0.8.1", 25, None))
            servers.append(
                tlskit.AiosmtpdServer("127.0.8.2", 25, certs.named_context("mx.starttls.b.test"))
            )
            servers.append(tlskit.Server(serve_qmtp, None, listen_tcp("127.0.8.3", 209)))
            servers.append(
                tlskit.Server(
                    tlskit.serve_qmtps,
                    certs.named_context("mx.qmtps.b.test"),
                    listen_tcp("127.0.8.4", 6209),
                )
            )
            with KnotServer({"b.test": ZONE}) as knot:
                base = {"PATH": "/usr/bin:/bin", **knot.env}
                default_env = {**base, "MXF_QMAIL": str(default_home)}
                clear_env = {**base, "MXF_QMAIL": str(clear_home)}

                def argv(host: str) -> list[str]:
                    return [MXF_REMOTE, f"{host}.b.test", "alice@example.org", "bob@example.org"]

                scenarios = {
                    "SMTP clear (server without STARTTLS)": (argv("smtp"), default_env),
                    "SMTP clear, no TLS client (smtp:25:0:N:N)": (argv("smtp"), clear_env),
                    "SMTP+STARTTLS": (argv("starttls"), default_env),
                    "QMTP clear": (argv("qmtp"), default_env),
                    "QMTPS": (argv("qmtps"), default_env),
                }
                for command, env in scenarios.values():  # warm-up, and a check
                    measure(command, env, small)
                results: dict[str, list[tuple[float, float]]] = {n: [] for n in scenarios}
                with Watch() as small_watch:
                    for _ in range(runs):  # interleaved, so load shifts every scenario alike
                        for name, (command, env) in scenarios.items():
                            results[name].append(measure(command, env, small))
                        for server in servers:
                            drain(server)
                big_runs = max(3, runs // 6)
                big_scenarios = {
                    "SMTP clear (server without STARTTLS)": (argv("smtp"), default_env),
                    "SMTP+STARTTLS": (argv("starttls"), default_env),
                    "QMTP clear": (argv("qmtp"), default_env),
                    "QMTPS": (argv("qmtps"), default_env),
                }
                big_results: dict[str, list[tuple[float, float]]] = {n: [] for n in big_scenarios}
                with Watch() as big_watch:
                    for _ in range(big_runs):
                        for name, (command, env) in big_scenarios.items():
                            big_results[name].append(measure(command, env, big))
                        for server in servers:
                            drain(server)
        finally:
            for server in servers:
                server.close()
        size_mb = big.stat().st_size / 1e6

    def median_cpu(name: str) -> float:
        return statistics.median(s[1] for s in results[name])

    smtp_bare = median_cpu("SMTP clear, no TLS client (smtp:25:0:N:N)")
    qmtp_bare = median_cpu("QMTP clear")
    print(f"\n{runs} runs each, CPython {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print(
        "| delivery (small message) | CPU ms, median (p10..p90) | wall ms, median (p10..p90)"
        " | CPU beyond the same protocol without a TLS client |"
    )
    print("|---|---|---|---|")
    for name, samples in results.items():
        bare = qmtp_bare if name.startswith("QMTP") else smtp_bare
        print(
            f"| {name} | {summary([s[1] for s in samples])} | {summary([s[0] for s in samples])}"
            f" | {(median_cpu(name) - bare) * 1000:+.1f} ms |"
        )
    print(f"\n{small_watch.line()}")
    print(f"\n{big_runs} runs each, a {size_mb:.1f} MB message\n")
    print(
        "| delivery (10 MiB) | wall ms, median (p10..p90) | MB/s, at the median wall"
        " | CPU ms, median (p10..p90) | CPU ms per MB, at the median CPU |"
    )
    print("|---|---|---|---|---|")
    for name, samples in big_results.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        print(
            f"| {name} | {summary([s[0] for s in samples], width=0)} | {size_mb / wall:.1f}"
            f" | {summary([s[1] for s in samples], width=0)} | {cpu * 1000 / size_mb:.1f} |"
        )
    print(f"\n{big_watch.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
