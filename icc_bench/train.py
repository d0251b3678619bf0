"""Train one configuration: the paper's recipe, on whatever device is there.

The recipe (SPEC §4, paper appendix A.2-A.3):

- SGD with momentum 0.9, or Adam with the learning rate divided by 100 (as Jiang et al. 2020).
- Weight decay as PyTorch's ``weight_decay`` (gradient += wd * w) on every parameter.
- Learning rate x ``gamma`` at each milestone epoch (paper: x0.2 at 150, 230, 240 of 250).
- Stop early once an epoch's mean training loss is below ``stop_train_loss`` (paper: 1e-4).
- Augmentation (when on): shifts up to 4 pixels with reflection padding and horizontal flips,
  applied to whole batches on the device (``icc_bench.data.augment_batch``).

Batches are slices of tensors that already live on the device: no DataLoader, no per-sample
Python. On CUDA the forward pass runs under bf16 autocast with channels_last tensors; on the CPU
everything is float32 and a seed gives the same model bit for bit.

The final accuracies and losses of the record are measured after training, in eval mode, on the
whole (unaugmented) training and test sets; the per-epoch curve keeps the running training
loss/accuracy of each epoch (train mode, as frameworks report them) and the test accuracy (every
``Schedule.test_every`` epochs and at the snapshots; ``None`` on the others). The same
final pass keeps the predicted class of every test image (and of every held-out image, where the
dataset has that split): the scores' bootstrap resamples test images through them, and the
`oracle_heldout` reference row reads the held-out accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from icc_bench.config import ArchitectureSpec, HyperParams, Schedule
from icc_bench.data import ImageDataset, iterate_batches
from icc_bench.device import autocast, cpu_state, resolve_device
from icc_bench.models import build_model, count_layers

#: Images per forward pass when evaluating (no gradients, so larger than any training batch).
EVAL_BATCH = 1000


@dataclass
class EpochStats:
    epoch: int
    train_loss: float  # mean over the epoch's batches, train mode, augmented if augmentation is on
    train_accuracy: float
    test_accuracy: float | None  # None on the epochs the schedule does not test (Schedule.test_every)
    learning_rate: float
    seconds: float


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]  # on the CPU
    curve: list[EpochStats]
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    epochs_run: int
    reached_loss_stop: bool
    seconds: float
    layers: int  # conv + linear layers: the paper's depth count
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)  # epoch -> CPU state_dict
    # Split name ("test", "heldout") -> (predicted classes, true labels), both (n,) int16 on the CPU.
    predictions: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    heldout_accuracy: float | None = None


def make_optimizer(model: nn.Module, hp: HyperParams) -> torch.optim.Optimizer:
    if hp.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=hp.learning_rate, momentum=0.9, weight_decay=hp.weight_decay
        )
    # Adam: the paper (and Jiang et al.) divide the learning rate by 100.
    return torch.optim.Adam(model.parameters(), lr=hp.learning_rate / 100, weight_decay=hp.weight_decay)


@torch.no_grad()
def evaluate_with_predictions(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = EVAL_BATCH
) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and predicted classes of ``model`` on (x, y), in eval mode
    (mode restored after). The predictions are (n,) int16 on the CPU: compact, and every dataset
    here has far fewer than 32,768 classes."""
    was_training = model.training
    model.eval()
    device = x.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    predicted = []
    try:
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            with autocast(device):
                logits = model(_to_memory_format(xb))
            loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").double()
            predicted.append(logits.argmax(1))
    finally:
        model.train(was_training)
    predictions = torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.int64, device=device)
    n = max(len(x), 1)
    return float(loss_sum) / n, int((predictions == y).sum()) / n, predictions.to("cpu", torch.int16)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y), in eval mode (mode restored after)."""
    loss, accuracy, _ = evaluate_with_predictions(model, x, y, batch_size=batch_size)
    return loss, accuracy


def final_predictions(model: nn.Module, data: ImageDataset) -> tuple[dict[str, float], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The record's final metrics of a trained model, and its predictions per split.

    Returns ``(metrics, predictions)``: metrics has ``train_loss``, ``train_accuracy``,
    ``test_loss``, ``test_accuracy`` and, where the dataset has a held-out split,
    ``heldout_accuracy``; predictions maps "test" (and "heldout") to (predicted classes, labels),
    both (n,) int16 on the CPU. Every path that trains a model ends here, so every record is
    measured the same way.
    """
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
    test_loss, test_acc, test_pred = evaluate_with_predictions(model, data.x_test, data.y_test)
    metrics = {"train_loss": train_loss, "train_accuracy": train_acc, "test_loss": test_loss, "test_accuracy": test_acc}
    predictions = {"test": (test_pred, data.y_test.to("cpu", torch.int16))}
    if data.x_heldout is not None:
        _, heldout_acc, heldout_pred = evaluate_with_predictions(model, data.x_heldout, data.y_heldout)
        metrics["heldout_accuracy"] = heldout_acc
        predictions["heldout"] = (heldout_pred, data.y_heldout.to("cpu", torch.int16))
    return metrics, predictions


