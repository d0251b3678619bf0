"""A measure, the context it is computed in, and the call that computes it.

A :class:`Measure` is a registered description of a generalization measure: the snake_case name
that is its key everywhere (CLI, specs, results store, leaderboard columns), its family, its
direction, whether it needs a label hierarchy, whether it reads held-out inputs, the pure function
that computes it and the frozen settings object that function receives. :class:`MeasureContext` is
what that function reads: one model with its dataset, plus the probe representations computed once
and shared by every measure, and, when the model comes from a zoo, its initial weights and the
other seeds of its configuration.
:func:`compute_measure` is the only way the harness calls a measure; it enforces the contract (a
Python float, or :class:`NotApplicable`).

Torch is imported inside the functions that need it, so that ``import icc_bench`` stays fast for a
plugin that only declares measures or a command that only lists them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from icc_bench.config import HyperParams
    from icc_bench.data import ImageDataset
    from icc_bench.probe import Representations
    from icc_bench.registry import PluginInfo
    from icc_bench.zoo import Zoo

#: The signature of a measure function: ``fn(ctx, settings) -> float``.
MeasureFn = Callable[["MeasureContext", Any], float]
#: A measure's per-layer form: ``per_layer(ctx, settings, neurons_per_layer) -> one value per layer``.
PerLayerFn = Callable[["MeasureContext", Any, int], "list[float]"]
#: A measure's per-neuron form: ``per_neuron(ctx, settings) -> (scores (n_subclasses, n_neurons), probe)``.
PerNeuronFn = Callable[["MeasureContext", Any], "tuple[Any, ProbeSample]"]


class InvalidMeasureError(ValueError):
    """A ``Measure(...)`` whose fields break the contract; the message names the measure and field."""


class InvalidSettingsError(ValueError):
    """A settings override that the measure's settings model rejects."""


class NotApplicable(Exception):
    """The measure does not apply to this model or dataset (not a failure); the message says why.

    Raised by :func:`compute_measure` for a measure that needs a label hierarchy on a dataset
    without one; a measure function may raise it too, for a case it cannot define.
    """


