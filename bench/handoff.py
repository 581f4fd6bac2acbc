"""Handoff latency and start-up cost of mxf-remote, side by side with the import floor.

Run: ``python3 -m tox -e bench`` (or ``python bench/handoff.py [runs]`` as root).

Scenarios, each on loopback in a private network namespace with a real knot server:

* healthy: the best MX answers (AAAA and A);
* silent best MX: MX 10 drops SYNs (one address), MX 20 answers.

Figures, over ``runs`` deliveries each (median, and p10..p90 spread):

* **handoff latency**: from the moment this script starts the process to mxf-remote's
  ``execve`` of the protocol program (the ``mono`` clock of the trace's handoff mark);
* **CPU**: user+system seconds of the mxf-remote process up to and including the
  protocol program, which here is ``/bin/true``-cheap (a shell ``exec true`` costs
  about 1 ms);
* the **floor**: ``python -c "import asyncio, aiodns, uvloop"`` in the same interpreter,
  measured in the same run, wall and CPU: what any asyncio+c-ares program pays to start.

Ratios are to the floor measured in the same run, so a busy machine shifts both.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.infra.netns import enter_private_netns, nft_available, silence

NETNS_PROBLEM = enter_private_netns()

from tests.infra.knot import KnotServer  # noqa: E402
from tests.remotekit import MXF_REMOTE, Listeners  # noqa: E402

PORT = 2525
ZONE = """
healthy      MX   10 mx.healthy
mx.healthy   AAAA fd6d:7866::301
mx.healthy   A    127.0.3.1
silent       MX   10 mx1.silent
silent       MX   20 mx2.silent
mx1.silent   A    127.0.3.2
mx2.silent   A    127.0.3.3
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], env: dict[str, str], stdin_path: Path,
            trace: Path | None) -> tuple[float, float, float | None]:
    """(wall seconds, CPU seconds, handoff latency seconds or None) of one process."""
    if trace is not None:
        trace.unlink(missing_ok=True)
    cpu_before = _children_cpu()
    with open(stdin_path, "rb") as stdin:
        started = time.monotonic()
        # wait() without a timeout blocks in waitpid; with one, it polls in steps of up
        # to 50 ms, which would quantise the wall times.
        subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, env=env).wait()
        wall = time.monotonic() - started
    cpu = _children_cpu() - cpu_before
    handoff = None
    if trace is not None and trace.exists():
        import json

        for line in trace.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "handoff":
                handoff = event["mono"] - started
    return wall, cpu, handoff


def summary(values: list[float]) -> str:
    """``median (p10..p90)`` in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    deciles = statistics.quantiles(ms, n=10) if len(ms) > 1 else [ms[0]] * 9
    return f"{statistics.median(ms):7.1f} ({deciles[0]:.1f}..{deciles[-1]:.1f})"


def main() -> int:
    """Measure and print the table."""
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    if NETNS_PROBLEM is not None:
        print(f"bench: no private network namespace: {NETNS_PROBLEM}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="mxf-bench-") as tmp:
        home = Path(tmp)
        (home / "control").mkdir()
        program = home / "true"
        program.write_text("#!/bin/sh\nprintf 'Kok\\n\\0'\n")
        program.chmod(0o755)
        (home / "control" / "protocols").write_text(f"smtp:{PORT}:0:N:N:{program}\n")
        message = home / "message"
        message.write_bytes(b"Subject: bench\n\nbody\n")
        trace = home / "trace.jsonl"
        if nft_available() is not None:
            print("bench: nftables unavailable", file=sys.stderr)
            return 1
        silence("127.0.3.2", PORT)
        listeners = Listeners()
        for address in ("fd6d:7866::301", "127.0.3.1", "127.0.3.3"):
            listeners.listen(address, PORT)
        rows = []
        try:
            with KnotServer({"bench.test": ZONE}) as knot:
                env = {**os.environ, **knot.env, "MXF_QMAIL": str(home),
                       "MXF_TRACE": str(trace)}
                floor_argv = [sys.executable, "-c", "import asyncio, aiodns, uvloop"]
                scenarios = {
                    "floor: import asyncio, aiodns, uvloop": (floor_argv, None),
                    "healthy exchanger": ([MXF_REMOTE, "healthy.bench.test", "a@b", "c@d"],
                                          trace),
                    "silent best MX": ([MXF_REMOTE, "silent.bench.test", "a@b", "c@d"], trace),
                }
                results: dict[str, list[tuple[float, float, float | None]]] = {
                    name: [] for name in scenarios
                }
                for _ in range(runs):  # interleaved, so load shifts every scenario alike
                    for name, (argv, trace_path) in scenarios.items():
                        results[name].append(measure(argv, env, message, trace_path))
        finally:
            listeners.close()
        floor_wall = statistics.median(r[0] for r in results[next(iter(results))])
        floor_cpu = statistics.median(r[1] for r in results[next(iter(results))])
        print(f"\n{runs} runs each, {sys.executable}, {os.cpu_count()} cores\n")
        print("| scenario | handoff latency ms, median (p10..p90) | wall ms | CPU ms |"
              " handoff / floor wall | CPU - floor CPU ms |")
        print("|---|---|---|---|---|---|")
        for name, samples in results.items():
            walls = [s[0] for s in samples]
            cpus = [s[1] for s in samples]
            handoffs = [s[2] for s in samples if s[2] is not None]
            handoff = summary(handoffs) if handoffs else "-"
            ratio = (f"{statistics.median(handoffs) / floor_wall:.2f}x" if handoffs else "-")
            extra_cpu = (statistics.median(cpus) - floor_cpu) * 1000
            rows.append(name)
            print(f"| {name} | {handoff} | {summary(walls)} | {summary(cpus)} | {ratio} |"
                  f" {extra_cpu:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
