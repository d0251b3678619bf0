"""The paper's Wide ResNet variant: pre-activation basic blocks in four stages.

Carbonnelle & De Vleeschouwer (ICLR 2021), Appendix A.2: four stages separated by three 2x2 max
poolings, ``base_width`` channels in stage 1 (32 at width factor 1, 48 at 1.5), doubled after each
pooling, 18 layers at depth factor 1 and 26 at 1.5. Layers are counted as in Zagoruyko &
Komodakis (2016): the stem convolution, two 3x3 convolutions per block and the linear classifier;
the 1x1 projection shortcuts run beside a block and are not counted. So 18 = 1 + 4 stages x 2 blocks
x 2 + 1 and 26 = 1 + 4 x 3 x 2 + 1.

A block is Zagoruyko & Komodakis' pre-activation basic block with dropout between its convolutions::

    x -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> [dropout] -> conv3x3 -> (+) -> out
               |                                                         |
               +---------- identity, or 1x1 conv when the width changes -+

The first block of stages 2-4 doubles the width; its shortcut projects the shared pre-activation,
as in the reference implementation. A final BN-ReLU precedes global average pooling and the linear
classifier, so every BatchNorm feeds a ReLU and is a probe layer (SPEC §1).

References
----------
Zagoruyko, S., & Komodakis, N. (2016). Wide Residual Networks. BMVC.
He, K., Zhang, X., Ren, S., & Sun, J. (2016). Identity Mappings in Deep Residual Networks. ECCV.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from icc_bench.config import ArchitectureSpec, HyperParams
from icc_bench.models.vgg import NUM_STAGES, check_input_shape, scaled_repeats, stage_widths

#: The paper's Wide ResNet depth at depth factor 1 (Appendix A.2).
WRN_BASE_DEPTH = 18


class PreActBlock(nn.Module):
    """Pre-activation basic block (BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3 + shortcut).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out; when they differ the shortcut is a 1x1 convolution.
    dropout : float
        Dropout rate between the two convolutions; no dropout module when 0.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        # Not inplace: the probe records the BatchNorm outputs, which an inplace ReLU would overwrite.
        self.relu1 = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=False)
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False) if in_channels != out_channels else None
        )

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu1(self.bn1(x))  # (B, C_in, H, W)
        residual = x if self.shortcut is None else self.shortcut(pre)  # (B, C_out, H, W)
        out = self.relu2(self.bn2(self.conv1(pre)))
        if self.drop is not None:
            out = self.drop(out)
        return self.conv2(out) + residual


class WideResNet(nn.Sequential):
    """Stem conv, four stages of pre-activation blocks with max pooling between, BN-ReLU, head.

    Children, in order: ``stem``, ``stage1``, ``pool1``, ``stage2``, ..., ``stage4``, ``final_bn``,
    ``final_relu``, ``global_pool``, ``flatten``, ``classifier``. Stage ``s`` holds ``block1`` ...
    ``block{n}``, so probe layers are named like ``stage2.block1.bn1`` and ``final_bn``.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for digits, 3 for CIFAR).
    num_classes : int
        Outputs of the linear classifier.
    widths : list of int
        Channels of each of the four stages; the stem outputs ``widths[0]``.
    blocks_per_stage : int
        Residual blocks per stage (2 in the paper's 18-layer network, 3 in its 26-layer one).
    dropout : float
        Dropout rate in [0, 1) inside every block.
    """

    def __init__(
        self, in_channels: int, num_classes: int, widths: list[int], blocks_per_stage: int, dropout: float
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        # No BN-ReLU after the stem: the first block's pre-activation normalizes its output.
        layers["stem"] = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        channels = widths[0]
        for stage, width in enumerate(widths, start=1):
            if stage > 1:
                layers[f"pool{stage - 1}"] = nn.MaxPool2d(kernel_size=2)
            blocks = OrderedDict()
            for block in range(1, blocks_per_stage + 1):
                blocks[f"block{block}"] = PreActBlock(channels, width, dropout)
                channels = width
            layers[f"stage{stage}"] = nn.Sequential(blocks)
        layers["final_bn"] = nn.BatchNorm2d(channels)
        layers["final_relu"] = nn.ReLU(inplace=False)
        layers["global_pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()  # (B, C, 1, 1) -> (B, C)
        layers["classifier"] = nn.Linear(channels, num_classes)
        super().__init__(layers)


def build_wrn(
    arch: ArchitectureSpec, hp: HyperParams, num_classes: int, input_shape: tuple[int, int, int]
) -> WideResNet:
    """The registry builder for ``wrn``: the paper's Wide ResNet at ``hp.width`` and ``hp.depth``.

    ``arch.base_depth`` (None = the paper's 18) must be ``8 * b + 2``: the stem, ``b`` blocks of two
    convolutions in each of the four stages, and the classifier; the depth factor then gives
    ``round(b * hp.depth)`` blocks per stage.
    """
    check_input_shape(input_shape, arch.name)
    base_depth = WRN_BASE_DEPTH if arch.base_depth is None else arch.base_depth
    base_blocks, remainder = divmod(base_depth - 2, 2 * NUM_STAGES)
    if remainder or base_blocks < 1:
        raise ValueError(
            f"architecture 'wrn': base_depth {base_depth} is not 1 stem + {NUM_STAGES} stages x 2 x blocks "
            f"+ 1 classifier; use 10, 18, 26, 34, ... (the paper's is 18)"
        )
    return WideResNet(
        in_channels=input_shape[0],
        num_classes=num_classes,
        widths=stage_widths(arch.base_width, hp.width),
        blocks_per_stage=scaled_repeats(base_blocks, hp.depth),
        dropout=hp.dropout,
    )
