"""The fixed cost of a `shipyard` command before it reaches the engine, phase by phase.

    sudo .venv/bin/python benchmarks/startup_bench.py [-n RUNS] [--services N]
        [--compare DIR] [--importtime]

In a temporary engine root holding the busybox image (tests/support/busybox.py), on a generated
stack of N services (benchmarks/stack_bench.make_stack), with bytecode cached as in a real
install (under a temporary PYTHONPYCACHEPREFIX), it times:

- whole-process wall time (median of RUNS) of `python -c pass`, `shipyard version`,
  `config -q`, `up --dry-run`, `up -d` from nothing (3 runs, each followed by `down`),
  `up -d` with everything up to date (the fixed cost of `up -d` without the engine's work)
  and `ps` on the running stack;
- the phases of `config -q`, `up --dry-run`, `up -d` (up to date) and `ps`: the same command
  run by a small driver that notes the time at its first line, after `import compose.cli`,
  and on entering and leaving the stages (parser, load and its parts, engine, observe, plan,
  rows), then at exit. Each row is the time from the previous mark to this one (median over
  RUNS), so the rows add up to the whole process. "start" is fork+exec+interpreter start
  until the driver's first line; a "before X" row is what ran between two stages (mostly
  imports).

Shipyard runs as its console script does (`from compose.cli import main; sys.exit(main())`).
With --compare DIR (another source tree holding compose/ and engine/, e.g. an older commit
from `git archive`), every measurement is also made on DIR, interleaved run by run with this
tree's so that the machine's load falls on both alike, and shown side by side.
With --importtime, it also prints the costliest imports of each command (`-X importtime`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PYTHON = ROOT / ".venv" / "bin" / "python"
# What the installed console script runs.
ENTRY = "import re, sys; from compose.cli import main; sys.exit(main())"

# (module, function, label): the stages the driver times. A stage entered inside another
# (load: files inside load) shows on its own rows.
STAGES = [
    ("compose.cli", "build_parser", "parser"),
    ("compose.project", "load_project", "load"),
    ("compose.loader", "load_merged", "load: files"),
    ("compose.loader", "canonical_project", "load: validate+canonical"),
    ("compose.loader.bind", "bind_project", "load: bind"),
    ("compose.project", "target", "project name"),
    ("compose.cli", "Context.engine", "engine"),
    ("compose.observe", "observe", "observe"),
    ("compose.reconcile", "up", "plan"),
    ("compose.commands.ps", "rows", "rows"),
    ("compose.execute", "run", "execute"),
]

# Runs in the timed process: marks go to the file named by SHIPYARD_BENCH_MARKS as
# "label<TAB>monotonic seconds" lines. Uses only what site has imported already.
DRIVER = r"""
import time
_first = time.monotonic()
import os, sys
_marks = [("first line", _first)]
_stages = %(stages)r

def _wrap(owner, attr, label):
    inner = getattr(owner, attr)
    if getattr(inner, "_bench", False):
        return
    def timed(*args, **kwargs):
        _marks.append(("> " + label, time.monotonic()))
        try:
            return inner(*args, **kwargs)
        finally:
            _marks.append(("< " + label, time.monotonic()))
    timed._bench = True
    setattr(owner, attr, timed)

def _patch(module):
    for name, path, label in _stages:
        if name == module.__name__:
            owner, _, attr = path.rpartition(".")
            target = getattr(module, owner) if owner else module
            if hasattr(target, attr):
                _wrap(target, attr, label)

class _Finder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in {s[0] for s in _stages}:
            return None
        from importlib.machinery import PathFinder
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module
        def exec_module(module):
            execute(module)
            _patch(module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Finder)
import re
from compose.cli import main
_marks.append(("import compose.cli", time.monotonic()))
try:
    code = main()
finally:
    _marks.append(("main returned", time.monotonic()))
    with open(os.environ["SHIPYARD_BENCH_MARKS"], "w") as _out:
        _out.write("".join(f"{k}\t{v!r}\n" for k, v in _marks))
