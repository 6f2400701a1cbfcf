"""Per-token log-probs and entropies from the final hidden states, projecting onto the vocabulary
``chunk`` tokens at a time, in the forward pass and again in the backward pass.

A [N, T, V] logits tensor (and its gradient) is what limits completion length: 8 completions x
2048 tokens x a 49k vocabulary is 3.2 GB of fp32 logits, twice over in the backward pass. Here
only a [chunk, V] block exists at a time; the backward pass recomputes each block from the saved
hidden states and log-sum-exps (the custom autograd function below), so peak memory grows with
the chunk, not with T x V.

Shapes (``r1kit.types``): M = N x T flattened completion positions, H hidden size, V vocab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _logits(hidden_MH: torch.Tensor, weight_VH: torch.Tensor, bias_V: torch.Tensor | None, temperature: float) -> torch.Tensor:
    z = F.linear(hidden_MH, weight_VH, bias_V).float()
    return z / temperature if temperature != 1.0 else z


class ChunkedHeadLogprobs(torch.autograd.Function):
    """``(logp_M, entropy_M)`` of ``index_M`` under softmax(hidden @ W^T + b) / temperature,
    float32; the entropy carries no gradient. d logp / d logits = onehot(index) - softmax."""

    @staticmethod
    def forward(ctx, hidden_MH, weight_VH, bias_V, index_M, chunk: int, temperature: float, device_type: str):
        M = hidden_MH.shape[0]
        logp_M = torch.empty(M, dtype=torch.float32, device=hidden_MH.device)
        entropy_M = torch.empty_like(logp_M)
        lse_M = torch.empty_like(logp_M)
        for lo in range(0, M, chunk):
            z = _logits(hidden_MH[lo : lo + chunk], weight_VH, bias_V, temperature)
            lse = torch.logsumexp(z, dim=-1)
            logp_M[lo : lo + chunk] = z.gather(-1, index_M[lo : lo + chunk, None]).squeeze(-1) - lse
            p = torch.exp(z - lse[:, None])  # one more [chunk, V] buffer; E_p[z] without a third
            entropy_M[lo : lo + chunk] = lse - torch.bmm(p.unsqueeze(1), z.unsqueeze(2)).view(-1)
            lse_M[lo : lo + chunk] = lse
            del z, p
        ctx.save_for_backward(hidden_MH, weight_VH, bias_V, index_M, lse_M)
        ctx.chunk, ctx.temperature, ctx.device_type = chunk, temperature, device_type
        ctx.autocast = (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
        ctx.mark_non_differentiable(entropy_M)
        return logp_M, entropy_M

    @staticmethod
    def backward(ctx, grad_logp_M, grad_entropy_M):
        hidden_MH, weight_VH, bias_V, index_M, lse_M = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden_MH) if need_h else None
        grad_w = torch.zeros_like(weight_VH, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias_V, dtype=torch.float32) if need_b else None
        enabled, dtype = ctx.autocast
        with torch.autocast(ctx.device_type, dtype=dtype, enabled=enabled):  # the forward's precision
            for lo in range(0, hidden_MH.shape[0], ctx.chunk):
                h = hidden_MH[lo : lo + ctx.chunk]
                g = grad_logp_M[lo : lo + ctx.chunk].float()
                # softmax, then d logp / d z = onehot - softmax, all in the one [chunk, V] buffer
                gz = _logits(h, weight_VH, bias_V, ctx.temperature)
                gz.sub_(lse_M[lo : lo + ctx.chunk, None]).exp_().mul_(-g[:, None])
                gz.scatter_add_(-1, index_M[lo : lo + ctx.chunk, None], g[:, None])
                if ctx.temperature != 1.0:
                    gz.div_(ctx.temperature)
                if need_h:
                    grad_h[lo : lo + ctx.chunk] = (gz.to(weight_VH.dtype) @ weight_VH).to(grad_h.dtype)
                if need_w:
                    grad_w += gz.t() @ h.float()
                if need_b:
                    grad_b += gz.sum(0)
        return (
            grad_h, None if grad_w is None else grad_w.to(weight_VH.dtype),
            None if grad_b is None else grad_b.to(bias_V.dtype), None, None, None, None,
        )


def head_logprobs(
    hidden_NTH: torch.Tensor, head: torch.nn.Linear, index_NT: torch.Tensor, chunk: int = 1024, temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logp_NT, entropy_NT)``, float32, for the tokens ``index_NT`` predicted from
    ``hidden_NTH`` by the linear ``head``, ``chunk`` positions at a time (see the module doc)."""
    N, T, H = hidden_NTH.shape
    logp_M, entropy_M = ChunkedHeadLogprobs.apply(
        hidden_NTH.reshape(N * T, H), head.weight, head.bias, index_NT.reshape(N * T), chunk, float(temperature),
        hidden_NTH.device.type,
    )
    return logp_M.view(N, T), entropy_M.view(N, T)


def chunkable_head(model) -> torch.nn.Linear | None:
    """The model's output projection when :func:`head_logprobs` computes exactly what the model
    would: a plain ``nn.Linear`` head (not LoRA-wrapped) fed the last hidden state, without final
    logit soft-capping; None otherwise (the caller projects the whole logits tensor)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    config = getattr(model, "config", None)
    if type(head) is not torch.nn.Linear or getattr(config, "final_logit_softcapping", None):
        return None
    return head
