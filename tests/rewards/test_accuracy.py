import pytest

from r1kit.rewards import REWARDS
from r1kit.rewards.accuracy import arithmetic_correct, countdown_correct

accuracy = REWARDS["accuracy"]


def wrap(answer: str) -> str:
    return f"<think> working </think> <answer>{answer}</answer>"


@pytest.mark.parametrize(
    "answer_text, ok",
    [
        ("7", True),
        (" 7 ", True),
        ("7.", True),
        ("7.0", True),
        (r"\boxed{7}", True),
        ("17", False),  # not a substring match
        ("77", False),
        ("7 apples", False),
        ("7.5", False),
        ("-7", False),
        ("", False),
    ],
)
def test_arithmetic(answer_text, ok):
    assert arithmetic_correct(wrap(answer_text), "7") is ok


def test_arithmetic_needs_answer_tags_and_handles_negatives():
    assert not arithmetic_correct("the answer is 7", "7")
    assert arithmetic_correct(wrap("-12"), "-12")


@pytest.mark.parametrize(
    "answer_text, ok",
    [
        ("(3 + 5) * 7", False),  # 56, not the target
        ("3 * 5", True),
        ("5*3", True),
        ("7 + 5 + 3", True),
        ("(7 - 5) * 3 + 5", False),  # uses 5 twice
        ("3 * 5 = 15", True),  # "expr = target" form
        ("3 * 5 = 16", False),  # false equation
        ("15", False),  # 15 is not one of the numbers
        ("7 + 8", False),  # 8 is not one of the numbers
        ("7 + 5 + 3 + 0", False),
        ("3 * 5 junk", False),
        ("", False),
    ],
)
def test_countdown(answer_text, ok):
    assert countdown_correct(wrap(answer_text), [3, 5, 7], 15) is ok


def test_countdown_division_and_repeated_numbers():
    assert countdown_correct(wrap("(6 + 6) / 4"), [6, 6, 4], 3)  # 6 given twice may be used twice
    assert not countdown_correct(wrap("(6 + 6 + 6) / 6"), [6, 6, 4], 3)
    assert countdown_correct(wrap("1+2+3 = 6"), [1, 2, 3], 6)
    assert countdown_correct(wrap("(9 - 3 / 3) / 2"), [9, 3, 3, 2], 4)
    assert not countdown_correct(wrap("9 / (3 - 3)"), [9, 3, 3], 4)


def test_accuracy_dispatches_on_task():
    completions = [wrap("8"), wrap("9"), wrap("3 * 5"), wrap("3 + 5"), wrap(r"\frac{1}{2}"), wrap("0.4")]
    kwargs = {
        "task": ["arithmetic", "arithmetic", "countdown", "countdown", "math", "math"],
        "answer": ["8", "8", "3 * 5", "3 * 5", "0.5", "0.5"],
        "numbers": [None, None, [3, 5, 7], [3, 5, 7], None, None],
        "target": [None, None, 15, 15, None, None],
        "question": ["q"] * 6,  # extra columns are ignored
    }
    assert accuracy(["p"] * 6, completions, **kwargs) == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_accuracy_defaults_to_math_and_rejects_unknown_tasks():
    assert accuracy(["p", "p"], [wrap("1,000"), r"so \boxed{999}"], answer=["1000", "1000"]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="unknown task 'chess'"):
        accuracy(["p"], [wrap("1")], task=["chess"], answer=["1"])


def test_accuracy_with_trl_conversational_completions():
    # What TRL's GRPOTrainer passes: message lists plus its own extra keyword arguments.
    prompts = [[{"role": "user", "content": "What is 3 + 4?"}]] * 2
    completions = [
        [{"role": "assistant", "content": wrap("7")}],
        [{"role": "assistant", "content": wrap("8")}],
    ]
    out = accuracy(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2], [3]],
        trainer_state=object(),
        task=["arithmetic", "arithmetic"],
        answer=["7", "7"],
    )
    assert out == [1.0, 0.0]
