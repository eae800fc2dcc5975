"""Networks of the engine, in plain PyTorch: a linear model, an MLP, a small CNN for 28x28 images and
ResNet-32.

Every model is a :class:`Classifier`: a ``backbone`` mapping inputs to features of size
``feature_dim``, and a ``head`` mapping features to logits. The head is chosen by the method:
``"linear"`` (``nn.Linear``) or ``"cosine"`` (:class:`longtail.heads.CosineClassifier`, the normalised
classifier that LDAM expects). With ``arch: linear`` the backbone is only the flattened input
(:class:`FlatInput`), so the model is the head alone: logistic / softmax regression with a linear
head, a cosine classifier on the inputs (scaled cosine of input and class weight, no bias) with a
cosine head; every method works on it (a second stage re-trains the whole model). Tasks that need more outputs (open-set distances, a self-distillation
head, joint labels) replace or add heads on the same backbone.

Any other network: ``model.factory: "package.module:callable"`` (with ``model.kwargs``) builds the
whole model as ``callable(num_classes=C, **kwargs)`` (:func:`build_factory_model`); it must be an
``nn.Module`` whose forward gives ``(N, C)`` logits, and it is used as it is (no head is added).
Methods that work on the head need it as an attribute (:func:`factory_head_problem`): a cosine head
(LDAM) needs ``head`` to be a :class:`longtail.heads.CosineClassifier`; tau-norm needs ``head`` to be
an ``nn.Linear``; a second stage (cRT, LWS, WB) needs that and a ``backbone`` module, with
``forward(x) == head(backbone(x))``. The trainer builds a task's modules inside
:func:`model_factory`, so a task's ``build_model(...)`` call returns the factory's network when the
config names one.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.heads import CosineClassifier

if TYPE_CHECKING:
    from longtail.engine.config import ModelConfig

__all__ = [
    "CNN",
    "FACTORY_FORMAT",
    "MLP",
    "Classifier",
    "FlatInput",
    "ResNet32",
    "build_backbone",
    "build_configured_model",
    "build_factory_model",
    "build_model",
    "factory_head_problem",
    "model_factory",
    "resolve_factory",
]


class FlatInput(nn.Module):
    """The backbone of ``arch: linear``: ``(N, ...) -> (N, D)``, the input flattened (``dropout >
    0``: dropout on the inputs), so the model is its head alone."""

    def __init__(self, in_features: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.feature_dim = in_features

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.dropout(x.flatten(1))
        return out


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
    """A backbone for inputs of shape ``input_shape`` (without the batch dimension): ``"linear"``
    (the flattened input, :class:`FlatInput`), ``"mlp"``, ``"cnn"``, ``"resnet32"`` or ``"auto"``
    (:func:`resolve_arch`).

    The returned module has an ``int`` attribute ``feature_dim``.
    """
    arch = resolve_arch(arch, input_shape)
    if arch in ("mlp", "linear"):
        d = 1
        for s in input_shape:
            d *= int(s)
        return MLP(d, hidden, dropout) if arch == "mlp" else FlatInput(d, dropout)
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


#: ``package.module:callable`` (both parts dotted names): the form of a ``model.factory`` string.
FACTORY_FORMAT = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_ACTIVE_FACTORY: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "longtail_model_factory", default=None
)


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:callable"`` (``callable`` may be dotted).

    Raises:
        ValueError: a malformed string, a module that cannot be imported (the message names the
            module), a missing or non-callable attribute; every message starts with
            ``model.factory:``.
    """
    if not isinstance(spec, str) or not FACTORY_FORMAT.fullmatch(spec):
        raise ValueError(f"model.factory: expected 'package.module:callable', got {spec!r}")
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"model.factory: cannot import module {module_name!r} ({exc}); is it installed or on "
            "PYTHONPATH?"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(
                f"model.factory: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(obj):
        raise ValueError(f"model.factory: {spec} is not callable ({type(obj).__name__})")
    return obj  # type: ignore[no-any-return]


def build_factory_model(
    spec: str,
    num_classes: int,
    kwargs: Mapping[str, Any] | None = None,
    *,
    input_shape: Sequence[int] | None = None,
) -> nn.Module:
    """``callable(num_classes=num_classes, **kwargs)`` of ``spec`` (see :func:`resolve_factory`).

    With ``input_shape`` the model is also run once (evaluation mode, no gradients) on a zero
    batch of two examples, whose output must be ``(2, num_classes)`` logits.

    Raises:
        ValueError: naming ``model.factory`` (or ``model.kwargs``): the import fails, the call
            raises, the result is not an ``nn.Module``, or its output has the wrong shape.
    """
    fn = resolve_factory(spec)
    kw = dict(kwargs or {})
    try:
        model = fn(num_classes=num_classes, **kw)
    except Exception as exc:
        raise ValueError(
            f"model.factory: {spec}(num_classes={num_classes}, **model.kwargs {kw!r}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model.factory: {spec} returned a {type(model).__name__}, expected a torch.nn.Module"
        )
    if input_shape is not None:
        shape = (2, *(int(s) for s in input_shape))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(torch.zeros(shape))
        except Exception as exc:
            raise ValueError(
                f"model.factory: the {type(model).__name__} of {spec} fails on a batch of shape "
                f"{shape} (the data's inputs): {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            model.train(was_training)
        if not isinstance(out, Tensor) or tuple(out.shape) != (2, num_classes):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"model.factory: the {type(model).__name__} of {spec} must return (N, "
                f"{num_classes}) logits; for a batch of shape {shape} it returned {got}"
            )
    return model


def factory_head_problem(model: nn.Module, method: Any) -> str | None:
    """What ``method`` (a :class:`~longtail.engine.methods.Method`) needs of a factory ``model``
    that it lacks, or ``None``: a cosine head (``head`` a ``CosineClassifier``), a linear ``head``
    for tau-norm, and a linear ``head`` plus a ``backbone`` for a second stage."""
    head = getattr(model, "head", None)
    if getattr(method, "head", "linear") == "cosine" and not isinstance(head, CosineClassifier):
        return "needs a cosine classifier as `head` (longtail.heads.CosineClassifier)"
    stage2 = getattr(method, "second_stage", None)
    if stage2 is not None and not (
        isinstance(head, nn.Linear) and isinstance(getattr(model, "backbone", None), nn.Module)
    ):
        return (
            f"retrains the classifier ({stage2}): it needs an nn.Linear `head` and a `backbone` "
            "module (forward = head(backbone(x)))"
        )
    if getattr(method, "posthoc", None) == "tau-norm" and not isinstance(head, nn.Linear):
        return "normalises the classifier rows (tau-norm): it needs an nn.Linear `head`"
    return None


@contextlib.contextmanager
def model_factory(spec: str | None, kwargs: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Inside the block, :func:`build_model` builds ``spec``'s network (``None``: the built-in
    architectures), unless it is given ``factory=`` explicitly. The trainer wraps a task's
    ``setup()`` in it with the config's ``model.factory`` and ``model.kwargs``."""
    token = _ACTIVE_FACTORY.set(None if spec is None else (spec, dict(kwargs or {})))
    try:
        yield
    finally:
        _ACTIVE_FACTORY.reset(token)


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
    factory: str | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Backbone plus a ``"linear"`` or ``"cosine"`` head with ``num_classes`` outputs (a
    :class:`Classifier`).

    With ``factory`` (or inside :func:`model_factory`) the network is
    ``build_factory_model(factory, num_classes, factory_kwargs, input_shape=input_shape)`` instead
    and ``arch``, ``hidden``, ``channels``, ``dropout`` and ``convs_per_stage`` are not used; a
    ``"cosine"`` head must then be the model's ``head`` attribute.
    """
    if factory is None:
        active = _ACTIVE_FACTORY.get()
        if active is not None:
            factory, factory_kwargs = active
    if factory is not None:
        model = build_factory_model(factory, num_classes, factory_kwargs, input_shape=input_shape)
        if head == "cosine":
            if not isinstance(getattr(model, "head", None), CosineClassifier):
                raise ValueError(
                    f"model.factory: a cosine-head method needs `head` to be a "
                    f"longtail.heads.CosineClassifier; {factory} returns {type(model).__name__} "
                    "without it"
                )
        elif head != "linear":
            raise ValueError(f"head: expected 'linear' or 'cosine', got {head!r}")
        return model
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
        head_module = CosineClassifier(d, num_classes)
    else:
        raise ValueError(f"head: expected 'linear' or 'cosine', got {head!r}")
    return Classifier(backbone, head_module)


def build_configured_model(
    m: ModelConfig, input_shape: Sequence[int], num_classes: int, *, head: str = "linear"
) -> nn.Module:
    """:func:`build_model` with the network a config's ``model`` section describes (``arch``,
    ``hidden``, ``channels``, ``dropout``, ``convs_per_stage``; a ``model.factory`` applies through
    :func:`model_factory`)."""
    return build_model(
        m.arch,
        input_shape,
        num_classes,
        head=head,
        hidden=m.hidden,
        channels=m.channels,
        dropout=m.dropout,
        convs_per_stage=m.convs_per_stage,
    )
