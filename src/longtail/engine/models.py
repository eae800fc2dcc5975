"""Networks of the engine, in plain PyTorch: an MLP, a small CNN for 28x28 images and ResNet-32.

Every model is a :class:`Classifier`: a ``backbone`` mapping inputs to features of size
``feature_dim``, and a ``head`` mapping features to logits. The head is chosen by the method:
``"linear"`` (``nn.Linear``) or ``"cosine"`` (:class:`longtail.heads.CosineClassifier`, the normalised
classifier that LDAM expects). Tasks that need more outputs (open-set distances, a self-distillation
head, joint labels) replace or add heads on the same backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CNN", "MLP", "Classifier", "ResNet32", "build_backbone", "build_model"]


class MLP(nn.Module):
    """Fully-connected ReLU network for feature vectors.

    ``(N, D) -> (N, hidden[-1])``; inputs with more dimensions are flattened.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (128,), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(inplace=True)]
            d = h
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.feature_dim = d

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out


class CNN(nn.Module):
    """Small CNN for 28x28 grey images: per stage ``convs_per_stage`` x (conv3x3-BN-ReLU), then
    2x2 max-pool; global average pooling at the end.

    ``(N, C_in, H, W) -> (N, channels[-1])``. The default ``channels=(16, 32, 64)`` with one conv per
    stage (28 -> 14 -> 7 -> 3 pixels) has about 24k parameters and trains at a few thousand images
    per second on one CPU core.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64),
        dropout: float = 0.0,
        convs_per_stage: int = 1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for width in channels:
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(c, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                c = width
            layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.feature_dim = c

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        out: Tensor = self.net(x)
        return out


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.pad = c_out - c_in

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad:
            # "option A" of He et al. 2016 for CIFAR: subsample and zero-pad channels
            shortcut = x[:, :, :: self.stride, :: self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class ResNet32(nn.Module):
    """ResNet-32 for 32x32 images (He et al. CVPR 2016, Sec. 4.2): 3 stages of 5 basic blocks.

    Widths 16/32/64, parameter-free (option A) shortcuts, global average pooling:
    ``(N, 3, 32, 32) -> (N, 64)``. The backbone used by the CB, LDAM and LA papers on CIFAR-LT.
    ``dropout > 0`` adds dropout after the pooling (before the head), as in :class:`CNN`.
    """

    def __init__(self, in_channels: int = 3, blocks_per_stage: int = 5, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        stages: list[nn.Module] = []
        c = 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(blocks_per_stage):
                stages.append(_BasicBlock(c, width, stride=2 if (i > 0 and j == 0) else 1))
                c = width
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.feature_dim = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.stages(F.relu(self.bn(self.conv(x))))
        pooled: Tensor = self.dropout(out.mean(dim=(2, 3)))
        return pooled


class Classifier(nn.Module):
    """``backbone`` (features) followed by ``head`` (logits).

    ``forward(x)`` returns logits ``(N, C)``; ``features(x)`` the backbone output ``(N, D)``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: Tensor) -> Tensor:
        out: Tensor = self.backbone(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.backbone(x))
        return out


def resolve_arch(arch: str, input_shape: Sequence[int]) -> str:
    """``"auto"``: ``mlp`` for vectors, ``cnn`` for 1-channel images, ``resnet32`` for 3-channel."""
    if arch != "auto":
        return arch
    if len(input_shape) == 1:
        return "mlp"
    if len(input_shape) == 2 or input_shape[0] == 1:
        return "cnn"
    return "resnet32"


def build_backbone(
    arch: str,
    input_shape: Sequence[int],
    *,
    hidden: Sequence[int] = (128,),
    channels: Sequence[int] = (16, 32, 64),
    dropout: float = 0.0,
    convs_per_stage: int = 1,
) -> nn.Module:
    """A backbone for inputs of shape ``input_shape`` (without the batch dimension).

    The returned module has an ``int`` attribute ``feature_dim``.
    """
    arch = resolve_arch(arch, input_shape)
    if arch == "mlp":
        d = 1
        for s in input_shape:
            d *= int(s)
        return MLP(d, hidden, dropout)
    if arch == "cnn":
        c_in = 1 if len(input_shape) == 2 else int(input_shape[0])
        return CNN(c_in, channels, dropout, convs_per_stage)
    if arch == "resnet32":
        if len(input_shape) != 3:
            raise ValueError(
                f"arch: resnet32 needs (C, H, W) inputs, got shape {tuple(input_shape)}"
            )
        return ResNet32(int(input_shape[0]), dropout=dropout)
    raise ValueError(f"arch: unknown architecture {arch!r}")


def build_model(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    head: str = "linear",
    hidden: Sequence[int] = (128,),
    channels: Sequence[int] = (16, 32, 64),
    dropout: float = 0.0,
    convs_per_stage: int = 1,
) -> Classifier:
    """Backbone plus a ``"linear"`` or ``"cosine"`` head with ``num_classes`` outputs."""
    backbone = build_backbone(
        arch,
        input_shape,
        hidden=hidden,
        channels=channels,
        dropout=dropout,
        convs_per_stage=convs_per_stage,
    )
    d = int(backbone.feature_dim)  # type: ignore[arg-type]
    head_module: nn.Module
    if head == "linear":
        head_module = nn.Linear(d, num_classes)
    elif head == "cosine":
        from longtail.heads import CosineClassifier

        head_module = CosineClassifier(d, num_classes)
    else:
        raise ValueError(f"head: expected 'linear' or 'cosine', got {head!r}")
    return Classifier(backbone, head_module)
