"""Rejection sampling (`r1kit distill filter`) and preference pairs (`r1kit distill pairs`) on
hand-written traces whose fate is known row by row."""

from __future__ import annotations

import json

import pytest

from r1kit.cli import main
from r1kit.distill.filter import REASONS, FilterSettings, filter_traces
from r1kit.distill.pairs import pair_traces
from r1kit.distill.traces import DistillError


def ok(answer: str, reasoning: str = "Add the numbers step by step.") -> str:
    return f"<think>{reasoning}</think> <answer>{answer}</answer>"


def trace(pid, completion, answer="7", finish="stop", tokens=20, **extra):
    return {"id": pid, "prompt": f"Question {pid}", "answer": answer, "completion": completion,
            "finish_reason": finish, "completion_tokens": tokens, "teacher": "t", **extra}


# (row, the reason it must be rejected for, None = kept), in file order
CASES = [
    (trace("a", ok("7")), None),
    (trace("a", ok("7"), finish="length"), "truncated"),  # correct, but cut off
    (trace("a", ok("7"), tokens=500), "too_long"),
    (trace("a", "The answer is 7."), "malformed"),
    (trace("a", "no tags and wrong: 3", finish="length", tokens=900), "truncated"),  # several reasons: the first
    (trace("a", ok("8")), "incorrect"),
    (trace("a", ok("7", "Сначала сложим числа, потом проверим ответ.")), "language"),
    (trace("a", ok("7")), "duplicate"),
    (trace("a", ok("7", "  ADD the numbers   step by step.")), "near_duplicate"),
    (trace("a", ok("7", "Seven: 3 plus 4.")), None),
    (trace("a", ok("7", "3 + 4 = 7")), None),  # no words at all: nothing is mixed
    (trace("b", ok("\\frac{1}{2}"), answer="0.5"), None),  # the math verifier, not string equality
    (trace("b", ok("0.5"), answer=None), "no_gold"),
    (trace("c", ok("12"), answer="12", task="arithmetic"), None),
    (trace("c", ok("13"), answer="12", task="arithmetic"), "incorrect"),
]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_reason_in_order_with_counts_report_and_kept_rows(tmp_path):
    src = write(tmp_path / "traces.jsonl", [r for r, _ in CASES])
    out = tmp_path / "kept.jsonl"
    report = filter_traces(src, out, FilterSettings(max_tokens=100), progress=False)
    expected = [r for r, why in CASES if why is None]
    assert [json.loads(x) for x in out.read_text().splitlines()] == expected  # unchanged, input order
    assert report["read"] == len(CASES) and report["kept"] == len(expected)
    want = {k: sum(why == k for _, why in CASES) for k in REASONS}
    assert report["rejected"] == want
    assert report["reasons_order"] == list(REASONS)
    assert json.loads((tmp_path / "kept.report.json").read_text()) == report
    # pass rate: every trace whose answer the verifier accepts, whatever its format or length
    rates = report["pass_rate"]
    assert rates["a"] == {"traces": 11, "correct": 8, "pass_rate": 8 / 11}
    assert rates["b"] == {"traces": 2, "correct": 1, "pass_rate": 0.5}  # no gold: not correct
    assert rates["c"]["pass_rate"] == 0.5
    assert report["prompts"] == {"read": 3, "kept": 3}


def test_pass_rate_band_and_max_per_prompt(tmp_path):
    rows = [trace("easy", ok("7", f"way {i}")) for i in range(4)]
    rows += [trace("mid", ok("7", "way one")), trace("mid", ok("9")), trace("mid", ok("7", "way two")), trace("mid", ok("1"))]
    rows += [trace("hard", ok("7", "lucky")), trace("hard", ok("2")), trace("hard", ok("3")), trace("hard", ok("4"))]
    src = write(tmp_path / "t.jsonl", rows)
    out = tmp_path / "o.jsonl"
    report = filter_traces(src, out, FilterSettings(pass_rate_band=(0.3, 0.8), max_per_prompt=1), progress=False)
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert kept == [rows[4]]  # only "mid" (0.5) is in the band, and only its first trace
    assert report["rejected"]["pass_rate"] == 4 + 1  # easy (1.0): 4 traces; hard (0.25): its correct one
    assert report["rejected"]["max_per_prompt"] == 1
    assert report["rejected"]["incorrect"] == 2 + 3


def test_language_check_can_be_off_or_another_target(tmp_path):
    ru = trace("a", ok("7", "Сначала сложим числа."))
    src = write(tmp_path / "t.jsonl", [ru])
    assert filter_traces(src, tmp_path / "o.jsonl", FilterSettings(language=None), progress=False)["kept"] == 1
    assert filter_traces(src, tmp_path / "o.jsonl", FilterSettings(language="ru"), progress=False)["kept"] == 1
    assert filter_traces(src, tmp_path / "o.jsonl", FilterSettings(language="en"), progress=False)["kept"] == 0


