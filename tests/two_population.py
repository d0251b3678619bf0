"""The smallest population with something to score: two tiny models, one epoch (a second or two)."""

from __future__ import annotations

from pathlib import Path

TWO = """
description = "two tiny models"
[dataset]
name = "synthetic_hierarchy"
options = { superclasses = 2, subclasses = 2, train_per_subclass = 6, test_per_subclass = 4, resolution = 8 }
[architecture]
name = "vgg"
base_width = 4
[schedule]
epochs = 1
milestones = [1]
[[configs]]
learning_rate = 0.05
batch_size = 16
weight_decay = 0.0
optimizer = "sgd"
dropout = 0.0
augmentation = false
width = 1.0
depth = 1.0
[[configs]]
learning_rate = 0.01
batch_size = 16
weight_decay = 0.0
optimizer = "sgd"
dropout = 0.0
augmentation = false
width = 1.0
depth = 1.0
"""


def write_two(folder: Path, name: str = "two") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(TWO)
    return path
