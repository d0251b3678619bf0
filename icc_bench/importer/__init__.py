"""``icc-bench import``: a population trained elsewhere becomes an ordinary zoo.

Researchers who trained their own population have checkpoints and a table of hyperparameters and
accuracies. ``icc-bench import MANIFEST --to ZOO_DIR`` turns them into a zoo like those
``icc-bench train`` writes (safetensors checkpoints with their sha256, one record per model, a
``population.json``), so that ``icc-bench evaluate ZOO_DIR`` and ``icc-bench leaderboard ZOO_DIR``
work on it. ``icc-bench import --template [PATH]`` writes an annotated example manifest.

The manifest
------------
A CSV file (one row per model; ``#`` lines before the header are comments) or a JSON file::

    {"axes": {"lr": "learning_rate", "bs": "batch_size", "mom": "momentum"},
     "constants": {"dataset": "cifar10", "architecture": "vgg", "optimizer": "sgd", ...},
     "rename": {"ckpt": "checkpoint", "acc": "test_accuracy"},
     "ignore": ["notes"],
     "measure_settings": {"c2": {"k": 1}},
     "models": [{"ckpt": "ckpts/a.pt", "lr": 0.1, "bs": 128, "mom": 0.9, "acc": 0.91, ...}, ...]}

A CSV manifest takes these settings from the command line (``--axes``, ``--set``, ``--rename``,
``--ignore``); a JSON manifest takes each one from the file or from the command line, not both.

- The columns icc-bench reads are the fields of :class:`ManifestRow` (``checkpoint``,
  ``architecture``, ``dataset``, the accuracies, ...); ``rename`` maps your names onto them.
- ``axes`` maps each of *your* hyperparameter columns onto an axis: one of the eight of SPEC §4
  (``learning_rate`` ... ``depth``) or a new snake_case name, an axis beyond the eight.
- ``constants`` gives a value that every model shares: a ManifestRow column, or one of the eight
  hyperparameters that is not an axis. Each of the eight needs a value, from an axis column or a
  constant; only ``width`` and ``depth`` default (to 1: the architecture as named).
- Any other column is an error, unless ``ignore`` lists it.

Problems name the row (the first model is row 1, whatever the file's header and comments) and the
column as the manifest spells it.

Scoring uses the declared axes
------------------------------
Each record lists the declared axes in ``axes`` (the eight in table order, then the new ones) and
holds the values of the new ones in ``extra_hyperparams``; its ``hyperparams`` holds all eight,
constants included. ``icc_bench.scores.score_zoo`` scores on the records' axes: granulated Kendall
groups the models on them (a constant never splits a group, so only declared axes can), the
leaderboard has one column per declared axis, and CMI conditions on the paper's composite axes cut
down to the declared ones, each new axis being a composite axis of its own.

Architectures
-------------
``vgg`` and ``wrn`` (with ``base_width`` / ``base_depth``, built at the row's width, depth and
dropout), ``timm:<model name>``, or a factory of yours, ``factory:<module>:<function>``: icc-bench
imports ``<module>`` (it must be importable, e.g. through ``PYTHONPATH``, whenever the zoo is
loaded) and calls ``function(num_classes=<the dataset's training classes>, **architecture_options)``.
The function must be a plain Python function with a parameter named ``num_classes``, take every
option as a keyword, and return an ``nn.Module`` whose ``state_dict`` has the checkpoint's keys and
shapes.

What is refused, and when
-------------------------
Checkpoints are ``.safetensors`` files, or ``.pt`` / ``.pth`` files read only with
``torch.load(weights_only=True)``, which refuses any pickle that would run code. Every row is
validated before anything is written (the file exists and fits its architecture, the model runs on
the dataset's images, every value is valid), and every problem is reported, one line each. The zoo
is then written into a hidden folder beside ZOO_DIR and renamed into place: ZOO_DIR holds the whole
import or nothing (a killed import leaves only the hidden ``.<name>.import-*`` folder).
"""

from icc_bench.importer.checkpoints import (
    CHECKPOINT_SUFFIXES,
    CheckpointError,
    build_imported_model,
    load_checkpoint,
    state_dict_mismatch,
)
from icc_bench.importer.manifest import Manifest, ManifestError, ManifestRow, read_manifest, with_settings
from icc_bench.importer.template import template_csv, template_json, write_template
from icc_bench.importer.validation import AXIS_DEFAULTS, ImportPlan, PlannedModel, declared_axes, plan_import
from icc_bench.importer.writing import import_manifest, population_json, write_import
from icc_bench.models.factory import FACTORY_PREFIX, build_factory_model

__all__ = [
    "AXIS_DEFAULTS", "CHECKPOINT_SUFFIXES", "FACTORY_PREFIX", "CheckpointError", "ImportPlan", "Manifest", "ManifestError",
    "ManifestRow", "PlannedModel", "build_factory_model", "build_imported_model", "declared_axes", "import_manifest",
    "load_checkpoint", "plan_import", "population_json", "read_manifest", "state_dict_mismatch", "template_csv",
    "template_json", "with_settings", "write_import", "write_template",
]
