"""Loss and Dice curves as one PNG (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path


def plot_curves(epochs: list[dict[str, object]], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [int(e["epoch"]) for e in epochs]  # type: ignore[arg-type]

    def series(key: str) -> list[float] | None:
        vals = [e.get(key) for e in epochs]
        if all(v is None for v in vals):
            return None
        return [float("nan") if v is None else float(v) for v in vals]  # type: ignore[arg-type]

    dice_keys = sorted({k for e in epochs for k in e if k.startswith("dice")})
    fig, (ax_l, ax_d) = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("loss", "-"), ("val_loss", "--")):
        s = series(key)
        if s is not None:
            ax_l.plot(x, s, style, label=key)
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss")
    ax_l.set_yscale("log" if _all_positive(series("loss")) else "linear")
    ax_l.legend()
    for i, key in enumerate(dice_keys):  # same colour for train (solid) and val (dashed)
        for prefix, style in (("", "-"), ("val_", "--")):
            s = series(prefix + key)
            if s is not None:
                ax_d.plot(x, s, style, color=f"C{i % 10}", label=prefix + key,
                          linewidth=2.0 if key == "dice" else 1.0)
    ax_d.set_xlabel("epoch")
    ax_d.set_ylabel("Dice (pooled, ROI)")
    ax_d.set_ylim(0, 1)
    if dice_keys:
        ax_d.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _all_positive(s: list[float] | None) -> bool:
    return bool(s) and all(v > 0 for v in s if v == v)  # type: ignore[union-attr]
