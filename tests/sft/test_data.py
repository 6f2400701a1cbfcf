"""SFT examples: which tokens are trained, the EOS, <think> kept, over-long examples, bad rows.
Checked token by token on tiny tokenizers with Qwen2.5-, Llama-3- and SmolLM2-style templates."""

from __future__ import annotations

import pytest

from r1kit.config import load_config
from r1kit.data.loaders import DataError
from r1kit.sft.data import IGNORE, build_examples, trace_response
from r1kit.sft.train import ensure_pad, stop_ids
from r1kit.testing import THINK_STRIPPING_TEMPLATE, tiny_model, tiny_tokenizer

RESPONSE = "<think>2 + 3 = 5</think> <answer>5</answer>"


def data_cfg(**keys):
    return load_config(None, ["data.path=mem.jsonl", *(f"data.{k}={v}" for k, v in keys.items())], stage="sft").data


def build(rows, style="chatml", chat_template=None, **keys):
    tok = tiny_tokenizer(style)
    if chat_template:
        tok.chat_template = chat_template
    model = tiny_model(tok, "llama" if style == "llama3" else "qwen2")
    ensure_pad(tok, model)
    examples, stats = build_examples(rows, data_cfg(**keys), tok, stop_ids(tok, model))
    return tok, examples, stats


def trained_text(tok, ex):
    return tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE])


def untrained_text(tok, ex):
    return tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab == IGNORE])


@pytest.mark.parametrize("style, turn_end", [("chatml", "<|im_end|>\n"), ("qwen2.5", "<|im_end|>\n"), ("llama3", "<|eot_id|>")])
def test_messages_train_the_assistant_turn_and_its_end_only(style, turn_end):
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"},
                          {"role": "assistant", "content": RESPONSE}]}]
    tok, (ex,), stats = build(rows, style)
    assert trained_text(tok, ex) == RESPONSE + turn_end
    assert ex.input_ids[-1 if style == "llama3" else -2] == tok.eos_token_id  # the stop token is trained
    prompt = untrained_text(tok, ex)
    assert "Be brief." in prompt and "What is 2 + 3?" in prompt and RESPONSE not in prompt
    # the prompt tokens are exactly what generation sees: the template with its generation prompt
    gen_prompt = tok.apply_chat_template(rows[0]["messages"][:2], tokenize=False, add_generation_prompt=True)
    n = len(tok(gen_prompt, add_special_tokens=False)["input_ids"])
    assert ex.input_ids[:n] == tok(gen_prompt, add_special_tokens=False)["input_ids"]
    assert all(lab == IGNORE for lab in ex.labels[:n]) and all(lab != IGNORE for lab in ex.labels[n:])
    assert stats.eos_added == 0 and stats.template_rewrites == 0


def test_multi_turn_trains_every_assistant_turn_not_the_user_turns():
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<answer>1</answer>"},
            {"role": "user", "content": "Again"}, {"role": "assistant", "content": RESPONSE},
            {"role": "user", "content": "trailing question, nothing to learn"}]
    tok, (ex,), _ = build([{"messages": msgs}])
    assert trained_text(tok, ex) == "<answer>1</answer><|im_end|>\n" + RESPONSE + "<|im_end|>\n"
    assert "trailing" not in tok.decode(ex.input_ids)


