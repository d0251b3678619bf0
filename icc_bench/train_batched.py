"""Train several members of a population as one program: their channels side by side.

Members that share an architecture (family, base width and depth, width and depth factors) and a
batch size train together: the network is rebuilt with every member's channels side by side, so a
batch of ``b`` images per member is one tensor of shape (b, M * C, H, W), every convolution is a
grouped convolution with one group per member, every BatchNorm normalizes the M * C channels
(each channel over its own member's batch, as alone), every linear layer is one batched matrix
product, and everything else (ReLU, pooling, residual additions) acts per channel. A step of M
members is then as many kernel calls as a step of one model, instead of M times as many: small
networks cost mostly per-call overhead, not arithmetic (SPEC §4's laptop scale, issue 13).

What stays each member's own, exactly as :func:`icc_bench.train.train_model` makes it:

- initialization: :func:`icc_bench.train.init_model` with the member's seed;
- data order and augmentation draws: a generator seeded with the seed, drawn in the same order
  (one permutation per epoch, then offsets and flips per batch when augmentation is on);
- dropout masks: on the CPU, a generator that continues the global stream where the member's
  initialization left it, drawing masks of the same shapes in the same order as ``nn.Dropout``
  would (``bernoulli_(1 - p)``, divided by ``1 - p``); the rate is per member, 0 for none. On CUDA
  the masks come from a CUDA generator seeded with the seed (``nn.Dropout`` uses a fused kernel
  there, whose stream cannot be reproduced);
- learning rate and MultiStep schedule, weight decay, optimizer: the settings
  :func:`icc_bench.train.make_optimizer` gives the member (SGD with momentum, or Adam at the
  learning rate / 100), applied by the same update formulas as ``torch.optim`` on the member's
  row of one (members, parameters) matrix;
- BatchNorm running statistics and step counts;
- the early stop at ``stop_train_loss`` and the epoch count: a member that is done leaves the group
  (its rows are dropped), so it stops changing, and is handed back at once.

What comes out for each member is the :class:`~icc_bench.train.TrainResult` that ``train_model``
would return: the same curve (loss and accuracy of each epoch, test accuracy after it, the
learning rate), the snapshots at ``save_epochs``, and final metrics and predictions from
:func:`icc_bench.train.final_predictions` on the member's own ``nn.Module``, through the same
:func:`icc_bench.train.trained_result` that ends ``train_model``. Seconds are the
member's share of the group's wall time (each epoch's time divided by the members in it), so the
seconds of a population still add up to the time it took.

Not bit for bit: a grouped convolution, a batched matrix product and a per-member mean sum their
float32 terms in another order than the single model's kernels, so a member's weights and losses
agree with ``train_model``'s to a relative ~1e-6 after a few steps, not exactly
(``tests/test_train_batched.py`` states the tolerance and checks it, and why Adam needs more where
a gradient is zero). Over a whole training run such rounding differences grow, as they do between
any two float32 runs: ``train_model`` on 1 thread and on 2 ends 3 of mini's epochs with weights up
to 0.2 apart (relative), and so does batched training; in float64 the two agree to 1e-14. For the
same reason a member's weights depend, in their last bits, on which members share its group.

Why grouped convolutions, not ``torch.func`` (``stack_module_state`` + ``functional_call`` under
``vmap``): measured on the mini population's VGG (base width 4, 16x16 RGB, batch 32), forward,
backward and an SGD step of 16 members, 2-core shared CPU at load average 6-7, best of 4, one
torch thread: 16 models one after the other 126-180 ms, ``vmap`` 90-92 ms (1.4-2.0x), grouped
convolutions in NCHW 67-81 ms (1.9-2.2x), grouped convolutions in channels_last 40-55 ms
(3.2-3.3x); with 8 members 66 / 49 / 37 / 21 ms. ``vmap`` lowers a batched convolution to a
grouped one too, but in NCHW and with per-call dispatch on top; channels_last is what makes
oneDNN's grouped kernels fast on the CPU, and it is CUDA's preferred layout as well.
``bench/population_training.py`` measures whole populations.

Families: the paper's ``vgg`` and ``wrn``, whose forward passes mix channels only inside
convolutions and linear layers. Anything else (timm models, plugins) trains one at a time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icc_bench.config import ArchitectureSpec, HyperParams, Schedule
from icc_bench.data import ImageDataset
from icc_bench.data.batches import apply_augmentation, draw_augmentation
from icc_bench.device import autocast, cpu_state, resolve_device
from icc_bench.train import EVAL_BATCH, EpochStats, TrainResult, init_model, make_optimizer, tests_curve, trained_result

#: Architecture families whose forward pass mixes channels only inside convolutions and linear
#: layers (everything else acts per channel), so members side by side never see each other.
BATCHABLE_FAMILIES = frozenset({"vgg", "wrn"})

#: Members per group under ``--batch-models auto``, on the CPU and on CUDA. Groups of 32 cost the
#: same per member as 16 on the CPU (the old mini's VGG base width 4, 1 thread: 0.48 s per model
#: either way), and a smaller group hands its records over sooner and loses less to a kill.
AUTO_MAX_MEMBERS = 16
#: On the CPU, ``auto`` batches a model only when its first stage has at most this many channels.
#: One program for M members saves per-operation overhead, which only dominates for narrow
#: networks; bench/population_training.py, 1 thread, batched / one at a time: VGG first stage 4
#: channels 1.5-1.7x, 8 channels (quick) 1.22x, 16 channels (mini) 0.96x, 32 (the paper's VGG)
#: 0.92x CPU. Two processes training one at a time use 2 cores better than one batched program.
AUTO_CPU_MAX_CHANNELS = 8


def auto_batches(architecture: ArchitectureSpec, hp: HyperParams, device: torch.device) -> bool:
    """Whether ``--batch-models auto`` trains this model in a group: always on CUDA (where the
    kernels of a small network leave the device idle; not yet measured), and on the CPU only for
    a first stage of at most :data:`AUTO_CPU_MAX_CHANNELS` channels."""
    if batch_key(architecture, hp) is None:
        return False
    return device.type != "cpu" or architecture.base_width * hp.width <= AUTO_CPU_MAX_CHANNELS

#: Input elements (images x members x pixels x channels) per forward pass when evaluating.
_EVAL_ELEMENTS = 2**23

# Modules that act on each channel alone, so they work unchanged on members side by side.
_PER_CHANNEL = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Identity)


@dataclass(frozen=True)
class Member:
    """One configuration to train in a group: what ``train_model`` takes besides the data."""

    hp: HyperParams
    seed: int
    schedule: Schedule
    on_epoch: Callable[[EpochStats], None] | None = field(default=None, compare=False)


def batch_key(architecture: ArchitectureSpec, hp: HyperParams) -> tuple | None:
    """What members of one group must share; None when this architecture trains only one at a time."""
    if architecture.name not in BATCHABLE_FAMILIES:
        return None
    return (architecture.name, architecture.base_width, architecture.base_depth, hp.width, hp.depth, hp.batch_size)


# -- the network, members side by side -----------------------------------------------------------
class _GroupedConv2d(nn.Module):
    """M copies of one ``Conv2d``: (B, M * C_in, H, W) -> (B, M * C_out, H', W'), one group per member.

    ``weight`` is bound by the group: (M, C_out * C_in * k * k), one member per row.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros" or conv.bias is not None:
            raise ValueError(f"train_batched handles plain bias-free convolutions, not {conv}")
        self.shape = tuple(conv.weight.shape)  # (C_out, C_in, k, k)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.weight: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        members = self.weight.shape[0]
        weight = self.weight.reshape(members * self.shape[0], *self.shape[1:])  # (M * C_out, C_in, k, k)
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, groups=members)


