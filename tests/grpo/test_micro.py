"""Micro-batch splits (r1kit.grpo.micro), by hand."""

import pytest

from r1kit.grpo import micro


def _split(*args):
    return [idx.tolist() for idx in micro.by_length(*args)]


def test_contiguous_runs():
    assert [i.tolist() for i in micro.contiguous(5, 2)] == [[0, 1], [2, 3], [4]]


def test_by_length_pairs_similar_lengths_across_groups():
    # rows 1 and 3 are long (100, 98), rows 0 and 2 short (10, 12); two prompts of 20 tokens.
    # One micro-batch:         40 + 4 x 100            + 64 = 504
    # [1, 3] + [0, 2]:        (40 + 2 x 100 + 64) + (40 + 2 x 12 + 64) = 304 + 128 = 432  <- least
    # [1] + [3] + [0, 2]:     184 + 182 + 128 = 494
    # [1, 3, 2] + [0]:        (40 + 300 + 64) + (20 + 10 + 64) = 498
    lengths, prompts, ids = [10, 100, 12, 98], [20] * 4, [0, 0, 1, 1]
    assert _split(lengths, prompts, ids, 10_000) == [[1, 3], [0, 2]]


def test_by_length_keeps_each_micro_batch_under_the_budget():
    lengths, prompts, ids = [10, 100, 12, 98], [20] * 4, [0, 0, 1, 1]
    # 200 tokens: two long rows are 2 x 120 = 240, too many; the short pair is 2 x 32 = 64
    assert _split(lengths, prompts, ids, 200) == [[1], [3], [0, 2]]
    # 50 tokens: a long row alone exceeds it and still forms its own micro-batch; 64 > 50 splits the pair
    assert _split(lengths, prompts, ids, 50) == [[1], [3], [2], [0]]


def test_by_length_shared_prompt_is_counted_once():
    # four rows of one 300-token prompt, completions 50 and 40: together 300 + 4 x 50 + 64 = 564,
    # apart (300 + 100 + 64) + (300 + 80 + 64) = 908
    assert _split([50, 50, 40, 40], [300] * 4, [7] * 4, 10_000) == [[0, 1, 2, 3]]


def test_by_length_every_row_once_in_order():
    lengths = [5, 80, 33, 0, 61, 61, 7, 120, 2, 45]
    parts = _split(lengths, [9] * 10, list(range(10)), 400)
    assert sorted(sum(parts, [])) == list(range(10))
    assert all(p == sorted(p) for p in parts)
    for p in parts:
        assert len(p) == 1 or len(p) * (9 + max(lengths[r] for r in p)) <= 400


def test_by_length_rejects_bad_input():
    with pytest.raises(ValueError, match="budget"):
        micro.by_length([1], [1], [0], 0)
    with pytest.raises(ValueError, match="2 prompt lengths"):
        micro.by_length([1], [1, 2], [0], 10)
    assert micro.by_length([], [], [], 10) == []