sys.exit(code)
"""


class Tree:
    """A source tree to run Shipyard from (PYTHONPATH puts it before the installed one)."""

    def __init__(self, label: str, path: Path, env: dict[str, str]) -> None:
        self.label = label
        self.env = {**env, "PYTHONPATH": str(path)}

    def argv(self, args: list[str]) -> list[str]:
        return [str(PYTHON), "-c", ENTRY, *args]


def bench_env(root: Path) -> dict[str, str]:
    """Bytecode cached (under a temporary prefix, not in the tree), as in an installed
    package; the engine root is the temporary one."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "shipyard-bench-pyc")
    env["SHIPYARD_ROOT"] = str(root)
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall time of one whole process (s); exits when it fails."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return elapsed


def walls(trees: list[Tree], argvs: list[list[str]], cwd: Path, runs: int) -> list[float]:
    """Median wall time (ms) of each tree's argv, the trees' runs interleaved."""
    for tree, argv in zip(trees, argvs, strict=True):
        run(argv, cwd, tree.env)  # warm-up: page cache, bytecode, the dataclass cache
    samples: list[list[float]] = [[] for _ in trees]
    for _ in range(runs):
        for i, (tree, argv) in enumerate(zip(trees, argvs, strict=True)):
            samples[i].append(run(argv, cwd, tree.env))
    return [statistics.median(s) * 1000 for s in samples]


def phases(trees: list[Tree], args: list[str], cwd: Path, runs: int,
           after: list[str] | None = None) -> list[list[tuple[str, float]]]:
    """For each tree, (label, ms since the previous mark) of `shipyard ARGS` under the
    driver, medians over RUNS (interleaved between the trees); `shipyard AFTER` runs,
    untimed, after each (e.g. `down`, to time `up` from nothing again)."""
    driver = DRIVER % {"stages": STAGES}
    marks_file = cwd / ".bench-marks"
    argv = [str(PYTHON), "-c", driver, *args]
    samples: list[list[list[tuple[str, float]]]] = [[] for _ in trees]
    for round_ in range(runs + 1):
        for i, tree in enumerate(trees):
            env = {**tree.env, "SHIPYARD_BENCH_MARKS": str(marks_file)}
            spawned = time.monotonic()
            done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
            exited = time.monotonic()
            if done.returncode != 0:
                sys.exit(f"driver {' '.join(args)} failed:\n{done.stderr}")
            if after:
                run(tree.argv(after), cwd, tree.env)
            marks = [("spawn", spawned)]
            for line in marks_file.read_text().splitlines():
                label, _, at = line.partition("\t")
                marks.append((label, float(at)))
            marks.append(("exit", exited))
            if round_:  # the first round warms up
                samples[i].append(marks)
    marks_file.unlink()
    return [_medians(s) for s in samples]


