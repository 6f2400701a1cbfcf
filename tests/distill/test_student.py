"""`r1kit distill CONFIG`: a tiny Llama student fine-tuned on a teacher's kept traces, through the
SFT stage (`r1kit distill filter` output in, an HF model directory out)."""

from __future__ import annotations

import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from r1kit.cli import main
from r1kit.distill.filter import filter_traces
from r1kit.testing import tiny_model, tiny_tokenizer


def test_student_sft_on_filtered_traces(tmp_path, capsys):
    tok = tiny_tokenizer("llama3")
    student = tmp_path / "student"
    tiny_model(tok, "llama").save_pretrained(student)
    tok.save_pretrained(student)
    rows = []
    for i in range(10):
        a, b = i % 10, i * 7 % 10
        base = {"id": f"q{i}", "prompt": f"What is {a} + {b}? Assistant:", "answer": str(a + b), "finish_reason": "stop",
                "completion_tokens": 12, "teacher": "t"}
        rows.append({**base, "completion": f"<think>{a} + {b} = {a + b}</think> <answer>{a + b}</answer>"})
        rows.append({**base, "completion": f"<think>no idea</think> <answer>{a + b + 2}</answer>"})  # wrong: rejected
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept = tmp_path / "kept.jsonl"
    assert filter_traces(traces, kept, progress=False)["kept"] == 10
    cfg = tmp_path / "distill.yaml"
    cfg.write_text(f"stage: distill\nmodel: {{name_or_path: {student}}}\ndata: {{path: {kept}}}\n"
                   f"output_dir: {tmp_path / 'run'}\ntrain: {{num_epochs: 4, batch_size: 5, lr: 0.01, progress: false}}\n")
    assert main(["distill", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "8 steps on 10 examples" in out
    run = tmp_path / "run"
    got = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert got[-1]["loss"] < got[0]["loss"]
    stats = json.loads((run / "data_stats.json").read_text())
    assert stats["format"] == "prompt_completion" and stats["examples"] == 10
    assert AutoModelForCausalLM.from_pretrained(run / "final").config.model_type == "llama"
    final_tok = AutoTokenizer.from_pretrained(run / "final")
    assert final_tok.pad_token == "<|finetune_right_pad_id|>"  # Llama 3 has none: its reserved pad is taken
    assert main(["distill", str(cfg)]) == 2  # the run exists: resume it instead
    assert f"r1kit distill --resume {run}" in capsys.readouterr().err
