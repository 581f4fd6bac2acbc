"""Tests for the benchmarks' helpers: bench/judge.py (targets judged on the spread) and
bench/machine.py (the machine's load beside each table).

The bench scripts import each other as top-level modules (``bench/`` is ``sys.path[0]``
when one runs), so this module puts ``bench/`` on ``sys.path`` the same way.  Both
helpers are standard library only and do nothing on import.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from judge import (
    MET,
    MISSED,
    WITHIN_NOISE,
    Spread,
    judge,
    spread_text,
    verdict,
)
from machine import (
    TICK,
    MachineState,
    Watch,
    busy_ticks,
    machine_line,
    process_ticks,
)

# Eleven samples 100..110: p10 100.2, median 105, p90 109.8 (exclusive quantiles).
ELEVEN = [float(v) for v in range(100, 111)]


class TestSpread:
    """p10, p50 and p90 of samples, as the tables print them."""

    def test_deciles_and_median_of_samples(self) -> None:
        """p10 and p90 are statistics.quantiles' first and last deciles; p50 the median."""
        spread = Spread.of(ELEVEN)
        deciles = statistics.quantiles(ELEVEN, n=10)
        assert spread == Spread(deciles[0], 105.0, deciles[-1])
        assert spread.p10 == pytest.approx(100.2)
        assert spread.p90 == pytest.approx(109.8)

    def test_order_does_not_matter(self) -> None:
        """Shuffled samples give the same spread as sorted ones."""
        assert Spread.of(list(reversed(ELEVEN))) == Spread.of(ELEVEN)

    def test_scale_converts_units(self) -> None:
        """scale=1000 turns seconds into milliseconds before the percentiles."""
        assert Spread.of([0.001, 0.002, 0.003], 1000).p50 == pytest.approx(2.0)

    def test_one_sample_is_its_own_spread(self) -> None:
        """A single sample is p10, p50 and p90 at once."""
        assert Spread.of([7.0]) == Spread(7.0, 7.0, 7.0)

    def test_no_samples_is_an_error(self) -> None:
        """An empty list has no spread (callers print ``no samples`` instead)."""
        with pytest.raises(ValueError, match="no samples"):
            Spread.of([])

    def test_around_is_a_stated_tolerance(self) -> None:
        """A figure without samples spreads by its tolerance on both sides."""
        assert Spread.around(50.0, 5.0) == Spread(45.0, 50.0, 55.0)

    def test_format_is_median_then_p10_to_p90(self) -> None:
        """``format`` prints ``p50 (p10..p90)`` with the digits asked for."""
        assert Spread(1.234, 2.345, 3.456).format(2) == "2.35 (1.23..3.46)"
        assert str(Spread(1.0, 2.0, 3.0)) == "2.0 (1.0..3.0)"

    def test_format_width_right_aligns_the_median(self) -> None:
        """``width`` pads the median only, as the tables' aligned columns expect."""
        assert Spread(1.0, 2.0, 3.0).format(1, 6) == "   2.0 (1.0..3.0)"

    def test_spread_text_shows_seconds_in_ms(self) -> None:
        """spread_text takes seconds and prints milliseconds; no samples print ``-``."""
        assert spread_text([0.010, 0.020, 0.030]) == Spread.of([10.0, 20.0, 30.0]).format()
        assert spread_text([]) == "-"


class TestVerdict:
    """met when p90 <= limit, missed when p10 > limit, within noise otherwise."""

    def test_met_when_p90_within_limit(self) -> None:
        """Every sample below the limit: met."""
        assert verdict(Spread.of(ELEVEN), 111.0) == MET

    def test_met_when_p90_equals_limit(self) -> None:
        """The limit is inclusive: a p90 exactly on it is met."""
        assert verdict(Spread(1.0, 2.0, 3.0), 3.0) == MET

    def test_missed_when_p10_beyond_limit(self) -> None:
        """Even the fast runs are over the limit: missed."""
        assert verdict(Spread.of(ELEVEN), 100.0) == MISSED

    def test_p10_on_the_limit_is_not_missed(self) -> None:
        """A p10 exactly on the limit is within noise, not missed."""
        assert verdict(Spread(3.0, 4.0, 5.0), 3.0) == WITHIN_NOISE

    def test_median_under_limit_but_p90_over_is_within_noise(self) -> None:
        """A strict median comparison would say met; the spread says within noise."""
        spread = Spread.of(ELEVEN)
        assert spread.p50 <= 107.0
        assert verdict(spread, 107.0) == WITHIN_NOISE

    def test_median_over_limit_but_p10_under_is_within_noise(self) -> None:
        """A strict median comparison would say missed; the spread says within noise."""
        spread = Spread.of(ELEVEN)
        assert spread.p50 > 103.0
        assert verdict(spread, 103.0) == WITHIN_NOISE

    def test_tolerance_judges_a_single_figure(self) -> None:
        """With a stated tolerance: inside it within noise, beyond it met or missed."""
        assert verdict(Spread.around(100.0, 5.0), 106.0) == MET
        assert verdict(Spread.around(100.0, 5.0), 102.0) == WITHIN_NOISE
        assert verdict(Spread.around(100.0, 5.0), 94.0) == MISSED


