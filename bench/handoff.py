"""Handoff latency: mxf-remote next to three ways of doing without it, scenario by scenario.

For every scenario of ``fixture.SCENARIOS`` and every run, interleaved (so machine load
shifts every contender alike):

* **mxf-remote**: the installed program, as qmail-rspawn runs it; its latency is from
  just before the start to its ``execve`` of the protocol program (the trace's
  ``handoff`` mark), and, in the all-silent scenario, to its exit after the Z report;
* **(a) sequential**: ``bench/sequential.py``, qmail-remote's way (one address at a
  time, 5 s each);
* **(b) asyncio** and **(c) aiohappyeyeballs**: ``bench/race_only.py``, a race alone
  over mxf-remote's final address list (no DNS), to the connected socket;
* **(d) floor**: ``python -c "import asyncio, aiodns, uvloop"``, what any asyncio + c-ares
  program pays to start; the *ideal* is the floor plus what the scenario must wait
  (one connectdelay behind a silent address, timeoutconnect when all are silent).

Runs of a contender that waits seconds on silent hosts ((a) in every silent scenario,
(b) and (c) when all are silent) are started 250 ms apart and overlap while they wait;
everything else runs one process at a time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fixture import (
    ALL_SILENT_TIMEOUT,
    DOMAIN,
    MXF_REMOTE,
    Scenario,
    World,
)
from measure import Sample, run_overlapped, run_process

BENCH = Path(__file__).resolve().parent
CONTENDERS = ("mxf-remote", "sequential", "asyncio", "aiohappyeyeballs", "floor")
FLOOR = [sys.executable, "-c", "import asyncio, aiodns, uvloop"]
OVERLAP_STAGGER = 0.25


def target_list(scenario: Scenario) -> list[str]:
    """The race list as ``race_only.py`` arguments."""
    return [f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in scenario.race_list]


def commands(scenario: Scenario, world: World, env: dict[str, str]) -> dict[str, list[str]]:
    """The argv of every contender for ``scenario``."""
    host = f"{scenario.host}.{DOMAIN}"
    timeout = str(ALL_SILENT_TIMEOUT if scenario.all_silent else 60)
    race_only = [sys.executable, str(BENCH / "race_only.py")]
    return {
        "mxf-remote": [MXF_REMOTE, host, "sender@bench.example", "rcpt@bench.example"],
        "sequential": [sys.executable, str(BENCH / "sequential.py"), host],
        "asyncio": [*race_only, "asyncio", timeout, *target_list(scenario)],
        "aiohappyeyeballs": [*race_only, "aiohappyeyeballs", timeout, *target_list(scenario)],
        "floor": FLOOR,
    }


def overlapped(scenario: Scenario, contender: str) -> bool:
    """Whether this contender's runs wait seconds (and so are run overlapping)."""
    if contender == "sequential":
        return scenario.silent
    return contender in ("asyncio", "aiohappyeyeballs") and scenario.all_silent


def run_scenario(
    scenario: Scenario, world: World, dns_env: dict[str, str], runs: int
) -> dict[str, list[Sample]]:
    """Every contender ``runs`` times in ``scenario``."""
    home = world.homes["allsilent" if scenario.all_silent else "handoff"]
    env = {
        "PATH": f"{Path(MXF_REMOTE).parent}:/usr/bin:/bin",
        "MXF_QMAIL": str(home),
        "MXF_TRACE": str(world.root / "trace.jsonl"),
        "BENCH_CPU_FILE": str(world.root / "cpu"),
        **dns_env,
    }
    argvs = commands(scenario, world, env)
    results: dict[str, list[Sample]] = {name: [] for name in CONTENDERS}

    def once(name: str) -> Sample:
        if name == "mxf-remote":
            return run_process(
                argvs[name],
                env,
                world.message,
                trace=world.root / "trace.jsonl",
                cpu_file=world.root / "cpu",
            )
        return run_process(argvs[name], env, world.message)

    for name in CONTENDERS:  # warm-up: caches, and a check that each one works
        sample = once(name) if not overlapped(scenario, name) else None
        if (
            sample is not None
            and name != "floor"
            and sample.handoff is None
            and not (scenario.all_silent)
        ):
            raise RuntimeError(f"{scenario.key}/{name} did not connect: {sample.output[:200]!r}")
    for _ in range(runs):
        for name in CONTENDERS:
            if not overlapped(scenario, name):
                results[name].append(once(name))
    for name in CONTENDERS:
        if overlapped(scenario, name):
            results[name] = run_overlapped(
                [(argvs[name], env)] * runs, world.message, OVERLAP_STAGGER
            )
    return results