@dataclass(frozen=True, kw_only=True)
class Measure:
    """One registered measure. Construct it in an ``icc_bench_register_measures`` hook.

    Attributes
    ----------
    name : str
        snake_case key (``^[a-z][a-z0-9_]*$``), checked by the registry.
    family : str
        What kind of measure this is ("intraclass clustering", "sharpness", ...); the leaderboard
        groups by it.
    higher_is_better : bool
        True when a higher value predicts better generalization (c1..c4); False for complexity
        measures such as sharpness, where a higher value predicts worse. Declared, never inferred.
    needs_hierarchy : bool
        True when the measure uses subclass labels; on a dataset without a hierarchy it is
        reported as not applicable rather than failed.
    reads_heldout : bool
        True when the measure reads inputs outside the training set (held-out or test images,
        never their labels), as disagreement does: it then uses information the training-set
        measures do not have, and the leaderboard says so. Default False.
    fn : callable
        ``fn(ctx: MeasureContext, settings) -> float``; a pure function of its arguments.
    settings : pydantic.BaseModel
        A frozen settings object holding the measure's defaults (the paper's).
    description : str
        One line for ``icc-bench measures``; defaults to the first line of ``fn``'s docstring.
    per_layer : callable or None
        The measure's per-layer form, for ``icc-bench analyze layers`` (the paper's Figure 5):
        ``per_layer(ctx, settings, neurons_per_layer) -> list[float]``, the measure computed on
        each probe layer alone, one value per layer in ``ctx``'s layer order (NaN where a layer
        has no value). ``neurons_per_layer`` is how many neurons a measure that keeps its top
        neurons keeps within one layer (the paper: 5); a measure that keeps layers ignores it.
        None (the default): the measure has no per-layer form and the layer analysis skips it.
        Raise ``ValueError`` for a layer case the measure cannot define; the analysis reports it.
    per_neuron : callable or None
        The measure's per-neuron form, for ``icc-bench analyze neurons`` (Figures 7 and 11):
        ``per_neuron(ctx, settings) -> (scores, probe)``, where ``scores`` is a
        ``(n_subclasses, n_neurons)`` tensor of how well each neuron (the probe layers' neurons
        concatenated, in layer order) singles out each subclass from the rest of its superclass,
        higher = better, a NaN row for a subclass with no value; and ``probe`` the
        :class:`ProbeSample` the scores were computed on. None (the default): no per-neuron form.
    revision : int
        Bump it (1, 2, ...) when a fix changes what the measure computes under the same settings:
        the results store keys values by :attr:`settings_hash`, which includes the revision when
        it is above 0, so values of the old code are no longer used (they stay in the store) and
        the next ``icc-bench evaluate`` computes the new ones. Default 0, which leaves the key as it
        was before revisions existed.

    The two forms are fields of the measure rather than hooks of their own so that each shares
    the measure's name, settings (the population's ``[measure_settings]`` included) and
    applicability: the analyses compute exactly what the leaderboard's value aggregates.
    """

    name: str
    family: str
    higher_is_better: bool
    needs_hierarchy: bool
    fn: MeasureFn
    settings: BaseModel
    reads_heldout: bool = False
    description: str = ""
    per_layer: PerLayerFn | None = field(default=None, compare=False)
    per_neuron: PerNeuronFn | None = field(default=None, compare=False)
    plugin: PluginInfo | None = field(default=None, compare=False)
    revision: int = 0

    def __post_init__(self) -> None:
        where = f"measure {self.name!r}"
        if not isinstance(self.family, str) or not self.family.strip():
            raise InvalidMeasureError(
                f"{where}: family must be a non-empty string such as 'sharpness', got {self.family!r}"
            )
        for flag in ("higher_is_better", "needs_hierarchy", "reads_heldout"):
            value = getattr(self, flag)
            if not isinstance(value, bool):
                raise InvalidMeasureError(f"{where}: {flag} must be True or False, got {value!r}")
        if not isinstance(self.revision, int) or isinstance(self.revision, bool) or self.revision < 0:
            raise InvalidMeasureError(f"{where}: revision must be an integer >= 0 (bump it when a fix changes the values), "
                                      f"got {self.revision!r}")
        if not callable(self.fn):
            raise InvalidMeasureError(f"{where}: fn must be a function fn(ctx, settings) -> float, got {self.fn!r}")
        _check_takes_ctx_and_settings(where, self.fn)
        for form in ("per_layer", "per_neuron"):
            if getattr(self, form) is not None and not callable(getattr(self, form)):
                raise InvalidMeasureError(f"{where}: {form} must be a function or None, got {getattr(self, form)!r}")
        if not isinstance(self.settings, BaseModel):
            raise InvalidMeasureError(
                f"{where}: settings must be an instance of a pydantic BaseModel, got {type(self.settings).__name__}"
            )
        if type(self.settings).model_config.get("frozen") is not True:
            raise InvalidMeasureError(
                f"{where}: settings model {type(self.settings).__name__} must be frozen; "
                "add model_config = ConfigDict(frozen=True) to it"
            )
        if not self.description:
            doc = inspect.getdoc(self.fn) or ""
            # The dataclass is frozen; __post_init__ is the one place allowed to fill a default.
            object.__setattr__(self, "description", doc.strip().split("\n", 1)[0])

    @property
    def settings_hash(self) -> str:
        """16 hex digits of the sha256 of the canonical JSON of the name, settings and revision.

        The results store keys values by it, so a value computed with other settings, or by a
        revision of the measure that has since been fixed, is never mistaken for this one. Revision
        0 is left out of the payload, so that keys made before revisions existed stay valid.
        """
        payload: dict[str, Any] = {"measure": self.name, "settings": self.settings.model_dump(mode="json")}
        if self.revision:
            payload["revision"] = self.revision
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_settings(self, **overrides: Any) -> Measure:
        """The same measure with some settings changed, validated by the settings model."""
        model = type(self.settings)
        unknown = sorted(set(overrides) - set(model.model_fields))
        if unknown:
            known = ", ".join(model.model_fields) or "(none)"
            raise InvalidSettingsError(
                f"measure {self.name!r} has no setting {unknown[0]!r}; its settings are: {known}"
            )
        try:
            settings = model.model_validate({**self.settings.model_dump(), **overrides})
        except ValidationError as e:
            first = e.errors()[0]
            setting = ".".join(str(part) for part in first["loc"])
            raise InvalidSettingsError(
                f"measure {self.name!r}: setting {setting!r}: {first['msg']} (got {first.get('input')!r})"
            ) from None
        return dataclasses.replace(self, settings=settings)

    def applicability_reason(self, ctx: MeasureContext) -> str | None:
        """Why the measure does not apply to ``ctx``, or None when it does."""
        if self.needs_hierarchy and ctx.fine_to_coarse is None:
            return (
                f"measure {self.name!r} needs subclass labels (a label hierarchy) "
                f"and dataset {ctx.dataset.name!r} has none"
            )
        return None

    def applicable(self, ctx: MeasureContext) -> bool:
        return self.applicability_reason(ctx) is None


def _check_takes_ctx_and_settings(where: str, fn: MeasureFn) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # some builtins and C callables have no signature to check
    try:
        signature.bind(None, None)
    except TypeError:
        raise InvalidMeasureError(
            f"{where}: fn{signature} must accept two positional arguments (ctx, settings)"
        ) from None


