"""A test of meaning, not arithmetic: c1 and c2 see subclasses that a network has learned.

On the synthetic hierarchy, a network trained on the fine (subclass) labels must separate the
subclasses inside each superclass; its untrained initialisation, and the same network fit to
shuffled labels, must not. c1 and c2 are computed exactly as the plugin does, from the probe.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from icc_bench.config import ArchitectureSpec, DatasetSpec, HyperParams, Schedule
from icc_bench.data import load_dataset
from icc_bench.models import build_model
from icc_bench.probe import compute_representations
from icc_bench.train import train_model
from icc_intraclass.kernels import c1_selectivity, c2_silhouette

ARCH = ArchitectureSpec(name="vgg", base_width=8)
HP = HyperParams(learning_rate=0.05, weight_decay=0.0, batch_size=32, optimizer="sgd", dropout=0.0,
                 augmentation=False, width=1.0, depth=1.0)


@pytest.fixture(scope="module")
def scores():
    data = load_dataset(DatasetSpec(name="synthetic_hierarchy", options={
        "superclasses": 3, "subclasses": 3, "train_per_subclass": 40, "test_per_subclass": 10}))
    fine = dataclasses.replace(data, y_train=data.fine_train, y_test=data.fine_test, num_classes=9)
    g = torch.Generator().manual_seed(0)
    shuffled = dataclasses.replace(fine, y_train=fine.y_train[torch.randperm(len(fine.y_train), generator=g)])
    schedule = Schedule(epochs=25, milestones=(20,))

    def measure(state_dict):
        model = build_model(ARCH, HP, 9, data.input_shape)
        model.load_state_dict(state_dict)
        reps = compute_representations(model, data.x_train)
        return (
            c1_selectivity(reps.preactivations, data.fine_train, data.fine_to_coarse),
            c2_silhouette(reps.activations, data.fine_train, data.fine_to_coarse, k=1),
        )

    torch.manual_seed(0)
    untrained = build_model(ARCH, HP, 9, data.input_shape).state_dict()
    learned = train_model(ARCH, HP, schedule, fine, seed=0, device="cpu")
    memorized = train_model(ARCH, HP, schedule, shuffled, seed=0, device="cpu")
    assert learned.test_accuracy > 0.6  # the subclasses were really learned (chance: 1/9)
    assert memorized.train_accuracy > 0.9 and memorized.test_accuracy < 0.3  # fit, but to noise
    return {"untrained": measure(untrained), "learned": measure(learned.state_dict), "shuffled": measure(memorized.state_dict)}


@pytest.mark.parametrize("index,name", [(0, "c1"), (1, "c2")])
def test_learned_subclasses_score_higher(scores, index, name):
    learned, untrained, shuffled = (scores[k][index] for k in ("learned", "untrained", "shuffled"))
    assert learned > untrained, f"{name}: learned {learned:.3f} <= untrained {untrained:.3f}"
    assert learned > shuffled, f"{name}: learned {learned:.3f} <= shuffled labels {shuffled:.3f}"