def _medians(samples: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    shape = [label for label, _ in samples[0]]
    same = [s for s in samples if [label for label, _ in s] == shape]
    out = []
    for index in range(1, len(shape)):
        deltas = [(s[index][1] - s[index - 1][1]) * 1000 for s in same]
        out.append((_describe(same[0], index), statistics.median(deltas)))
    out.append(("= whole process", statistics.median((s[-1][1] - s[0][1]) * 1000 for s in same)))
    return out


def _describe(marks: list[tuple[str, float]], index: int) -> str:
    """What happened between mark index-1 and mark index."""
    before, label = marks[index - 1][0], marks[index][0]
    if label.startswith("< "):
        return f"  {label[2:]}" if before == "> " + label[2:] else f"  {label[2:]} (rest)"
    if label.startswith("> "):
        after = f" (after {before[2:]})" if before[:2] in ("< ", "> ") else ""
        return f"  before {label[2:]}{after}"
    if label == "first line":
        return "start (exec, interpreter, site)"
    if label == "exit":
        return "interpreter exit"
    if label == "main returned":
        return f"  output (after {before[2:]})" if before[:2] in ("< ", "> ") else "  main"
    return label


def print_phases(title: str, trees: list[Tree],
                 results: list[list[tuple[str, float]]]) -> None:
    print(f"\n{title}")
    print(f"  {'':<54}" + "".join(f"{t.label:>12}" for t in trees))
    rows = {}
    order: list[str] = []
    for i, result in enumerate(results):
        for label, ms in result:
            if label not in rows:
                rows[label] = [None] * len(trees)
                order.append(label)
            rows[label][i] = ms
    for label in order:
        cells = "".join(f"{v:9.1f} ms" if v is not None else f"{'-':>12}" for v in rows[label])
        print(f"  {label:<54}{cells}")


def importtime(tree: Tree, args: list[str], cwd: Path, top: int = 12) -> None:
    code = f"import sys; from compose.cli import main; sys.argv[1:] = {args!r}; sys.exit(main())"
    done = subprocess.run([str(PYTHON), "-X", "importtime", "-c", code], cwd=cwd,
                          env=tree.env, capture_output=True, text=True)
    rows = []
    total = 0
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            own, cumulative, name = line.removeprefix("import time:").split("|")
            if own.strip().isdigit():
                rows.append((int(cumulative), int(own), name.rstrip()))
                if not name.startswith("  "):
                    total += int(cumulative)
    print(f"\n{tree.label}: imports of `{' '.join(args)}`: {total / 1000:.1f} ms in all "
          "(-X importtime inflates them); costliest (cumulative us, self us):")
    for cumulative, own, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative:8d} {own:8d} {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=9)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="another source tree to measure alongside this one")
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (containers for `ps`)", file=sys.stderr)
        return 1
    from benchmarks.stack_bench import make_stack
    from tests.support import busybox

    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        work = Path(tmp)
        env = bench_env(work / "root")
        trees = [Tree("this tree", ROOT, env)]
        if args.compare:
            trees.append(Tree(args.compare.name or "compare", args.compare.resolve(), env))
        main_tree = trees[0]
        tar = busybox.make_rootfs_tar(work / "busybox.tar")
        run(main_tree.argv(["image", "import", str(tar), "busybox"]), work, env)
        project = work / f"stack{args.services}"
        make_stack(project, args.services)
        n = args.services
        commands = [("config -q", ["config", "-q"]), ("up --dry-run", ["up", "--dry-run"])]
        running = [("up -d (up to date)", ["up", "-d"]), ("ps", ["ps"])]
        down = ["down", "-t", "0"]
        try:
            print(f"whole-process wall time, median of {args.runs} (bytecode cached), "
                  f"{n} services:")
            print(f"  {'':<30}" + "".join(f"{t.label:>12}" for t in trees))

            def show(label: str, values: list[float]) -> None:
                print(f"  {label:<30}" + "".join(f"{v:9.1f} ms" for v in values))

            show("python -c pass", walls(trees, [[str(PYTHON), "-c", "pass"]] * len(trees),
                                         project, args.runs))
            for label, a in [("shipyard version", ["version"]), *commands]:
                show(label, walls(trees, [t.argv(a) for t in trees], project, args.runs))
            ups: list[list[float]] = [[] for _ in trees]
            for _ in range(3):
                for i, tree in enumerate(trees):
                    ups[i].append(run(tree.argv(["up", "-d"]), project, tree.env) * 1000)
                    run(tree.argv(down), project, tree.env)
            show("up -d (from nothing, 3 runs)", [statistics.median(u) for u in ups])
            run(main_tree.argv(["up", "-d"]), project, env)
            for label, a in running:
                show(label, walls(trees, [t.argv(a) for t in trees], project, args.runs))
            for label, a in commands + running:
                print_phases(f"phases of `{label}` ({n} services), median of {args.runs}:",
                             trees, phases(trees, a, project, args.runs))
            run(main_tree.argv(down), project, env)
            print_phases(f"phases of `up -d` from nothing ({n} services), median of 3:", trees,
                         phases(trees, ["up", "-d"], project, 3, after=down))
            if args.importtime:
                for tree in trees:
                    for _, a in commands + running:
                        importtime(tree, a, project)
        finally:
            subprocess.run(main_tree.argv([*down, "-v"]), cwd=project, env=env,
                           capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
