"""Running one process and measuring it: wall, CPU, peak RSS, and the handoff moment.

The parent notes ``time.monotonic()`` just before starting the process and reaps it with
``os.wait4``, which blocks in the kernel (no polling: ``subprocess``'s ``wait(timeout=)``
sleeps in steps of up to 50 ms) and returns the child's own resource usage.  The handoff
moment comes from the child: mxf-remote's trace ``handoff`` mark and the contenders'
printed ``handoff`` both carry CLOCK_MONOTONIC, which is one clock for the whole machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Sample:
    """One process run."""

    wall: float
    """Seconds from just before the start to the reaping of the process."""
    cpu: float
    """User + system seconds of the process (the protocol program it exec'd included)."""
    maxrss_kib: int
    handoff: float | None = None
    """Seconds from the start to the handoff (mxf-remote's exec; a contender's connect)."""
    race: float | None = None
    """Seconds from the race's first attempt to its connected socket (or to the report)."""
    cpu_to_exec: float | None = None
    """CPU seconds the process had used when the protocol program started."""
    returncode: int = 0
    output: bytes = b""


def run_process(
    argv: list[str],
    env: dict[str, str],
    stdin_path: Path,
    *,
    trace: Path | None = None,
    cpu_file: Path | None = None,
) -> Sample:
    """Run ``argv`` once with ``stdin_path`` on fd 0 and measure it."""
    for path in (trace, cpu_file):
        if path is not None:
            path.unlink(missing_ok=True)
    with open(stdin_path, "rb") as stdin:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    output = proc.stdout.read()
    proc.stdout.close()
    cpu = usage.ru_utime + usage.ru_stime
    sample = Sample(wall, cpu, usage.ru_maxrss, returncode=proc.returncode, output=output)
    if trace is not None:
        _from_trace(sample, trace, started)
    elif output.startswith(b"{"):
        _from_json(sample, output, started)
    if cpu_file is not None and cpu_file.exists():
        text = cpu_file.read_text().strip()
        sample.cpu_to_exec = int(text) / 1e9 if text else None
    return sample


def _from_trace(sample: Sample, trace: Path, started: float) -> None:
    if not trace.exists():
        return
    events: list[dict[str, Any]] = [json.loads(line) for line in trace.read_text().splitlines()]
    first_attempt = next((e["t"] for e in events if e["event"] == "attempt"), None)
    for event in events:
        if event["event"] == "handoff":
            sample.handoff = event["mono"] - started
        elif event["event"] in ("attempt_won", "report") and first_attempt is not None:
            sample.race = (event["t"] - first_attempt) / 1000


def _from_json(sample: Sample, output: bytes, started: float) -> None:
    result = json.loads(output.splitlines()[0])
    if "handoff" in result:
        sample.handoff = result["handoff"] - started
        if "start" in result:
            sample.race = result["handoff"] - result["start"]
    elif "failed" in result and "start" in result:
        sample.race = result["failed"] - result["start"]


def run_overlapped(
    jobs: list[tuple[list[str], dict[str, str]]], stdin_path: Path, stagger: float
) -> list[Sample]:
    """Run ``jobs`` started ``stagger`` seconds apart, each measured on its own thread.

    For processes that spend seconds waiting on a silent host: their busy moments
    (start-up, the next connect) do not overlap when the stagger exceeds them.
    """
    results: list[Sample | None] = [None] * len(jobs)
    origin = time.monotonic()

    def one(index: int) -> None:
        time.sleep(max(0.0, origin + index * stagger - time.monotonic()))
        argv, env = jobs[index]
        results[index] = run_process(argv, env, stdin_path)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def run_concurrently(
    argv: list[str], env: dict[str, str], stdin_path: Path, count: int, concurrency: int
) -> tuple[float, float, int]:
    """``count`` runs, at most ``concurrency`` at once: (wall s, total CPU s, failures)."""
    running: dict[int, subprocess.Popen[bytes]] = {}
    started = done = failures = 0
    cpu = 0.0
    origin = time.monotonic()
    while done < count:
        while len(running) < concurrency and started < count:
            with open(stdin_path, "rb") as stdin:
                proc = subprocess.Popen(
                    argv,
                    stdin=stdin,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            running[proc.pid] = proc
            started += 1
        pid, status, usage = os.wait4(-1, 0)
        proc = running.pop(pid, None)  # type: ignore[assignment]
        if proc is None:
            continue  # not ours (cannot happen while knotd lives)
        proc.returncode = os.waitstatus_to_exitcode(status)
        failures += proc.returncode != 0
        cpu += usage.ru_utime + usage.ru_stime
        done += 1
    return time.monotonic() - origin, cpu, failures
