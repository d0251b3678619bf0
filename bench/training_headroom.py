"""How much faster could a population train on this CPU? The arithmetic rate of one training step.

    python bench/training_headroom.py [--population quick mini] [--threads 1] [--steps 20]

Batched training (``icc_bench.train_batched``) removes per-call overhead; it cannot make the
arithmetic faster. So the most it can gain over one model at a time is bounded by how far one model
at a time is from the rate the CPU reaches on arithmetic-bound work. This prints both:

- one training step (forward, backward, SGD update) of each population's first configuration
  alone, as ``train_model`` runs it: its floating-point operations (counted by
  ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products, the bulk) and
  the GFLOP/s it reaches (best of ``--steps`` steps, process CPU time);
- the reference: a 1024 x 1024 float32 matrix product, the rate the same threads reach when
  arithmetic is all there is (best of 20);

and their ratio, the headroom: an upper bound on what any batching of that network can save on
this machine (the reference is itself below the CPU's peak, so the bound is generous). A headroom
below 4 means the issue's ">= 4x on 2 CPU cores" cannot be met at that width by batching alone.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from _common import best_of

from icc_bench.population import find_spec, load_job_dataset
from icc_bench.train import init_model, make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", nargs="+", default=["quick", "mini"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    matmul = 2 * 1024**3 / best_of(20, lambda: torch.mm(a, b), time.process_time) / 1e9
    print(f"reference: 1024 x 1024 float32 matrix product, {args.threads} thread(s): {matmul:.1f} GFLOP/s")

    for name in args.population:
        spec = find_spec(name)
        hp = spec.configurations()[0]
        data = load_job_dataset(spec.dataset, None)
        model = init_model(spec.architecture, hp, data, seed=0, device=torch.device("cpu"))
        optimizer = make_optimizer(model, hp)
        x, y = data.x_train[: hp.batch_size], data.y_train[: hp.batch_size]
        model.train()

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
        seconds = best_of(args.steps, step, time.process_time)
        rate = flops / seconds / 1e9
        print(f"population '{name}': {spec.architecture.name} base width {spec.architecture.base_width}, batch {hp.batch_size}, "
              f"input {tuple(x.shape[1:])}: {flops / 1e6:.1f} MFLOP per step, {1e3 * seconds:.2f} ms, {rate:.1f} GFLOP/s")
        print(f"  headroom ({name}, reference / one step alone): {matmul / rate:.1f}x")


if __name__ == "__main__":
    main()