def tests_curve(schedule: Schedule, epoch: int) -> bool:
    """Whether the curve measures test accuracy after ``epoch``: every ``test_every`` epochs and at
    the snapshots. On a small training set the test pass costs several training epochs (10,008 test
    images against 300 training ones), so the laptop populations test the curve sparsely; the
    record's final accuracies and predictions are always measured."""
    return epoch in schedule.save_epochs or (schedule.test_every > 0 and epoch % schedule.test_every == 0)


def _to_memory_format(x: torch.Tensor) -> torch.Tensor:
    # channels_last speeds up convolutions on CUDA tensor cores; on the CPU it only costs copies.
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def init_model(
    architecture: ArchitectureSpec, hp: HyperParams, data: ImageDataset, *, seed: int, device: torch.device
) -> nn.Module:
    """The untrained network of one configuration, on ``device``: PyTorch's default initialization
    drawn after ``torch.manual_seed(seed)``.

    It leaves the global generator where training draws its dropout masks from, so
    ``torch.get_rng_state()`` right after this call is the state of a model's dropout stream on the
    CPU (``icc_bench.train_batched`` gives each member that state).
    """
    torch.manual_seed(seed)  # weight init, then dropout masks
    model = build_model(architecture, hp, data.num_classes, data.input_shape).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def train_model(
    architecture: ArchitectureSpec,
    hp: HyperParams,
    schedule: Schedule,
    dataset: ImageDataset,
    *,
    seed: int,
    device: torch.device | str | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train one configuration from scratch and return its weights, curve and final metrics.

    ``dataset`` may live anywhere; it is moved to ``device`` once. ``on_epoch`` is called after
    every epoch (progress displays use it).
    """
    device = resolve_device(device)
    data = dataset.to(device)
    model = init_model(architecture, hp, data, seed=seed, device=device)
    batch_gen = torch.Generator(device=device).manual_seed(seed)  # shuffling and augmentation
    optimizer = make_optimizer(model, hp)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(schedule.milestones), gamma=schedule.gamma)

    curve: list[EpochStats] = []
    # Epoch 0 is the initialization, kept for every model: distance from initialization needs it.
    snapshots: dict[int, dict[str, torch.Tensor]] = {0: cpu_state(model)}
    reached_stop = False
    started = time.perf_counter()
    for epoch in range(1, schedule.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for xb, yb in iterate_batches(
            data.x_train, data.y_train, hp.batch_size, shuffle=True, generator=batch_gen, augment=hp.augmentation
        ):
            with autocast(device):
                logits = model(_to_memory_format(xb))  # (B, num_classes)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Accumulate on the device: one host sync per epoch, not per batch.
            loss_sum += loss.detach().double() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
        scheduler.step()
        n = len(data.y_train)
        train_loss = float(loss_sum) / n
        test_acc = evaluate(model, data.x_test, data.y_test)[1] if tests_curve(schedule, epoch) else None
        stats = EpochStats(epoch, train_loss, int(correct) / n, test_acc, lr, time.perf_counter() - epoch_start)
        curve.append(stats)
        if epoch in schedule.save_epochs:
            snapshots[epoch] = cpu_state(model)
        if on_epoch is not None:
            on_epoch(stats)
        if train_loss < schedule.stop_train_loss:
            reached_stop = True
            break

    return trained_result(
        model, data, curve=curve, reached_loss_stop=reached_stop, snapshots=snapshots, seconds=time.perf_counter() - started
    )


def trained_result(
    model: nn.Module,
    data: ImageDataset,
    *,
    curve: list[EpochStats],
    reached_loss_stop: bool,
    snapshots: dict[int, dict[str, torch.Tensor]],
    seconds: float,
) -> TrainResult:
    """The :class:`TrainResult` of a model done training: its weights, and the final metrics and
    predictions of :func:`final_predictions`. ``seconds`` spent training so far; the final pass
    is added."""
    started = time.perf_counter()
    metrics, predictions = final_predictions(model, data)
    return TrainResult(
        state_dict=cpu_state(model),
        curve=curve,
        train_loss=metrics["train_loss"],
        train_accuracy=metrics["train_accuracy"],
        test_loss=metrics["test_loss"],
        test_accuracy=metrics["test_accuracy"],
        heldout_accuracy=metrics.get("heldout_accuracy"),
        predictions=predictions,
        epochs_run=len(curve),
        reached_loss_stop=reached_loss_stop,
        seconds=seconds + time.perf_counter() - started,
        layers=count_layers(model),
        snapshots=snapshots,
    )
