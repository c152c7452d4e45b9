"""results.png: cost, throughput, latency, and spread and movement, side by side."""

from .report import summarize_cost
from .spread import scenarios
from .variants import ALGOS, SHORT


def write_chart(out, cost, envoy_spread, opts):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarize_cost(cost)
    vs = list(rows)
    ticks = [f"({v})\n{SHORT[v]}" for v in vs]
    palette = {"a": "#999999", "b": "#4c72b0", "c": "#55a868", "d": "#dd8452", "e": "#dd8452", "f": "#c44e52",
               "g": "#c44e52", "h": "#e8a878", "i": "#da8bc3", "o": "#8c8c3c", "n": "#bbbbbb"}
    colors = [palette.get(v[0], "#8172b3") if ":" not in v else "#8172b3" for v in vs]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    import numpy as np

    ax = axes[0][0]
    x = np.arange(len(vs))
    y = [rows[v]["cpu_sat"] for v in vs]
    err = [[rows[v]["cpu_sat"] - rows[v]["cpu_sat_min"] for v in vs],
           [rows[v]["cpu_sat_max"] - rows[v]["cpu_sat"] for v in vs]]
    ax.bar(x - 0.2, y, 0.4, yerr=err, color=colors, capsize=3, label="at saturation (range over rounds)")
    ax.bar(x + 0.2, [rows[v]["cpu_fixed"] or 0 for v in vs], 0.4, color=colors, alpha=0.45, hatch="//",
           label=f"at a fixed {cost['fixed_rate']:,} req/s")
    for i, v in enumerate(vs):
        if rows[v]["ratio_sat"]:
            ax.text(i - 0.2, y[i] * 0.5, f"{rows[v]['ratio_sat']:.2f}×", ha="center", va="center", fontsize=7,
                    rotation=90, color="white")
    ax.set_xticks(x, ticks)
    ax.set_title("front Envoy CPU µs per request (×(b) at saturation inside the bars)")
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[0][1]
    ax.bar(ticks, [rows[v]["rps"] for v in vs], color=colors)
    ax.set_title("throughput at saturation, req/s (1 Envoy worker)")
    ax = axes[1][0]
    x = np.arange(len(vs))
    ax.bar(x - 0.2, [rows[v]["p50"] for v in vs], 0.4, label="p50")
    ax.bar(x + 0.2, [rows[v]["p99"] for v in vs], 0.4, label="p99")
    ax.set_xticks(x, ticks)
    ax.set_yscale("log")
    ax.set_title(f"latency µs at a fixed {cost['fixed_rate']:,} req/s (log scale)")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    scs = [s["name"] for s in scenarios(opts.short)] if envoy_spread else []
    metrics = [("max_mean", "max/mean"), ("add_ratio", "add ×opt"), ("remove_ratio", "remove ×opt")]
    labels = [f"{sc}\n{m[1]}" for sc in scs for m in metrics]
    x = np.arange(len(labels))
    width = 0.8 / len(ALGOS)
    for i, (algo, label, _) in enumerate(ALGOS):
        vals = [(envoy_spread.get((algo, sc)) or {}).get(m[0]) or 0 for sc in scs for m in metrics]
        ax.bar(x + (i - (len(ALGOS) - 1) / 2) * width, vals, width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_title("spread and movement through Envoy (1.0 = perfect)")
    ax.set_ylim(0, max([1.5] + [b.get_height() for b in ax.patches]) * 1.35)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    for a in axes.flat:
        a.grid(axis="y", alpha=0.3)
    for a in axes.flat[:3]:
        a.tick_params(axis="x", labelsize=7)
    fig.suptitle("session-router vs Envoy's native consistent hashing (Envoy 1.40, 1 worker; see RESULTS.md)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)