def compute_measure(measure: Measure, ctx: MeasureContext) -> float:
    """Compute ``measure`` on ``ctx`` and return its value as a Python float.

    Raises
    ------
    NotApplicable
        When the measure needs a hierarchy that the dataset lacks, or its function says so.
    TypeError
        When the function returns anything but a real number: a float, a NumPy floating scalar or
        a 0-d floating tensor are converted; integers, booleans, arrays and None are refused.
    """
    reason = measure.applicability_reason(ctx)
    if reason is not None:
        raise NotApplicable(reason)
    return _as_python_float(measure.name, measure.fn(ctx, measure.settings))


def _as_python_float(name: str, value: Any) -> float:
    if isinstance(value, float):  # includes numpy.float64, a float subclass
        return float(value)
    # 0-d tensors and NumPy scalars/0-d arrays share .item() and .shape; duck typing avoids
    # importing torch or NumPy here.
    if hasattr(value, "item") and tuple(getattr(value, "shape", (None,))) == ():
        item = value.item()
        if isinstance(item, float):
            return item
        raise TypeError(
            f"measure {name!r} returned a 0-d {type(value).__name__} holding {type(item).__name__} "
            f"{item!r}; a measure returns a float"
        )
    shape = getattr(value, "shape", None)
    kind = type(value).__name__
    described = f"{kind} of shape {tuple(shape)}" if shape is not None else f"{kind} {value!r}"
    raise TypeError(f"measure {name!r} returned a {described}; a measure returns a Python float")


class ProbeSample:
    """One probe: a stratified sample of the training set, and its representations on first use.

    Attributes
    ----------
    per_class : int or None
        Samples per class (subclass when the dataset is hierarchical); None = the whole training set.
    indices : Tensor
        (n_probe,) int64 sorted indices into the training set, on the CPU.
    labels : Tensor
        (n_probe,) int64 training labels (superclasses when hierarchical), on the context's device.
    fine_labels : Tensor or None
        (n_probe,) int64 subclass labels, or None without a hierarchy.
    """

    def __init__(self, ctx: MeasureContext, per_class: int | None) -> None:
        from icc_bench.probe import stratified_indices

        dataset = ctx.dataset
        # Stratify over subclasses when there are some, so every subclass is in the probe.
        strata = dataset.fine_train if dataset.fine_train is not None else dataset.y_train
        self._ctx = ctx
        self.per_class = per_class
        # On the CPU, so that the sample is the same whatever the device.
        self.indices = stratified_indices(strata.cpu(), per_class, ctx.seed)
        self.labels = dataset.y_train[self.indices]
        self.fine_labels = None if dataset.fine_train is None else dataset.fine_train[self.indices]

    @cached_property
    def representations(self) -> Representations:
        from icc_bench.probe import compute_representations

        return compute_representations(self._ctx.model, self._ctx.dataset.x_train[self.indices])

    @property
    def preactivations(self) -> list[Tensor]:
        return self.representations.preactivations

    @property
    def activations(self) -> list[Tensor]:
        return self.representations.activations


#: The record fields that make a configuration: models that agree on all of them and differ in
#: their seed are siblings (:meth:`MeasureContext.siblings`).
CONFIGURATION_FIELDS = ("hyperparams", "extra_hyperparams", "architecture", "architecture_options", "dataset", "schedule")


def configuration_of(record: dict[str, Any]) -> str:
    """The canonical JSON of a record's configuration fields (absent fields as null)."""
    return json.dumps({key: record.get(key) for key in CONFIGURATION_FIELDS}, sort_keys=True, separators=(",", ":"))