class _GroupedBatchNorm2d(nn.Module):
    """M copies of one ``BatchNorm2d`` on (B, M * C, H, W): every channel is normalized alone anyway.

    ``weight``, ``bias`` (M, C) and ``running_mean``, ``running_var`` (M, C, contiguous, updated
    in place in training mode) are bound by the group.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        if not (bn.affine and bn.track_running_stats) or bn.momentum is None:
            raise ValueError(f"train_batched handles affine BatchNorm with running statistics and a momentum, not {bn}")
        self.eps, self.momentum = bn.eps, bn.momentum
        self.weight = self.bias = self.running_mean = self.running_var = None

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(
            x, self.running_mean.view(-1), self.running_var.view(-1), self.weight.reshape(-1), self.bias.reshape(-1),
            self.training, self.momentum, self.eps,
        )


class _GroupedLinear(nn.Module):
    """M copies of one ``Linear``: (B, M * F) -> (B, M * K), as one batched matrix product."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.bias is None:
            raise ValueError(f"train_batched handles linear layers with a bias, not {linear}")
        self.shape = tuple(linear.weight.shape)  # (K, F)
        self.weight = self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        members, (k, f) = self.weight.shape[0], self.shape
        xm = x.view(x.shape[0], members, f).transpose(0, 1)  # (M, B, F)
        weight = self.weight.view(members, k, f).transpose(1, 2)  # (M, F, K)
        out = torch.baddbmm(self.bias.view(members, 1, k), xm, weight)  # (M, B, K)
        return out.transpose(0, 1).reshape(x.shape[0], members * k)


