"""Per-delivery cost: CPU, wall and memory of one delivery, where the imports go, and
throughput at several concurrencies.

* **to the exec**: mxf-remote for the healthy exchanger, up to the exec of a protocol
  program that only notes the process's CPU clock (``/proc/self/schedstat``);
* **full delivery**: mxf-remote, then ``mxf-remote-smtpc`` (same process, exec'd) into
  the local SMTP sink: the whole process's CPU (``wait4``), wall and peak RSS;
* **imports**: ``PYTHONPROFILEIMPORTTIME=1`` on real deliveries (median per module),
  and the modules mxf-remote imports beyond the floor's ``asyncio, aiodns, uvloop``;
* **throughput**: ``count`` full deliveries, at most 1, 10 or 50 at a time, each batch
  with the machine's state during it (``machine.Watch``).
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fixture import DOMAIN, MXF_REMOTE, World
from handoff import FLOOR
from machine import MachineState, Watch
from measure import Sample, run_concurrently, run_process

IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def delivery_env(world: World, dns_env: dict[str, str]) -> dict[str, str]:
    """The environment of a full delivery with mxf-remote-smtpc."""
    return {
        "PATH": f"{Path(MXF_REMOTE).parent}:/usr/bin:/bin",
        "MXF_QMAIL": str(world.homes["delivery"]),
        **dns_env,
    }


def delivery_argv() -> list[str]:
    """mxf-remote for the healthy exchanger."""
    return [MXF_REMOTE, f"healthy.{DOMAIN}", "sender@bench.example", "rcpt@bench.example"]


def full_deliveries(world: World, dns_env: dict[str, str], runs: int) -> list[Sample]:
    """``runs`` full deliveries, one at a time; each must end in a K report."""
    env = delivery_env(world, dns_env)
    samples = []
    for _ in range(runs + 1):
        sample = run_process(delivery_argv(), env, world.message)
        if b"K" not in sample.output:
            raise RuntimeError(f"delivery failed: {sample.output[:300]!r}")
        samples.append(sample)
    return samples[1:]  # the first one warms the caches


def floor_to_exec(world: World, runs: int) -> list[Sample]:
    """The floor's imports, then an exec of the same protocol program: CPU at the exec.

    The floor process's own CPU includes the interpreter's shutdown, which mxf-remote
    never pays (it execs); this variant stops where mxf-remote stops.
    """
    program = str(world.root / "program")
    argv = [*FLOOR[:-1], FLOOR[-1] + f"; import os; os.execv({program!r}, [{program!r}])"]
    env = {"PATH": "/usr/bin:/bin", "BENCH_CPU_FILE": str(world.root / "cpu")}
    samples = [
        run_process(argv, env, world.message, cpu_file=world.root / "cpu") for _ in range(runs + 1)
    ]
    return samples[1:]


@dataclass
class ImportProfile:
    """Median import times (µs) by module: self, cumulative, and nesting depth."""

    self_us: dict[str, float]
    cumulative_us: dict[str, float]
    depth: dict[str, int]

    @property
    def total_ms(self) -> float:
        """The sum of every module's own time."""
        return sum(self.self_us.values()) / 1000


def import_profile(argv: list[str], env: dict[str, str], stdin: Path, runs: int) -> ImportProfile:
    """``-X importtime`` (as PYTHONPROFILEIMPORTTIME) over ``runs`` processes, medians."""
    selfs: dict[str, list[int]] = {}
    cumulatives: dict[str, list[int]] = {}
    depth: dict[str, int] = {}
    for _ in range(runs):
        with open(stdin, "rb") as message:
            done = subprocess.run(
                argv,
                stdin=message,
                capture_output=True,
                check=False,
                timeout=30,
                env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
            )
        for match in IMPORT_LINE.finditer(done.stderr.decode(errors="replace")):
            own, cumulative, indent, module = match.groups()
            selfs.setdefault(module, []).append(int(own))
            cumulatives.setdefault(module, []).append(int(cumulative))
            depth[module] = (len(indent) - 1) // 2
    return ImportProfile(
        {m: statistics.median(v) for m, v in selfs.items()},
        {m: statistics.median(v) for m, v in cumulatives.items()},
        depth,
    )


def imports(
    world: World, dns_env: dict[str, str], runs: int = 9
) -> tuple[ImportProfile, ImportProfile]:
    """The import profiles of a full delivery's mxf-remote and of the floor."""
    env = delivery_env(world, dns_env)
    ours = import_profile(delivery_argv(), env, world.message, runs)
    floor = import_profile(FLOOR, env, world.message, runs)
    return ours, floor


@dataclass
class Throughput:
    """One batch of deliveries."""

    concurrency: int
    count: int
    wall: float
    cpu: float
    failures: int
    accepted: int
    machine: MachineState
    """The machine's state during the batch."""

    @property
    def per_second(self) -> float:
        """Deliveries per second."""
        return self.count / self.wall

    @property
    def cpu_per_delivery(self) -> float:
        """CPU seconds per delivery (mxf-remote and smtpc; not the sink nor knotd)."""
        return self.cpu / self.count


def throughput(
    world: World,
    dns_env: dict[str, str],
    count: int,
    concurrencies: tuple[int, ...],
    accepted: Callable[[], int],
) -> list[Throughput]:
    """``count`` full deliveries at each concurrency."""
    env = delivery_env(world, dns_env)
    results = []
    for concurrency in concurrencies:
        before = accepted()
        with Watch() as watch:
            wall, cpu, failures = run_concurrently(
                delivery_argv(), env, world.message, count, concurrency
            )
        results.append(
            Throughput(concurrency, count, wall, cpu, failures, accepted() - before, watch.state)
        )
        print(
            f"bench: throughput at concurrency {concurrency}: {count / wall:.1f}/s", file=sys.stderr
        )
    return results
