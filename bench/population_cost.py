"""What each embedded population cost to train and to measure, read from its zoo.

    python bench/population_cost.py [--runs-dir runs] [POPULATION ...]

Every model record holds the seconds its training took (``train_seconds``) and every value in the
results store the seconds its measure took (``seconds``); this script sums them per population
(values under the settings the population uses now, evaluation seed 0) and per measure family (the
``family`` each measure declares), and sets them beside the zoo's regime (SPEC §4: the fraction of models
that fit, the spread ratio of test accuracy). It times nothing itself: the figures are those of the runs that built the zoos,
on whatever machine and under whatever load that was (the records name the device). Model-seconds
add up the work of every process; two processes sharing 2 cores finish in about half of that.

The reference is the quick population in the same table: per-model training seconds are also
given as a multiple of quick's median, which is what stays comparable across machines.
Populations without a zoo under ``--runs-dir`` are listed as such.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics

import icc_bench
from icc_bench.population import expand
from icc_bench.regime import population_regime
from icc_bench.store import STORE_NAME
from icc_bench.zoo import Zoo

POPULATIONS = ("quick", "quick_seed1", "mini", "mini_seed1", "digits_quick", "digits_mini")


def measure_seconds(zoo: Zoo, current: set[tuple[str, str]]) -> dict[str, float]:
    """Seconds of the stored values (status ok, evaluation seed 0) of each measure under the settings
    the population uses now (``current``: (name, settings hash) pairs), by measure name; values
    stored under superseded settings are not counted."""
    path = zoo.root / STORE_NAME
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT measure, settings_hash, SUM(seconds) FROM results WHERE status = 'ok' AND seed = 0 GROUP BY measure, settings_hash"
        ).fetchall()
    finally:
        db.close()
    return {measure: float(seconds or 0.0) for measure, shash, seconds in rows if (measure, shash) in current}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("populations", nargs="*", default=list(POPULATIONS), help="spec names or paths")
    parser.add_argument("--runs-dir", default=os.environ.get("ICC_BENCH_RUNS", "runs"))
    args = parser.parse_args(argv)

    rows, quick_median = [], None
    for target in args.populations:
        opened = icc_bench.open_zoo(target, runs_dir=args.runs_dir)  # a spec name or a path to one
        spec_models, name, zoo = len(expand(opened.spec)), opened.spec.name, opened.zoo
        records = list(zoo.records()) if zoo.models_dir.exists() else []
        if not records:
            rows.append((name, None))
            continue
        seconds = [float(r["train_seconds"]) for r in records if r.get("train_seconds") is not None]
        median = statistics.median(seconds)
        if name == "quick":
            quick_median = median
        by_family: dict[str, float] = {}
        measures = opened.measures()
        family_of = {m.name: m.family for m in measures}
        for measure, s in measure_seconds(zoo, {(m.name, m.settings_hash) for m in measures}).items():
            by_family[family_of[measure]] = by_family.get(family_of[measure], 0.0) + s
        devices = sorted({str(r.get("device")) for r in records})
        rows.append((name, (len(records), spec_models, sum(seconds), median, max(seconds), devices, by_family,
                            population_regime(records))))

    for name, row in rows:
        if row is None:
            print(f"population '{name}': no trained zoo under {args.runs_dir}")
            continue
        n, total_models, total, median, longest, devices, by_family, regime = row
        print(f"population '{name}': {n} of its {total_models} models trained, on {', '.join(devices)}")
        print(f"  regime: {regime.summary()}")
        print(f"  training: {total:,.0f} model-seconds ({total / 3600:.2f} h), median {median:.1f} s per model, longest {longest:.1f} s")
        if quick_median:
            print(f"  ratio (per-model training, {name} / quick median): {median / quick_median:.1f}x")
        if by_family:
            parts = ", ".join(f"{f} {s:,.0f} s" for f, s in sorted(by_family.items()))
            print(f"  measuring: {sum(by_family.values()):,.0f} value-seconds ({parts})")


if __name__ == "__main__":
    main()
