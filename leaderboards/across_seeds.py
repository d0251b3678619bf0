"""Does a leaderboard's verdict survive a second training seed? Writes leaderboards/across_seeds.md.

    python leaderboards/across_seeds.py [--dir leaderboards] [--out DIR/across_seeds.md] FIRST:SECOND ...

Each pair names two leaderboards of the same configurations trained on two seeds (``quick:quick_seed1``,
``mini:mini_seed1``), as ``icc-bench evaluate <population> --out leaderboards`` wrote them. Float
results differ between machines as they differ between training seeds, so what holds on both
seeds is what a reader on another machine can expect to see. For each pair it writes:

1. every measure's Ψ on both seeds with its bootstrap interval, the difference, and whether each
   seed's point value lies inside the other's interval;
2. the rank agreement of the measures' Ψ (Kendall τ-a over the measures both score);
3. the statements each leaderboard makes, "A is ahead of B, distinguishably at the level" (the
   paired bootstrap, :func:`icc_bench.uncertainty.distinguishable`), and what the other seed says
   of each: the same, distinguishably (holds); the same way but not distinguishably (weakens);
   the other way round, not distinguishably (reverses); the other way round, distinguishably
   (contradicted);
4. both verdicts, as the leaderboards print them.

It reads those files and computes nothing but the comparison, so the output is regenerated, never
edited. Reference rows (oracles, random) are compared like measures but kept out of the rank
agreement and the statements: they are the data's ceiling and floor, not candidates.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from icc_bench.leaderboard.model import Leaderboard, MeasureRow, read_leaderboard
from icc_bench.scoring import kendall_tau
from icc_bench.uncertainty import distinguishable

HERE = Path(__file__).resolve().parent
OUTCOMES = ("holds", "weakens", "reverses", "contradicted")


def scored(board: Leaderboard) -> dict[str, MeasureRow]:
    return {r.measure: r for r in board.rows if r.not_applicable is None and math.isfinite(r.total)}


def ahead(board: Leaderboard, a: str, b: str) -> float:
    """The share of bootstrap draws in which ``a``'s Ψ is above ``b``'s on ``board`` (NaN if not stored)."""
    if a in board.paired and b in board.paired[a]:
        return board.paired[a][b]
    if b in board.paired and a in board.paired[b]:
        return 1.0 - board.paired[b][a]
    return math.nan


@dataclass(frozen=True)
class Statement:
    winner: str
    loser: str
    share: float        # on the board that makes the statement
    other_share: float  # the same pair, the same direction, on the other board
    outcome: str        # one of OUTCOMES


def statements(made_by: Leaderboard, other: Leaderboard, measures: list[str]) -> list[Statement]:
    """Every "X ahead of Y, distinguishably" of ``made_by`` over ``measures``, judged on ``other``."""
    level = made_by.bootstrap.get("level", 0.9)
    other_level = other.bootstrap.get("level", 0.9)
    found = []
    for a, b in itertools.combinations(measures, 2):
        share = ahead(made_by, a, b)
        if not distinguishable(share, level):
            continue
        winner, loser, share = (a, b, share) if share >= 0.5 else (b, a, 1.0 - share)
        other_share = ahead(other, winner, loser)
        if not math.isfinite(other_share):
            continue
        same_way = other_share >= 0.5
        sure = distinguishable(other_share, other_level)
        outcome = ("holds" if sure else "weakens") if same_way else ("contradicted" if sure else "reverses")
        found.append(Statement(winner, loser, share, other_share, outcome))
    return found


def chance_outside(level: float) -> float:
    """The probability that a second draw's point lands outside the first's central ``level``
    interval when both are normal with the same spread (their difference has sqrt(2) times it)."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    return 2 * (1 - NormalDist().cdf(z / math.sqrt(2)))


def _psi(row: MeasureRow) -> str:
    lo, hi = row.intervals.get("total", (math.nan, math.nan))
    return f"{row.total:.2f} [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else f"{row.total:.2f}"


def _inside(value: float, row: MeasureRow) -> bool:
    lo, hi = row.intervals.get("total", (math.nan, math.nan))
    return math.isfinite(lo) and lo <= value <= hi


