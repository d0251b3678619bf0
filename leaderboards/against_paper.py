"""Our leaderboards beside the paper's tables, cell by cell: writes leaderboards/against_paper.md.

    python leaderboards/against_paper.py [--dir leaderboards] [--out DIR/against_paper.md] POPULATION=TABLE ...

Reads ``leaderboards/<population>.json`` (written by ``icc-bench evaluate <population> --out
leaderboards``) and the paper's tables transcribed in ``leaderboards/paper.md``, and writes one
Markdown table per pair: for every measure the paper reports and every column (the eight axes and
Psi), our value with its bootstrap interval, the paper's value, and where the paper's value lies
against our interval: ``in`` (inside: our data cannot tell our value from the paper's), ``above``
or ``below``. It copies numbers from those files and computes nothing but that comparison, so the
output is regenerated, never edited: run this script again after a leaderboard changes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
AXES = ["learning_rate", "batch_size", "weight_decay", "optimizer", "dropout", "augmentation", "width", "depth"]
HEADERS = ["lr", "bs", "wd", "opt", "drop", "aug", "width", "depth", "Ψ"]
PAPER_NAMES = {  # the paper's row labels in paper.md -> our registry names
    "c1": "c1", "c2": "c2", "c3": "c3", "c4": "c4",
    "1/σ' (`inv_sigma_prime`)": "inv_sigma_prime", "1/σ'' (`inv_sigma_dprime`)": "inv_sigma_dprime",
    "1/α' (`inv_alpha_prime`)": "inv_alpha_prime", "1/α'' (`inv_alpha_dprime`)": "inv_alpha_dprime",
}


def paper_tables(path: Path) -> dict[str, tuple[str, dict[str, list[float]]]]:
    """Table number -> (its title, measure -> the nine values lr..depth, Psi) from paper.md."""
    tables = {}
    for chunk in path.read_text().split("## Table ")[1:]:
        number, title = chunk.split(":", 1)[0].strip(), chunk.split("\n", 1)[0].split(":", 1)[1].strip()
        rows = {}
        for line in chunk.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 12 and cells[1] in PAPER_NAMES:
                rows[PAPER_NAMES[cells[1]]] = [float(c.strip("*")) for c in cells[2:11]]
        tables[number] = (title, rows)
    return tables


def position(paper: float, interval: list[float] | None) -> str:
    if interval is None:
        return ""
    low, high = interval
    return "in" if low <= paper <= high else ("above" if paper > high else "below")


def comparison(population: str, table: str, tables, folder: Path = HERE) -> str:
    board = json.loads((folder / f"{population}.json").read_text())
    title, paper = tables[table]
    rows = {r["measure"]: r for r in board["rows"]}
    level = round(100 * board["bootstrap"]["level"]) if board.get("bootstrap") else None
    out = [
        f"## {population} beside the paper's Table {table}",
        "",
        f"Ours: `leaderboards/{population}.json` ({board['n_models']} models; regenerate with `{board['command']}`). "
        f"Paper: Table {table}, {title}. Each cell: ours [{level}% interval] / the paper's, then where the paper's value "
        "lies against our interval.",
        "",
        "| measure | " + " | ".join(HEADERS) + " |",
        "| --- | " + " | ".join("---" for _ in HEADERS) + " |",
    ]
    counts = {"in": 0, "above": 0, "below": 0}
    for measure, values in paper.items():
        row = rows.get(measure)
        if row is None or row.get("not_applicable"):
            out.append(f"| {measure} | " + " | ".join("n/a" for _ in HEADERS) + " |")
            continue
        cells = []
        for axis, theirs in zip([*AXES, "total"], values):
            ours = row["total"] if axis == "total" else row["per_axis"].get(axis)
            interval = (row.get("intervals") or {}).get(axis)
            if ours is None:
                cells.append(f"– / {theirs:.2f}")
                continue
            where = position(theirs, interval)
            counts[where] = counts.get(where, 0) + (1 if where else 0)
            shown = f"{ours:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
            cells.append(f"{shown} / {theirs:.2f} {where}".rstrip())
        out.append(f"| {measure} | " + " | ".join(cells) + " |")
    total = sum(counts.values())
    out += [
        "",
        f"The paper's value lies inside our interval in {counts['in']} of {total} cells, above it in "
        f"{counts['above']}, below it in {counts['below']}.",
        "",
    ]
    verdict = board.get("verdict") or []
    family = next((v for v in verdict if v.startswith("Families:")), None)
    if family:
        out += [f"Our verdict. {family}", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", metavar="POPULATION=TABLE", help="e.g. mini=1 mini=3")
    parser.add_argument("--dir", default=str(HERE), help="the folder of paper.md and the leaderboards (default: this one)")
    parser.add_argument("--out", default=None, help="default: DIR/against_paper.md")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    tables = paper_tables(folder / "paper.md")
    sections = []
    for pair in args.pairs:
        population, _, table = pair.partition("=")
        if table not in tables or not (folder / f"{population}.json").exists():
            raise SystemExit(f"{pair}: give POPULATION=TABLE with leaderboards/POPULATION.json present and TABLE one of {sorted(tables)}")
        sections.append(comparison(population, table, tables, folder))
    command = "python leaderboards/against_paper.py " + " ".join(args.pairs)
    header = (
        "# Our leaderboards beside the paper's tables\n\n"
        f"Generated by `{command}` from the leaderboards in this folder and `paper.md`; do not edit by hand, "
        "run it again.\n\n"
        "The paper's populations are CIFAR Wide ResNets and VGGs trained for 250 epochs; ours are the laptop "
        "populations named in each section. A cell's `in` says only that our data cannot tell our value "
        "from the paper's at the interval's level; with wide intervals that is a weak statement.\n"
    )
    out = Path(args.out) if args.out else folder / "against_paper.md"
    out.write_text(header + "\n" + "\n".join(sections))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
