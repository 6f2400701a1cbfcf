import pytest

from r1kit.diagnostics import HackingMonitor, step_diagnostics


def test_step_diagnostics_fractions():
    correct = [True, True, False, False, True]
    formed = [True, False, True, False, True]
    d = step_diagnostics(correct, formed)
    assert d["diagnostics/correct_malformed_frac"] == pytest.approx(1 / 5)
    assert d["diagnostics/wellformed_wrong_frac"] == pytest.approx(1 / 5)


def test_format_up_accuracy_down_warns_once_at_onset():
    m = HackingMonitor(window=3)
    seen = []
    # 3 steps of honest progress, then format climbs while accuracy falls
    history = [(0.5, 0.2, 30)] * 3 + [(0.3, 0.6, 30), (0.2, 0.7, 30), (0.1, 0.8, 30), (0.1, 0.8, 30)]
    for acc, fmt, length in history:
        metrics, warnings = m.update(acc, fmt, length)
        seen.append((metrics["diagnostics/format_up_accuracy_down"], warnings))
    flags = [f for f, _ in seen]
    assert flags[:5] == [0.0] * 5 and flags[5] == 1.0  # needs 2 windows of history
    assert len(seen[5][1]) == 1 and "format rate rose to 0.70" in seen[5][1][0] and "accuracy fell to 0.20" in seen[5][1][0]
    assert seen[6][1] == []  # still on: no repeated warning


def test_length_collapse_and_drift():
    m = HackingMonitor(window=2)
    outs = [m.update(0.5, 0.5, length) for length in (40, 40, 30, 20, 18, 16)]
    drifts = [o[0]["completion_length/drift"] for o in outs]
    assert drifts[0] == 0.0 and drifts[-1] == pytest.approx(17 / 40 - 1)
    collapse = [o[0]["diagnostics/length_collapse"] for o in outs]
    assert collapse == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert "collapsed: 19.0 tokens" in outs[4][1][0] and outs[5][1] == []


def test_replay_restores_the_baseline_without_warnings():
    rows = [{"accuracy": 0.5, "format_rate": 0.5, "completion_length/mean": 40.0}] * 2
    m = HackingMonitor(window=2)
    m.replay(rows)
    metrics, _ = m.update(0.5, 0.5, 20.0)
    assert metrics["completion_length/drift"] == pytest.approx(30 / 40 - 1)