class _GroupedDropout(nn.Module):
    """Dropout with each member's rate and generator: the masks ``nn.Dropout`` would draw on the CPU.

    ``rates`` and ``generators`` (one per member, in row order) are bound by the group.
    """

    def __init__(self, dropout: nn.Dropout) -> None:
        super().__init__()
        if dropout.inplace:
            raise ValueError(f"train_batched handles out-of-place dropout, not {dropout}")
        self.rates: list[float] = []
        self.generators: list[torch.Generator] = []

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not any(self.rates):
            return x
        members = len(self.rates)
        shape = (x.shape[0], x.shape[1] // members, *x.shape[2:])  # one member's activations
        masks = []
        for p, generator in zip(self.rates, self.generators):
            if p == 0:  # no dropout module in that member's own network: no draw, no change
                masks.append(torch.ones(shape, dtype=x.dtype, device=x.device))
            else:  # as ATen's CPU dropout: empty_like(input).bernoulli_(1 - p).div_(1 - p)
                masks.append(torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p, generator=generator).div_(1 - p))
        return x * torch.cat(masks, 1)  # (B, M * C, ...)


_GROUPED: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: _GroupedConv2d,
    nn.BatchNorm2d: _GroupedBatchNorm2d,
    nn.Linear: _GroupedLinear,
    nn.Dropout: _GroupedDropout,
}


def _side_by_side(module: nn.Module) -> None:
    """Replace, in place, every layer of ``module`` by its grouped form; refuse layers it cannot group."""
    for name, child in module.named_children():
        if type(child) in _GROUPED:
            setattr(module, name, _GROUPED[type(child)](child))
        elif isinstance(child, _PER_CHANNEL):
            continue
        elif list(child.children()):
            _side_by_side(child)
        else:
            raise ValueError(f"train_batched cannot put the layer {name} ({type(child).__name__}) of several members side by side")


def _members_as_channels(x: Tensor) -> Tensor:
    """(M, B, C, H, W) -> (B, M * C, H, W) in channels_last, in one copy."""
    members, b, c, h, w = x.shape
    nhwc = x.permute(1, 3, 4, 0, 2).reshape(b, h, w, members * c)  # (B, H, W, M * C)
    return nhwc.permute(0, 3, 1, 2)  # a channels_last view: (B, M * C, H, W)


# -- one member's optimizer settings ---------------------------------------------------------------
@dataclass
class _Recipe:
    """The settings ``make_optimizer`` gives one member, and its learning rate as training goes."""

    kind: str  # "sgd" or "adam"
    lr: float
    weight_decay: float
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    @classmethod
    def of(cls, model: nn.Module, hp: HyperParams) -> "_Recipe":
        optimizer = make_optimizer(model, hp)
        group = optimizer.param_groups[0]
        if type(optimizer) is torch.optim.SGD and not group["nesterov"] and group["dampening"] == 0:
            return cls("sgd", group["lr"], group["weight_decay"], momentum=group["momentum"])
        if type(optimizer) is torch.optim.Adam and not group["amsgrad"] and not group.get("decoupled_weight_decay"):
            return cls("adam", group["lr"], group["weight_decay"], betas=tuple(group["betas"]), eps=group["eps"])
        raise ValueError(f"train_batched applies SGD with momentum and Adam; make_optimizer gave {optimizer}")


def _shared(recipes: list[_Recipe], attribute: str):
    values = {getattr(r, attribute) for r in recipes}
    if len(values) > 1:
        raise ValueError(f"train_batched needs one {attribute} for all members of an optimizer, got {sorted(values)}")
    return values.pop()


