"""The benchmark suite: handoff latency, per-delivery cost, throughput, targets.

Run: ``python3 -m tox -e bench`` (or, as root, ``python bench/suite.py [--runs N]
[--deliveries N] [--out DIR]`` with matplotlib and aiohappyeyeballs installed).

Writes ``bench/results/handoff.md`` (every table, the targets met or not) and
``bench/results/handoff.png`` (the plot), and prints the markdown.  Figures are printed,
never asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
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
    """``median (p10..p90)`` in ms."""
    if not values:
        return "-"
    data = ms(values)
    deciles = statistics.quantiles(data, n=10) if len(data) > 1 else [data[0]] * 9
    return f"{statistics.median(data):.1f} ({deciles[0]:.1f}..{deciles[-1]:.1f})"


def latency_values(scenario_key: str, name: str, samples: list[Sample], all_silent: bool) -> list[
    float
]:
    """What the latency column shows: handoff, or (all silent) the time to the exit."""
    if name == "floor" or all_silent:
        return [s.wall for s in samples]
    return [s.handoff for s in samples if s.handoff is not None]


def main() -> int:
    """Run everything, write the results."""
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
    with tempfile.TemporaryDirectory(prefix="mxf-bench-") as tmp:
        world = make_world(Path(tmp))
        sink = start_sinks()
        try:
            with KnotServer({DOMAIN: ZONE}) as knot, DnsProxy(knot.address) as proxy:
                proxy.delay(f"mx.late.{DOMAIN}", "AAAA", LATE_AAAA_MS)
                latency: dict[str, dict[str, list[Sample]]] = {}
                for scenario in SCENARIOS:
                    dns_env = proxy.env if scenario.late_dns else knot.env
                    latency[scenario.key] = run_scenario(scenario, world, dns_env, options.runs)
                    print(f"bench: {scenario.key} done ({time.monotonic() - began:.0f} s)",
                          file=sys.stderr)
                in_process = {
                    s.key: race_in_process(list(s.race_list), options.runs * (5 if s.key ==
                                                                              "healthy" else 1))
                    for s in SCENARIOS if s.key in ("healthy", "silent6", "silentbest", "mxps")
                }
                deliveries = full_deliveries(world, knot.env, options.runs)
                floor_exec = floor_to_exec(world, options.runs)
                ours, floor = imports(world, knot.env)
                batches = throughput(
                    world, knot.env, options.deliveries, (1, 10, 50), lambda: sink.messages
                )
        finally:
            sink.close()
    elapsed = time.monotonic() - began
    text = report(
        latency, deliveries=deliveries, floor_exec=floor_exec, ours=ours, floor=floor,
        batches=batches, runs=options.runs, elapsed=elapsed, in_process=in_process,
    )
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "handoff.md").write_text(text)
    plot(latency, batches, options.out / "handoff.png")
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
) -> str:
    """The whole markdown page."""
    out = [
        f"# bench/suite.py, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"CPython {platform.python_version()}, {runs} runs per figure "
        f"(the suite took {elapsed:.0f} s)",
        "",
        "Generated by `tox -e bench`; bench/README.md says what each figure means. "
        "Times in ms, median (p10..p90).",
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
        ideal = medians[scenario.key]["floor"] + scenario.extra_ms
        medians[scenario.key]["ideal"] = ideal
        row.append(f"{ideal:.1f}")
        out.append("| " + " | ".join(row) + " |")
    out += [
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
        "### Race only (first attempt to connected socket; all silent: to the report/timeout)",
        "",
        "| scenario | mxf-remote | (b) asyncio HE | (c) aiohappyeyeballs |",
        "|---|---|---|---|",
    ]
    race: dict[str, dict[str, float]] = {}
    for scenario in SCENARIOS:
        samples = latency[scenario.key]
        cells = []
        race[scenario.key] = {}
        for name in ("mxf-remote", "asyncio", "aiohappyeyeballs"):
            values = [s.race for s in samples[name] if s.race is not None]
            race[scenario.key][name] = median(values)
            cells.append(spread(values))
        out.append(f"| {scenario.key} | " + " | ".join(cells) + " |")
    names = list(next(iter(in_process.values())))
    out += [
        "",
        "### Race only, in one process (call to connected socket, same address list; "
        "healthy: 5 x runs)",
        "",
        "| scenario | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key, results in in_process.items():
        out.append(f"| {key} | " + " | ".join(spread(results[n]) for n in names) + " |")
    out += cost_tables(
        latency, deliveries=deliveries, floor_exec=floor_exec, ours=ours, floor=floor,
        batches=batches,
    )
    out += targets(latency, medians, race, floor_exec, in_process)
    return "\n".join(out) + "\n"


def cost_tables(
    latency: dict[str, dict[str, list[Sample]]],
    *,
    deliveries: list[Sample],
    floor_exec: list[Sample],
    ours: ImportProfile,
    floor: ImportProfile,
    batches: list[Throughput],
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
        f"| {spread(to_exec)} | {statistics.median(s.maxrss_kib for s in mxf) / 1024:.1f} |",
        f"| full delivery: mxf-remote + mxf-remote-smtpc into the SMTP sink "
        f"| {spread([s.wall for s in deliveries])} | {spread([s.cpu for s in deliveries])} "
        f"| {statistics.median(s.maxrss_kib for s in deliveries) / 1024:.1f} |",
        f"| floor: `python -c \"import asyncio, aiodns, uvloop\"` "
        f"| {spread([s.wall for s in floors])} | {spread([s.cpu for s in floors])} "
        f"| {statistics.median(s.maxrss_kib for s in floors) / 1024:.1f} |",
        f"| floor up to an exec (the same imports, then `os.execv` of the same program) "
        f"| {spread([s.wall for s in floor_exec])} "
        f"| {spread([s.cpu_to_exec for s in floor_exec if s.cpu_to_exec is not None])} "
        f"| {statistics.median(s.maxrss_kib for s in floor_exec) / 1024:.1f} |",
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
        left = (
            f"{top[index]} | {ours.cumulative_us[top[index]]:.0f}" if index < len(top) else " | "
        )
        right = (
            f"{extra[index]} | {ours.self_us[extra[index]]:.0f}" if index < len(extra) else " | "
        )
        out.append(f"| {left} | | {right} |")
    out += [
        "",
        f"Modules beyond the floor: {len(extra)}, {extra_total:.1f} ms of own import time.",
        "",
        "## Throughput (full deliveries into the SMTP sink)",
        "",
        "| concurrency | deliveries | wall s | deliveries/s | CPU s per delivery | failed |",
        "|---|---|---|---|---|---|",
    ]
    for batch in batches:
        failed = batch.failures + (batch.count - batch.accepted)
        out.append(
            f"| {batch.concurrency} | {batch.count} | {batch.wall:.1f} | {batch.per_second:.1f} "
            f"| {batch.cpu_per_delivery:.4f} | {failed} |"
        )
    out += [
        "",
        "CPU per delivery is mxf-remote and mxf-remote-smtpc (one process); the SMTP sink "
        "(in the bench process) and knotd are not counted.",
    ]
    return out


def targets(
    latency: dict[str, dict[str, list[Sample]]],
    medians: dict[str, dict[str, float]],
    race: dict[str, dict[str, float]],
    floor_exec: list[Sample],
    in_process: dict[str, dict[str, list[float]]],
) -> list[str]:
    """Each target of issue #5, met or not, with its figures."""
    delay = CONNECT_DELAY * 1000
    healthy = medians["healthy"]["mxf-remote"]
    rows: list[tuple[str, bool, str]] = []
    for key in ("silentbest", "silent6", "mxps"):
        got = medians[key]["mxf-remote"]
        limit = healthy + delay + 50
        rows.append((f"{key}: handoff <= healthy + connectdelay + 50 ms", got <= limit,
                     f"{got:.1f} vs {limit:.1f}"))
    late = medians["late"]["mxf-remote"]
    rows.append(("late AAAA: handoff <= healthy + 60 ms", late <= healthy + 60,
                 f"{late:.1f} vs {healthy + 60:.1f}"))
    floor_wall = medians["healthy"]["floor"]
    rows.append(("healthy handoff <= 1.2 x import floor", healthy <= 1.2 * floor_wall,
                 f"{healthy:.1f} vs {1.2 * floor_wall:.1f} ({healthy / floor_wall:.2f}x)"))
    mxf = latency["healthy"]["mxf-remote"]
    cpu = median([s.cpu_to_exec for s in mxf if s.cpu_to_exec is not None])
    floor_cpu = median([s.cpu_to_exec for s in floor_exec if s.cpu_to_exec is not None])
    whole_floor_cpu = median([s.cpu for s in latency["healthy"]["floor"]])
    rows.append(("mxf-remote CPU to the exec beyond the floor's (to its exec) <= 15 ms",
                 cpu - floor_cpu <= 15,
                 f"{cpu:.1f} - {floor_cpu:.1f} = {cpu - floor_cpu:+.1f} ms (the whole floor "
                 f"process, exit included: {whole_floor_cpu:.1f})"))
    for key in ("healthy", "silent6", "late", "silentbest", "mxps"):
        r = race[key]
        best = min(r["asyncio"], r["aiohappyeyeballs"])
        rows.append((f"race only (processes), {key}: no slower than (b) and (c)",
                     r["mxf-remote"] <= best,
                     f"{r['mxf-remote']:.2f} vs {r['asyncio']:.2f} / "
                     f"{r['aiohappyeyeballs']:.2f}"))
    for key, results in in_process.items():
        m = {name: median(values) for name, values in results.items()}
        ours = min(m["mxf-remote (asyncio loop)"], m["mxf-remote (uvloop)"])
        best = min(m["(b) asyncio HE"], m["(c) aiohappyeyeballs"])
        rows.append((f"race only (in process), {key}: no slower than (b) and (c)", ours <= best,
                     f"{m['mxf-remote (asyncio loop)']:.2f} (uvloop {m['mxf-remote (uvloop)']:.2f})"
                     f" vs {m['(b) asyncio HE']:.2f} / {m['(c) aiohappyeyeballs']:.2f}"))
    first_to_report = race["allsilent"]["mxf-remote"]
    limit = ALL_SILENT_TIMEOUT * 1000 + 100
    whole = medians["allsilent"]["mxf-remote"]
    rows.append(("all silent: Z report within timeoutconnect + 100 ms of the first attempt",
                 first_to_report <= limit,
                 f"{first_to_report:.1f} vs {limit} (process start to exit: {whole:.1f})"))
    out = ["", "## Targets (issue #5)", "", "| target | met | figures (ms, medians) |",
           "|---|---|---|"]
    out += [f"| {name} | {'yes' if ok else '**no**'} | {figures} |" for name, ok, figures in rows]
    return out


# ---------------------------------------------------------------------------------------
# The plot


def plot(
    latency: dict[str, dict[str, list[Sample]]], batches: list[Throughput], path: Path
) -> None:
    """Handoff latency per scenario and contender (log scale), and throughput."""
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
            values = ms(latency_values(scenario.key, name, latency[scenario.key][name],
                                       scenario.all_silent))
            mid = statistics.median(values)
            deciles = statistics.quantiles(values, n=10) if len(values) > 1 else [mid] * 9
            centres.append(mid)
            lows.append(max(0.0, mid - deciles[0]))
            highs.append(max(0.0, deciles[-1] - mid))
        positions = [i + (index - 2) * width for i in range(len(SCENARIOS))]
        left.bar(positions, centres, width, yerr=[lows, highs], capsize=2,
                 label=LABELS[name])
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
    twin.plot(concurrencies, [b.cpu_per_delivery * 1000 for b in batches], "s--", color="C1",
              label="CPU ms per delivery")
    twin.set_ylabel("CPU ms per delivery")
    right.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
