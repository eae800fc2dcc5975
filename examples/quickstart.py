"""Quick start: a few losses on long-tailed digits (scikit-learn's bundled data), in ~10 seconds.

Run: ``python examples/quickstart.py``. Trains a small MLP with plain cross-entropy, the logit-adjusted
loss and the focal loss on an exponentially long-tailed subset (imbalance factor 20) of the digits
training split, and prints balanced accuracy on the balanced test split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from longtail.losses import focal_loss, logit_adjusted_loss


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x / 16.0, y, test_size=0.5, stratify=y, random_state=0
    )
    rng = np.random.default_rng(0)
    n_max = min(np.bincount(y_tr))
    keep = []
    for c in range(10):
        n_c = int(n_max * 20 ** (-c / 9))
        keep.extend(rng.choice(np.flatnonzero(y_tr == c), n_c, replace=False))
    keep = np.sort(np.array(keep))
    xt = torch.tensor(x_tr[keep], dtype=torch.float32)
    yt = torch.tensor(y_tr[keep])
    counts = torch.bincount(yt, minlength=10)
    print("training counts per class:", counts.tolist())
    losses = {
        "cross-entropy": lambda z, t: F.cross_entropy(z, t),
        "logit-adjusted": lambda z, t: logit_adjusted_loss(z, t, class_counts=counts),
        "focal": lambda z, t: focal_loss(z, t, gamma=2.0),
    }
    xe = torch.tensor(x_te, dtype=torch.float32)
    ye = torch.tensor(y_te)
    for name, loss_fn in losses.items():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for _ in range(300):
            opt.zero_grad()
            loss_fn(model(xt), yt).backward()
            opt.step()
        with torch.no_grad():
            pred = model(xe).argmax(1)
        recall = [(pred[ye == c] == c).float().mean().item() for c in range(10)]
        print(f"{name:>15}: balanced accuracy {100 * np.mean(recall):.1f}%")


if __name__ == "__main__":
    main()