def test_a_template_that_strips_think_does_not_strip_it_from_training():
    rows = [{"messages": [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": RESPONSE}]}]
    tok, (ex,), stats = build(rows, chat_template=THINK_STRIPPING_TEMPLATE)
    assert trained_text(tok, ex) == RESPONSE + "<|im_end|>"
    assert stats.template_rewrites == 1


def test_traces_render_with_the_rl_template_and_prefill():
    rows = [{"problem": "What is 2 + 3?", "reasoning": " 2 + 3 = 5 ", "answer": 5}]
    tok, (ex,), stats = build(rows)
    assert trained_text(tok, ex) == RESPONSE.removeprefix("<think>") + "<|im_end|>"  # the prefill is in the prompt
    prompt = untrained_text(tok, ex)
    assert prompt.endswith("<|im_start|>assistant\n<think>") and "What is 2 + 3?" in prompt
    assert stats.eos_added == 1 and trace_response(" 2 + 3 = 5 ", 5) == RESPONSE
    tok, (ex,), _ = build(rows, template="r1zero", prefill='""')
    assert trained_text(tok, ex) == RESPONSE + "<|im_end|>"
    assert untrained_text(tok, ex).endswith("Assistant:")


def test_prompt_completion_strings_and_conversational():
    tok, (ex,), _ = build([{"prompt": "Q: 2+3? A:", "completion": RESPONSE}])
    assert untrained_text(tok, ex) == "Q: 2+3? A:" and trained_text(tok, ex) == RESPONSE + "<|im_end|>"
    conv = [{"prompt": [{"role": "user", "content": "2+3?"}], "completion": [{"role": "assistant", "content": RESPONSE}]}]
    tok, (ex,), _ = build(conv)
    assert trained_text(tok, ex) == RESPONSE + "<|im_end|>\n"
    tok, (ex,), _ = build([{"prompt": conv[0]["prompt"], "completion": RESPONSE}])  # chat prompt, text reply
    assert trained_text(tok, ex) == RESPONSE + "<|im_end|>\n"
    tok, (ex,), _ = build([{"prompt": "Q:", "completion": RESPONSE + "<|im_end|>"}])
    assert trained_text(tok, ex) == RESPONSE + "<|im_end|>"  # already ends with the EOS: not doubled


def test_full_sequence_loss_when_asked():
    tok, (ex,), _ = build([{"prompt": "Q: 2+3? A:", "completion": RESPONSE}], completion_only_loss="false")
    assert ex.labels == ex.input_ids


def test_overlong_examples_are_counted_then_dropped_or_cut(caplog):
    rows = [{"prompt": "Q:", "completion": "5"}, {"prompt": "Q:", "completion": "1 2 3 4 5 6 7 8 9 " * 5}]
    _, examples, stats = build(rows, max_length=12)
    assert len(examples) == 1 and (stats.overlong, stats.dropped, stats.truncated) == (1, 1, 0)
    assert "1 of 2 examples are longer than data.max_length=12 tokens: dropped" in caplog.text
    _, examples, stats = build(rows, max_length=12, overlong="truncate")
    assert [len(e.input_ids) for e in examples][1] == 12 and (stats.overlong, stats.truncated) == (1, 1)
    with pytest.raises(DataError, match="no example fits data.max_length=2"):
        build(rows, max_length=2)


def test_pad_is_never_the_eos():
    tok = tiny_tokenizer("llama3")  # no pad, like Llama 3: its reserved pad token is taken
    model = tiny_model(tok, "llama")
    assert ensure_pad(tok, model) == "<|finetune_right_pad_id|>" and model.config.pad_token_id == tok.pad_token_id
    tok = tiny_tokenizer()
    tok.pad_token = tok.eos_token
    model = tiny_model(tok, "qwen2")
    assert ensure_pad(tok, model) == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id
    tok = tiny_tokenizer()
    tok.eos_token = tok.pad_token = "<|endoftext|>"  # the only candidate is the EOS: a pad is added
    model = tiny_model(tok, "qwen2")
    rows = model.get_input_embeddings().weight.shape[0]
    assert ensure_pad(tok, model) == "<|pad|>" and tok.pad_token_id == rows
    assert model.get_input_embeddings().weight.shape[0] == rows + 1


@pytest.mark.parametrize("row, message", [
    ({"messages": "hello"}, "row 0 column 'messages': expected a non-empty list"),
    ({"messages": [{"role": "user"}]}, "row 0 column 'messages': message 0 needs a 'role' and a string 'content'"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "row 0: no assistant message to train on"),
    ({"prompt": "Q", "completion": " "}, "row 0: empty 'completion'"),
    ({"problem": "Q", "reasoning": "r", "answer": None}, "row 0: empty 'answer'"),
    ({"question": "Q", "text": "x"}, "cannot tell the row layout from the columns question, text"),
])
def test_bad_rows_name_the_file_the_row_and_what_is_missing(row, message):
    with pytest.raises(DataError) as e:
        build([row])
    assert str(e.value).startswith("mem.jsonl") and message in str(e.value), str(e.value)


def test_a_named_format_needs_its_columns():
    with pytest.raises(DataError, match="no column 'completion' \\(data.format prompt_completion\\); available columns: prompt"):
        build([{"prompt": "Q"}], format="prompt_completion")


def test_generated_traces_are_rendered_with_this_models_template():
    """`r1kit generate` rows (question + completion with the prefill) under a Llama-3 student's own
    template, whatever template the teacher's `prompt` used."""
    row = {"id": "q", "question": "What is 2 + 3?", "prompt": "<|im_start|>user\nteacher's prompt<|im_end|>\n",
           "completion": RESPONSE, "answer": "5", "finish_reason": "stop"}
    tok, (ex,), stats = build([row], "llama3")
    assert stats.extra["format"] == "question_completion"
    prompt = untrained_text(tok, ex)
    assert "teacher's prompt" not in prompt and "<|start_header_id|>user<|end_header_id|>" in prompt
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n<think>") and "What is 2 + 3?" in prompt
    assert trained_text(tok, ex) == RESPONSE.removeprefix("<think>") + "<|eot_id|>"
