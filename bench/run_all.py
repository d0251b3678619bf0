"""Run every benchmark in bench/ and write BENCHMARKS.md from what they print.

    python bench/run_all.py [--only NAME ...] [--out BENCHMARKS.md] [--timeout 1800]

With ``--only``, the benchmarks not rerun are carried over from the existing file unchanged, each
marked with the run (date and commit) it comes from.

Each ``bench/*.py`` but this one runs in its own process, one after another, from the repository
root, with the arguments listed in :data:`BENCHMARKS` (none for a script not listed there). The
file records, for each: the ratios it printed and the reference each is measured against, the
exact command, its wall time, the load average around it, and its standard output verbatim. A
header describes the machine: CPU model, cores, memory, GPU, torch and Python versions, and the
commit. The load average is there because a benchmark on a shared machine measures the other
processes too: ratios taken within one run (both sides under the same load) hold up better than
absolute times, and the file says so when the load was high.

Generated, never edited by hand: re-run this script to update it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"

#: Stands for a fresh temporary folder in a benchmark's arguments (shown as is in the file).
SCRATCH = "SCRATCH"


# -- ratio extractors: one line of text per ratio a script prints ------------------------------
def _train_throughput(out: str) -> list[str]:
    return [f"{m['what']}: {m['ratio']}" for m in re.finditer(r"ratio \((?P<what>[^)]*)\): (?P<ratio>[\d.]+x)", out)]


def _intraclass_kernels(out: str) -> list[str]:
    rows = re.finditer(r"^(?P<kernel>silhouette|spread)\s+(?P<n>\d+)\s+[\d.]+\s+[\d.]+\s+(?P<speedup>[\d.]+x)", out, re.M)
    return [f"{m['kernel']}, n = {m['n']}: {m['speedup']} faster" for m in rows]


def _sharpness_cost(out: str) -> list[str]:
    ratios, measure = [], None
    for line in out.splitlines():
        if m := re.match(r"^(\S+)\s+batched\b", line):
            measure = m[1]
        elif (m := re.match(r"^\s+ratio\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", line)) and measure:
            ratios.append(f"{measure}: {m[3]}x wall, {m[4]}x CPU, {m[1]}x forward calls")
    return ratios


def _intraclass_cost(out: str) -> list[str]:
    m = re.search(r"^c1-c4 together\s+[\d.]+\s+(?P<passes>[\d.]+)(?P<target>.*)$", out, re.M)
    return [f"c1-c4 together: {m['passes']} probe forward passes {m['target'].strip()}".strip()] if m else []


def _pgdl_cost(out: str) -> list[str]:
    rows = re.finditer(r"^(?P<name>pgdl_\w+)\s+[\d.]+\s+[\d.]+\s+(?P<wall>[\d.]+)\s+(?P<cpu>[\d.]+)\s+(?P<images>\d+)", out, re.M)
    return [f"{m['name']}: {m['cpu']}x CPU, {m['wall']}x wall, {m['images']} images" for m in rows]


def _population_training(out: str) -> list[str]:
    sizes = re.finditer(r"population '(?P<name>\w+)': (?P<models>\d+) configurations x (?P<epochs>\d+) epochs, \w+ base width (?P<width>\d+)", out)
    ratios = re.finditer(r"ratio \(one at a time / batched\): (?P<wall>[\d.]+x) wall, (?P<cpu>[\d.]+x) CPU", out)
    return [
        f"{size['name']} (base width {size['width']}), {size['models']} models x {size['epochs']} epochs: {ratio['wall']} wall, {ratio['cpu']} CPU"
        for size, ratio in zip(sizes, ratios)
    ]


def _lines_naming_a_ratio(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if re.search(r"\b(ratio|speedup)\b", line, re.I)]


@dataclass(frozen=True)
class Benchmark:
    script: str  # file name in bench/
    args: tuple[str, ...] = ()
    reference: str = "not described in bench/run_all.py: see the script's docstring"
    reading: str = ""  # how to read the ratio
    ratios: Callable[[str], list[str]] = field(default=_lines_naming_a_ratio)


def _population_cost(out: str) -> list[str]:
    found = re.finditer(
        r"^population '(?P<name>[^']+)': (?P<n>\d+) of its (?P<total>\d+) models.*?\n.*?\n  training: (?P<sec>[\d,]+) model-seconds \((?P<h>[\d.]+) h\), median (?P<med>[\d.]+) s",
        out, re.M)
    return [f"{m['name']} ({m['n']}/{m['total']} models): {m['h']} h of training, median {m['med']} s per model" for m in found]


#: What each known script is run with and measured against. A new script in bench/ runs without
#: arguments until it is described here.
BENCHMARKS: dict[str, Benchmark] = {
    b.script: b
    for b in (
        Benchmark(
            "train_throughput.py",
            reference="the usual PyTorch recipe: a torchvision `DataLoader` (0 workers) over a `Dataset` whose "
            "`__getitem__` applies `v2.RandomCrop(padding=4, reflect)` and `v2.RandomHorizontalFlip` per sample; "
            "same model (the quick population's VGG), data, batch size and augmentation",
            reading="images per second of icc-bench's device-resident batches / the DataLoader's; higher is better",
            ratios=_train_throughput,
        ),
        Benchmark(
            "intraclass_kernels.py",
            reference="scikit-learn: `silhouette_samples(metric='cosine')`, and `cosine_distances` followed by the "
            "standard deviation of its upper triangle (both build the n x n distance matrix)",
            reading="reference seconds / icc-bench seconds, best of 3, one thread each; higher is better",
            ratios=_intraclass_kernels,
        ),
        Benchmark(
            "sharpness_cost.py",
            reference="a straightforward loop: a deep copy of the model perturbed in place, one Monte Carlo draw "
            "(or ascent restart) and one data chunk per network call, gradients by `loss.backward()`; same "
            "subset, draws and starts",
            reading="loop / batched, in wall-clock and process CPU seconds and in forward calls; higher is better",
            ratios=_sharpness_cost,
        ),
        Benchmark(
            "scoring_bootstrap.py",
            reference="the point scores alone (granulated Kendall and CMI of every row, no intervals) on the same "
            "192-model grid, 10,000 test images and 12 rows",
            reading="seconds with the B = 1000 bootstrap (intervals, paired comparisons, sign-error) / seconds of the "
            "point scores; the absolute bootstrap seconds are the figure to read (goal: a few seconds)",
            ratios=lambda out: [line.removeprefix("ratio ").strip() for line in out.splitlines() if line.startswith("ratio (")],
        ),
        Benchmark(
            "population_training.py",
            args=("--threads", "1"),
            reference="the same configurations trained one at a time (`--batch-models 1`: `train_model`'s own loop) "
            "by the same driver, records written; quick's VGG (base width 8) and mini's (base width 16), up to 8 "
            "configurations of one width, depth and batch size, 3 epochs, 1 torch thread (on a loaded machine 2 "
            "threads inflate the ratio: see the script's docstring)",
            reading="seconds one at a time / batched, wall-clock and process CPU; higher is better, goal >= 4 on 2 CPU cores",
            ratios=_population_training,
        ),
        Benchmark(
            "population_cost.py",
            reference="nothing re-timed: the seconds recorded when each zoo under ./runs was trained (model "
            "records' train_seconds) and measured (the results store's seconds), per population; quick's median "
            "model is the yardstick across machines",
            reading="model-seconds (the work of every process added up) and per-model training as a multiple of "
            "quick's median; figures carry the load of the runs that built the zoos",
            ratios=_population_cost,
        ),
        Benchmark(
            "intraclass_cost.py",
            args=("--runs-dir", SCRATCH),
            reference="one forward pass of the probe sample through the model (the representations every "
            "measure shares); it trains the quick population's first model into the scratch folder first",
            reading="seconds of c1-c4 together / seconds of one probe forward pass; lower is better, target < 2",
            ratios=_intraclass_cost,
        ),
        Benchmark(
            "pgdl_cost.py",
            args=("--runs-dir", SCRATCH),
            reference="one forward pass of the whole training set through the model (logits, eval mode); it trains "
            "the quick population's first model into the scratch folder first",
            reading="seconds of each PGDL winners' measure / seconds of that forward pass, process CPU and wall; "
            "lower is better",
            ratios=_pgdl_cost,
        ),
        Benchmark(
            "training_headroom.py",
            args=("--population", "quick", "mini", "digits_mini"),
            reference="a 1024 x 1024 float32 matrix product on the same thread (the rate arithmetic-bound work "
            "reaches here); FLOPs of a step counted by torch's FlopCounterMode; best of 20, process CPU time",
            reading="the reference's GFLOP/s / one training step's: an upper bound on what batching a population of "
            "that network can save on this CPU; below 4, the >= 4x goal is out of reach by batching",
            ratios=lambda out: [line.strip().removeprefix("headroom ") for line in out.splitlines() if line.strip().startswith("headroom (")],
        ),
        Benchmark(
            "paper_gpu_hours.py",
            reference="the same configurations trained one at a time on the same device, in the same run: seconds "
            "per training step alone and per step of a group of 16 (each a 3-epoch minus a 1-epoch run), on "
            "stand-in data of CIFAR's shape; without CUDA it measures nothing and says so",
            reading="projected hours to train each paper population one at a time / batched (upper bounds: no "
            "early stop, no test passes); higher is better, goal >= 10 on a GPU",
            ratios=lambda out: [line.removeprefix("  ratio ").strip() for line in out.splitlines() if line.startswith("  ratio (")]
            or [line for line in out.splitlines() if line.startswith("no CUDA device")],
        ),
    )
}


# -- the machine ---------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
        return f"{kib / 2**20:.0f} GiB"
    except (OSError, TypeError):
        return "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, str]:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " (plus uncommitted changes)" if _git("status", "--porcelain") else ""
    return {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "memory": _memory_gib(),
        "GPU": ", ".join(gpus) if gpus else "none",
        "torch": f"{torch.__version__}" + (f", CUDA {torch.version.cuda}" if gpus else ", CPU only"),
        "Python": f"{platform.python_version()} on {platform.system()} {platform.release()}",
        "commit": (commit + dirty) if commit else "unknown (not a git checkout)",
    }


# -- running -------------------------------------------------------------------------------------
@dataclass
class Run:
    bench: Benchmark
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def run_one(bench: Benchmark, timeout: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="icc-bench-") as scratch:
        args = [scratch if a == SCRATCH else a for a in bench.args]
        env = dict(os.environ)
        # The checkout first, so that an uninstalled checkout benchmarks itself.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH")]))
        load_before, started = os.getloadavg(), time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, str(BENCH / bench.script), *args], cwd=REPO, env=env, capture_output=True,
                text=True, timeout=timeout,
            )
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            returncode = -1
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            stderr = f"stopped after the {timeout:.0f} s timeout (--timeout)"
        seconds = time.perf_counter() - started
    command = " ".join(["python", f"bench/{bench.script}", *(a if a == SCRATCH else shlex.quote(a) for a in bench.args)])
    return Run(bench, command, returncode, stdout, stderr, seconds, load_before, os.getloadavg())


# -- the file ------------------------------------------------------------------------------------
def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


#: The line a carried-over section starts with; it names the run the figures come from.
CARRIED = "- carried over from the run of "


def previous_results(text: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """From a BENCHMARKS.md this script wrote: (when and at which commit it ran, script -> (its
    summary row, its section)), so that ``--only`` can carry the benchmarks it does not rerun.
    A section carried before keeps the run it came from (see :func:`origin_of`)."""
    when = re.search(r"Generated by `python bench/run_all.py` on (?P<when>[^,]+), ", text)
    commit = re.search(r"^\| commit \| (?P<commit>[^|]+) \|$", text, re.M)
    origin = f"{when['when'] if when else 'an earlier run'}, commit {commit['commit'].strip() if commit else 'unknown'}"
    rows = {m["script"]: m.group(0) for m in re.finditer(r"^\| \[(?P<script>[\w.]+\.py)\]\(#[^)]*\) \|.*$", text, re.M)}
    sections = {}
    for chunk in re.split(r"^(?=## [\w.]+\.py$)", text, flags=re.M)[1:]:
        script = chunk.splitlines()[0][3:].strip()
        sections[script] = chunk.rstrip("\n") + "\n"
    return origin, {script: (rows[script], sections[script]) for script in rows if script in sections}


def origin_of(section: str, file_origin: str) -> str:
    """The run a carried section's figures come from: the one its carried-over line names, if it
    was carried before (the oldest, for a file written before one line was kept), else the run of
    the file it is carried from."""
    named = [line[len(CARRIED):].strip() for line in section.splitlines() if line.startswith(CARRIED)]
    return named[-1] if named else file_origin


def _carried_section(section: str, origin: str) -> str:
    """The section with exactly one carried-over line, naming ``origin``, under its title."""
    lines = [line for line in section.rstrip("\n").split("\n") if not line.startswith(CARRIED)]
    text = "\n".join(lines)
    while "\n\n\n" in text:  # the blank lines the removed lines leave behind
        text = text.replace("\n\n\n", "\n\n")
    return text.replace("\n", f"\n\n{CARRIED}{origin}", 1)


def render(
    runs: list[Run], info: dict[str, str], started: datetime, load_start: tuple[float, float, float],
    carried: tuple[str, dict[str, tuple[str, str]]] | None = None,
) -> str:
    cores = os.cpu_count() or 1
    peak = max([load_start[0], *(r.load_before[0] for r in runs), *(r.load_after[0] for r in runs)])
    out = [
        "# Benchmarks",
        "",
        f"Generated by `python bench/run_all.py` on {started:%Y-%m-%d %H:%M} UTC, from the benchmark scripts' own "
        "output; do not edit by hand, run it again. Every ratio compares two implementations measured in the "
        "same process, one after the other, on the machine below.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        f"| load average (1, 5, 15 min) at start | {_load(load_start)} |",
        "",
    ]
    if peak > 0.5 * cores:
        out += [
            f"**Shared machine: the 1-minute load average reached {peak:.1f} on {cores} cores during this run.** "
            "Other processes were using the CPU at the same time, so absolute times are slower and noisier than on an "
            "idle machine; ratios suffer less, since both sides of each ratio ran under the same load, one after the "
            "other. The load average before and after each benchmark is given with it.",
            "",
        ]
    file_origin, kept = carried or ("", {})
    rerun = {r.bench.script for r in runs}
    kept = {script: parts for script, parts in kept.items() if script not in rerun}
    origins = {script: origin_of(section, file_origin) for script, (_, section) in kept.items()}
    if kept:
        by_origin: dict[str, list[str]] = {}
        for script in sorted(kept):
            by_origin.setdefault(origins[script], []).append(script)
        out += [
            f"Rerun here: {', '.join(sorted(rerun))}. Carried over unchanged (`--only`), each with the figures and "
            "machine load of the run it comes from: "
            + "; ".join(f"{', '.join(scripts)} from the run of {origin}" for origin, scripts in by_origin.items())
            + ".",
            "",
        ]
    out += ["## Summary", "", "| benchmark | ratios | measured against | command | seconds |", "|---|---|---|---|---|"]
    order = sorted(rerun | set(kept))
    runs = sorted(runs, key=lambda r: order.index(r.bench.script))
    for script in order:
        if script in kept:
            out.append(kept[script][0])
            continue
        r = next(r for r in runs if r.bench.script == script)
        ratios = r.bench.ratios(r.stdout) if r.returncode == 0 else []
        shown = "<br>".join(ratios) if ratios else ("see its output below" if r.returncode == 0 else f"**failed** (exit status {r.returncode})")
        out.append(f"| [{r.bench.script}](#{_anchor(r.bench.script)}) | {shown} | {r.bench.reference} | `{r.command}` | {r.seconds:.0f} |")
    out.append("")
    for script in order:
        if script in kept:
            out += [_carried_section(kept[script][1], origins[script]), ""]
            continue
        r = next(r for r in runs if r.bench.script == script)
        out += [
            f"## {r.bench.script}",
            "",
            _docstring_first_line(BENCH / r.bench.script),
            "",
            f"- command: `{r.command}`" + (f" ({SCRATCH}: a fresh temporary folder)" if SCRATCH in r.bench.args else ""),
            f"- measured against: {r.bench.reference}",
        ]
        if r.bench.reading:
            out.append(f"- ratio: {r.bench.reading}")
        out += [
            f"- wall time {r.seconds:.0f} s, exit status {r.returncode}; load average before {_load(r.load_before)}, "
            f"after {_load(r.load_after)}",
            "",
            "```text",
            r.stdout.rstrip("\n") or "(no output)",
            "```",
            "",
        ]
        if r.returncode != 0:
            out += ["Standard error (last 40 lines):", "", "```text", *r.stderr.rstrip("\n").splitlines()[-40:], "```", ""]
    return "\n".join(out)


def _anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9_ -]", "", heading.lower()).replace(" ", "-")


def _docstring_first_line(path: Path) -> str:
    import ast

    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except (OSError, SyntaxError):
        doc = None
    return doc.strip().splitlines()[0] if doc else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts (e.g. train_throughput)")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="the file to write (default: BENCHMARKS.md)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed to each script (default 1800)")
    args = parser.parse_args()

    scripts = sorted(p.name for p in BENCH.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if args.only:
        wanted = {name.removesuffix(".py") + ".py" for name in args.only}
        unknown = sorted(wanted - set(scripts))
        if unknown:
            parser.error(f"no benchmark named {unknown[0]} in {BENCH}; there are: {', '.join(scripts)}")
        scripts = [s for s in scripts if s in wanted]
    started, load_start = datetime.now(timezone.utc), os.getloadavg()
    info = machine()
    runs = []
    for script in scripts:
        print(f"running bench/{script} ...", file=sys.stderr, flush=True)
        run = run_one(BENCHMARKS.get(script, Benchmark(script)), args.timeout)
        print(f"  {run.seconds:.0f} s, exit status {run.returncode}", file=sys.stderr, flush=True)
        runs.append(run)
    out = Path(args.out)
    carried = previous_results(out.read_text()) if args.only and out.exists() else None
    out.write_text(render(runs, info, started, load_start, carried))
    print(f"written: {args.out}", file=sys.stderr)
    return 0 if all(r.returncode == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
