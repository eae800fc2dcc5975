"""The open-set network (a backbone and an open-set head) and the ARPL+CS generator and discriminator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor, nn

from longtail.engine.config import ModelConfig
from longtail.engine.datasets import DataBundle
from longtail.engine.models import build_backbone
from longtail.gan import ConfusingSampleGenerator, SampleDiscriminator
from longtail.heads import PrototypeHead, ReciprocalPointHead

__all__ = [
    "OpenSetNet",
    "batch_norm_eval",
    "build_confusing_sample_gan",
    "build_open_set_net",
    "unwrap",
]


class OpenSetNet(nn.Module):
    """``backbone`` (features) and an open-set ``head``: ``forward(x)`` returns the logits;
    ``forward(x, return_features=True)`` returns ``(features, logits)`` (one call, so a
    DDP-wrapped model stays a single forward)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor, return_features: bool = False) -> Any:
        features = self.backbone(x)
        logits = self.head(features)
        return (features, logits) if return_features else logits


def build_open_set_net(
    m: ModelConfig, data: DataBundle, objective: str, params: Mapping[str, Any]
) -> OpenSetNet:
    """The backbone of ``m`` on ``data``'s inputs and the head of ``objective``: linear (``ce``),
    prototypes (``gcpl``) or reciprocal points (``rpl``, ``arpl``)."""
    backbone = build_backbone(
        m.arch,
        data.input_shape,
        hidden=m.hidden,
        channels=m.channels,
        dropout=m.dropout,
        convs_per_stage=m.convs_per_stage,
    )
    d, c = int(backbone.feature_dim), data.num_classes  # type: ignore[arg-type]
    head: nn.Module
    if objective == "ce":
        head = nn.Linear(d, c)
    elif objective == "gcpl":
        head = PrototypeHead(d, c, num_prototypes=int(params["num_prototypes"]))
    else:
        head = ReciprocalPointHead(d, c, num_points=int(params["num_points"]), kind=objective)
    return OpenSetNet(backbone, head)


def build_confusing_sample_gan(
    data: DataBundle, params: Mapping[str, Any], method_name: str
) -> tuple[nn.Module, nn.Module]:
    """ARPL+CS: the generator (its images in the training images' value range) and the
    discriminator, in that order (``params``: ``noise_dim``, ``gan_width``).

    Raises:
        ValueError: the inputs are not images ``(C, H, W)`` with H and W divisible by 4.
    """
    shape = data.input_shape
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ValueError(
            f"method {method_name!r}: the confusing-sample generator makes images "
            f"(C, H, W) with H and W divisible by 4; the inputs have shape {shape}"
        )
    x = data.train_x
    width = int(params["gan_width"])
    gen = ConfusingSampleGenerator(
        shape,
        noise_dim=int(params["noise_dim"]),
        width=width,
        low=float(x.min()),
        high=float(x.max()),
    )
    disc = SampleDiscriminator(shape, width=width)
    return gen, disc


@contextlib.contextmanager
def batch_norm_eval(model: nn.Module) -> Iterator[None]:
    """Batch norm of ``model`` in evaluation mode inside the block: generated samples pass the
    classifier with its running statistics, which they leave unchanged (the ARPL code gives them
    their own batch norm instead)."""
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m in bns:
            m.train()


def unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(model, nn.parallel.DistributedDataParallel) and inner else model
