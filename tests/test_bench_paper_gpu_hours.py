"""bench/paper_gpu_hours.py: the projection's arithmetic, and one small run end to end on the CPU."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from icc_bench.config import load_spec
from icc_bench.population import REPO_ROOT, find_spec

spec = importlib.util.spec_from_file_location("paper_gpu_hours", REPO_ROOT / "bench" / "paper_gpu_hours.py")
paper_gpu_hours = importlib.util.module_from_spec(spec)
sys.modules["paper_gpu_hours"] = paper_gpu_hours
spec.loader.exec_module(paper_gpu_hours)


def test_the_paper_populations_fall_into_six_groups_and_project_by_hand():
    wrn = find_spec("wrn_cifar100_coarse")
    found = paper_gpu_hours.groups(wrn)
    assert len(found) == 6 and sorted(map(len, found.values())) == [32] * 6  # 192 = 3 widths/depths x 2 batches x 32
    alone = {key: 0.01 * (i + 1) for i, key in enumerate(found)}
    together = {key: 0.05 * (i + 1) for i, key in enumerate(found)}
    hours_alone, hours_batched = paper_gpu_hours.project(wrn, found, alone, together, members=12)
    by_hand_alone = by_hand_batched = 0.0
    for key, hps in found.items():
        steps = 250 * math.ceil(50_000 / key[-1])  # the key ends with the batch size
        by_hand_alone += 32 * steps * alone[key]
        by_hand_batched += 3 * steps * together[key]  # ceil(32 / 12) groups of at most 12
    assert hours_alone == pytest.approx(by_hand_alone / 3600)
    assert hours_batched == pytest.approx(by_hand_batched / 3600)


def test_a_small_cifar_population_runs_on_the_cpu(tmp_path, capsys):
    tiny = tmp_path / "tiny_cifar.toml"
    tiny.write_text(
        f'extends = "{REPO_ROOT / "model_zoo" / "vgg_cifar10.toml"}"\n'
        "[architecture]\nbase_width = 4\n"
        "[grid]\nlr_wd = [[0.1, 0.0]]\nbatch_size = [8]\noptimizer = ['sgd', 'adam']\n"
        "dropout_aug = [[0.0, false], [0.2, false]]\nwidth_depth = [[1.0, 1.0]]\n"
    )
    assert len(load_spec(tiny).configurations()) == 4
    assert paper_gpu_hours.main(["--population", str(tiny), "--device", "cpu", "--members", "4", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "population 'tiny_cifar': 4 models, 1 groups, vgg base width 4, 250 epochs" in out
    assert "ratio (tiny_cifar, one at a time / batched):" in out


def test_without_cuda_auto_measures_nothing_and_says_so(capsys, monkeypatch):
    monkeypatch.setattr(paper_gpu_hours.torch.cuda, "is_available", lambda: False)
    assert paper_gpu_hours.main([]) == 0
    assert "no CUDA device here: nothing measured" in capsys.readouterr().out
