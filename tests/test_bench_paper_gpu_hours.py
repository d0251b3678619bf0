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


def _tiny(tmp_path: Path) -> Path:
    tiny = tmp_path / "tiny_cifar.toml"
    tiny.write_text(
        f'extends = "{REPO_ROOT / "model_zoo" / "vgg_cifar10.toml"}"\n'
        "[architecture]\nbase_width = 4\n"
        "[grid]\nlr_wd = [[0.1, 0.0]]\nbatch_size = [8]\noptimizer = ['sgd', 'adam']\n"
        "dropout_aug = [[0.0, false], [0.2, false]]\nwidth_depth = [[1.0, 1.0]]\n"
    )
    return tiny


def test_step_seconds_trains_alone_and_batched_for_one_and_three_epochs(tmp_path, monkeypatch):
    tiny = load_spec(_tiny(tmp_path))
    hps = tiny.configurations()
    data = paper_gpu_hours.stand_in(10, 2 * 8)
    assert data.x_train.shape == (16, 3, 32, 32) and int(data.y_train.max()) < 10
    calls = []
    real_alone, real_batched = paper_gpu_hours.train_model, paper_gpu_hours.train_batched
    monkeypatch.setattr(paper_gpu_hours, "train_model",
                        lambda arch, hp, schedule, *a, **k: calls.append(("alone", schedule.epochs)) or real_alone(arch, hp, schedule, *a, **k))
    monkeypatch.setattr(paper_gpu_hours, "train_batched",
                        lambda arch, members, *a, **k: calls.append((len(members), members[0].schedule.epochs)) or real_batched(arch, members, *a, **k))
    cpu = paper_gpu_hours.torch.device("cpu")
    for chosen in (hps[:1], hps):
        seconds = paper_gpu_hours.step_seconds(tiny.architecture, chosen, data, 2, cpu)
        assert math.isfinite(seconds) and seconds >= 0
    assert calls == [("alone", e) for e in (1, 3, 3, 1, 1)] + [(4, e) for e in (1, 3, 3, 1, 1)]


def test_main_prints_each_group_and_the_projection(tmp_path, capsys, monkeypatch):
    timed = []

    def fake_step_seconds(architecture, hps, data, steps, device):
        timed.append(len(hps))
        return 0.01 if len(hps) == 1 else 0.02  # 4 members: 2x the work of one model in 2x the time of one

    monkeypatch.setattr(paper_gpu_hours, "step_seconds", fake_step_seconds)
    assert paper_gpu_hours.main(["--population", str(_tiny(tmp_path)), "--device", "cpu", "--members", "4", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert timed == [1, 4]
    assert "population 'tiny_cifar': 4 models, 1 groups, vgg base width 4, 250 epochs" in out
    assert "(1.0, 1.0, 8)                        0.0100       0.0200        4     2.0x" in out
    steps = 250 * math.ceil(50_000 / 8)
    assert f"projected hours of training: one at a time {4 * steps * 0.01 / 3600:.1f}, batched {steps * 0.02 / 3600:.1f}" in out
    assert "ratio (tiny_cifar, one at a time / batched): 2.0x" in out


def test_without_cuda_auto_measures_nothing_and_says_so(capsys, monkeypatch):
    monkeypatch.setattr(paper_gpu_hours.torch.cuda, "is_available", lambda: False)
    assert paper_gpu_hours.main([]) == 0
    assert "no CUDA device here: nothing measured" in capsys.readouterr().out
