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


def test_extends_lays_the_file_over_its_base_table_by_table(tmp_path):
    (tmp_path / "base.toml").write_text(
        'name = "base_name"\ndescription = "the base"\nseeds = [0]\n' + BASE
        + "\n[measure_settings.c2]\nk = 1\nprobe_samples = 100\n"
    )
    (tmp_path / "child.toml").write_text(
        'extends = "base.toml"\nseeds = [1, 2]\n'
        '[grid]\nbatch_size = [16, 48]\n'          # a list replaces the base's list
        '[measure_settings.c2]\nk = 3\n'           # a table merges key by key
        '[measure_settings.c4]\nk = 1\n'
    )
    base, child = load_spec(tmp_path / "base.toml"), load_spec(tmp_path / "child.toml")
    assert child.name == "child"                   # never the base's name
    assert child.description == "the base"        # what the child does not set, it inherits
    assert child.seeds == [1, 2]
    assert list(child.grid.batch_size) == [16, 48]
    assert child.grid.optimizer == base.grid.optimizer and child.grid.lr_wd == base.grid.lr_wd
    assert child.measure_settings == {"c2": {"k": 3, "probe_samples": 100}, "c4": {"k": 1}}
    assert child.dataset == base.dataset and child.architecture == base.architecture
    assert len(child.configurations()) == 2 * len(base.configurations())


def test_the_seed_variants_are_their_base_on_another_seed():
    for variant, base in [("quick_seed1", "quick"), ("mini_seed1", "mini")]:
        v = find_spec(variant).model_dump()
        b = find_spec(base).model_dump()
        assert v["seeds"] == [1] and b["seeds"] == [0]
        assert {k for k in b if b[k] != v[k]} == {"name", "description", "seeds"}


@pytest.mark.parametrize(
    "files,match",
    [
        ({"a.toml": 'extends = "missing.toml"\n'}, r"a\.toml: field 'extends': no spec file .*missing\.toml"),
        ({"a.toml": "extends = 3\n"}, r"a\.toml: field 'extends': expected the path of another spec"),
        ({"a.toml": 'extends = "b.toml"\n', "b.toml": 'extends = "a.toml"\n'},
         r"b\.toml: field 'extends': a loop \(a\.toml -> b\.toml -> a\.toml\)"),
        ({"a.toml": 'extends = "a.toml"\n'}, r"a\.toml: field 'extends': a loop \(a\.toml -> a\.toml\)"),
        ({"a.toml": 'extends = "b.toml"\n', "b.toml": "x = [\n"}, r"b\.toml: not valid TOML"),
    ],
)
def test_extends_errors_name_the_file_and_the_fix(tmp_path, files, match):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SpecError, match=match):
        load_spec(tmp_path / "a.toml")
