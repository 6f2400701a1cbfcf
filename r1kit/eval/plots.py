"""Training curves as PNG: one run (its curves.png) or several overlaid, named by run, with
published reference numbers (a recipe's ``reference:`` block) drawn as markers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import yaml

from r1kit.logging import read_jsonl

Series = list[tuple[str, list[int], list[float]]]  # (label, steps, values)


def _key(key: str, unless: str | None = None) -> Callable[[list[dict[str, Any]]], Series]:
    """The series of one metric; none when a row has ``unless`` (another stage's metric)."""

    def series(rows: list[dict[str, Any]]) -> Series:
        if unless is not None and any(unless in r for r in rows):
            return []
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        return [("", [p[0] for p in pts], [p[1] for p in pts])] if pts else []

    return series


def _matching(prefix: str, suffix: str, keep: Callable[[str], str] = lambda k: k) -> Callable[[list[dict]], Series]:
    """One series per metric key ``prefix<name>suffix`` (e.g. ``eval/<dataset>/pass@1``)."""

    def series(rows: list[dict[str, Any]]) -> Series:
        names = dict.fromkeys(k for r in rows for k in r if k.startswith(prefix) and k.endswith(suffix))
        out = []
        for name in names:
            pts = [(r["step"], r[name]) for r in rows if isinstance(r.get(name), (int, float))]
            if pts:
                out.append((keep(name[len(prefix) : len(name) - len(suffix)]), [p[0] for p in pts], [p[1] for p in pts]))
        return out

    return series


def _keys(*keys: str) -> Callable[[list[dict]], Series]:
    def series(rows: list[dict[str, Any]]) -> Series:
        return [(k, s[0][1], s[0][2]) for k in keys for s in [_key(k)(rows)] if s]

    return series


# panel title -> the series it draws, in order
PANELS: dict[str, Callable[[list[dict]], Series]] = {
    "total reward (mean)": _key("reward/mean"),
    "reward per reward (mean)": _matching("rewards/", "/mean"),
    "train accuracy": _key("accuracy"),
    "eval pass@1": _matching("eval/", "/pass@1"),
    "strict format rate": _key("format_rate"),
    "response length (tokens)": _key("completion_length/mean"),
    "KL to reference": _key("kl"),
    "entropy (nats/token)": _key("entropy"),
    "clip fraction": _keys("clip_frac_low", "clip_frac_high"),
    "step time (s)": _key("time/step"),
    "loss (SFT, DPO)": _key("loss", unless="reward/mean"),  # GRPO's loss is ~0 by construction
    "token accuracy (SFT)": _key("mean_token_accuracy"),
    "reward margin (DPO)": _key("rewards/margins"),
}


def run_name(run_dir: Path) -> str:
    """The run's ``name`` from its config.yaml, else its directory's name (the parent's, for a
    ``final``/``step-N``/hidden directory)."""
    cfg = run_dir / "config.yaml"
    if cfg.is_file():
        try:
            name = (yaml.safe_load(cfg.read_text()) or {}).get("name")
        except yaml.YAMLError:
            name = None
        if name:
            return str(name)
    d = run_dir.resolve()
    while d.parent != d and (d.name in ("final", "checkpoints", "eval") or d.name.startswith((".", "step-"))):
        d = d.parent
    return d.name


def read_reference(path: str | Path) -> dict[str, Any]:
    """A recipe YAML's ``reference:`` block, or a file that is one (numbers in percent)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--reference: no file {p}")
    tree = yaml.safe_load(p.read_text()) or {}
    ref = tree.get("reference", tree) if isinstance(tree, dict) else {}
    if not isinstance(ref, dict) or not (ref.get("before") or ref.get("after")):
        from r1kit.config import ConfigError

        raise ConfigError(f"{p}: no reference numbers (a `reference:` block with `before:`/`after:` per dataset)")
    return ref


def _smooth(ys: list[float]) -> tuple[list[float], int]:
    w = max(1, len(ys) // 10)
    return [sum(ys[max(0, i - w + 1) : i + 1]) / len(ys[max(0, i - w + 1) : i + 1]) for i in range(len(ys))], w


def _draw_reference(ax, reference: dict[str, Any], last_step: int) -> None:
    label = reference.get("source", "published")
    for side, x, marker in (("before", 0, "o"), ("after", reference.get("steps") or last_step, "*")):
        for dataset, value in (reference.get(side) or {}).items():
            if isinstance(value, (int, float)):
                ax.scatter([x], [value / 100], marker=marker, s=80, zorder=5, label=f"{label}: {dataset} {side} {value:g}")


def plot_runs(run_dirs: list[str | Path], out: str | Path, reference: dict[str, Any] | None = None) -> Path:
    """Draw the panels that any of the runs has data for, runs overlaid (a legend names them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for d in map(Path, run_dirs):
        rows = read_jsonl(d / "metrics.jsonl")
        if not rows:
            raise FileNotFoundError(f"no metrics in {d / 'metrics.jsonl'}")
        runs.append((run_name(d), rows))
    single = len(runs) == 1
    # KL is logged as 0 when beta = 0 (never computed): no panel for it then
    panels = [(t, [(name, f(rows)) for name, rows in runs]) for t, f in PANELS.items()]
    panels = [(t, s) for t, s in panels if any(series for _, series in s)
              and (t != "KL to reference" or any(any(ys) for _, series in s for _, _, ys in series))]
    if reference and not any(t == "eval pass@1" for t, _ in panels):
        panels.append(("eval pass@1", [(name, []) for name, _ in runs]))
    ncols = 3
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.3 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    last_step = max(r["step"] for _, rows in runs for r in rows)
    for ax, (title, per_run) in zip(axes.flat, panels):
        for i, (name, series) in enumerate(per_run):
            for j, (label, xs, ys) in enumerate(series):
                color = colors[(j if single else i) % len(colors)]
                smooth, w = _smooth(ys)
                full = " · ".join(x for x in (None if single else name, label) if x)
                if single and not label:
                    ax.plot(xs, ys, alpha=0.35, color=color, label="per step")
                    ax.plot(xs, smooth, color=color, label=f"moving avg ({w})")
                elif len(xs) <= 20:  # a few points (evaluations): markers, no smoothing
                    ax.plot(xs, ys, color=color, marker="o", linestyle=["-", "--", ":", "-."][(0 if single else j) % 4],
                            label=full or name)
                else:
                    ax.plot(xs, ys, alpha=0.2, color=color)
                    ax.plot(xs, smooth, color=color, linestyle=["-", "--", ":", "-."][(0 if single else j) % 4],
                            label=full or name)
        if title == "eval pass@1" and reference:
            _draw_reference(ax, reference, last_step)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(runs[0][0] if single else f"{len(runs)} runs: {', '.join(n for n, _ in runs)}")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
