"""Logit distillation: the student matches the teacher's next-token distributions on the kept
traces (teacher forcing), not only their sampled tokens. Pure tensor math, plus the vocabulary check.

Divergences per completion token, between the teacher's p = softmax(z_T / τ) and the student's
q = softmax(z_S / τ) (τ: ``temperature``), averaged over the trained tokens:

    forward_kl   KL(p ‖ q) = Σ p (log p − log q)          (mean-seeking: the classic KD loss)
    reverse_kl   KL(q ‖ p) = Σ q (log q − log p)          (mode-seeking, as in MiniLLM)
    jsd          β·KL(p ‖ m) + (1 − β)·KL(q ‖ m),  m = β·p + (1 − β)·q   (GKD's generalised JSD;
                 β → 0 approaches forward KL scaled by β, β → 1 reverse KL scaled by 1 − β)

Teacher and student must share a tokenizer. Their logit rows may still differ in number (Qwen2.5
0.5B-3B have 151,936 embedding rows, 7B and up 152,064, for the same 151,665 tokens): the
divergence is taken over the ids both have, which hold every token of the tokenizer.
"""

from __future__ import annotations

import math

import torch

from r1kit.distill.traces import DistillError

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


class VocabularyError(DistillError):
    """Teacher and student do not share a tokenizer (the message names the first difference)."""


def shared_vocab_size(teacher_tok, student_tok, teacher_rows: int, student_rows: int) -> int:
    """The number of leading logit rows to compare: the smaller model's, once the two tokenizers
    are checked to map every token to the same id and both models have a row for each."""
    vt, vs = teacher_tok.get_vocab(), dict(student_tok.get_vocab())
    pad = student_tok.pad_token
    if pad is not None and pad not in vt:  # a pad r1kit added to the student: never a label
        vs.pop(pad, None)
    if vt != vs:
        only = sorted(set(vt) ^ set(vs))
        if only:
            which = "teacher" if only[0] in vt else "student"
            raise VocabularyError(f"teacher and student tokenizers differ: {only[0]!r} is only in the {which}'s "
                                  f"({len(vt)} vs {len(vs)} tokens); logit distillation needs one tokenizer")
        tok = next(t for t in vt if vt[t] != vs[t])
        raise VocabularyError(f"teacher and student tokenizers differ: {tok!r} is id {vt[tok]} vs {vs[tok]}")
    shared = min(teacher_rows, student_rows)
    if max(vt.values(), default=-1) >= shared:
        raise VocabularyError(f"the tokenizer has ids up to {max(vt.values())} but a model has only {shared} logit rows")
    return shared


def token_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str = "forward_kl",
                     beta: float = 0.5, temperature: float = 1.0) -> torch.Tensor:
    """Per-token divergence ``[..., V] -> [...]`` (see the module docstring); float32 inside."""
    if kind not in DIVERGENCES:
        raise ValueError(f"divergence '{kind}' is not one of {', '.join(DIVERGENCES)}")
    log_q = torch.log_softmax(student_logits.float() / temperature, -1)
    log_p = torch.log_softmax(teacher_logits.float() / temperature, -1)
    if kind == "forward_kl":
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    if kind == "reverse_kl":
        return (log_q.exp() * (log_q - log_p)).sum(-1)
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd: beta must lie in (0, 1), got {beta}")
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), 0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return beta * kl_pm + (1 - beta) * kl_qm


def distill_loss(student_logits_NTV: torch.Tensor, teacher_logits_NTV: torch.Tensor, labels_NT: torch.Tensor,
                 kind: str, beta: float, temperature: float, vocab: int) -> torch.Tensor:
    """Mean divergence over the tokens that predict a trained label (``labels != -100``, shifted
    by one as in the causal-LM loss), over the first ``vocab`` logit rows."""
    mask_NT = labels_NT[:, 1:] != -100
    s = student_logits_NTV[:, :-1, :vocab][mask_NT]
    t = teacher_logits_NTV[:, :-1, :vocab][mask_NT]
    if s.numel() == 0:
        return student_logits_NTV.sum() * 0.0
    return token_divergence(s, t, kind, beta, temperature).mean()
