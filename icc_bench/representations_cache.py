"""Probe representations on disk: computed once per checkpoint and probe sample, read by every analysis.

The probe's forward pass over the training set is the expensive part of every intraclass measure
(SPEC §1); the kernels that follow are cheap. An analysis that evaluates the same models many times
(a sweep over ``k``, per-layer values, several neurons) therefore reads the representations from
this cache instead of running the networks again.

Layout, beside the zoo's models::

    <zoo>/representations/<key>.<sha256[:16]>.<probe>.safetensors

``key`` is the model id, or ``<model_id>@<epoch>`` for a snapshot saved during training; ``sha256``
is that checkpoint's hash as its record gives it; ``probe`` names the probe sample
(``probe-all-seed0``: the whole training set; ``probe-50-seed0``: 50 per class, seed 0). A retrained
or altered checkpoint has another hash, hence another file: a cache entry is never used for other
weights. On load, the full hash and the probe's sample indices stored inside the file are checked
against those asked for, and any mismatch (a truncated hash colliding, a dataset whose subsample
changed) means a recompute that overwrites the entry.

Each file holds the pre-activations, one ``preactivations.NNN`` float32 tensor of shape
(n_probe, n_neurons_l) per layer, and the probe's ``indices``; one metadata entry holds the layer
names and the key. Activations are not stored: they are the ReLU of the pre-activations, exactly as
:func:`icc_bench.probe.compute_representations` derives them. Files are written atomically, so a
killed run leaves whole entries only, and the folder can be deleted at any time.

Size: n_probe x n_neurons x 4 bytes per checkpoint, e.g. 50,000 x 2,880 x 4 B = 576 MB for a
width-x1.5 Wide ResNet probed on all of CIFAR-100; set the measures' ``probe_samples`` (or delete
the folder after an analysis) when that matters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from icc_bench import probe
from icc_bench.measure import MeasureContext, ProbeSample
from icc_bench.files import atomic_write_bytes
from icc_bench.zoo import Zoo, ZooError

if TYPE_CHECKING:
    from torch import Tensor

    from icc_bench.probe import Representations

CACHE_FOLDER = "representations"
_FORMAT = "icc-bench-representations"


@dataclass(frozen=True)
class Checkpoint:
    """One set of weights of a zoo model: the final checkpoint (``epoch`` None) or a training snapshot.

    ``key`` names it in cache files and in the results store: the model id, or
    ``<model_id>@<epoch>`` for a snapshot (the zoo's own checkpoint naming).
    """

    model_id: str
    epoch: int | None
    sha256: str

    @property
    def key(self) -> str:
        return self.model_id if self.epoch is None else f"{self.model_id}@{self.epoch}"

    @classmethod
    def final(cls, record: dict[str, Any]) -> Checkpoint:
        return cls(record["model_id"], None, record["checkpoint_sha256"])

    @classmethod
    def snapshots(cls, record: dict[str, Any]) -> list[Checkpoint]:
        """The snapshots a record lists, by increasing epoch."""
        saved = record.get("snapshots") or {}
        return [cls(record["model_id"], int(epoch), saved[epoch]["sha256"]) for epoch in sorted(saved, key=int)]


def probe_name(probe_samples: int | None, seed: int) -> str:
    """The file-name part of a probe sample: ``probe-all-seed0``, ``probe-50-seed0``."""
    return f"probe-{'all' if probe_samples is None else probe_samples}-seed{seed}"


class RepresentationsCache:
    """The ``representations/`` folder of one zoo.

    Parameters
    ----------
    zoo_root : Path
        The zoo folder; entries live in ``zoo_root / "representations"``.
    """

    def __init__(self, zoo_root: str | Path) -> None:
        self.folder = Path(zoo_root) / CACHE_FOLDER

    def path(self, checkpoint: Checkpoint, probe_samples: int | None, seed: int) -> Path:
        return self.folder / f"{checkpoint.key}.{checkpoint.sha256[:16]}.{probe_name(probe_samples, seed)}.safetensors"

    def load(
        self, checkpoint: Checkpoint, probe_samples: int | None, seed: int, indices: Tensor, device: torch.device | str = "cpu"
    ) -> Representations | None:
        """The cached representations, or None when there is no valid entry for exactly this request."""
        path = self.path(checkpoint, probe_samples, seed)
        if not path.is_file():
            return None
        try:
            with safe_open(path, framework="pt", device="cpu") as f:
                meta = json.loads((f.metadata() or {})["icc_bench"])
                if meta.get("format") != _FORMAT or meta.get("checkpoint_sha256") != checkpoint.sha256:
                    return None
                if not torch.equal(f.get_tensor("indices"), indices.cpu()):
                    return None  # another probe sample under the same name (the dataset changed)
                layer_names = list(meta["layer_names"])
                preactivations = [f.get_tensor(f"preactivations.{i:03d}").to(device) for i in range(len(layer_names))]
        except (SafetensorError, OSError, ValueError, KeyError, TypeError):
            return None  # unreadable or incomplete (e.g. written by another version): recompute and overwrite
        # As compute_representations: max pooling commutes with ReLU, so this is the pooled activation.
        activations = [torch.relu(p) for p in preactivations]
        return probe.Representations(preactivations, activations, layer_names)

    def save(
        self, checkpoint: Checkpoint, probe_samples: int | None, seed: int, indices: Tensor, representations: Representations
    ) -> Path:
        """Write one entry atomically; return its path."""
        tensors = {f"preactivations.{i:03d}": p.detach().cpu().contiguous() for i, p in enumerate(representations.preactivations)}
        tensors["indices"] = indices.cpu().contiguous()
        # One metadata key: safetensors writes several in hash order, which would vary the bytes.
        meta = {
            "format": _FORMAT, "model_id": checkpoint.model_id, "epoch": checkpoint.epoch,
            "checkpoint_sha256": checkpoint.sha256, "probe_samples": probe_samples, "seed": seed,
            "layer_names": list(representations.layer_names),
        }
        path = self.path(checkpoint, probe_samples, seed)
        atomic_write_bytes(path, save(tensors, metadata={"icc_bench": json.dumps(meta)}))
        return path

    def representations(
        self, model: torch.nn.Module, x_probe: Tensor, *, checkpoint: Checkpoint, probe_samples: int | None, seed: int,
        indices: Tensor, device: torch.device | str = "cpu",
    ) -> Representations:
        """The cached entry if valid (on ``device``); otherwise computed on ``model`` and ``x_probe``,
        saved, and returned."""
        cached = self.load(checkpoint, probe_samples, seed, indices, device)
        if cached is not None:
            return cached
        # Looked up on the module at call time, so that tests can count the forward passes.
        computed = probe.compute_representations(model, x_probe)
        self.save(checkpoint, probe_samples, seed, indices, computed)
        return computed

    def size_bytes(self) -> int:
        """Bytes held by the cache folder (0 when it does not exist)."""
        if not self.folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))


class _CachedProbeSample(ProbeSample):
    """A probe sample whose representations come from the cache (computed and stored on a miss)."""

    def __init__(self, ctx: CachedMeasureContext, per_class: int | None) -> None:
        super().__init__(ctx, per_class)
        self._owner = ctx

    @cached_property
    def representations(self) -> Representations:
        ctx = self._owner
        return ctx.cache.representations(
            ctx.model, ctx.dataset.x_train[self.indices], checkpoint=ctx.checkpoint, probe_samples=self.per_class,
            seed=ctx.seed, indices=self.indices, device=ctx.device,
        )


class CachedMeasureContext(MeasureContext):
    """A :class:`~icc_bench.measure.MeasureContext` whose probe representations go through the cache.

    Measures see exactly what they see under ``icc-bench evaluate``: the same probe sample (same
    ``seed``, same ``probe_samples``) and the same float32 pre-activations, read back bit for bit.

    Parameters
    ----------
    model, dataset, hyperparams, seed, device, record, probe_samples
        As for :class:`~icc_bench.measure.MeasureContext`.
    cache : RepresentationsCache
        Where representations are read from and written to.
    checkpoint : Checkpoint
        Which weights ``model`` holds; keys the cache entries.
    """

    def __init__(self, *args: Any, cache: RepresentationsCache, checkpoint: Checkpoint, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache = cache
        self.checkpoint = checkpoint
        self._cached_probes: dict[int | None, _CachedProbeSample] = {}

    def probe_for(self, probe_samples: int | None) -> ProbeSample:
        if probe_samples not in self._cached_probes:
            self._cached_probes[probe_samples] = _CachedProbeSample(self, probe_samples)
        return self._cached_probes[probe_samples]


def _snapshot(record: dict[str, Any], epoch: int) -> Checkpoint:
    return next(c for c in Checkpoint.snapshots(record) if c.epoch == epoch)  # load_model checked it exists


def open_context(
    zoo: Zoo,
    checkpoint: Checkpoint,
    *,
    cache: RepresentationsCache | None = None,
    device: torch.device | str = "cpu",
    data_dir: str | Path | None = None,
    seed: int = 0,
) -> CachedMeasureContext:
    """Load one checkpoint of a zoo model (sha256 verified) into a context that reads the cache.

    Nothing is computed until a measure reads the representations.
    """
    from icc_bench.config import DatasetSpec, HyperParams
    from icc_bench.data.cache import load_job_dataset

    model, record = zoo.load_model(checkpoint.model_id, epoch=checkpoint.epoch, device=device)
    expected = Checkpoint.final(record) if checkpoint.epoch is None else _snapshot(record, checkpoint.epoch)
    if expected != checkpoint:
        raise ZooError(
            f"{zoo.record_path(checkpoint.model_id)}: the record changed while it was being analysed "
            f"(checkpoint {checkpoint.key} now has sha256 {expected.sha256[:12]}...); run the analysis again"
        )
    dataset = load_job_dataset(DatasetSpec.model_validate(record["dataset"]), data_dir)
    return CachedMeasureContext(
        model, dataset, HyperParams.model_validate(record["hyperparams"]), seed=seed, device=device, record=record,
        cache=cache or RepresentationsCache(zoo.root), checkpoint=checkpoint,
    )
