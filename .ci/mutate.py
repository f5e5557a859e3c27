"""`make mutate`: mutation testing of the modules that decide trust and correctness.

For each module listed in .ci/mutation.toml, cosmic-ray plants one small bug at a time in
the source file and runs the tests that exercise that module; a mutant the tests do not
notice survives. Why cosmic-ray: it mutates the file in place, so the package-dir mapping
(models/ installed as falbridge.models through the editable link tree) is seen as it is;
mutmut 3 copies sources to mutants/ and derives module names from paths, which that
mapping defeats.

Not counted, and said so in the report:
- mutants inside type annotations: every module has `from __future__ import annotations`,
  so an annotation is never evaluated and mutating it changes nothing;
- equivalent mutants, listed in .ci/equivalent-mutants.txt with one line of reason each
  (at most 5 % of a module's mutants), never silently.

Runs in copies of the checkout (var/mutation/tree-N, see mutation_trees.py), one per worker,
taken at the start: the checkout is never mutated and may be edited meanwhile. Modules are
spread over the workers (default: four per core, as many subsets mostly wait). Exit 1 when
a module is under its target.

    .venv/bin/python .ci/mutate.py                      # every module
    .venv/bin/python .ci/mutate.py models/states.py     # one (or several)
    .venv/bin/python .ci/mutate.py --jobs 1             # one worker
    .venv/bin/python .ci/mutate.py --estimate           # mutant counts and baselines only
"""

from __future__ import annotations

import argparse
import ast
import os
import queue
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cosmic_ray.work_db as work_db
import mutation_forkserver
from cosmic_ray.work_item import WorkerOutcome, WorkResult
from mutation_equivalents import Listed, read, resolve
from mutation_scores import Cost, Score, mutant_ids, tally
from mutation_trees import make_tree, test_environment

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".ci" / "mutation.toml"
EQUIVALENTS = ROOT / ".ci" / "equivalent-mutants.txt"
SESSIONS = ROOT / "var" / "mutation"
MAX_EQUIVALENT_SHARE = 0.05


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans = []
    for node in ast.walk(ast.parse(source)):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            annotations.append(node.returns)
        if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            annotations.append(node.annotation)
        for a in annotations:
            spans.append(((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0)))
    return spans


def selection(postgresql: list[str]) -> str:
    """pytest's -k: SQLite only, but for the tests named in the module's `postgresql` list,
    whose behaviour (a row lock another transaction holds) SQLite cannot show."""
    return " or ".join(["not postgresql", *(f"(postgresql and {name})" for name in postgresql)])


def run_module(
    module: str,
    tests: list[str],
    target: float,
    listed: list[Listed],
    tree: Path,
    postgresql: list[str],
    estimate: bool = False,
) -> Score:
    """The module's session; with `estimate`, only the mutants counted and the baseline run."""
    score = Score(module, target)
    source_path = tree / module
    original = source_path.read_bytes()
    started = time.monotonic()
    # An estimate leaves the last run's sessions for --report.
    session = SESSIONS / (module.replace("/", "_") + (".estimate" if estimate else "") + ".sqlite")
    session.unlink(missing_ok=True)
    times = session.with_suffix(".times")
    times.unlink(missing_ok=True)
    with (
        tempfile.TemporaryDirectory() as scratch,
        mutation_forkserver.started(tree, source_path, test_environment(tree), times) as client,
    ):
        config = Path(scratch) / "cosmic-ray.toml"
        command = [
            *client,
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "pytest_timeout",
            "-k",
            selection(postgresql),
            *tests,
        ]
        config.write_text(
            "[cosmic-ray]\n"
            f"module-path = {str(source_path)!r}\n"
            "timeout = 120.0\n"
            "excluded-modules = []\n"
            f"test-command = {shlex.join(command)!r}\n"
            "[cosmic-ray.distributor]\nname = 'local'\n"
        )
        try:
            _cosmic_ray(tree, "init", str(config), str(session))
            to_run = _mark_not_counted(session, module, original.decode(), listed)
            _cosmic_ray(tree, "baseline", str(config))
            if not estimate:
                _cosmic_ray(tree, "exec", str(config), str(session))
        finally:
            source_path.write_bytes(original)
    score.cost = Cost.read(module, to_run, times)
    if not estimate:
        tally(session, module, score)
    score.seconds = time.monotonic() - started
    return score


def _cosmic_ray(tree: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cosmic_ray.cli", "--verbosity", "ERROR", *args],
        cwd=tree,
        env=test_environment(tree),
    )
    if done.returncode != 0:
        raise SystemExit(f"mutate: cosmic-ray {args[0]} failed (exit {done.returncode})")