class TestJudge:
    """judge(): our samples against a fixed limit or a reference's median."""

    def test_fixed_limit(self) -> None:
        """A number is the limit itself."""
        judgement = judge(ELEVEN, 120.0)
        assert judgement.limit == 120.0
        assert judgement.verdict == MET

    def test_reference_samples_set_the_limit_by_their_median(self) -> None:
        """A reference's samples give factor x their median + plus, not their p10 or p90."""
        reference = [10.0, 20.0, 30.0, 40.0, 1000.0]
        assert judge(ELEVEN, reference).limit == 30.0
        assert judge(ELEVEN, reference, factor=1.2, plus=5.0).limit == pytest.approx(41.0)

    def test_reference_spread_is_the_same_as_its_samples(self) -> None:
        """A reference given as a Spread sets the same limit as its samples."""
        reference = [70.0, 75.0, 80.0, 85.0, 90.0]
        assert (
            judge(ELEVEN, Spread.of(reference), plus=30).limit
            == judge(ELEVEN, reference, plus=30).limit
        )

    def test_healthy_plus_margin_shape(self) -> None:
        """silentbest 328 (322..338) against healthy 76.5 + 300 is met."""
        ours = Spread(322.5, 328.2, 338.3)
        healthy = Spread(73.9, 76.5, 79.8)
        assert judge(ours, healthy, plus=300).verdict == MET

    def test_race_tie_is_within_noise(self) -> None:
        """Race 251.4 (250.3..251.6) against a 251.5 median: within noise, not missed."""
        ours = Spread(250.3, 251.4, 251.6)
        reference = Spread(251.4, 251.5, 251.7)
        assert judge(ours, reference).verdict == WITHIN_NOISE

    def test_clear_loss_is_missed(self) -> None:
        """Race 1.5 (1.4..2.0) against a 0.5 median: missed."""
        assert judge(Spread(1.4, 1.5, 2.0), Spread(0.5, 0.5, 0.8)).verdict == MISSED

    def test_cell_bolds_a_miss_only(self) -> None:
        """The table cell is the verdict, in bold when missed."""
        assert judge([5.0], 1.0).cell == "**missed**"
        assert judge([5.0], 9.0).cell == "met"
        assert judge([1.0, 5.0, 9.0], 5.0).cell == "within noise"

    def test_figures_print_ours_and_the_limit(self) -> None:
        """figures() is ``ours p50 (p10..p90) vs limit L``."""
        assert judge(Spread(1.0, 2.0, 3.0), 2.5).figures() == "2.0 (1.0..3.0) vs limit 2.5"


STAT_BEFORE = """\
cpu  1000 50 300 9000 200 10 20 5 70 0
cpu0 500 25 150 4500 100 5 10 3 35 0
cpu1 500 25 150 4500 100 5 10 2 35 0
intr 1 2 3
ctxt 4
"""
STAT_AFTER = """\
cpu  1300 50 400 9500 260 10 30 5 90 0
cpu0 650 25 200 4750 130 5 15 3 45 0
cpu1 650 25 200 4750 130 5 15 2 45 0
intr 5 6 7
ctxt 8
"""


