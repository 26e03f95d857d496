"""PNG plots of a concurrency sweep (matplotlib, from the optional ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["MISSING", "plot_sweep"]

MISSING = "plots need matplotlib: .venv/bin/pip install -e '.[bench]' (or pass --no-plots)"


def _series(
    rows: Sequence[Mapping[str, Any]], side: str, key: str
) -> tuple[list[int], list[float]]:
    got = [(int(r["n"]), float(r[key])) for r in rows if r["side"] == side and r[key] is not None]
    return [n for n, _ in got], [v for _, v in got]


def _figure(
    rows: Sequence[Mapping[str, Any]],
    path: Path,
    title: str,
    ylabel: str,
    keys: Sequence[tuple[str, str]],
    *,
    log: bool = False,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for side, style in (("ours", "-o"), ("stock", "--s")):
        for key, label in keys:
            xs, ys = _series(rows, side, key)
            if xs:
                ax.plot(xs, ys, style, label=f"{side}: {label}")
    ax.set_xlabel("simultaneous calls")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xticks(sorted({int(r["n"]) for r in rows}))
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sweep(rows: Sequence[Mapping[str, Any]], folder: Path) -> list[Path]:
    """Latency vs concurrency and memory vs concurrency, as PNG files in ``folder``.

    Raises ImportError (message :data:`MISSING`) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(MISSING) from exc
    latency = _figure(
        rows,
        folder / "latency-vs-concurrency.png",
        "Latency vs concurrency (reply: end of speech → first reply audio)",
        "ms (log scale)",
        (
            ("reply_p50", "reply p50"),
            ("reply_p95", "reply p95"),
            ("join_p95", "dispatch→joined p95"),
        ),
        log=True,
    )
    memory = _figure(
        rows,
        folder / "memory-vs-concurrency.png",
        "Worker memory under concurrency",
        "MB",
        (("pss_per_call", "marginal PSS per call"), ("job_pss", "PSS per job process")),
    )
    return [latency, memory]
