"""Reward-hacking diagnostics: the signs that a policy is gaming its rewards.

Per step (``step_diagnostics``): the share of completions that are correct but malformed, and
well-formed but wrong (format learnt without the task), and the completion-length drift against
the start of the run. Across steps (``HackingMonitor``): a warning when the format rate climbs
while accuracy falls, or when completion length collapses.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def step_diagnostics(correct: list[bool], well_formed: list[bool]) -> dict[str, float]:
    n = max(1, len(correct))
    return {
        "diagnostics/correct_malformed_frac": sum(c and not f for c, f in zip(correct, well_formed)) / n,
        "diagnostics/wellformed_wrong_frac": sum(f and not c for c, f in zip(correct, well_formed)) / n,
    }


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


@dataclass
class HackingMonitor:
    """Watches accuracy, format rate and completion length over a sliding window.

    - ``length/drift``: mean completion length of the last ``window`` steps divided by that of
      the first ``window`` steps of the run, minus 1 (0 = unchanged, -0.5 = halved).
    - "format up, accuracy down": over the last ``window`` steps versus the ``window`` before,
      the format rate rose by more than ``format_rise`` while accuracy fell by more than
      ``accuracy_drop``.
    - "length collapse": the recent mean length is below ``collapse_ratio`` x the initial one.

    Each warning is returned once when its condition starts, and again only after it has
    cleared; the per-step flags are logged in metrics.
    """

    window: int = 5
    format_rise: float = 0.1
    accuracy_drop: float = 0.05
    collapse_ratio: float = 0.5
    accuracy: list[float] = field(default_factory=list)
    format_rate: list[float] = field(default_factory=list)
    length: list[float] = field(default_factory=list)
    _active: set[str] = field(default_factory=set)

    def replay(self, rows: list[dict]) -> None:
        """Rebuild the history from metrics.jsonl rows (on resume), without warnings."""
        for r in rows:
            self.update(r.get("accuracy", 0.0), r.get("format_rate", 0.0), r.get("completion_length/mean", 0.0))

    def update(self, accuracy: float, format_rate: float, length: float) -> tuple[dict[str, float], list[str]]:
        self.accuracy.append(accuracy)
        self.format_rate.append(format_rate)
        self.length.append(length)
        w = self.window
        start_len = _mean(self.length[:w])
        recent_len = _mean(self.length[-w:])
        metrics = {"completion_length/drift": (recent_len / start_len - 1.0) if start_len else 0.0}
        flags = {"format_up_accuracy_down": False, "length_collapse": False}
        if len(self.accuracy) >= 2 * w:
            d_fmt = _mean(self.format_rate[-w:]) - _mean(self.format_rate[-2 * w : -w])
            d_acc = _mean(self.accuracy[-w:]) - _mean(self.accuracy[-2 * w : -w])
            flags["format_up_accuracy_down"] = d_fmt > self.format_rise and d_acc < -self.accuracy_drop
            flags["length_collapse"] = start_len > 0 and recent_len < self.collapse_ratio * start_len
        warnings = []
        for name, on in flags.items():
            metrics[f"diagnostics/{name}"] = float(on)
            if on and name not in self._active:
                warnings.append(self._message(name, start_len, recent_len))
                self._active.add(name)
            elif not on:
                self._active.discard(name)
        return metrics, warnings

    def _message(self, name: str, start_len: float, recent_len: float) -> str:
        w = self.window
        if name == "format_up_accuracy_down":
            return (
                f"possible reward hacking: over the last {w} steps the format rate rose to "
                f"{_mean(self.format_rate[-w:]):.2f} while accuracy fell to {_mean(self.accuracy[-w:]):.2f}"
            )
        return (
            f"completion length collapsed: {recent_len:.1f} tokens over the last {w} steps "
            f"vs {start_len:.1f} at the start"
        )
