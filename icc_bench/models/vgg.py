"""The paper's VGG variant, and the stage rules it shares with the Wide ResNet.

Carbonnelle & De Vleeschouwer (ICLR 2021), Appendix A.2: four stages separated by three 2x2 max
poolings, ``base_width`` channels in stage 1 (32 at width factor 1, 48 at 1.5), doubled after each
pooling, 9 layers at depth factor 1 and 13 at 1.5. A layer is a 3x3 convolution or the final linear
classifier, so 9 = 4 stages x 2 convolutions + 1 and 13 = 4 x 3 + 1. Each convolution is
Conv3x3 (no bias: the BatchNorm shift replaces it) -> BatchNorm -> ReLU, so every BatchNorm feeds a
ReLU and is a probe layer (SPEC §1). After the last stage: global average pooling and the classifier.

With 32 channels at x1 the probe sees 2 x (32 + 64 + 128 + 256) = 960 neurons, 1440 at width or
depth x1.5: the counts the paper gives in the caption of its Figure 4.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from icc_bench.config import ArchitectureSpec, HyperParams

#: Stages of the paper's networks; there is one 2x2 max pooling between consecutive stages.
NUM_STAGES = 4
#: The smallest input side that survives the three poolings (8 -> 4 -> 2 -> 1).
MIN_INPUT_SIZE = 2 ** (NUM_STAGES - 1)
#: The paper's VGG depth at depth factor 1 (Appendix A.2).
VGG_BASE_DEPTH = 9


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` sends 2.5 to 2, not 3)."""
    return math.floor(value + 0.5)


def stage_widths(base_width: int, width_factor: float) -> list[int]:
    """Channels of the four stages: ``round(base_width * width_factor)`` doubled after each pooling.

    >>> stage_widths(32, 1.5)
    [48, 96, 192, 384]
    """
    first = max(1, round_half_up(base_width * width_factor))
    return [first * 2**stage for stage in range(NUM_STAGES)]


def scaled_repeats(base_repeats: int, depth_factor: float) -> int:
    """Units per stage at a depth factor: ``round(base_repeats * depth_factor)``, at least 1.

    The factor scales the repeated unit of a stage (a convolution for VGG, a residual block for the
    Wide ResNet), never the fixed layers around the stages, so x1.5 turns the paper's 9 layers
    into 4 x 3 + 1 = 13 (not 9 x 1.5) and its 18 into 1 + 4 x 3 x 2 + 1 = 26.
    """
    return max(1, round_half_up(base_repeats * depth_factor))


def check_input_shape(input_shape: tuple[int, int, int], arch_name: str) -> None:
    """Refuse inputs that three 2x2 poolings would reduce to nothing."""
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            f"architecture '{arch_name}': input_shape must be (channels, height, width), got {input_shape}"
        )
    _, height, width = input_shape
    if min(height, width) < MIN_INPUT_SIZE:
        raise ValueError(
            f"architecture '{arch_name}': input {height}x{width} is too small for {NUM_STAGES - 1} 2x2 poolings; "
            f"use images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} (e.g. upsample them)"
        )


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            bn=nn.BatchNorm2d(out_channels),
            # Not inplace: the probe records the BatchNorm output, which an inplace ReLU would overwrite.
            relu=nn.ReLU(inplace=False),
        )
    )


class VGG(nn.Sequential):
    """Four stages of ``convs_per_stage`` Conv-BN-ReLU units, max pooling between stages.

    Children, in order: ``stage1``, ``pool1``, [``drop1``], ``stage2``, ..., ``stage4``,
    ``global_pool``, ``flatten``, [``drop``], ``classifier``. Stage ``s`` holds ``conv1`` ...
    ``conv{n}``, each with ``.conv``, ``.bn``, ``.relu``, so probe layers are named like
    ``stage2.conv1.bn``.

    Dropout (rate ``dropout``) follows each pooling and precedes the classifier: one per stage
    boundary regularizes every stage alike, and it never sits between a BatchNorm and its ReLU, so
    the probe's pre-activations are untouched by it. The ``drop*`` modules exist only when
    ``dropout > 0``; they hold no parameters, so checkpoint keys do not depend on the rate.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for digits, 3 for CIFAR).
    num_classes : int
        Outputs of the linear classifier.
    widths : list of int
        Channels of each of the four stages.
    convs_per_stage : int
        3x3 convolutions per stage (2 in the paper's 9-layer network, 3 in its 13-layer one).
    dropout : float
        Dropout rate in [0, 1).
    """

    def __init__(
        self, in_channels: int, num_classes: int, widths: list[int], convs_per_stage: int, dropout: float
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for stage, width in enumerate(widths, start=1):
            if stage > 1:
                layers[f"pool{stage - 1}"] = nn.MaxPool2d(kernel_size=2)
                if dropout > 0:
                    layers[f"drop{stage - 1}"] = nn.Dropout(dropout)
            units = OrderedDict()
            for unit in range(1, convs_per_stage + 1):
                units[f"conv{unit}"] = _conv_bn_relu(channels, width)
                channels = width
            layers[f"stage{stage}"] = nn.Sequential(units)
        layers["global_pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()  # (B, C, 1, 1) -> (B, C)
        if dropout > 0:
            layers["drop"] = nn.Dropout(dropout)
        layers["classifier"] = nn.Linear(channels, num_classes)
        super().__init__(layers)


def build_vgg(
    arch: ArchitectureSpec, hp: HyperParams, num_classes: int, input_shape: tuple[int, int, int]
) -> VGG:
    """The registry builder for ``vgg``: the paper's VGG at ``hp.width`` and ``hp.depth``.

    ``arch.base_depth`` (None = the paper's 9) must be ``4 * c + 1``: ``c`` convolutions in each of
    the four stages plus the classifier; the depth factor then gives ``round(c * hp.depth)``
    convolutions per stage.
    """
    check_input_shape(input_shape, arch.name)
    base_depth = VGG_BASE_DEPTH if arch.base_depth is None else arch.base_depth
    base_convs, remainder = divmod(base_depth - 1, NUM_STAGES)
    if remainder or base_convs < 1:
        raise ValueError(
            f"architecture 'vgg': base_depth {base_depth} is not {NUM_STAGES} stages x convolutions + 1 classifier; "
            f"use 5, 9, 13, 17, ... (the paper's is 9)"
        )
    return VGG(
        in_channels=input_shape[0],
        num_classes=num_classes,
        widths=stage_widths(arch.base_width, hp.width),
        convs_per_stage=scaled_repeats(base_convs, hp.depth),
        dropout=hp.dropout,
    )