def test_cli_prints_the_table_and_writes_both_files(tmp_path, capsys):
    src = write(tmp_path / "traces.jsonl", [r for r, _ in CASES])
    out = tmp_path / "sub" / "kept.jsonl"
    assert main(["distill", "filter", str(src), "--output", str(out), "--max-tokens", "100",
                 "--pass-rate-band", "0,1", "--max-per-prompt", "10"]) == 0
    printed = capsys.readouterr().out
    assert "truncated" in printed and "near_duplicate" in printed
    assert f"kept {sum(w is None for _, w in CASES)} of {len(CASES)} traces" in printed
    assert (tmp_path / "sub" / "kept.report.json").is_file()
    assert not list((tmp_path / "sub").glob(".*tmp"))


@pytest.mark.parametrize("line, message", [
    ('{"id": 1, "prompt": "p", "finish_reason": "stop"}', "line 2: missing field 'completion'"),
    ('{"id": 1, "prompt": "p", "completion": "x", "finish_reason": "eos"}', "line 2: finish_reason 'eos' is not one of stop, length"),
    ('{"id": 1, "prompt": "p", "completion": "x", "finish_reason": "stop", "completion_tokens": -1}', "line 2: completion_tokens must be"),
    ('{"id": 1, "prompt": "p", "comp', "line 2: not a JSON object"),
    ('[1, 2]', "line 2: not a JSON object (got list)"),
])
def test_a_bad_row_names_the_file_and_line_and_leaves_the_old_output(tmp_path, capsys, line, message):
    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps(trace("a", ok("7"))) + "\n" + line + "\n")
    out = tmp_path / "o.jsonl"
    out.write_text("earlier output\n")
    assert main(["distill", "filter", str(src), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"r1kit: error: {src} {message}") and "\n" not in err, err
    assert out.read_text() == "earlier output\n"


def test_cap_needs_token_counts_and_settings_are_checked(tmp_path, capsys):
    row = trace("a", ok("7"))
    del row["completion_tokens"]
    src = write(tmp_path / "t.jsonl", [row])
    assert main(["distill", "filter", str(src), "--output", str(tmp_path / "o.jsonl"), "--max-tokens", "5"]) == 2
    assert "line 1: missing field 'completion_tokens'" in capsys.readouterr().err
    assert main(["distill", "filter", str(src), "--output", str(tmp_path / "o.jsonl"), "--pass-rate-band", "0.8,0.2"]) == 2
    assert "pass_rate_band must be LOW,HIGH" in capsys.readouterr().err
    assert main(["distill", "filter", str(src), "--output", str(tmp_path / "o.jsonl"), "--language", "xx"]) == 2
    assert "unknown target 'xx'" in capsys.readouterr().err
    assert main(["distill", "filter", str(src), "--output", str(src)]) == 2
    assert "is the input file" in capsys.readouterr().err
    with pytest.raises(DistillError, match="no such trace file"):
        filter_traces(tmp_path / "missing.jsonl", tmp_path / "o.jsonl")


def test_pairs_chosen_verified_rejected_failed_same_prompt(tmp_path):
    rows = [
        trace("p", ok("7", "first")), trace("p", ok("8")), trace("p", ok("7", "second")),
        trace("p", "7"), trace("p", ok("7", "third"), finish="length"), trace("p", ok("7", "FIRST")),
        trace("q", ok("7")), trace("q", ok("7", "again")),  # no failed trace: no pair
        trace("r", ok("1")),  # no verified trace: no pair
    ]
    src = write(tmp_path / "t.jsonl", rows)
    out = tmp_path / "pairs.jsonl"
    report = pair_traces(src, out, progress=False)
    pairs = [json.loads(x) for x in out.read_text().splitlines()]
    # chosen: first, second (FIRST duplicates first); rejected: wrong, malformed, truncated
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [
        (rows[0]["completion"], rows[1]["completion"]), (rows[2]["completion"], rows[3]["completion"])]
    assert all(p["prompt"] == "Question p" and p["id"] == "p" and p["answer"] == "7" for p in pairs)
    assert report == {**report, "read": 9, "pairs": 2, "prompts": 3, "paired": 1, "no_chosen": 1, "no_rejected": 1}
    assert json.loads((tmp_path / "pairs.report.json").read_text()) == report
    one = pair_traces(src, tmp_path / "one.jsonl", max_pairs_per_prompt=1, progress=False)
    assert one["pairs"] == 1


def test_pairs_cli(tmp_path, capsys):
    src = write(tmp_path / "t.jsonl", [trace("p", ok("7")), trace("p", ok("5"))])
    assert main(["distill", "pairs", str(src), "--output", str(tmp_path / "pairs.jsonl")]) == 0
    assert "1 pairs from 2 traces of 1 prompts" in capsys.readouterr().out
