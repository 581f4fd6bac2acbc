"""The machine's state around a measurement: CPUs, load averages, who else used the CPU.

A benchmark's figures mean little without the load they were taken under (the bench
machine is shared).  ``Watch`` samples around a measurement:

* the load averages (``os.getloadavg``) before and after;
* the CPU seconds every core spent not idle, from the first ``cpu`` line of
  ``/proc/stat`` (user, nice, system, irq, softirq, steal; not idle, not iowait);
* the CPU seconds of the benchmark's own process tree (this process, its threads, its
  reaped children and its live descendants, from ``/proc/PID/stat``);

and ``MachineState.line()`` puts it in one line, printed and written beside each table::

    machine: 2 CPUs, load 0.52/0.61/0.70 before and 1.80/1.02/0.85 after, other
    processes used 18% of the CPU during the run (the benchmark 71%, over 12.3 s)

"Other processes" is everything the machine did that the benchmark's tree did not, as a
share of all cores over the run's wall time.  Both counters are in clock ticks
(``SC_CLK_TCK``, usually 10 ms), so a run of well under a second gives a rough share.
Processes that leave the tree (a daemon that double-forks) count as other processes.

No side effects on import, standard library only: tests import it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from types import TracebackType

TICK = os.sysconf("SC_CLK_TCK")
Load = tuple[float, float, float]


def busy_ticks(stat: str) -> int:
    """Ticks every core spent not idle, from the text of ``/proc/stat``.

    The first line is ``cpu user nice system idle iowait irq softirq steal guest
    guest_nice``; guest time is already counted in user and nice, so the sum of the first
    eight fields less idle and iowait is the busy time.
    """
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(field) for field in fields[1:9]]
            return sum(ticks) - ticks[3] - ticks[4]
    raise ValueError("no aggregate cpu line in /proc/stat")


def busy_seconds() -> float:
    """CPU seconds all cores have spent not idle since boot."""
    with open("/proc/stat") as stat:
        return busy_ticks(stat.read()) / TICK


def process_ticks(stat: str) -> int:
    """utime + stime + cutime + cstime from the text of ``/proc/PID/stat``.

    The command name (field 2) may hold spaces and parentheses, so the fields are
    counted from its last ``)``: utime is the 14th field of the line.
    """
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(field) for field in fields[11:15])


def tree_cpu(pid: int) -> float:
    """CPU seconds of a live process tree: own + reaped children + live descendants."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            total = process_ticks(stat.read()) / TICK
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    children: list[int] = []
    for task in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as listing:
            children += [int(child) for child in listing.read().split()]
    return total + sum(tree_cpu(child) for child in children)


@dataclass(frozen=True)
class MachineState:
    """What the machine did during one measurement."""

    cpus: int
    load_before: Load
    load_after: Load
    elapsed: float
    """Wall seconds of the measurement."""
    busy: float
    """CPU seconds every core spent not idle during it."""
    ours: float
    """CPU seconds of the benchmark's process tree during it."""

    @property
    def capacity(self) -> float:
        """CPU seconds the machine had: every core for the whole run."""
        return self.elapsed * self.cpus

    @property
    def other_share(self) -> float:
        """The share of all cores used by processes outside the benchmark, 0..1."""
        if self.capacity <= 0:
            return 0.0
        return min(1.0, max(0.0, self.busy - self.ours) / self.capacity)

    @property
    def our_share(self) -> float:
        """The share of all cores used by the benchmark's own process tree, 0..1."""
        if self.capacity <= 0:
            return 0.0
        return min(1.0, max(0.0, self.ours) / self.capacity)

    def line(self, label: str = "") -> str:
        """The one-line summary (``label``, if any, in parentheses after ``machine``)."""
        return machine_line(self, label)


def _load(load: Load) -> str:
    return "/".join(f"{value:.2f}" for value in load)


def machine_line(state: MachineState, label: str = "") -> str:
    """``machine: N CPUs, load ... before and ... after, other processes used N% ...``."""
    head = f"machine ({label})" if label else "machine"
    cpus = f"{state.cpus} CPU" + ("" if state.cpus == 1 else "s")
    return (
        f"{head}: {cpus}, load {_load(state.load_before)} before and "
        f"{_load(state.load_after)} after, other processes used {state.other_share:.0%} of "
        f"the CPU during the run (the benchmark {state.our_share:.0%}, over "
        f"{state.elapsed:.1f} s)"
    )


class Watch:
    """A context manager sampling the machine around a measurement.

    ``pid`` is the root of the benchmark's process tree (this process by default); after
    the ``with`` block, ``state`` holds the ``MachineState`` and ``line()`` its summary.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._state: MachineState | None = None
        self._started = 0.0
        self._load: Load = (0.0, 0.0, 0.0)
        self._busy = 0.0
        self._ours = 0.0

    def __enter__(self) -> Watch:
        self._load = os.getloadavg()
        self._ours = tree_cpu(self.pid)
        self._busy = busy_seconds()
        self._started = time.monotonic()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed = time.monotonic() - self._started
        busy = busy_seconds() - self._busy
        ours = tree_cpu(self.pid) - self._ours
        self._state = MachineState(
            cpus=os.cpu_count() or 1,
            load_before=self._load,
            load_after=os.getloadavg(),
            elapsed=elapsed,
            busy=busy,
            ours=ours,
        )

    @property
    def state(self) -> MachineState:
        """The machine's state during the ``with`` block (only after it)."""
        if self._state is None:
            raise RuntimeError("Watch.state read before the watched block ended")
        return self._state

    def line(self, label: str = "") -> str:
        """``state.line(label)``."""
        return self.state.line(label)
