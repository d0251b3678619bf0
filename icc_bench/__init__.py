"""icc-bench: does your generalization measure predict generalization?

How to write a measure
======================

A measure is a pure function of one trained model, given as a :class:`MeasureContext`, and of a
settings object; it returns a Python float. icc-bench computes it on every model of a population
and ranks how well it predicts generalization (granulated Kendall). The built-in measures
(``icc_intraclass``, ``icc_sharpness``, ``icc_margins``, ``icc_norms``, ``icc_spectral``,
``icc_disagreement``) are plugins written exactly like the one below.

1. A measure in one file
------------------------
The output margin of Jiang et al. (2020), "Fantastic generalization measures", Appendix C.1: the
10th percentile, over the probe samples, of the true class's logit minus the largest other logit.
::

    # my_measure.py
    import torch
    from pydantic import BaseModel, ConfigDict, Field

    from icc_bench import Measure, MeasureContext, hookimpl


    class LogitMarginSettings(BaseModel):
        model_config = ConfigDict(frozen=True)  # settings are frozen: their hash keys the results

        quantile: float = Field(0.1, gt=0, lt=1, description="which quantile of the margins")


    def logit_margin(ctx: MeasureContext, settings: LogitMarginSettings) -> float:
        \"\"\"Low quantile of the output margin on the probe sample (Jiang et al. 2020, C.1).\"\"\"
        x = ctx.dataset.x_train[ctx.probe_indices]  # (n, C, H, W), on ctx.device
        y = ctx.probe_labels  # (n,)
        with torch.no_grad():  # ctx.model is already in eval mode
            logits = torch.cat([ctx.model(chunk) for chunk in x.split(500)])  # (n, classes)
        true_logit = logits.gather(1, y[:, None]).squeeze(1)
        best_other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        return torch.quantile(true_logit - best_other, settings.quantile).item()


    @hookimpl
    def icc_bench_register_measures(registry):
        registry.add(
            Measure(
                name="logit_margin",  # snake_case: the key in the CLI, specs, store, leaderboard
                family="margin",
                higher_is_better=True,  # a larger margin predicts better generalization
                needs_hierarchy=False,  # uses only the training labels
                fn=logit_margin,
                settings=LogitMarginSettings(),
            )
        )

Use it without installing anything::

    icc-bench measures --plugin my_measure.py      # listed, with its direction and settings
    icc-bench evaluate --plugin my_measure.py      # computed on every model, ranked

``--plugin`` also takes a package folder (``--plugin path/to/my_package``) or an importable module
name (``--plugin my_package.measures``).

2. A measure in a package
-------------------------
Declare the module in the ``icc_bench`` entry-point group of your ``pyproject.toml``; once the
package is installed, every ``icc-bench`` command finds it, and ``icc-bench measures`` shows its
distribution and version in the plugin column::

    [project]
    name = "my-measure"
    version = "0.1.0"
    dependencies = ["icc-bench"]

    [project.entry-points.icc_bench]
    my_measure = "my_measure"

``examples/icc_example_measure`` in the icc-bench repository is a complete such package.

3. What the context offers
--------------------------
Everything is computed for one model, on first use, and cached: all measures of a model share it.

==============================  =================================================================
``ctx.model``                   the network, in eval mode, on ``ctx.device``
``ctx.dataset``                 the ``ImageDataset`` on ``ctx.device``: ``x_train``, ``y_train``,
                                ``x_test``, ``y_test``, ``fine_train``, ``num_classes``, ...
``ctx.hyperparams``             the model's ``HyperParams`` (learning rate, batch size, ...)
``ctx.record``                  the model's zoo record (accuracies, training curve, ...)
``ctx.seed``                    the seed of the probe sample and of the generator
``ctx.generator()``             a fresh CPU ``torch.Generator`` seeded with ``ctx.seed``
``ctx.probe_indices``           (n,) training indices of the probe sample (stratified, seeded)
``ctx.probe_labels``            (n,) training labels of the probe (superclasses if hierarchical)
``ctx.probe_fine_labels``       (n,) subclass labels of the probe, or None
``ctx.fine_to_coarse``          (num_fine,) superclass of each subclass, or None
``ctx.preactivations``          per layer, the (n, neurons) BatchNorm outputs, max pooled over H, W
``ctx.activations``             ReLU of the same
``ctx.probe_for(k)``            the probe of ``k`` samples per class (labels, representations)
``ctx.snapshot_state(epoch)``   the weights after ``epoch`` epochs (0: initial), from the zoo
``ctx.siblings()``              ``{model_id: model}``: the other seeds of this configuration
==============================  =================================================================

The last two read the zoo the model came from (``icc-bench evaluate`` passes it) and raise
``NotApplicable`` when it lacks them: no zoo, no snapshot at that epoch, a single seed.

4. The rules
------------
- A pure function of ``(ctx, settings)``: no files, no global state, no randomness but
  ``ctx.generator()``. Leave the model as you found it: weights, buffers and mode.
- Return a Python float (``tensor.item()``); 0-d tensors and NumPy floats are converted, anything
  else is an error naming the measure. The value must not depend on the order of the training
  samples.
- Declare the direction (``higher_is_better``) and the ``family``; they are never inferred. Set
  ``needs_hierarchy=True`` if you read subclass labels: on a dataset without a hierarchy the
  measure is then reported as not applicable, not as failed. For any other case the measure
  cannot define, raise :class:`NotApplicable` with the reason. Set ``reads_heldout=True`` if
  you read inputs outside the training set (``x_heldout``, ``x_test``; never their labels): the
  leaderboard marks such measures, since they use information the others do not.
- Settings are a frozen pydantic model whose defaults are the published ones. Users override them
  (``measure.with_settings(quantile=0.05)``); each combination is stored under its own
  ``settings_hash``. When a fix changes what the measure computes under the same settings, bump
  ``revision`` (``Measure(..., revision=1)``): it enters the hash, so stored values of the old
  code are no longer used and the next evaluate computes the new ones.

5. Testing it
-------------
``tests/test_measure_contract.py`` runs on every registered measure: a float, finite, the same
for the same seed, unchanged by a permutation of the training samples, the model left untouched,
and applicability on flat and hierarchical data. Run it on your plugin with::

    ICC_BENCH_CONTRACT_PLUGINS=my_measure.py pytest tests/test_measure_contract.py

and test your numbers directly with ``compute_measure(measure, MeasureContext(model, dataset,
hyperparams, seed=0))`` against a reference you can check by hand.

6. Results from Python
----------------------
:mod:`icc_bench.api` opens a zoo (or a suite) and hands back pandas DataFrames: the records (one
row per model), the stored values (one column per measure) and the scores (one row per measure:
psi per axis, Psi, CMI, each with its bootstrap interval, sign-error). A measure computed there goes
into the same results store, under the same key, as ``icc-bench evaluate`` uses, so each reuses
what the other computed::

    import icc_bench

    zoo = icc_bench.open_zoo("quick", plugins=["my_measure.py"])   # runs/quick
    zoo.compute("logit_margin", quantile=0.05)   # a Series, one value per model
    zoo.values()                                  # models x measures
    zoo.scores(bootstrap=1000)                    # measures x (psi_<axis>, Psi, Psi_lo, Psi_hi, cmi, ...)
    icc_bench.open_suite("laptop").summary()      # mean and worst Psi over the suite's populations

The module docstring of :mod:`icc_bench.api` has the complete example (run by the tests).

Debugging: ``ICC_BENCH_TRACE_PLUGINS=1`` prints each plugin found and each hook call to stderr;
``ICC_BENCH_DISABLE_PLUGINS=name1,name2`` keeps those plugins from being imported.
"""

from __future__ import annotations

import pluggy

from icc_bench.measure import Measure, MeasureContext, NotApplicable, compute_measure
from icc_bench.registry import Registry
from icc_bench.version import __version__

#: Marks a plugin's ``icc_bench_*`` functions as hook implementations (see ``icc_bench.hookspecs``).
hookimpl = pluggy.HookimplMarker("icc_bench")

#: Resolved on first use (module ``__getattr__``): the API imports pandas and the scoring modules,
#: which neither a plugin nor ``icc-bench --help`` needs.
_API = ("open_zoo", "open_suite", "ZooResults", "SuiteResults")

__all__ = ["Measure", "MeasureContext", "NotApplicable", "Registry", "__version__", "compute_measure", "hookimpl", *_API]


def __getattr__(name: str):
    if name in _API:
        from icc_bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'icc_bench' has no attribute {name!r}")
