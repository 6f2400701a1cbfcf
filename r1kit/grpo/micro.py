"""How one process's rows of a step are split into micro-batches (index lists; pure functions).

Two ways, chosen by the config:

- ``train.micro_batch_size`` rows at a time, contiguous: a group's completions stay together,
  so its prompt is run once (:func:`contiguous`);
- ``train.micro_batch_tokens``: rows of similar completion length together, so little of each
  micro-batch is padding (:func:`by_length`). Each micro-batch is padded to its longest prompt
  and its longest completion (``Batch.select`` trims the rest), so a batch whose completions
  range from 10 to 1,000 tokens costs close to its real tokens, not rows x 1,000.
"""

from __future__ import annotations

import torch

# A micro-batch's fixed cost, in tokens of work: one more forward and backward pass (kernel
# launches, the optimizer-free per-pass overhead). Keeps the split from making many tiny passes.
PASS_OVERHEAD_TOKENS = 64


def contiguous(n_rows: int, size: int) -> list[torch.Tensor]:
    """Rows 0..n-1 in runs of ``size``."""
    return [torch.arange(i, min(i + size, n_rows)) for i in range(0, n_rows, size)]


def by_length(
    completion_len_N: list[int], prompt_len_N: list[int], prompt_id_N: list[int], budget: int,
) -> list[torch.Tensor]:
    """Micro-batches of rows with similar completion lengths, each at most ``budget`` padded
    tokens (rows x (longest prompt + longest completion)); a row longer than ``budget`` on its
    own is a micro-batch of one.

    Rows are sorted by completion length (longest first, ties by row) and cut into consecutive
    runs by dynamic programming, minimising the step's work: per micro-batch, each distinct
    prompt once (rows with the same ``prompt_id`` share its forward pass) plus rows x longest
    completion plus :data:`PASS_OVERHEAD_TOKENS`. Every row is in exactly one micro-batch; each
    micro-batch lists its rows in increasing order; the order of micro-batches is longest first.
    """
    n = len(completion_len_N)
    if not n == len(prompt_len_N) == len(prompt_id_N):
        raise ValueError(f"by_length: {n} completion lengths, {len(prompt_len_N)} prompt lengths, "
                         f"{len(prompt_id_N)} prompt ids")
    if budget < 1:
        raise ValueError(f"by_length: budget must be >= 1 token, got {budget}")
    order = sorted(range(n), key=lambda r: (-completion_len_N[r], r))
    inf = float("inf")
    best = [0.0] + [inf] * n  # best[i]: the least work for order[:i]
    cut = [0] * (n + 1)  # cut[i]: where the last micro-batch of order[:i] starts
    for i in range(1, n + 1):
        seen: set[int] = set()
        prompt_work, longest_prompt = 0, 0
        for j in range(i - 1, -1, -1):  # the run order[j:i]; its longest completion is order[j]'s
            r = order[j]
            longest_prompt = max(longest_prompt, prompt_len_N[r])
            rows, longest = i - j, max(1, completion_len_N[r])
            if rows > 1 and rows * (longest_prompt + longest) > budget:
                break  # a longer run only holds more
            if prompt_id_N[r] not in seen:
                seen.add(prompt_id_N[r])
                prompt_work += prompt_len_N[r]
            work = best[j] + prompt_work + rows * longest + PASS_OVERHEAD_TOKENS
            if work < best[i]:
                best[i], cut[i] = work, j
    runs, i = [], n
    while i > 0:
        runs.append(torch.tensor(sorted(order[cut[i]:i]), dtype=torch.long))
        i = cut[i]
    return runs[::-1]