def _column(values: list[float], like: Tensor) -> Tensor:
    """One value per row, as a (rows, 1) column of ``like``'s dtype and device."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1)


# -- the group ---------------------------------------------------------------------------------
class _Group:
    """The members still training, one row each (SGD members first, then Adam members).

    Parameters live in one (rows, P) matrix ``flat``: row r is member r's parameters, concatenated
    in ``named_parameters`` order, so that an optimizer step is a few elementwise operations on
    two row blocks. The grouped network reads them through views of that matrix.
    """

    def __init__(
        self,
        network: nn.Module,
        models: list[nn.Module],
        members: list[int],
        recipes: list[_Recipe],
        dropout_rates: list[float],
        dropout_generators: list[torch.Generator],
    ) -> None:
        self.network = network  # grouped by _side_by_side
        self.members = members  # row -> index into the caller's members
        self.models = models  # row -> that member's own nn.Module (init weights; results are loaded into it)
        self.recipes = recipes
        self.dropout_rates = dropout_rates
        self.dropout_generators = dropout_generators
        params = [dict(m.named_parameters()) for m in models]
        buffers = [dict(m.named_buffers()) for m in models]
        self.layout: list[tuple[str, int, int, torch.Size]] = []  # (name, offset, numel, shape)
        offset = 0
        for name, p in params[0].items():
            self.layout.append((name, offset, p.numel(), p.shape))
            offset += p.numel()
        with torch.no_grad():
            self.flat = torch.stack([torch.cat([row[name].reshape(-1) for name, *_ in self.layout]) for row in params])  # (rows, P)
            self.stats = {
                name: torch.stack([row[name] for row in buffers]) for name in buffers[0] if not name.endswith("num_batches_tracked")
            }  # running mean and variance, (rows, C) each
        self.counters = [name for name in buffers[0] if name.endswith("num_batches_tracked")]
        self.momentum_buffer = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.steps = 0  # optimizer steps taken (the same for every member still in the group)
        self._bind()

    @property
    def rows(self) -> int:
        return len(self.members)

    def _bind(self) -> None:
        """Point the grouped layers at the current rows."""
        self.leaves = []
        for name, offset, numel, _ in self.layout:
            leaf = self.flat[:, offset : offset + numel].requires_grad_()  # (rows, numel), a view of flat
            module, _, attribute = name.rpartition(".")
            setattr(self.network.get_submodule(module), attribute, leaf)
            self.leaves.append(leaf)
        for name, stat in self.stats.items():
            module, _, attribute = name.rpartition(".")
            setattr(self.network.get_submodule(module), attribute, stat)
        for module in self.network.modules():
            if isinstance(module, _GroupedDropout):
                module.rates, module.generators = self.dropout_rates, self.dropout_generators
        self.n_sgd = sum(r.kind == "sgd" for r in self.recipes)
        self._columns: dict[tuple, tuple[Tensor, Tensor | None]] = {}

    def keep(self, rows: list[int]) -> None:
        """Drop every row not in ``rows`` (members that are done)."""
        index = torch.tensor(rows, device=self.flat.device)
        with torch.no_grad():
            self.flat = self.flat[index]
            self.momentum_buffer, self.exp_avg, self.exp_avg_sq = (t[index] for t in (self.momentum_buffer, self.exp_avg, self.exp_avg_sq))
            self.stats = {name: t[index] for name, t in self.stats.items()}
        for attribute in ("members", "models", "recipes", "dropout_rates", "dropout_generators"):
            values = getattr(self, attribute)
            setattr(self, attribute, [values[r] for r in rows])
        self._bind()

    def _settings(self, rows: slice) -> tuple[Tensor, Tensor | None]:
        """Learning-rate and weight-decay columns (None: no decay) of ``rows``, on the device; built
        again only when a value changes (a milestone, a member leaving), not at every step."""
        recipes = self.recipes[rows]
        key = (rows.start, rows.stop, tuple(r.lr for r in recipes), tuple(r.weight_decay for r in recipes))
        if key not in self._columns:
            decay = [r.weight_decay for r in recipes]
            like = self.flat[rows]
            self._columns[key] = (_column([r.lr for r in recipes], like), _column(decay, like) if any(decay) else None)
        return self._columns[key]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """One optimizer step of every member: ``torch.optim``'s SGD and Adam formulas, row by row."""
        grad = torch.cat([g.reshape(self.rows, -1) for g in grads], 1)  # (rows, P)
        self.steps += 1
        sgd, adam = slice(0, self.n_sgd), slice(self.n_sgd, self.rows)
        if self.n_sgd:
            lr, weight_decay = self._settings(sgd)
            p, g, buf = self.flat[sgd], grad[sgd], self.momentum_buffer[sgd]
            if weight_decay is not None:
                g = g + weight_decay * p
            if self.steps == 1:
                buf.copy_(g)
            else:
                buf.mul_(_shared(self.recipes[sgd], "momentum")).add_(g)
            p.sub_(lr * buf)
        if self.rows > self.n_sgd:
            lr, weight_decay = self._settings(adam)
            (beta1, beta2), eps = _shared(self.recipes[adam], "betas"), _shared(self.recipes[adam], "eps")
            p, g, exp_avg, exp_avg_sq = self.flat[adam], grad[adam], self.exp_avg[adam], self.exp_avg_sq[adam]
            if weight_decay is not None:
                g = g + weight_decay * p
            exp_avg.lerp_(g, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            bias_correction1 = 1 - beta1**self.steps
            bias_correction2 = 1 - beta2**self.steps
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
            p.sub_((lr / bias_correction1) * exp_avg / denom)

    def load_into(self, row: int, steps_taken: int) -> nn.Module:
        """Row ``row``'s weights and statistics, loaded into that member's own network."""
        state = {name: self.flat[row, offset : offset + numel].view(shape) for name, offset, numel, shape in self.layout}
        state |= {name: t[row] for name, t in self.stats.items()}
        state |= {name: torch.tensor(steps_taken, dtype=torch.long) for name in self.counters}
        model = self.models[row]
        with torch.no_grad():
            model.load_state_dict(state)
        return model


@torch.no_grad()
def _test_accuracies(group: _Group, x: Tensor, y: Tensor, num_classes: int) -> list[float]:
    """Each member's accuracy on (x, y) in eval mode, as ``icc_bench.train.evaluate`` counts it."""
    network, rows = group.network, group.rows
    network.eval()
    chunk = max(1, min(EVAL_BATCH, _EVAL_ELEMENTS // (rows * x[0].numel())))
    correct = torch.zeros(rows, dtype=torch.int64, device=x.device)
    for start in range(0, len(x), chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        with autocast(x.device):
            logits = network(_members_as_channels(xb.unsqueeze(0).expand(rows, *xb.shape)))  # (b, M * K)
        correct += (logits.view(len(xb), rows, num_classes).argmax(-1) == yb[:, None]).sum(0)
    network.train()
    n = max(len(x), 1)
    return [c / n for c in correct.tolist()]


def train_batched(
    architecture: ArchitectureSpec,
    members: Sequence[Member],
    dataset: ImageDataset,
    *,
    device: torch.device | str | None = None,
) -> Iterator[tuple[int, TrainResult]]:
    """Train ``members`` as one program; yield ``(index into members, TrainResult)`` as each is done.

    Every member must have the same :func:`batch_key`. A member is done after its schedule's last
    epoch or the first epoch whose mean training loss is below its ``stop_train_loss``; it is
    yielded then (members done at the same epoch in their order in ``members``), before the others
    train on. Each member's ``on_epoch`` is called after each of its epochs.
    """
    if not members:
        return
    keys = {batch_key(architecture, m.hp) for m in members}
    if None in keys:
        raise ValueError(f"architecture '{architecture.name}' trains one model at a time; batched training knows {', '.join(sorted(BATCHABLE_FAMILIES))}")
    if len(keys) > 1:
        raise ValueError("train_batched trains members of one width, depth and batch size together; group them with batch_key first")
    device = resolve_device(device)
    data = dataset.to(device)

    models, recipes, generators, dropout_generators, initial_states = [], [], [], [], []
    for member in members:
        model = init_model(architecture, member.hp, data, seed=member.seed, device=device)
        if device.type == "cpu":  # the global stream continues into the dropout masks (train_model)
            dropout_generator = torch.Generator()
            dropout_generator.set_state(torch.get_rng_state())
        else:
            dropout_generator = torch.Generator(device=device).manual_seed(member.seed)
        models.append(model)
        initial_states.append(cpu_state(model))  # the epoch-0 snapshot, as train_model keeps it
        recipes.append(_Recipe.of(model, member.hp))
        generators.append(torch.Generator(device=device).manual_seed(member.seed))  # shuffling and augmentation
        dropout_generators.append(dropout_generator)

    widest = max(range(len(members)), key=lambda i: members[i].hp.dropout)  # has every dropout layer any member has
    template = copy.deepcopy(models[widest])
    _side_by_side(template)
    for model in models:
        if [n for n, _ in model.named_parameters()] != [n for n, _ in models[0].named_parameters()]:
            raise ValueError("train_batched: members' networks differ in their parameters; they cannot share a group")
    sgd_first = sorted(range(len(members)), key=lambda i: recipes[i].kind != "sgd")  # row order: SGD, then Adam
    group = _Group(
        template, [models[i] for i in sgd_first], sgd_first, [recipes[i] for i in sgd_first],
        [members[i].hp.dropout for i in sgd_first], [dropout_generators[i] for i in sgd_first],
    )
    group.network.train()

    n = len(data.y_train)
    batch_size = members[0].hp.batch_size
    num_classes = data.num_classes
    curves: list[list[EpochStats]] = [[] for _ in members]
    snapshots: list[dict[int, dict[str, Tensor]]] = [{0: state} for state in initial_states]
    seconds = [0.0] * len(members)
    for epoch in range(1, max(m.schedule.epochs for m in members) + 1):
        epoch_start = time.perf_counter()
        member_rows = [members[i] for i in group.members]
        rows_generators = [generators[i] for i in group.members]
        augmented = [r for r, m in enumerate(member_rows) if m.hp.augmentation]
        augmented_rows = torch.tensor(augmented, dtype=torch.long, device=device)
        lrs = [r.lr for r in group.recipes]
        order = torch.stack([torch.randperm(n, generator=g, device=device) for g in rows_generators])  # (M, n)
        loss_sum = torch.zeros(group.rows, dtype=torch.float64, device=device)
        correct = torch.zeros(group.rows, dtype=torch.int64, device=device)
        for start in range(0, n, batch_size):
            index = order[:, start : start + batch_size]  # (M, b)
            xb, yb = data.x_train[index], data.y_train[index]  # (M, b, C, H, W), (M, b)
            rows, b = index.shape
            if augmented:  # each member's draws from its own generator, applied in one gather
                draws = [draw_augmentation(b, rows_generators[r]) for r in augmented]
                offsets, flips = torch.cat([d[0] for d in draws]), torch.cat([d[1] for d in draws])  # (A * b, 2), (A * b,)
                shifted = apply_augmentation(xb[augmented_rows].flatten(0, 1), offsets, flips)  # (A * b, C, H, W)
                xb[augmented_rows] = shifted.view(len(augmented), *xb.shape[1:])
            with autocast(device):
                logits = group.network(_members_as_channels(xb))  # (b, M * K)
                logits = logits.view(b, rows, num_classes).transpose(0, 1).float()  # (M, b, K)
                losses = F.cross_entropy(logits.reshape(rows * b, num_classes), yb.reshape(-1), reduction="none").view(rows, b).mean(1)
            grads = torch.autograd.grad(losses.sum(), group.leaves)  # members share no weights: each gets its own gradient
            group.step(grads)
            loss_sum += losses.detach().double() * b
            correct += (logits.detach().argmax(-1) == yb).sum(1)
        for recipe, member in zip(group.recipes, member_rows):  # MultiStepLR, after the epoch
            if epoch in member.schedule.milestones:
                recipe.lr *= member.schedule.gamma
        tested = [tests_curve(members[i].schedule, epoch) for i in group.members]
        test_accuracy = _test_accuracies(group, data.x_test, data.y_test, num_classes) if any(tested) else [None] * group.rows
        test_accuracy = [a if t else None for a, t in zip(test_accuracy, tested)]
        train_loss = [s / n for s in loss_sum.tolist()]
        train_accuracy = [c / n for c in correct.tolist()]
        share = (time.perf_counter() - epoch_start) / group.rows

        done = []
        for r, i in enumerate(group.members):
            member = members[i]
            stats = EpochStats(epoch, train_loss[r], train_accuracy[r], test_accuracy[r], lrs[r], share)
            curves[i].append(stats)
            seconds[i] += share
            if epoch in member.schedule.save_epochs:
                snapshots[i][epoch] = cpu_state(group.load_into(r, group.steps))
            if member.on_epoch is not None:
                member.on_epoch(stats)
            if train_loss[r] < member.schedule.stop_train_loss or epoch == member.schedule.epochs:
                done.append(r)
        for r in sorted(done, key=lambda r: group.members[r]):
            i = group.members[r]
            yield i, trained_result(
                group.load_into(r, group.steps), data, curve=curves[i], snapshots=snapshots[i], seconds=seconds[i],
                reached_loss_stop=curves[i][-1].train_loss < members[i].schedule.stop_train_loss,
            )
        if done:
            still = [r for r in range(group.rows) if r not in done]
            if not still:
                return
            group.keep(still)
