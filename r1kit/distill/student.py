"""``r1kit distill CONFIG``: a student fine-tuned on a teacher's filtered traces (DeepSeek-R1's
distilled Qwen and Llama models: SFT on 800K verified samples), through the SFT stage: the same
labels (completion only, EOS trained, <think> kept), run directory, resume and evaluation. With
``logits.teacher`` set, the student also matches the teacher's next-token distributions on those
tokens (``r1kit.distill.logits``: forward KL, reverse KL or generalised JSD)."""

from __future__ import annotations

from pathlib import Path

from r1kit.config.sft import DistillRun
from r1kit.sft.train import prepare
from r1kit.sft.trl_stage import run_stage, summarize

STAGE = "distill"

__all__ = ["resume_config", "summarize", "train"]


def logit_trainer(cfg: DistillRun):
    """``trainer_for(student, tokenizer)``: SFTTrainer whose loss is the divergence from the
    teacher's logits (plus ``nll_weight`` x the SFT loss), over the vocabulary both share."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from r1kit.distill.logits import distill_loss, shared_vocab_size
    from r1kit.models import load_tokenizer, resolve_model_path

    section = cfg.logits
    path = resolve_model_path(section.teacher)
    teacher_tok = load_tokenizer(path)

    def trainer_for(student, tokenizer):
        teacher = AutoModelForCausalLM.from_pretrained(path, dtype=next(student.parameters()).dtype).eval()
        teacher.requires_grad_(False)
        teacher_rows = teacher.get_input_embeddings().weight.shape[0]
        vocab = shared_vocab_size(teacher_tok, tokenizer, teacher.get_output_embeddings().weight.shape[0],
                                  student.get_output_embeddings().weight.shape[0])

        class LogitDistillTrainer(SFTTrainer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.model_accepts_loss_kwargs = False  # a mean per micro-batch: the Trainer averages accumulation

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                labels = inputs["labels"]
                feed = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
                outputs = model(**feed)
                if next(teacher.parameters()).device != outputs.logits.device:
                    teacher.to(outputs.logits.device)
                with torch.no_grad():  # a pad id the teacher lacks (added to the student) is masked anyway
                    ids = feed["input_ids"].masked_fill(feed["input_ids"] >= teacher_rows, 0)
                    teacher_logits = teacher(**{**feed, "input_ids": ids}).logits
                loss = distill_loss(outputs.logits, teacher_logits, labels, section.divergence, section.beta,
                                    section.temperature, vocab)
                if section.nll_weight:
                    logits = outputs.logits[:, :-1].float()
                    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
                    loss = loss + section.nll_weight * nll
                return (loss, outputs) if return_outputs else loss

        return LogitDistillTrainer

    return trainer_for


def train(cfg: DistillRun, resume: bool = False) -> Path:
    """Fine-tune ``cfg.model`` (the student) on ``cfg.data`` (the kept traces); returns the run directory."""
    trainer_for = logit_trainer(cfg) if cfg.logits.teacher else None
    return run_stage(cfg, STAGE, resume, lambda: prepare(cfg, trainer_for))


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> DistillRun:
    from r1kit import rundir

    return rundir.resume_config(run_dir, STAGE, overrides)
