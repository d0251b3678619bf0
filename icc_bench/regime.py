"""Is a population in the paper's regime? The two criteria of SPEC §4, from a zoo's records.

The paper's conclusions are about generalization among models that all fit their training set,
over hyperparameters that move test accuracy a lot. A population counts as evidence only when

1. **fit**: at least ``FIT_FRACTION`` = 95 % of its models reach a training accuracy of at least
   ``FIT_ACCURACY`` = 0.99 (the record's final, eval-mode accuracy on the whole training set), and
2. **spread**: the inter-quartile range of test accuracy across its models is at least
   ``SPREAD_RATIO`` = 5 times the binomial standard deviation of one model's test accuracy,
   ``sqrt(p (1 - p) / n_test)`` with ``p`` the median test accuracy: the differences to rank are
   then large against the noise of the target itself.

Quartiles are numpy's default (linear interpolation between order statistics, "type 7"), so the
IQR of one model is 0. ``n_test`` is read from each record: ``predictions.splits.test`` (what
``icc_bench.zoo`` writes) or a top-level ``n_test``; the records of one zoo share a test set, and if
they disagree the smallest count is used (the largest standard deviation: the cautious reading).
Without any count the spread ratio is unknown, and the population is not called in the regime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Training accuracy from which a model counts as fitting its training set.
FIT_ACCURACY = 0.99
#: Share of the models that must fit.
FIT_FRACTION = 0.95
#: Least inter-quartile range of test accuracy, in binomial standard deviations of one model's.
SPREAD_RATIO = 5.0


@dataclass(frozen=True)
class Regime:
    """The two criteria measured on one population (see the module docstring).

    ``spread_ratio`` is ``test_iqr / binomial_std``; it is ``inf`` when the median model is exact
    (``binomial_std == 0``) and the IQR is positive, 0 when both are 0, and None (with
    ``n_test`` and ``binomial_std``) when no record says how many test images there were.
    """

    models: int
    fitted: int  # models with train_accuracy >= FIT_ACCURACY
    fit_fraction: float
    test_q1: float
    test_median: float
    test_q3: float
    test_iqr: float
    n_test: int | None
    binomial_std: float | None
    spread_ratio: float | None

    @property
    def fits(self) -> bool:
        return self.fit_fraction >= FIT_FRACTION

    @property
    def spreads(self) -> bool:
        return self.spread_ratio is not None and self.spread_ratio >= SPREAD_RATIO

    @property
    def in_regime(self) -> bool:
        return self.fits and self.spreads

    def summary(self) -> str:
        """One line: both criteria with their numbers and thresholds."""
        fit = (
            f"{self.fitted}/{self.models} models ({self.fit_fraction:.0%}) reach >= {FIT_ACCURACY:.0%} train accuracy "
            f"(regime: >= {FIT_FRACTION:.0%})"
        )
        if self.spread_ratio is None:
            spread = f"test accuracy IQR {self.test_iqr:.3f}, spread ratio unknown (no test-set size in the records)"
        else:
            spread = (
                f"test accuracy IQR {self.test_iqr:.3f} = {self.spread_ratio:.1f}x the binomial std {self.binomial_std:.4f} "
                f"of one model (p = {self.test_median:.3f}, n = {self.n_test} test images; regime: >= {SPREAD_RATIO:g}x)"
            )
        return f"{fit}; {spread}"

    def warning(self) -> str | None:
        """None in the regime; otherwise one line naming each criterion missed."""
        if self.in_regime:
            return None
        missed = []
        if not self.fits:
            missed.append(f"only {self.fit_fraction:.0%} of the models fit their training set (needs >= {FIT_FRACTION:.0%})")
        if self.spread_ratio is None:
            missed.append("the spread of test accuracy cannot be judged (the records give no test-set size)")
        elif not self.spreads:
            missed.append(
                f"the IQR of test accuracy is {self.spread_ratio:.1f}x one model's binomial std (needs >= {SPREAD_RATIO:g}x)"
            )
        return (
            "not in the paper's regime (SPEC §4): " + "; ".join(missed)
            + ", so its scores do not test what the paper's do"
        )


def _n_test(record: Mapping[str, Any]) -> int | None:
    splits = (record.get("predictions") or {}).get("splits") or {}
    n = splits.get("test", record.get("n_test"))
    return None if n is None else int(n)


def population_regime(records: Sequence[Mapping[str, Any]]) -> Regime:
    """Measure the two criteria of SPEC §4 on a zoo's records.

    Parameters
    ----------
    records : sequence of mappings
        One per model, each with ``train_accuracy`` and ``test_accuracy`` in [0, 1] and, for the
        spread ratio, the number of test images (``predictions.splits.test`` or ``n_test``).

    Returns
    -------
    Regime
        ``fit_fraction = #{train_accuracy >= 0.99} / models``; ``test_iqr = Q3 - Q1`` of test
        accuracy; ``binomial_std = sqrt(p (1 - p) / n_test)`` at the median ``p``;
        ``spread_ratio = test_iqr / binomial_std``.
    """
    if not records:
        raise ValueError("population_regime needs at least one model record; the zoo is empty")
    train = np.array([float(r["train_accuracy"]) for r in records])
    test = np.array([float(r["test_accuracy"]) for r in records])
    fitted = int((train >= FIT_ACCURACY).sum())
    q1, median, q3 = (float(q) for q in np.percentile(test, [25, 50, 75]))
    iqr = q3 - q1
    counts = [n for n in map(_n_test, records) if n is not None]
    n_test = min(counts) if counts else None
    if n_test is None or n_test < 1:
        binomial_std = ratio = None
    else:
        binomial_std = math.sqrt(median * (1.0 - median) / n_test)
        if binomial_std > 0:
            ratio = iqr / binomial_std
        else:  # the median model is exactly right (or wrong) on every test image: no sampling noise
            ratio = math.inf if iqr > 0 else 0.0
    return Regime(
        models=len(records), fitted=fitted, fit_fraction=fitted / len(records),
        test_q1=q1, test_median=median, test_q3=q3, test_iqr=iqr,
        n_test=n_test, binomial_std=binomial_std, spread_ratio=ratio,
    )
