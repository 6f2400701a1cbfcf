"""The policy's weights as an inference engine needs them: plain HF parameter names, LoRA merged.

vLLM loads checkpoints by HF names (``model.layers.0.self_attn.q_proj.weight``), so a PEFT
policy's ``base_layer`` / ``lora_A`` / ``lora_B`` tensors are folded into one weight per layer,
W = W_base + scaling * B @ A, computed out of place (merging into the live model and unmerging
would leave rounding residue in the base weights after every step).
"""

from __future__ import annotations

import torch


def _peft_parts(policy):
    """(plain transformers model, {module name: LoRA layer}) for a PEFT model, else (policy, {})."""
    try:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return policy, {}
    if not isinstance(policy, PeftModel):
        return policy, {}
    model = policy.get_base_model()
    return model, {name: mod for name, mod in model.named_modules() if isinstance(mod, LoraLayer)}


@torch.no_grad()
def hf_weights(policy) -> list[tuple[str, torch.Tensor]]:
    """``[(hf_name, tensor)]`` of every weight of the policy's HF model, LoRA deltas merged in.

    Tied input/output embeddings are listed under both names (``lm_head.weight`` too): engines
    that keep a separate output projection must receive it, or they keep the stale one.
    Tensors are detached views of the live parameters where no merge is needed (no copy).
    Sharded (FSDP2) parameters are gathered whole, tensor by tensor: every process must call it.
    """
    model, lora = _peft_parts(policy)
    deltas: dict[str, torch.Tensor] = {}
    for name, mod in lora.items():
        active = [a for a in mod.active_adapters if a in mod.lora_A] if not getattr(mod, "disable_adapters", False) else []
        if getattr(mod, "merged", False):
            active = []  # already inside base_layer.weight
        delta = None
        for a in active:
            d = mod.get_delta_weight(a)
            delta = d if delta is None else delta + d
        if delta is not None:
            deltas[f"{name}.weight"] = delta
    out: list[tuple[str, torch.Tensor]] = []
    for key, t in model.state_dict(keep_vars=False).items():
        if ".lora_" in key or ".original_module." in key:
            continue  # adapter factors (merged below) and the frozen copy behind modules_to_save
        name = key.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")
        t = t.detach()
        if name in deltas:
            t = t + deltas[name].to(t.dtype)
        if hasattr(t, "full_tensor"):  # FSDP2: gathered one tensor at a time (every process calls this)
            t = t.full_tensor()
        out.append((name, t))
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(text_cfg, "tie_word_embeddings", False) and "lm_head.weight" not in dict(out):
        emb = model.get_input_embeddings().weight
        emb_name = next(n for n, p in model.named_parameters(remove_duplicate=False) if p is emb)
        out.append(("lm_head.weight", dict(out)[emb_name.replace(".base_layer.", ".")]))
    return out