class MeasureContext:
    """Everything a measure may read about one model; expensive parts are computed once, on use.

    Parameters
    ----------
    model : nn.Module
        The trained network. It is moved to ``device`` and put in eval mode (in place).
    dataset : ImageDataset
        The dataset the model was trained on; held on ``device``.
    hyperparams : HyperParams
        The configuration the model was trained with.
    seed : int
        Seeds the probe sample and :meth:`generator`.
    device : torch.device or str
        Where the model and tensors live.
    record : dict or None
        The model's zoo record (accuracies, curve, ...), as read from disk.
    probe_samples : int or None
        Probe samples per class (SPEC §1); None = the whole training set.
    zoo : Zoo or None
        The zoo the model was loaded from (``icc-bench evaluate`` passes it): where
        :meth:`snapshot_state` and :meth:`siblings` read. None for a model that comes from nowhere;
        those two then raise :class:`NotApplicable`.

    Attributes
    ----------
    model, dataset, hyperparams, seed, device, record, probe_samples, zoo
        As given (model in eval mode and dataset on ``device``).
    probe_indices, probe_labels, probe_fine_labels
        The default probe's :class:`ProbeSample` fields.
    fine_to_coarse : Tensor or None
        (num_fine,) superclass of each subclass, or None without a hierarchy.
    representations, preactivations, activations
        The default probe's per-layer representations (lists of (n_probe, n_neurons_l) float32
        tensors), computed on first access and shared by every measure of this model.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: ImageDataset,
        hyperparams: HyperParams,
        seed: int,
        device: torch.device | str = "cpu",
        record: dict[str, Any] | None = None,
        probe_samples: int | None = None,
        zoo: Zoo | None = None,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dataset = dataset.to(self.device)
        self.hyperparams = hyperparams
        self.seed = seed
        self.record = record if record is not None else {}
        self.probe_samples = probe_samples
        self.zoo = zoo
        self._probes: dict[int | None, ProbeSample] = {}
        self._siblings: dict[str, nn.Module] | None = None

    def generator(self) -> torch.Generator:
        """A fresh CPU ``torch.Generator`` seeded with ``seed``.

        Each call starts the same stream again, so take one per measure call and draw from it.
        It lives on the CPU so that draws are the same on every device: draw on the CPU and move
        the tensor (``torch.randn(shape, generator=g).to(ctx.device)``).
        """
        import torch

        return torch.Generator().manual_seed(self.seed)

    def snapshot_state(self, epoch: int) -> dict[str, Tensor]:
        """The weights this model had after ``epoch`` training epochs (0: at initialization).

        Read from the zoo (sha256 verified) as a state dict on ``device``; never cached, so a
        measure that keeps it holds the only copy.

        Raises
        ------
        NotApplicable
            When the context has no zoo, or the model's record lists no snapshot at ``epoch``
            (a zoo trained before epoch-0 snapshots were kept, or an imported model).
        """
        saved = self.record.get("snapshots") or {}
        model_id = self.record.get("model_id", "?")
        if str(epoch) not in saved:
            listed = ", ".join(saved) or "none"
            raise NotApplicable(f"model {model_id!r} has no weights saved at epoch {epoch} (saved epochs: {listed})")
        if self.zoo is None:
            raise NotApplicable(f"model {model_id!r} was not loaded from a zoo, so its epoch-{epoch} weights cannot be read")
        return self.zoo.load_state_dict(model_id, epoch=epoch, device=self.device)

    def siblings(self) -> dict[str, nn.Module]:
        """The other seeds of this model's configuration, loaded from its zoo: ``{model_id: model}``.

        A sibling is a record of the same zoo with the same configuration (hyperparameters, extra
        hyperparameters of an imported zoo, architecture and its options, dataset, schedule) and
        another training seed. Each is loaded once per context (sha256 verified), in eval mode on
        ``device``, in model-id order; treat them as read-only, like ``model``.

        Raises
        ------
        NotApplicable
            When the context has no zoo or the configuration was trained with one seed only.
        """
        if self._siblings is None:
            model_id = self.record.get("model_id", "?")
            if self.zoo is None:
                raise NotApplicable(f"model {model_id!r} was not loaded from a zoo, so its other seeds cannot be found")
            mine = configuration_of(self.record)
            ids = [
                r["model_id"] for r in self.zoo.records()
                if r["model_id"] != model_id and r.get("seed") != self.record.get("seed") and configuration_of(r) == mine
            ]
            self._siblings = {i: self.zoo.load_model(i, device=self.device)[0] for i in sorted(ids)}
        if not self._siblings:
            raise NotApplicable(
                f"model {self.record.get('model_id', '?')!r} has no sibling: no other seed of its configuration is in the zoo"
            )
        return self._siblings

    def probe_for(self, probe_samples: int | None) -> ProbeSample:
        """The probe of ``probe_samples`` per class (None = all), built once per size."""
        if probe_samples not in self._probes:
            self._probes[probe_samples] = ProbeSample(self, probe_samples)
        return self._probes[probe_samples]

    def representations_for(self, probe_samples: int | None) -> Representations:
        """Representations of the probe of another size, for a measure whose settings pick one.

        The matching labels are ``ctx.probe_for(probe_samples).labels`` / ``.fine_labels``.
        """
        return self.probe_for(probe_samples).representations

    @property
    def probe(self) -> ProbeSample:
        return self.probe_for(self.probe_samples)

    @property
    def probe_indices(self) -> Tensor:
        return self.probe.indices

    @property
    def probe_labels(self) -> Tensor:
        return self.probe.labels

    @property
    def probe_fine_labels(self) -> Tensor | None:
        return self.probe.fine_labels

    @property
    def fine_to_coarse(self) -> Tensor | None:
        return self.dataset.fine_to_coarse

    @property
    def representations(self) -> Representations:
        return self.probe.representations

    @property
    def preactivations(self) -> list[Tensor]:
        return self.probe.preactivations

    @property
    def activations(self) -> list[Tensor]:
        return self.probe.activations
