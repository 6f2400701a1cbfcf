"""Logit distillation: the divergences against values worked out by hand, the shared-vocabulary
check (Qwen2.5's 151,936 vs 152,064 rows), and a tiny student trained toward a tiny teacher."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from r1kit.cli import main
from r1kit.config import load_config
from r1kit.distill.logits import VocabularyError, distill_loss, shared_vocab_size, token_divergence
from r1kit.testing import tiny_model, tiny_tokenizer

# teacher p = [1/2, 1/2]; student q = softmax([0, ln 3]) = [1/4, 3/4]
P_LOGITS, Q_LOGITS = torch.tensor([0.0, 0.0]), torch.tensor([0.0, math.log(3.0)])
FORWARD = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
REVERSE = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
M = (0.375, 0.625)  # beta 0.5
JSD = 0.5 * (0.5 * math.log(0.5 / M[0]) + 0.5 * math.log(0.5 / M[1])) + 0.5 * (
    0.25 * math.log(0.25 / M[0]) + 0.75 * math.log(0.75 / M[1]))


@pytest.mark.parametrize("kind, want", [("forward_kl", FORWARD), ("reverse_kl", REVERSE), ("jsd", JSD)])
def test_divergences_by_hand(kind, want):
    assert token_divergence(Q_LOGITS, P_LOGITS, kind).item() == pytest.approx(want, abs=1e-6)
    assert token_divergence(P_LOGITS, P_LOGITS, kind).item() == pytest.approx(0.0, abs=1e-7)


def test_forward_kl_is_torchs_and_temperature_softens_both():
    s, t = torch.randn(5, 11), torch.randn(5, 11)
    want = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(token_divergence(s, t), want, atol=1e-6)
    assert torch.allclose(token_divergence(s, t, temperature=2.0), token_divergence(s / 2, t / 2), atol=1e-6)
    with pytest.raises(ValueError, match="beta must lie in"):
        token_divergence(s, t, "jsd", beta=1.0)


def test_the_loss_counts_only_tokens_that_predict_trained_labels_over_shared_rows():
    torch.manual_seed(0)
    student, teacher = torch.randn(1, 4, 7), torch.randn(1, 4, 9)  # the teacher has two extra rows
    labels = torch.tensor([[-100, -100, 3, 5]])  # positions 1 and 2 predict them
    want = token_divergence(student[0, 1:3, :7], teacher[0, 1:3, :7]).mean()
    assert distill_loss(student, teacher, labels, "forward_kl", 0.5, 1.0, 7).item() == pytest.approx(want.item())


def test_shared_prefix_vocabularies_and_a_real_mismatch():
    tok = tiny_tokenizer()
    assert shared_vocab_size(tok, tiny_tokenizer(), 151_936 % 1000 + len(tok), len(tok) + 8) == len(tok) + 8
    with pytest.raises(VocabularyError, match="tokenizers differ: .* is only in the"):
        shared_vocab_size(tok, tiny_tokenizer("llama3"), 400, 400)
    with pytest.raises(VocabularyError, match="only 100 logit rows"):
        shared_vocab_size(tok, tiny_tokenizer(), 100, 400)


def test_a_student_learns_from_a_teachers_logits(tmp_path, capsys):
    tok = tiny_tokenizer()
    teacher = tiny_model(tok, "qwen2", seed=1, hidden=64)
    student = tiny_model(tok, "qwen2", seed=2)
    student.resize_token_embeddings(len(tok) + 8)  # more rows than the teacher, as Qwen2.5-7B vs 1.5B
    for name, m in (("teacher", teacher), ("student", student)):
        m.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    kept = tmp_path / "kept.jsonl"
    kept.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "completion": f"<think>{i} + 1</think> <answer>{i + 1}</answer>"})
                            + "\n" for i in range(8)))
    args = [f"model.name_or_path={tmp_path / 'student'}", f"data.path={kept}", "train.batch_size=8", "train.num_epochs=6",
            "train.lr=1e-2", "train.shuffle=false", "train.progress=false", f"logits.teacher={tmp_path / 'teacher'}",
            "logits.divergence=jsd"]
    assert main(["distill", *args, f"output_dir={tmp_path / 'run'}"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    # the first loss is the JSD of the untouched student from the teacher, over the trained tokens
    from r1kit.sft.data import build_examples
    from r1kit.sft.train import ensure_pad, stop_ids

    cfg = load_config(None, args + [f"output_dir={tmp_path / 'x'}"], stage="distill")
    s = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    examples, _ = build_examples([json.loads(x) for x in kept.read_text().splitlines()], cfg.data, tok, stop_ids(tok, s))
    ensure_pad(tok, s)
    width = max(len(e.input_ids) for e in examples)
    ids = torch.tensor([e.input_ids + [tok.pad_token_id] * (width - len(e.input_ids)) for e in examples])
    labels = torch.tensor([e.labels + [-100] * (width - len(e.labels)) for e in examples])
    mask = (labels != -100) | (torch.arange(width) < torch.tensor([len(e.input_ids) for e in examples])[:, None])
    with torch.no_grad():
        want = distill_loss(s(ids, attention_mask=mask.long()).logits, teacher(ids, attention_mask=mask.long()).logits,
                            labels, "jsd", 0.5, 1.0, len(tok))
    assert rows[0]["loss"] == pytest.approx(want.item(), rel=2e-3)  # batched attention kernels differ in the last bits
    # another tokenizer: one line naming the difference
    other = tmp_path / "llama-teacher"
    ltok = tiny_tokenizer("llama3")
    tiny_model(ltok, "llama").save_pretrained(other)
    ltok.save_pretrained(other)
    capsys.readouterr()
    assert main(["distill", *args[:-2], f"logits.teacher={other}", f"output_dir={tmp_path / 'bad'}"]) == 2
    assert "teacher and student tokenizers differ" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