def compare(first: Leaderboard, second: Leaderboard) -> list[str]:
    a_rows, b_rows = scored(first), scored(second)
    both = [m for m in a_rows if m in b_rows]
    settings_differ = [m for m in both if a_rows[m].settings_hash != b_rows[m].settings_hash]
    level = first.bootstrap.get("level", 0.9)
    out = [
        f"## {first.population} against {second.population}",
        "",
        f"`{first.command}` ({first.n_models} models) and `{second.command}` ({second.n_models} models); "
        f"intervals: {100 * level:g}% bootstrap ({first.bootstrap.get('resampled', 'off')}).",
        "",
    ]
    if settings_differ:
        out += [f"Measured with other settings on the two seeds (compared anyway, marked †): {', '.join(settings_differ)}. "
                "Regenerate both leaderboards with the same settings for a clean comparison.", ""]
    order = sorted(both, key=lambda m: -(a_rows[m].total + b_rows[m].total))
    out += [f"| measure | family | Ψ {first.population} | Ψ {second.population} | difference | each inside the other's interval |",
            "| --- | --- | --- | --- | ---: | --- |"]
    inside = {(True, True): "both", (True, False): f"only {second.population}'s in {first.population}'s",
              (False, True): f"only {first.population}'s in {second.population}'s", (False, False): "**neither**"}
    for m in order:
        a, b = a_rows[m], b_rows[m]
        mark = " †" if m in settings_differ else ""
        label = f"{a.label}{mark}" + (" (reference)" if a.reference else "")
        out.append(f"| {label} | {a.family} | {_psi(a)} | {_psi(b)} | {b.total - a.total:+.2f} | "
                   f"{inside[(_inside(b.total, a), _inside(a.total, b))]} |")
    only = sorted(set(a_rows) ^ set(b_rows))
    if only:
        out += ["", f"Scored on one seed only: {', '.join(only)}."]

    candidates = [m for m in order if not a_rows[m].reference]
    tau = kendall_tau(np.array([a_rows[m].total for m in candidates]), np.array([b_rows[m].total for m in candidates]))
    moved = sum(not _inside(b_rows[m].total, a_rows[m]) for m in candidates)
    out += ["", f"**Rank agreement** of the {len(candidates)} measures' Ψ: Kendall τ-a = {tau:.2f}. "
            f"{moved} of {len(candidates)} measures have their {second.population} Ψ outside their {first.population} interval; "
            f"if each interval held all the noise between two seeds, about {100 * chance_outside(level):.0f}% would be, by chance "
            "(the other seed's value carries its own noise too).", ""]

    for made_by, other in ((first, second), (second, first)):
        found = statements(made_by, other, candidates)
        counts = {o: sum(s.outcome == o for s in found) for o in OUTCOMES}
        summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)
        out.append(f"**{made_by.population} says** {len(found)} times that one measure is distinguishably ahead of another; "
                   f"on {other.population}: {summary}.")
        broken = [s for s in found if s.outcome in ("reverses", "contradicted")]
        for s in broken:
            out.append(f"- {s.outcome}: {s.winner} ahead of {s.loser} in {100 * s.share:.0f}% of {made_by.population}'s draws, "
                       f"{100 * s.other_share:.0f}% of {other.population}'s")
        out.append("")

    for board in (first, second):
        out += [f"**Verdict of {board.population}:**", ""] + [f"> {line}" for line in board.verdict] + [""]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="FIRST:SECOND", help="two leaderboards of one grid on two training seeds")
    parser.add_argument("--dir", type=Path, default=HERE, help="where the leaderboards' JSON files are (default: this folder)")
    parser.add_argument("--out", type=Path, default=None, help="default: DIR/across_seeds.md")
    args = parser.parse_args(argv)

    command = "python leaderboards/across_seeds.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    lines = ["# Across training seeds: which statements survive", "",
             f"Generated by `{command}`; never edited by hand. See the docstring of `leaderboards/across_seeds.py` for "
             "what each part means.", ""]
    for pair in args.pairs:
        names = pair.split(":")
        if len(names) != 2 or not all(names):
            parser.error(f"pair {pair!r}: write two leaderboard names joined by a colon, e.g. mini:mini_seed1")
        boards = []
        for name in names:
            path = args.dir / f"{name}.json"
            if not path.is_file():
                parser.error(f"{path}: no such leaderboard; write it with `icc-bench evaluate {name} --out {args.dir}`")
            boards.append(read_leaderboard(path))
        lines += compare(*boards)
    out = args.out or args.dir / "across_seeds.md"
    out.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
