"""``strip_answer``: the final answer of a whole response, step by step in the documented order
(``r1kit.rewards.extract``), and that the reading stays linear on adversarial text."""

import pytest

from r1kit.rewards.extract import is_prose, math_spans, strip_answer


@pytest.mark.parametrize(
    "response, expected",
    [
        # 1. chat framing and </think>
        ("The answer is 8.<|im_end|>", "8"),
        ("<|im_start|>assistant\nIt is $9$.<|im_end|>\n<|im_start|>user\nAnd 10?", "9"),
        ("So the answer is 11<｜end▁of▁sentence｜>", "11"),
        ("<think>maybe 4</think>\n\nThe answer is $5$.", "5"),
        ("<think>only thoughts, 4</think>", "4"),
        # 2. the answer tag wins over anything else
        (r"<think>\boxed{3}</think> <answer>7</answer>", "7"),
        # 3. GSM8K's marker
        ("48 + 24 = 72 clips.\n#### 72", "72"),
        # 4. the last box; a run of boxes is one list
        (r"first $\boxed{1}$, then $\boxed{\frac{1}{2}}$", r"\frac{1}{2}"),
        (r"x = \boxed{2} and \boxed{-1}", "2, -1"),
        # 5. lead-ins, with math right after or the rest of the sentence
        ("Final Answer: The final answer is $1{,}250$. I hope it is correct.", "1{,}250"),
        ("Answer $ 8 $", "8"),
        (r"The answer is \(x = 5\). Done.", "x = 5"),
        ("**Final Answer:** 12 apples. Next we check.", "12 apples"),
        ("To answer that, we note the answer is Devon.", "Devon"),
        # 6. tidying
        ("So, $5$.", "5"),
        # 7. prose: the last sentence with a value in it
        ("Therefore, the probability is 3/5.", "3/5"),
        ("We add 3 and 4. So there are 7 apples in total. Nice work!", "7"),
        ("It is either 5 or 6.", "5 or 6"),
        ("The values are 1, 2, and 3.", "1, 2, and 3"),
        ("Counting again, there are seven of them.", "seven"),
        ("Since $a = 3$, we get $b = 7$.", "b = 7"),
        ("The rate grew by 25%.", "25%"),
        ("there is no solution", "there is no solution"),
        ("12 red apples", "12"),
        # not prose: kept as written
        ("5 square feet", "5 square feet"),
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        ("x = 5", "x = 5"),
        ("one half", "one half"),
    ],
)
def test_strip_answer_reads_a_whole_response_in_order(response, expected):
    assert strip_answer(response) == expected


def test_is_prose_counts_words_that_are_not_units_numbers_or_connectors():
    assert is_prose("the probability is 3/5")
    assert not is_prose("5 square feet")
    assert is_prose("twenty-one apples and pears")
    assert not is_prose(r"x \in (1, 2] or x > 3")
    assert not is_prose(r"\text{Devon}")


def test_math_spans_pair_delimiters_and_skip_escaped_dollars():
    text = r"cost $\$5$ and $$x^2$$ then \(y\) and \[z\] and $ unclosed"
    assert [c for _, _, c in math_spans(text)] == [r"\$5", "x^2", "y", "z"]


@pytest.mark.parametrize(
    "text",
    ["\\[" * 50_000, "\\(" * 50_000, "$$a" * 30_000, "the answer is " * 10_000, "answer " * 30_000,
     "answer $" * 30_000, "\\boxed{" * 30_000, "<|im_start|>" * 10_000, "</think>" * 20_000, "$\\$" * 50_000],
)
def test_adversarial_text_is_read_and_gives_an_answer(text):
    """Each of these took 27-40 s with regex-based span matching (quadratic); the single-pass
    reading takes well under a second (``benchmarks/bench_format.py`` prints the times)."""
    assert isinstance(strip_answer(text), str)
