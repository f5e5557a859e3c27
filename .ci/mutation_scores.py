"""Counting a `make mutate` session: each mutant's name, and a module's score from the
results cosmic-ray recorded (.ci/mutate.py runs the sessions; this reads them)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

import cosmic_ray.work_db as work_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkItem


@dataclass
class Cost:
    """Where a module's session spent its time, from the fork server's record of each run
    (seconds and pytest's exit status; the first run is cosmic-ray's unmutated baseline)."""

    module: str
    to_run: int = 0  # mutants left to run once annotations and listed equivalents are set aside
    baseline: float = 0.0
    killed: list[float] = field(default_factory=list)
    survived: list[float] = field(default_factory=list)
    cpu: float = 0.0  # of the mutants' runs

    @classmethod
    def read(cls, module: str, to_run: int, times: Path) -> Cost:
        cost = cls(module, to_run)
        runs = [line.split() for line in times.read_text().splitlines()] if times.exists() else []
        for n, (seconds, status, cpu) in enumerate(runs):
            if n == 0:
                cost.baseline = float(seconds)
            else:  # pytest's 0 is a survivor; any failure, or a run killed on timeout, a kill
                (cost.survived if status == "0" else cost.killed).append(float(seconds))
                cost.cpu += float(cpu)
        return cost

    def line(self) -> str:
        ran = len(self.killed) + len(self.survived)
        if not ran:
            return (
                f"cost: {self.module}: {self.to_run} mutants to run, baseline {self.baseline:.1f}s, "
                f"at most {self.to_run * self.baseline:.0f}s"
            )
        return (
            f"cost: {self.module}: {ran} mutants in {sum(self.killed) + sum(self.survived):.0f}s "
            f"({self.cpu:.0f}s CPU), "
            f"baseline {self.baseline:.1f}s; killed {len(self.killed)} at {_mean(self.killed)} each, "
            f"survived {len(self.survived)} at {_mean(self.survived)}"
        )


def _mean(runs: list[float]) -> str:
    return f"{fmean(runs):.1f}s" if runs else "-"


@dataclass
class Score:
    module: str
    target: float
    total: int = 0
    annotations: int = 0
    equivalent: int = 0
    killed: int = 0
    incompetent: int = 0
    survivors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cost: Cost | None = None

    @property
    def counted(self) -> int:
        return self.killed + len(self.survivors)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.counted if self.counted else 100.0

    def line(self) -> str:
        verdict = "ok" if self.percent >= self.target else f"UNDER {self.target:g}%"
        return (
            f"mutate: {self.module}: {self.percent:.1f}% killed ({self.killed}/{self.counted}); "
            f"survived {len(self.survivors)}, equivalent {self.equivalent}, "
            f"in annotations {self.annotations}, incompetent {self.incompetent}, "
            f"{self.seconds:.0f}s  {verdict}"
        )


def mutant_id(module: str, line: int, col: int, operator: str, nth: int | None = None) -> str:
    """`path:line:col operator`, and `#n` when the operator makes several mutants at that
    spot (NumberReplacer: #0 the number plus one, #1 minus one)."""
    return f"{module}:{line}:{col} {operator}" + ("" if nth is None else f"#{nth}")


def mutant_ids(module: str, items: list[WorkItem]) -> dict[str, str]:
    """job id -> mutant_id for each work item of a session."""
    spots: dict[tuple[int, int, str], list[WorkItem]] = {}
    for item in items:
        spec = item.mutations[0]
        spots.setdefault((*spec.start_pos, spec.operator_name), []).append(item)
    ids = {}
    for (line, col, operator), here in spots.items():
        here.sort(key=lambda item: item.mutations[0].occurrence)
        for nth, item in enumerate(here):
            ids[item.job_id] = mutant_id(module, line, col, operator, nth if len(here) > 1 else None)
    return ids


def tally(session: Path, module: str, score: Score, equivalent: Collection[str] = ()) -> None:
    """Count a session's results; `equivalent`: listed mutants that ran anyway (a report
    made again after the list was corrected) count as equivalent, not as survivors."""
    with work_db.use_db(str(session), work_db.WorkDB.Mode.open) as db:
        completed = list(db.completed_work_items)
        ids = mutant_ids(module, [item for item, _ in completed])
        for item, result in completed:
            score.total += 1
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                score.annotations += result.output == "annotation"
                score.equivalent += result.output == "equivalent"
                continue
            if ids[item.job_id] in equivalent:
                score.equivalent += 1
                continue
            # cosmic-ray could not make or apply the mutant, or the run broke; a test run
            # that timed out comes back KILLED (output "timeout"): the tests noticed.
            if (
                result.test_outcome == TestOutcome.INCOMPETENT
                or result.worker_outcome == WorkerOutcome.NO_TEST
            ):
                score.incompetent += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                changed = next(
                    (
                        ln[1:].strip()
                        for ln in (result.diff or "").splitlines()
                        if ln.startswith("+") and not ln.startswith("+++")
                    ),
                    "",
                )
                score.survivors.append(f"{ids[item.job_id]}  ->  {changed}")
            else:  # killed, or the tests hung (a timeout is noticed, too)
                score.killed += 1
