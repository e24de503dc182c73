"""The evaluation chart: exact match and executable correctness by level and configuration (PNG).

matplotlib is optional (`pip install 'infiller[eval]'`); without it the chart is skipped with a
message and everything else of the run stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from server.eval.report import Summary

# Wide enough for seven configurations over six levels plus "all"; the dpi keeps text readable.
FIGURE_INCHES = (13.0, 7.5)
DPI = 110


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


def write_chart(summaries: Sequence[Summary], path: Path, title: str, model: str | None = None) -> Path:
    """Grouped bars per level (and all levels), one bar per configuration, case counts on the axis;
    for `model` (default: the first one summarized)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ChartUnavailable("the chart needs matplotlib: pip install 'infiller[eval]'") from exc
    model = model or summaries[0].model
    rows = [s for s in summaries if s.model == model]
    levels = list(dict.fromkeys(level for s in rows for level in s.per_level))
    groups = [*levels, "all"]
    fig, axes = plt.subplots(2, 1, figsize=FIGURE_INCHES, sharex=True)
    width = 0.8 / max(1, len(rows))
    for panel, (ax, metric) in enumerate(zip(axes, ("exact match", "executable"), strict=True)):
        for i, s in enumerate(rows):
            values = []
            for group in groups:
                if group == "all":
                    value = s.exact_match if panel == 0 else s.executable
                else:
                    _, exact, ex = s.per_level.get(group, (0, 0.0, None))
                    value = exact if panel == 0 else ex
                values.append(float("nan") if value is None else value * 100)
            xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, values, width, label=s.config)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    counts = []
    for group in groups:
        if group == "all":
            counts.append(f"all\nn={rows[0].cases}, exec n={rows[0].executable_cases}")
        else:
            n = rows[0].per_level.get(group, (0, 0.0, None))[0]
            counts.append(f"{group}\nn={n}")
    axes[1].set_xticks(range(len(groups)), counts)
    axes[0].legend(ncol=4, fontsize="small", loc="upper right")
    axes[0].set_title(f"{title} ({model})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
