"""A tiny population spec shared by the tests that train: seconds on one CPU core."""

from __future__ import annotations

import os
from pathlib import Path

TINY = """
description = "a tiny population for tests"
[dataset]
name = "synthetic_hierarchy"
options = {{ superclasses = 2, subclasses = 2, train_per_subclass = 12, test_per_subclass = 8, resolution = 8 }}
[architecture]
name = "vgg"
base_width = 4
[schedule]
epochs = {epochs}
milestones = [2]
save_epochs = [1]
[grid]
design = "one_at_a_time"
lr_wd = [[0.05, 0.0], [0.01, 0.0]]
batch_size = [16, 48]
optimizer = ["sgd", "adam"]
dropout_aug = [[0.0, false], [0.0, true], [0.2, false]]
width_depth = [[1.0, 1.0], [1.5, 1.0]]
"""


def write_tiny(tmp_path: Path, epochs: int = 3, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(epochs=epochs))
    return path


def write_two_population_suite(folder: Path, suite: str = "two") -> Path:
    """Two tiny populations and a suite of them in ``folder`` (for $ICC_BENCH_SPECS): ``tiny_hier`` on
    the synthetic hierarchy, ``tiny_flat`` on the 10 digits (flat labels: c1 and c2 do not apply)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tiny(folder, epochs=2, name="tiny_hier")
    flat = write_tiny(folder, epochs=2, name="tiny_flat")
    text = flat.read_text()
    dataset = text[text.index("[dataset]"):text.index("[architecture]")]
    flat.write_text(text.replace(dataset, '[dataset]\nname = "digits"\noptions = { labels = "fine", resolution = 8, test_fraction = 0.5 }\n'))
    (folder / "suites").mkdir(exist_ok=True)
    (folder / "suites" / f"{suite}.toml").write_text('description = "two tiny populations"\npopulations = ["tiny_hier", "tiny_flat"]\n')
    return folder


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "plugins"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env