def _mark_not_counted(session: Path, module: str, source: str, listed: list[Listed]) -> int:
    """Sets aside the mutants in annotations and the listed equivalents; returns how many
    are left to run."""
    spans = annotation_spans(source)
    to_run = 0
    with work_db.use_db(str(session), work_db.WorkDB.Mode.open) as db:
        items = list(db.pending_work_items)
        ids = mutant_ids(module, items)
        equivalent = resolve(ROOT, EQUIVALENTS, listed, module, source, set(ids.values()))
        for item in items:
            line, col = item.mutations[0].start_pos
            if any(start <= (line, col) < end for start, end in spans):
                db.set_result(
                    item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="annotation")
                )
            elif ids[item.job_id] in equivalent:
                db.set_result(
                    item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="equivalent")
                )
            else:
                to_run += 1
    return to_run


def report_again(module: str, target: float, listed: list[Listed]) -> Score:
    """The score of the module's last session, with the equivalents list as it is now."""
    score = Score(module, target)
    session = SESSIONS / (module.replace("/", "_") + ".sqlite")
    if not session.exists():
        raise SystemExit(f"mutate: no session for {module} in {SESSIONS.relative_to(ROOT)}/")
    with work_db.use_db(str(session), work_db.WorkDB.Mode.open) as db:
        ids = mutant_ids(module, [item for item, _ in db.completed_work_items])
    copy = SESSIONS / "tree-0" / module  # the source the session mutated, as copied then
    source = (copy if copy.exists() else ROOT / module).read_text()
    tally(session, module, score, resolve(ROOT, EQUIVALENTS, listed, module, source, set(ids.values())))
    return score


def run_spread(
    chosen: list[str], table: dict, listed: list[Listed], jobs: int, estimate: bool = False
) -> list[Score]:
    """Each module whole in one worker's tree; a worker takes the next module when it is free."""
    trees: queue.Queue[Path] = queue.Queue()
    for n in range(jobs):
        tree = SESSIONS / f"tree-{n}"
        make_tree(ROOT, tree)
        trees.put(tree)

    def one(module: str) -> Score:
        tree = trees.get()
        try:
            entry = table[module]
            target = float(entry.get("target", 90))
            score = run_module(
                module, entry["tests"], target, listed, tree, entry.get("postgresql", []), estimate
            )
        finally:
            trees.put(tree)
        if not estimate:
            print(f"done: {score.line()}", flush=True)
        if score.cost:
            print(score.cost.line(), flush=True)
        return score

    # The largest modules (the most mutants) first, so that none starts last and runs alone.
    largest_first = sorted(chosen, key=lambda module: -(ROOT / module).stat().st_size)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        scores = dict(zip(largest_first, pool.map(one, largest_first), strict=True))
    return [scores[module] for module in chosen]


def _print_estimate(scores: list[Score]) -> int:
    """Each module's upper bound (every mutant as slow as the unmutated run: a killed one,
    stopped by -x at its first failure, usually costs much less)."""
    costs = sorted((s.cost for s in scores if s.cost), key=lambda c: -c.to_run * c.baseline)
    for cost in costs:
        print(cost.line())
    total = sum(c.to_run * c.baseline for c in costs)
    print(f"mutate: at most {total / 60:.0f} min of test runs in all, one after another")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules", nargs="*", help="source paths (default: every module in .ci/mutation.toml)"
    )
    # Four workers per core: many subsets spend much of their time waiting (a JWKS fetch
    # timing out, a slow client, a Celery round trip), limits.py's at under 25 % of a core.
    parser.add_argument(
        "--jobs", type=int, default=4 * (os.cpu_count() or 1), help="workers (default: 4 per core)"
    )
    parser.add_argument(
        "--report", action="store_true", help="count the last run's sessions again, running nothing"
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="count each module's mutants and time its baseline run, running no mutant",
    )
    args = parser.parse_args()
    table = tomllib.loads(CONFIG.read_text())["module"]
    chosen = args.modules or list(table)
    unknown = [m for m in chosen if m not in table]
    if unknown:
        print(f"mutate: not in {CONFIG.relative_to(ROOT)}: {', '.join(unknown)}", file=sys.stderr)
        return 2
    SESSIONS.mkdir(parents=True, exist_ok=True)
    listed = read(EQUIVALENTS)
    started = time.monotonic()
    if args.report:
        scores = [report_again(m, float(table[m].get("target", 90)), listed) for m in chosen]
    else:
        jobs = max(1, min(args.jobs, len(chosen)))
        scores = run_spread(chosen, table, listed, jobs, args.estimate)
        if args.estimate:
            return _print_estimate(scores)
    for score in scores:
        for survivor in score.survivors:
            print(f"  survived: {survivor}")
    for score in scores:
        print(score.line())
        if score.cost and score.cost.killed + score.cost.survived:
            print(score.cost.line())
        if score.equivalent > MAX_EQUIVALENT_SHARE * max(score.total - score.annotations, 1):
            print(f"mutate: {score.module}: more than 5% of its mutants are listed as equivalent")
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"mutate: total {(time.monotonic() - started) / 60:.1f} min wall, "
        f"{(used.ru_utime + used.ru_stime) / 60:.1f} min CPU; sessions in {SESSIONS.relative_to(ROOT)}/"
    )
    return 0 if all(s.percent >= s.target for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
