"""Population specs: the paper's grids expand exactly as SPEC §4 says; bad specs are refused clearly."""

from __future__ import annotations

from collections import Counter

import pytest

from icc_bench.config import AXES, SpecError, load_spec
from icc_bench.population import REPO_ROOT, available_specs, expand, find_spec

PAPER = {"wrn_cifar100_coarse": 192, "wrn_cifar100": 192, "vgg_cifar10": 144}


@pytest.mark.parametrize("name,count", sorted(PAPER.items()))
def test_paper_spec_sizes_and_tied_pairs(name, count):
    spec = find_spec(name)
    configs = spec.configurations()
    assert len(configs) == count
    assert len(expand(spec)) == count  # one seed
    assert len({c.slug() for c in configs}) == count  # ids are unique

    # Tied pairs (SPEC §4): weight decay only at lr 0.1; dropout only without augmentation;
    # width and depth are never both increased.
    for c in configs:
        assert c.weight_decay == 0 or c.learning_rate == 0.1
        assert not (c.dropout > 0 and c.augmentation)
        assert not (c.width > 1 and c.depth > 1)
    lr_wd = Counter((c.learning_rate, c.weight_decay) for c in configs)
    assert set(lr_wd) == {(0.01, 0.0), (0.032, 0.0), (0.1, 0.0), (0.1, 4e-5)}
    assert len(set(lr_wd.values())) == 1  # balanced: a full product over the pairs
    assert {(c.dropout, c.augmentation) for c in configs} == (
        {(0.0, True), (0.0, False), (0.2, False)} | ({(0.4, False)} if count == 192 else set())
    )
    assert {(c.width, c.depth) for c in configs} == {(1.0, 1.0), (1.5, 1.0), (1.0, 1.5)}
    assert {c.batch_size for c in configs} == {100, 300}
    assert {c.optimizer for c in configs} == {"sgd", "adam"}
    assert spec.schedule.epochs == 250 and spec.schedule.milestones == (150, 230, 240)
    assert spec.schedule.gamma == 0.2 and spec.schedule.stop_train_loss == 1e-4


def test_quick_varies_every_axis_at_least_once():
    spec = find_spec("quick")
    configs = spec.configurations()
    for axis in AXES:
        assert len({getattr(c, axis) for c in configs}) >= 2, axis


def test_every_shipped_spec_is_valid():
    specs = available_specs()
    assert {"quick", "mini", *PAPER} <= set(specs)
    for path in specs.values():
        assert path.parent == REPO_ROOT / "model_zoo" or path.is_file()
        load_spec(path)


BASE = """
[dataset]
name = "synthetic_hierarchy"
[architecture]
name = "vgg"
[grid]
lr_wd = [[0.1, 0.0]]
batch_size = [32]
optimizer = ["sgd"]
dropout_aug = [[0.0, false]]
width_depth = [[1.0, 1.0]]
"""


@pytest.mark.parametrize(
    "text,field",
    [
        (BASE.replace('optimizer = ["sgd"]', 'optimizer = ["rmsprop"]'), "grid.optimizer.0"),
        (BASE.replace("batch_size = [32]", "batch_size = [-1]"), "grid.batch_size.0"),
        (BASE + "\n[schedule]\nepochs = 10\nmilestones = [5, 3]\n", "schedule.milestones"),
        (BASE + "\nlearning_rat = 3\n", "grid.learning_rat"),
        (BASE.replace("[grid]", "[grdi]"), "grdi"),
    ],
)
def test_malformed_spec_names_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    msg = str(e.value)
    assert str(path) in msg
    assert f"'{field}" in msg


def test_invalid_toml_and_unknown_name(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = [unterminated\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(path)
    with pytest.raises(SpecError, match="did you mean 'quick'"):
        find_spec("quikc")
