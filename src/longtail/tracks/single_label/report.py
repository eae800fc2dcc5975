"""The single-label part of a run's report: the M2m figures.

For each method that ran M2m (its seed-0 ``result.json`` has ``details["m2m"]``):

- ``plots/m2m_counts.png``: the minority slots translated from a larger class and accepted, per
  target class, summed over the generating epochs of seed 0;
- ``plots/m2m_samples_<method>.png``: the accepted translations of the last generating step of
  seed 0 (image data only; feature vectors have no picture).

Registered with the report (:func:`longtail.engine.report.register_section`) when the track is
imported.
"""

from __future__ import annotations

import numpy as np

from longtail.engine.report import ReportContext, Section, register_section

__all__ = ["m2m_sections"]

TASK = "single-label"


def m2m_sections(ctx: ReportContext) -> list[Section]:
    """M2m: accepted translations per target class, and a grid of accepted samples."""
    import matplotlib.pyplot as plt  # optional: matplotlib (the cli extra)

    found = {
        m: r[0]["details"]["m2m"]
        for m, r in ctx.runs.items()
        if r and isinstance((r[0].get("details") or {}).get("m2m"), dict)
    }
    if not found:
        return []
    c = len(ctx.results.get("class_names") or [])
    names = list(ctx.results.get("class_names") or [])
    out: list[Section] = []
    fig, axes = plt.subplots(
        1,
        len(found),
        figsize=(min(4.4 * len(found), 13.0), 3.6),
        squeeze=False,
        layout="constrained",
    )
    for ax, (m, info) in zip(axes[0], found.items(), strict=True):
        gen = [0] * c
        acc = [0] * c
        for row in info.get("per_epoch", {}).values():
            gen = [a + b for a, b in zip(gen, row["generated"], strict=False)]
            acc = [a + b for a, b in zip(acc, row["accepted"], strict=False)]
        xs = range(len(gen))
        ax.bar(xs, gen, color="#bbbbbb", label="translated")
        ax.bar(xs, acc, color="#1f77b4", label="accepted")
        for x_, g_, a_ in zip(xs, gen, acc, strict=True):
            if g_:
                ax.annotate(
                    str(a_), (x_, g_), ha="center", va="bottom", fontsize=7, color="#1f77b4"
                )
        ax.set_xticks(list(xs), [names[k] if k < len(names) else str(k) for k in xs])
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
        ax.set_xlabel("target class (head to tail)")
        ax.set_ylabel("samples (seed 0, all epochs)")
        ax.set_title(f"{m}: from epoch {int(info.get('start_epoch', 0)) + 1}", fontsize=10)
        ax.legend(fontsize=8)
    out.append(
        Section(
            "M2m translations per class",
            ctx.save(fig, "m2m_counts.png"),
            "Minority slots translated from a larger class (grey) and accepted (blue, the number "
            "above each bar: g's probability of the target reached gamma and the Bernoulli draw "
            "passed), per target class, summed over the generating epochs of seed 0.",
        )
    )
    for m, info in found.items():
        samples = info.get("samples") or {}
        images = samples.get("images") or []
        if not images or not isinstance(images[0], list) or not isinstance(images[0][0], list):
            continue  # feature vectors: no picture
        k = len(images)
        cols = min(k, 8)
        rows = (k + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.75 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i >= k:
                continue
            img = np.asarray(images[i], dtype=np.float32)
            img = img.transpose(1, 2, 0) if img.shape[0] == 3 else img[0]
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            s, t = samples["seed_class"][i], samples["target_class"][i]
            sn = names[s] if s < len(names) else str(s)
            tn = names[t] if t < len(names) else str(t)
            ax.set_title(f"{sn}\n→ {tn}", fontsize=7)
        out.append(
            Section(
                f"M2m samples ({m})",
                ctx.save(fig, f"m2m_samples_{_safe_name(m)}.png"),
                "Accepted translations of the last generating step of seed 0: each image is a "
                "sample of the seed class (top) moved by a few gradient steps until g sees the "
                "target class (bottom); f trains on it labelled with the target.",
            )
        )
    return out


def _safe_name(m: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in m)


register_section(TASK, m2m_sections)
