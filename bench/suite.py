"""The benchmark suite: handoff latency, per-delivery cost, throughput, targets.

Run: ``python3 -m tox -e bench`` (or, as root, ``python bench/suite.py [--runs N]
[--deliveries N] [--out DIR]`` with matplotlib and aiohappyeyeballs installed).

Writes ``bench/results/handoff.md`` (every table, each with the machine's state while it
was measured beside it, and the targets judged on the spread: met, missed or within
noise) and ``bench/results/handoff.png`` (the plot), and prints the markdown.  Figures
are printed, never asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cost import (
    ImportProfile,
    Throughput,
    floor_to_exec,
    full_deliveries,
    imports,
    throughput,
)
from fixture import (
    ALL_SILENT_TIMEOUT,
    CONNECT_DELAY,
    DOMAIN,
    LATE_AAAA_MS,
    SCENARIOS,
    ZONE,
    make_world,
    network_problem,
    start_sinks,
)
from handoff import CONTENDERS, run_scenario
from judge import Spread, judge, spread_text
from machine import MachineState, Watch
from measure import Sample
from race_inprocess import measure as race_in_process

RESULTS = Path(__file__).resolve().parent / "results"
LABELS = {
    "mxf-remote": "mxf-remote",
    "sequential": "(a) sequential",
    "asyncio": "(b) asyncio HE",
    "aiohappyeyeballs": "(c) aiohappyeyeballs",
    "floor": "(d) floor",
}


def ms(values: list[float]) -> list[float]:
    """Seconds to milliseconds, sorted."""
    return sorted(v * 1000 for v in values)


def median(values: list[float]) -> float:
    """The median in ms of values in seconds (nan when empty)."""
    return statistics.median(ms(values)) if values else float("nan")


def spread(values: list[float]) -> str:
    """``median (p10..p90)`` in ms of values in seconds."""
    return spread_text(values)


def latency_values(
    scenario_key: str, name: str, samples: list[Sample], all_silent: bool
) -> list[float]:
    """What the latency column shows: handoff, or (all silent) the time to the exit."""
    if name == "floor" or all_silent:
        return [s.wall for s in samples]
    return [s.handoff for s in samples if s.handoff is not None]


def main() -> int:
    """Run everything, write the results (``--warm ...``: run ``warm.py ...`` instead)."""
    if sys.argv[1:2] == ["--warm"]:  # python3 -m tox -e bench -- --warm [warm.py's options]
        warm = str(Path(__file__).with_name("warm.py"))
        os.execv(sys.executable, [sys.executable, warm, *sys.argv[2:]])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per scenario and contender")
    parser.add_argument("--deliveries", type=int, default=500, help="deliveries per batch")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    options = parser.parse_args()
    problem = network_problem()
    if problem is not None:
        print(f"bench: {problem}", file=sys.stderr)
        return 1
    from tests.infra.dnsproxy import DnsProxy
    from tests.infra.knot import KnotServer

    began = time.monotonic()
    machine: dict[str, MachineState] = {}
    with Watch() as whole, tempfile.TemporaryDirectory(prefix="mxf-bench-") as tmp:
        world = make_world(Path(tmp))
        sink = start_sinks()
        try:
            with KnotServer({DOMAIN: ZONE}) as knot, DnsProxy(knot.address) as proxy:
                proxy.delay(f"mx.late.{DOMAIN}", "AAAA", LATE_AAAA_MS)
                latency: dict[str, dict[str, list[Sample]]] = {}
                with Watch() as watch:
                    for scenario in SCENARIOS:
                        dns_env = proxy.env if scenario.late_dns else knot.env
                        latency[scenario.key] = run_scenario(scenario, world, dns_env, options.runs)
                        print(
                            f"bench: {scenario.key} done ({time.monotonic() - began:.0f} s)",
                            file=sys.stderr,
                        )
                machine["handoff"] = watch.state
                with Watch() as watch:
                    in_process = {
                        s.key: race_in_process(
                            list(s.race_list), options.runs * (5 if s.key == "healthy" else 1)
                        )
                        for s in SCENARIOS
                        if s.key in ("healthy", "silent6", "silentbest", "mxps")
                    }
                machine["in_process"] = watch.state
                with Watch() as watch:
                    deliveries = full_deliveries(world, knot.env, options.runs)
                    floor_exec = floor_to_exec(world, options.runs)
                machine["cost"] = watch.state
                with Watch() as watch:
                    ours, floor = imports(world, knot.env)
                machine["imports"] = watch.state
                with Watch() as watch:
                    batches = throughput(
                        world, knot.env, options.deliveries, (1, 10, 50), lambda: sink.messages
                    )
                machine["throughput"] = watch.state
        finally:
            sink.close()
    machine["suite"] = whole.state
    elapsed = time.monotonic() - began
    text = report(
        latency,
        deliveries=deliveries,
        floor_exec=floor_exec,
        ours=ours,
        floor=floor,
        batches=batches,
        runs=options.runs,
        elapsed=elapsed,
        in_process=in_process,
        machine=machine,
    )
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "handoff.md").write_text(text)
    plot(latency, batches, options.out / "handoff.png", machine["suite"].line("the whole suite"))
    print(text)
    return 0


# ---------------------------------------------------------------------------------------
# The report


def report(
    latency: dict[str, dict[str, list[Sample]]],
    *,
    deliveries: list[Sample],
    floor_exec: list[Sample],
    ours: ImportProfile,
    floor: ImportProfile,
    batches: list[Throughput],
    runs: int,
    elapsed: float,
    in_process: dict[str, dict[str, list[float]]],
    machine: dict[str, MachineState],
) -> str:
    """The whole markdown page; under each table, the machine's state while it was measured."""
    handoff_line = machine["handoff"].line("the handoff runs")
    out = [
        f"# bench/suite.py, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"CPython {platform.python_version()}, {runs} runs per figure "
        f"(the suite took {elapsed:.0f} s)",
        "",
        "Generated by `tox -e bench`; bench/README.md says what each figure means. "
        "Times in ms, median (p10..p90).",
        "",
        machine["suite"].line("the whole suite"),
        "",
        "## Handoff latency (process start to the exec of the protocol program)",
        "",
        "| scenario | " + " | ".join(LABELS[c] for c in CONTENDERS) + " | ideal: floor + wait |",
        "|---|" + "---|" * (len(CONTENDERS) + 1),
    ]
    medians: dict[str, dict[str, float]] = {}
    for scenario in SCENARIOS:
        samples = latency[scenario.key]
        row = [scenario.title]
        medians[scenario.key] = {}
        for name in CONTENDERS:
            values = latency_values(scenario.key, name, samples[name], scenario.all_silent)
            medians[scenario.key][name] = median(values)
            row.append(spread(values))
        floor_walls = [s.wall for s in samples["floor"]]
        medians[scenario.key]["ideal"] = medians[scenario.key]["floor"] + scenario.extra_ms
        row.append(spread_text([v + scenario.extra_ms / 1000 for v in floor_walls]))
        out.append("| " + " | ".join(row) + " |")
    out += [
        "",
        handoff_line,
        "",
        "All-silent row: time to the process's exit (mxf-remote: after its Z report; the "
        "others: after their own timeout). The floor column is the import floor's whole "
        "process.",
        "",
        "### Ratios: mxf-remote's median divided by each contender's",
        "",
        "| scenario | / (a) sequential | / (b) asyncio HE | / (c) aiohappyeyeballs | / (d) floor |"
        " / ideal |",
        "|---|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        m = medians[scenario.key]
        ratios = [m["mxf-remote"] / m[c] for c in ("sequential", "asyncio", "aiohappyeyeballs")]
        ratios += [m["mxf-remote"] / m["floor"], m["mxf-remote"] / m["ideal"]]
        out.append(f"| {scenario.key} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    out += [
        "",
        handoff_line,
        "",
        "### Race only (first attempt to connected socket; all silent: to the report/timeout)",
        "",
        "| scenario | mxf-remote | (b) asyncio HE | (c) aiohappyeyeballs |",
        "|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        samples = latency[scenario.key]
        cells = [
            spread(race_values(samples[name]))
            for name in ("mxf-remote", "asyncio", "aiohappyeyeballs")
        ]
        out.append(f"| {scenario.key} | " + " | ".join(cells) + " |")
    names = list(next(iter(in_process.values())))
    out += [
        "",
        handoff_line,
        "",
        "### Race only, in one process (call to connected socket, same address list; "
        "healthy: 5 x runs)",
        "",
        "| scenario | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, results in in_process.items():
        out.append(f"| {key} | " + " | ".join(spread(results[n]) for n in names) + " |")
    out += ["", machine["in_process"].line("the in-process races")]
    out += cost_tables(
        latency,
        deliveries=deliveries,
        floor_exec=floor_exec,
        ours=ours,
        floor=floor,
        batches=batches,
        machine=machine,
    )
    out += targets(latency, floor_exec, in_process, machine["suite"])
    return "\n".join(out) + "\n"


def rss(samples: list[Sample]) -> str:
    """Peak RSS in MiB, median (p10..p90)."""
    return spread_text([s.maxrss_kib for s in samples], scale=1 / 1024)


def race_values(samples: list[Sample]) -> list[float]:
    """The race-only seconds of the samples that have one."""
    return [s.race for s in samples if s.race is not None]


def cost_tables(
    latency: dict[str, dict[str, list[Sample]]],
    *,
    deliveries: list[Sample],
    floor_exec: list[Sample],
    ours: ImportProfile,
    floor: ImportProfile,
    batches: list[Throughput],
    machine: dict[str, MachineState],
) -> list[str]:
    """Per-delivery cost, imports, throughput."""
    healthy = latency["healthy"]
    mxf = healthy["mxf-remote"]
    floors = [s for samples in latency.values() for s in samples["floor"]]
    to_exec = [s.cpu_to_exec for s in mxf if s.cpu_to_exec is not None]
    out = [
        "",
        "## Per-delivery cost (healthy exchanger)",
        "",
        "| what | wall ms | CPU ms | peak RSS MiB |",
        "|---|---|---|---|",
        f"| mxf-remote up to the exec | {spread([s.handoff for s in mxf if s.handoff])} "
        f"| {spread(to_exec)} | {rss(mxf)} |",
        f"| full delivery: mxf-remote + mxf-remote-smtpc into the SMTP sink "
        f"| {spread([s.wall for s in deliveries])} | {spread([s.cpu for s in deliveries])} "
        f"| {rss(deliveries)} |",
        f'| floor: `python -c "import asyncio, aiodns, uvloop"` '
        f"| {spread([s.wall for s in floors])} | {spread([s.cpu for s in floors])} "
        f"| {rss(floors)} |",
        f"| floor up to an exec (the same imports, then `os.execv` of the same program) "
        f"| {spread([s.wall for s in floor_exec])} "
        f"| {spread([s.cpu_to_exec for s in floor_exec if s.cpu_to_exec is not None])} "
        f"| {rss(floor_exec)} |",
        "",
        machine["handoff"].line("rows 1 and 3: the handoff runs"),
        "",
        machine["cost"].line("rows 2 and 4"),
        "",
        "CPU up to the exec is the process's own clock (`/proc/self/schedstat`) read by the "
        "protocol program as its first act (a `/bin/sh` builtin, about 0.5 ms of it is sh).",
        "",
        "### Imports (`-X importtime`, median of 9 deliveries; µs)",
        "",
        f"mxf-remote's imports: {ours.total_ms:.1f} ms of own time in "
        f"{len(ours.self_us)} modules; the floor's: {floor.total_ms:.1f} ms in "
        f"{len(floor.self_us)}.",
        "",
        "| top-level import | cumulative µs | | beyond the floor (own time) | µs |",
        "|---|---|---|---|---|",
    ]
    top = sorted(
        (m for m in ours.cumulative_us if ours.depth.get(m, 0) == 0),
        key=lambda m: -ours.cumulative_us[m],
    )[:14]
    extra = sorted(
        (m for m in ours.self_us if m not in floor.self_us), key=lambda m: -ours.self_us[m]
    )
    extra_total = sum(ours.self_us[m] for m in extra) / 1000
    for index in range(max(len(top), 14)):
        left = f"{top[index]} | {ours.cumulative_us[top[index]]:.0f}" if index < len(top) else " | "
        right = (
            f"{extra[index]} | {ours.self_us[extra[index]]:.0f}" if index < len(extra) else " | "
        )
        out.append(f"| {left} | | {right} |")
    out += [
        "",
        machine["imports"].line(),
        "",
        f"Modules beyond the floor: {len(extra)}, {extra_total:.1f} ms of own import time.",
        "",
        "## Throughput (full deliveries into the SMTP sink)",
        "",
        "| concurrency | deliveries | wall s | deliveries/s | CPU s per delivery | failed "
        "| other processes, % of the CPU | load before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batch in batches:
        failed = batch.failures + (batch.count - batch.accepted)
        out.append(
            f"| {batch.concurrency} | {batch.count} | {batch.wall:.1f} | {batch.per_second:.1f} "
            f"| {batch.cpu_per_delivery:.4f} | {failed} | {batch.machine.other_share:.0%} "
            f"| {batch.machine.load_before[0]:.2f} |"
        )
    out += [
        "",
        machine["throughput"].line(),
        "",
        "CPU per delivery is mxf-remote and mxf-remote-smtpc (one process); the SMTP sink "
        "(in the bench process) and knotd are not counted.",
    ]
    return out


def targets(
    latency: dict[str, dict[str, list[Sample]]],
    floor_exec: list[Sample],
    in_process: dict[str, dict[str, list[float]]],
    machine: MachineState,
) -> list[str]:
    """Each target of issue #5, judged on the spread (``judge.py``), with its figures."""
    rows: list[str] = []

    def add(
        name: str,
        ours: Spread | None,
        limit: Spread | float | None,
        note: str,
        *,
        factor: float = 1.0,
        plus: float = 0.0,
        digits: int = 1,
    ) -> None:
        """One row: the verdict, our spread against the limit, ``note`` (the reference)."""
        if ours is None or limit is None:
            rows.append(f"| {name} | no samples | {note} |")
            return
        verdict = judge(ours, limit, factor=factor, plus=plus)
        rows.append(f"| {name} | {verdict.cell} | {verdict.figures(digits)} ({note}) |")

    def spread_ms(values: Sequence[float | None]) -> Spread | None:
        present = [v for v in values if v is not None]
        return Spread.of(present, 1000) if present else None

    def text(spread: Spread | None, digits: int = 1) -> str:
        return "-" if spread is None else spread.format(digits)

    def handoff(key: str) -> Spread | None:
        scenario = next(s for s in SCENARIOS if s.key == key)
        return spread_ms(
            latency_values(key, "mxf-remote", latency[key]["mxf-remote"], scenario.all_silent)
        )

    def faster(*spreads: Spread | None) -> Spread | None:
        """The spread with the lower median (None if any is missing)."""
        present = [s for s in spreads if s is not None]
        return min(present, key=lambda s: s.p50) if len(present) == len(spreads) else None

    def difference(left: Spread | None, right: Spread | None, unit: str, sign: str) -> str:
        """``left.p50 - right.p50`` (or ``/``), for the figures column."""
        if left is None or right is None:
            return "-"
        if sign == "/":
            return f"{left.p50 / right.p50:.2f}{unit}"
        return f"{left.p50 - right.p50:+.1f}{unit}"

    healthy = handoff("healthy")
    margin = CONNECT_DELAY * 1000 + 50
    for key in ("silentbest", "silent6", "mxps"):
        add(
            f"{key}: handoff <= healthy + connectdelay + 50 ms",
            handoff(key),
            healthy,
            f"healthy {text(healthy)} + {margin:.0f}",
            plus=margin,
        )
    add(
        "late AAAA: handoff <= healthy + 60 ms",
        handoff("late"),
        healthy,
        f"healthy {text(healthy)} + 60",
        plus=60,
    )
    floor = spread_ms([s.wall for s in latency["healthy"]["floor"]])
    add(
        "healthy handoff <= 1.2 x import floor",
        healthy,
        floor,
        f"1.2 x floor {text(floor)}; medians {difference(healthy, floor, 'x', '/')}",
        factor=1.2,
    )
    cpu = spread_ms([s.cpu_to_exec for s in latency["healthy"]["mxf-remote"]])
    floor_cpu = spread_ms([s.cpu_to_exec for s in floor_exec])
    whole_floor_cpu = spread_ms([s.cpu for s in latency["healthy"]["floor"]])
    add(
        "mxf-remote CPU to the exec <= the floor's CPU to its exec + 15 ms",
        cpu,
        floor_cpu,
        f"floor to its exec {text(floor_cpu)} + 15; medians "
        f"{difference(cpu, floor_cpu, ' ms', '-')}; the whole floor process, exit included: "
        f"{text(whole_floor_cpu)}",
        plus=15,
    )
    for key in ("healthy", "silent6", "late", "silentbest", "mxps"):
        ours, b, c = (
            spread_ms(race_values(latency[key][name]))
            for name in ("mxf-remote", "asyncio", "aiohappyeyeballs")
        )
        add(
            f"race only (processes), {key}: no slower than (b) and (c)",
            ours,
            faster(b, c),
            f"(b) {text(b, 2)} / (c) {text(c, 2)}",
            digits=2,
        )
    for key, results in in_process.items():
        m = {label: spread_ms(values) for label, values in results.items()}
        add(
            f"race only (in process), {key}: no slower than (b) and (c)",
            faster(m["mxf-remote (asyncio loop)"], m["mxf-remote (uvloop)"]),
            faster(m["(b) asyncio HE"], m["(c) aiohappyeyeballs"]),
            "; ".join(f"{label} {text(spread, 2)}" for label, spread in m.items()),
            digits=2,
        )
    add(
        "all silent: Z report within timeoutconnect + 100 ms of the first attempt",
        spread_ms(race_values(latency["allsilent"]["mxf-remote"])),
        ALL_SILENT_TIMEOUT * 1000 + 100,
        f"process start to exit: {text(handoff('allsilent'))}",
    )
    return [
        "",
        "## Targets (issue #5)",
        "",
        "Judged on the spread (bench/README.md): **met** when our p90 <= the limit, "
        "**missed** when our p10 > the limit, **within noise** otherwise; a limit set by "
        "a reference is computed from the reference's median. Ours: median (p10..p90); "
        "where mxf-remote is measured twice (asyncio loop, uvloop) ours is the one with the "
        'lower median, and the reference of "(b) and (c)" is the one with the lower median.',
        "",
        "| target | verdict | figures (ms): ours vs limit (reference) |",
        "|---|---|---|",
        *rows,
        "",
        machine.line("the whole suite"),
    ]


# ---------------------------------------------------------------------------------------
# The plot


def plot(
    latency: dict[str, dict[str, list[Sample]]],
    batches: list[Throughput],
    path: Path,
    note: str,
) -> None:
    """Handoff latency per scenario and contender (log scale), and throughput; ``note``
    (the machine's state) along the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(
        1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [3, 1]}
    )
    width = 0.16
    for index, name in enumerate(CONTENDERS):
        centres, lows, highs = [], [], []
        for scenario in SCENARIOS:
            values = ms(
                latency_values(scenario.key, name, latency[scenario.key][name], scenario.all_silent)
            )
            mid = statistics.median(values)
            deciles = statistics.quantiles(values, n=10) if len(values) > 1 else [mid] * 9
            centres.append(mid)
            lows.append(max(0.0, mid - deciles[0]))
            highs.append(max(0.0, deciles[-1] - mid))
        positions = [i + (index - 2) * width for i in range(len(SCENARIOS))]
        left.bar(positions, centres, width, yerr=[lows, highs], capsize=2, label=LABELS[name])
    left.set_yscale("log")
    left.set_xticks(range(len(SCENARIOS)))
    left.set_xticklabels([s.key for s in SCENARIOS])
    left.set_ylabel("ms, process start to handoff (all silent: to exit); median, p10..p90")
    left.set_title("Handoff latency")
    left.legend(fontsize=8)
    left.grid(axis="y", which="both", alpha=0.3)
    concurrencies = [b.concurrency for b in batches]
    right.plot(concurrencies, [b.per_second for b in batches], "o-", label="deliveries/s")
    right.set_xscale("log")
    right.set_xticks(concurrencies)
    right.set_xticklabels([str(c) for c in concurrencies])
    right.set_xlabel("concurrency")
    right.set_ylabel("deliveries/s")
    right.set_title("Throughput (full SMTP deliveries)")
    twin = right.twinx()
    twin.plot(
        concurrencies,
        [b.cpu_per_delivery * 1000 for b in batches],
        "s--",
        color="C1",
        label="CPU ms per delivery",
    )
    twin.set_ylabel("CPU ms per delivery")
    right.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    figure.text(0.01, 0.01, note, fontsize=8, color="0.3")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