class TestProcStat:
    """Busy time from /proc/stat, and a process's time from /proc/PID/stat."""

    def test_busy_is_all_but_idle_and_iowait(self) -> None:
        """user + nice + system + irq + softirq + steal; guest is inside user already."""
        assert busy_ticks(STAT_BEFORE) == 1000 + 50 + 300 + 10 + 20 + 5

    def test_delta_between_two_texts(self) -> None:
        """Busy ticks during a run are the difference of two readings."""
        assert busy_ticks(STAT_AFTER) - busy_ticks(STAT_BEFORE) == 300 + 100 + 10

    def test_per_cpu_lines_are_not_the_aggregate(self) -> None:
        """Only the ``cpu`` line counts, wherever it is; ``cpu0`` is not it."""
        text = "cpu0 1 1 1 1 1 1 1 1 0 0\ncpu  2 0 0 9 9 0 0 0 0 0\n"
        assert busy_ticks(text) == 2

    def test_no_aggregate_line_is_an_error(self) -> None:
        """A text without a ``cpu`` line is refused."""
        with pytest.raises(ValueError, match="no aggregate cpu line"):
            busy_ticks("cpu0 1 2 3 4 5 6 7 8\n")

    def test_process_ticks_count_after_the_command_name(self) -> None:
        """utime stime cutime cstime are found even when the name holds ``) (`` and spaces."""
        fields = ["S", "1", "1", "1", "0", "-1", "4194560", "0", "0", "0", "0"]
        times = ["11", "22", "33", "44"]
        line = "4242 (odd) (name x) " + " ".join([*fields, *times, "20", "0", "1"])
        assert process_ticks(line) == 11 + 22 + 33 + 44

    def test_other_share_from_a_constructed_run(self) -> None:
        """Busy 410 ticks over 2 CPUs x 5 s, 200 of them ours: others used the rest."""
        busy = (busy_ticks(STAT_AFTER) - busy_ticks(STAT_BEFORE)) / TICK
        ours = 200 / TICK
        state = MachineState(2, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 5.0, busy, ours)
        assert state.other_share == pytest.approx((busy - ours) / 10.0)
        assert state.our_share == pytest.approx(ours / 10.0)


def state(**changes: float | int | tuple[float, float, float]) -> MachineState:
    """A MachineState of 2 CPUs over 10 s, 18 % other and 71 % ours, with ``changes``."""
    values: dict[str, object] = {
        "cpus": 2,
        "load_before": (0.52, 0.61, 0.70),
        "load_after": (1.8, 1.02, 0.85),
        "elapsed": 10.0,
        "busy": 17.8,
        "ours": 14.2,
    }
    values.update(changes)
    return MachineState(**values)  # type: ignore[arg-type]


class TestMachineLine:
    """The one-line summary printed and written beside each table."""

    def test_line(self) -> None:
        """CPUs, load before and after, the other processes' share, the benchmark's."""
        assert machine_line(state()) == (
            "machine: 2 CPUs, load 0.52/0.61/0.70 before and 1.80/1.02/0.85 after, other "
            "processes used 18% of the CPU during the run (the benchmark 71%, over 10.0 s)"
        )

    def test_label_goes_in_parentheses(self) -> None:
        """A label names the measurement the line belongs to."""
        assert state().line("the handoff runs").startswith("machine (the handoff runs): 2 CPUs,")

    def test_one_cpu_is_singular(self) -> None:
        """``1 CPU``, not ``1 CPUs``."""
        assert machine_line(state(cpus=1, busy=8.0, ours=7.0)).startswith("machine: 1 CPU, ")

    def test_share_never_negative(self) -> None:
        """Tick rounding can make ours exceed busy: the others' share is 0 %, not less."""
        assert state(busy=1.0, ours=1.05).other_share == 0.0
        assert "other processes used 0% of the CPU" in state(busy=1.0, ours=1.05).line()

    def test_share_never_above_all(self) -> None:
        """Shares are capped at 100 % of the machine."""
        assert state(busy=25.0, ours=0.0).other_share == 1.0

    def test_empty_run_is_zero(self) -> None:
        """A run of no wall time used none of the CPU."""
        assert state(elapsed=0.0).other_share == 0.0
        assert state(elapsed=0.0).our_share == 0.0


class TestWatch:
    """Watch samples this machine around a block."""

    def test_state_only_after_the_block(self) -> None:
        """Inside the block there is no state yet; after it, this machine's CPUs and load."""
        with Watch() as watch:
            with pytest.raises(RuntimeError):
                _ = watch.state
            sum(range(100_000))
        assert watch.state.cpus == (os.cpu_count() or 1)
        assert watch.state.elapsed >= 0
        assert watch.line().startswith("machine: ")
