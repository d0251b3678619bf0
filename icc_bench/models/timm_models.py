"""Any timm model by name: the ``timm:<model name>`` architectures.

The model is always built from scratch (``pretrained=False``): a zoo studies what training did to a
network, and nothing may be downloaded. timm models have their own fixed width and depth, so the
paper's width and depth factors, ``base_width`` and ``base_depth`` are refused rather than ignored:
a grid over them would train the same network several times under different labels.
"""

from __future__ import annotations

import difflib

from torch import nn

from icc_bench.config import ArchitectureSpec, HyperParams

#: The architecture-name prefix that selects a timm model.
TIMM_PREFIX = "timm:"


def build_timm(
    arch: ArchitectureSpec, hp: HyperParams, num_classes: int, input_shape: tuple[int, int, int]
) -> nn.Module:
    """The registry builder for ``timm:<model name>``.

    Calls ``timm.create_model(name, pretrained=False, num_classes=num_classes,
    in_chans=input_shape[0], drop_rate=hp.dropout)``; timm decides where ``drop_rate`` applies
    (usually before the classifier). The input resolution is left to the model: most timm
    convolutional networks accept any size their downsampling survives.
    """
    import timm  # here, not at the top: importing timm takes seconds that vgg and wrn runs need not pay

    model_name = arch.name.removeprefix(TIMM_PREFIX)
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(
            f"architecture '{arch.name}': timm {timm.__version__} has no model named '{model_name}'; "
            f"{hint}list the names with timm.list_models('*{model_name[:4]}*')"
        )
    # Compared with the defaults, not with model_fields_set: a spec read back from a zoo record
    # sets every field, defaults included.
    paper_only = [
        field for field in ("base_width", "base_depth")
        if getattr(arch, field) != ArchitectureSpec.model_fields[field].default
    ]
    if paper_only or hp.width != 1 or hp.depth != 1:
        raise ValueError(
            f"architecture '{arch.name}': a timm model has a fixed width and depth, so it takes width and depth "
            f"factors of 1 and no base_width/base_depth (got width={hp.width:g}, depth={hp.depth:g}"
            f"{', ' + ', '.join(paper_only) if paper_only else ''}); set width_depth = [[1.0, 1.0]] in the grid"
        )
    return timm.create_model(
        model_name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], drop_rate=hp.dropout
    )
