"""Lightning-style evaluation with longtail.metrics: a LightningModule-shaped classifier, no Lightning.

Run: ``python examples/lightning_style.py`` (a few seconds on a CPU). Trains a small MLP with the
logit-adjusted loss on a long-tailed subset (imbalance factor 20) of scikit-learn's bundled digits and
validates on the balanced test half after every epoch.

The module holds its validation metrics as an attribute: a ``torchmetrics.MetricCollection`` of
longtail's metrics (balanced accuracy, many / medium / few-shot accuracy, ECE) next to torchmetrics'
own macro accuracy. They are ``nn.Module`` children of the classifier, so ``module.to(device)`` moves
their states with the weights (which is what a multi-GPU run needs to synchronise them).
``validation_step`` updates them, ``on_validation_epoch_end`` computes, logs and resets them.

In a real ``lightning.LightningModule`` the class would derive from it, drop the two ``log`` stand-ins
(Lightning provides ``self.log`` and ``self.log_dict``) and be run by ``lightning.Trainer``; the
:func:`fit` loop below makes the calls the Trainer would make, in the same order.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from longtail.losses import logit_adjusted_loss
from longtail.metrics import BalancedAccuracy, ExpectedCalibrationError, ShotAccuracy

NUM_CLASSES = 10
Batch = tuple[Tensor, Tensor]


class LongTailClassifier(nn.Module):
    """The shape of a LightningModule: ``training_step``, ``validation_step``,
    ``on_validation_epoch_end`` and ``configure_optimizers``."""

    class_counts: Tensor

    def __init__(self, class_counts: Tensor, lr: float = 0.1) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, NUM_CLASSES))
        self.register_buffer("class_counts", class_counts)
        # metric objects as attributes: registered sub-modules, moved by .to(device)
        self.val_metrics = MetricCollection(
            {
                "balanced_accuracy": BalancedAccuracy(NUM_CLASSES),
                "shots": ShotAccuracy(class_counts, mode="terciles"),  # logged as many/medium/few
                "ece": ExpectedCalibrationError(n_bins=15),
                "tm_macro_accuracy": MulticlassAccuracy(NUM_CLASSES, average="macro"),
            },
            prefix="val/",
        )
        self.logged: dict[str, float] = {}

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch
        loss = logit_adjusted_loss(self(x), y, class_counts=self.class_counts)
        self.log("train/loss", loss)  # the last batch's, here
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        self.val_metrics.update(self(x), y)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute())  # every process's states, under DDP
        self.val_metrics.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)

    # stand-ins for what Lightning provides
    def log(self, name: str, value: Tensor | float) -> None:
        self.logged[name] = float(value.detach()) if isinstance(value, Tensor) else float(value)

    def log_dict(self, values: dict[str, Tensor | float]) -> None:
        for name, value in values.items():
            self.log(name, value)


def long_tailed_digits(
    imbalance_factor: float = 20.0, seed: int = 0
) -> tuple[TensorDataset, TensorDataset]:
    """Training set: the digits training half, class c cut to ``n_max * IF ** (-c / 9)`` images;
    validation set: the balanced test half."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x / 16.0, y, test_size=0.5, stratify=y, random_state=seed
    )
    rng = np.random.default_rng(seed)
    n_max = min(np.bincount(y_tr))
    keep = np.sort(
        np.concatenate(
            [
                rng.choice(
                    np.flatnonzero(y_tr == c), int(n_max * imbalance_factor ** (-c / 9)), False
                )
                for c in range(NUM_CLASSES)
            ]
        )
    )

    def dataset(xs: np.ndarray, ys: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.tensor(xs, dtype=torch.float32), torch.tensor(ys))

    return dataset(x_tr[keep], y_tr[keep]), dataset(x_te, y_te)


def fit(
    module: LongTailClassifier,
    train_loader: DataLoader[tuple[Tensor, ...]],
    val_loader: DataLoader[tuple[Tensor, ...]],
    *,
    epochs: int,
    device: torch.device,
) -> list[dict[str, float]]:
    """What ``lightning.Trainer.fit`` calls, in order; returns what was logged after each epoch."""
    module.to(device)  # the weights, the class counts and every metric state
    optimizer = module.configure_optimizers()
    history = []
    for _ in range(epochs):
        module.train()
        for i, (x, y) in enumerate(train_loader):
            loss = module.training_step((x.to(device), y.to(device)), i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        module.eval()
        with torch.no_grad():
            for i, (x, y) in enumerate(val_loader):
                module.validation_step((x.to(device), y.to(device)), i)
        module.on_validation_epoch_end()
        history.append(dict(module.logged))
    return history


def main(epochs: int = 20) -> tuple[LongTailClassifier, list[dict[str, float]]]:
    torch.manual_seed(0)
    train_set, val_set = long_tailed_digits()
    counts = torch.bincount(train_set.tensors[1], minlength=NUM_CLASSES)
    print("training counts per class:", counts.tolist())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = LongTailClassifier(counts)
    train_loader = DataLoader(
        train_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    val_loader = DataLoader(val_set, batch_size=128)
    history = fit(module, train_loader, val_loader, epochs=epochs, device=device)
    state = module.val_metrics["balanced_accuracy"].confmat
    print(f"metric states on {state.device} (the model's device: {device})")
    for epoch, logged in enumerate(history, 1):
        if epoch % 5 == 0 or epoch == 1:
            print(
                f"epoch {epoch:2d}: loss {logged['train/loss']:.3f}  "
                f"balanced acc {logged['val/balanced_accuracy']:.3f}  "
                f"(torchmetrics macro {logged['val/tm_macro_accuracy']:.3f})  "
                f"many {logged['val/many']:.3f}  medium {logged['val/medium']:.3f}  "
                f"few {logged['val/few']:.3f}  ECE {logged['val/ece']:.3f}"
            )
    return module, history


if __name__ == "__main__":
    main()
