"""``r1kit generate CONFIG``: k traces per prompt from a teacher, as JSONL rows the filter reads.

Teachers: a model in this process (``hf``: transformers; ``vllm``: a vLLM engine), or any
OpenAI-compatible endpoint (``openai``: ``r1kit vllm-serve``, a vLLM server elsewhere, a hosted
model; the API key comes from the environment variable ``teacher.api_key_env`` names and is never
written). A prompt's k rows are appended and flushed together once all k traces are in, so a
restart skips the prompts already complete and finishes the rest; sampling is seeded per chunk of
prompts (local teachers) or per request (endpoints, which vLLM honours), so the final set is the
one an uninterrupted run writes. ``OUT.meta.json`` records what produced the traces: another
config in the same output is an error (``overwrite: true`` starts over).

Rows (see ``r1kit.distill.traces``): ``id``, ``prompt`` (the prompt text, without the prefill;
chat messages for ``api: chat``), ``answer``, ``completion`` (prefill included), ``finish_reason``,
``completion_tokens``, ``teacher``, ``sampling``, ``sample_index``, and the problem's other fields.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from r1kit.checkpoint import write_text_atomically
from r1kit.config.generate import GenerateRun
from r1kit.data.templates import CHAT_INSTRUCTION, render_prompt
from r1kit.distill.traces import DistillError, write_jsonl_atomically
from r1kit.eval.records import first_difference

TEACHERS = ("hf", "vllm", "openai")
APIS = ("completions", "chat")
# Test hook: with R1KIT_TEST_PAUSE_AFTER_PROMPTS=N the process sleeps forever once N prompts'
# rows are written, so a test can SIGKILL it mid-run. Never set it outside tests.
PAUSE_ENV = "R1KIT_TEST_PAUSE_AFTER_PROMPTS"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class GenerateError(RuntimeError):
    """The teacher failed (the message names its URL and the HTTP status) or the output does not
    belong to this config."""


def meta_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".meta.json")


def identity(cfg: GenerateRun, bench, prompt_text: str) -> dict[str, Any]:
    """What makes two runs' traces the same set: teacher, sampling, prompt, data (not the
    concurrency, timeouts or retries)."""
    t = cfg.teacher
    teacher = {"backend": t.backend, "api": t.api, "url": t.url, "served_model": t.served_model} if t.backend == "openai" \
        else {"backend": t.backend, "model": t.model.name_or_path}
    return {
        "teacher": teacher, "sampling": asdict(cfg.sampling), "seed": cfg.seed, "prompt_template": prompt_text,
        "prefill": cfg.prefill, "system_prompt": cfg.system_prompt,
        "data": {"source": bench.source, "sha256": bench.sha256, "n_prompts": len(bench.problems)},
    }


def completed_prompts(out: Path, k: int) -> set[str]:
    """Ids with all k traces in ``out``. Rows of unfinished prompts and a line cut off by a kill
    are dropped from the file (atomically), so the restart rewrites them whole."""
    if not out.is_file():
        return set()
    rows, cut = [], False
    for line in out.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            cut = True  # the line a kill cut off: everything before it is whole
            break
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["id"])] = counts.get(str(r["id"]), 0) + 1
    done = {pid for pid, n in counts.items() if n >= k}
    kept = [r for r in rows if str(r["id"]) in done]
    if cut or len(kept) != len(rows):
        write_jsonl_atomically(out, kept)
    return done


def prepare_output(cfg: GenerateRun, ident: dict[str, Any]) -> Path:
    out = Path(cfg.output)
    meta = meta_path(out)
    if meta.is_file() and not cfg.overwrite:
        diff = first_difference(json.loads(meta.read_text()), ident)
        if diff:
            raise GenerateError(f"{out} holds traces of another config ({diff}); set overwrite=true or another output")
    if cfg.overwrite:
        out.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(meta, json.dumps(ident, indent=1) + "\n")
    return out


def request_seed(seed: int, pid: str, j: int) -> int:
    return int.from_bytes(hashlib.sha256(f"generate:{seed}:{pid}:{j}".encode()).digest()[:4], "little") >> 1


class Writer:
    """Appends each finished prompt's rows, flushed, from any thread; the test hook counts prompts."""

    def __init__(self, out: Path, bar=None) -> None:
        self.out, self.bar, self.lock, self.prompts = out, bar, threading.Lock(), 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            with open(self.out, "a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                f.flush()
                os.fsync(f.fileno())
            self.prompts += 1
            if self.bar is not None:
                self.bar.update(1)
            if os.environ.get(PAUSE_ENV) == str(self.prompts):
                print(f"[r1kit] {PAUSE_ENV}: paused after {self.prompts} prompts", file=sys.stderr, flush=True)
                while True:
                    time.sleep(3600)


def trace_row(problem: dict[str, Any], prompt: Any, completion: str, finish: str, tokens: int | None,
              teacher: str, cfg: GenerateRun, j: int) -> dict[str, Any]:
    extra = {k: v for k, v in problem.items() if k not in ("id", "answer")}
    return {"id": problem["id"], "prompt": prompt, "answer": problem.get("answer"), "completion": completion,
            "finish_reason": finish, "completion_tokens": tokens, "teacher": teacher,
            "sampling": asdict(cfg.sampling), "sample_index": j, **extra}


# ---------------------------------------------------------------- local teachers (hf, vllm)

def generate_local(cfg: GenerateRun, problems: list[dict[str, Any]], render: Callable[[str], str], tokenizer,
                   model, done: set[str], writer: Writer) -> None:
    """Fixed chunks of prompts in input order, each sampled under its own seed; a chunk whose
    prompts are all complete is skipped, so a restart repeats exactly the chunks it lost."""
    import torch

    from r1kit.eval.runner import chunk_seed
    from r1kit.rollout import build_rollout
    from r1kit.config import RolloutSection
    from r1kit.types import Sample

    s, t = cfg.sampling, cfg.teacher
    rollout_cfg = RolloutSection(backend=t.backend, group_size=s.k, max_new_tokens=s.max_new_tokens,
                                 temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, vllm=t.vllm)
    rollout = build_rollout(rollout_cfg, model, tokenizer, model_path=_model_path(t.model.name_or_path), seed=cfg.seed)
    per_chunk = max(1, t.batch_size // s.k)
    teacher = t.model.name_or_path
    for c, lo in enumerate(range(0, len(problems), per_chunk)):
        chunk = problems[lo : lo + per_chunk]
        if all(p["id"] in done for p in chunk):
            continue
        torch.manual_seed(chunk_seed(cfg.seed, "generate", c))
        groups = rollout.generate([Sample(render(p["question"]), cfg.prefill, {}) for p in chunk])
        for p, g in zip(chunk, groups):
            if p["id"] in done:
                continue
            prompt = g.sample.prompt.removesuffix(cfg.prefill) if cfg.prefill else g.sample.prompt
            writer.write([
                trace_row(p, prompt, response, "length" if g.truncated[j] else "stop", len(g.completion_ids[j]),
                          teacher, cfg, j)
                for j, response in enumerate(g.responses)
            ])


def _model_path(name_or_path: str) -> str:
    from r1kit.models import resolve_model_path

    return resolve_model_path(name_or_path)


# ---------------------------------------------------------------- OpenAI-compatible endpoints

def request_json(url: str, payload: dict[str, Any] | None, headers: dict[str, str], timeout_s: float, retries: int,
                 backoff_s: float, stop: threading.Event) -> dict[str, Any]:
    """POST ``payload`` (GET when None) with retries (connection errors, timeouts, HTTP
    408/409/425/429/5xx) and exponential backoff; GenerateError naming the URL and the last status
    after the retries, or at once for another HTTP error (a bad request does not get better by
    repeating it)."""
    data = None if payload is None else json.dumps(payload).encode()
    last = "no attempt"
    for attempt in range(retries + 1):
        if stop.is_set():
            raise GenerateError("stopped: another request failed")
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            body = e.read()[:300].decode(errors="replace")
            if e.code not in RETRY_STATUS:
                raise GenerateError(f"teacher {url}: HTTP {e.code} {e.reason}: {body}") from None
            last = f"HTTP {e.code} {e.reason}: {body}"
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as e:
            last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        except json.JSONDecodeError as e:
            last = f"a reply that is not JSON ({e.msg})"
        if attempt < retries:
            stop.wait(backoff_s * 2**attempt)
    raise GenerateError(f"teacher {url}: {last} (after {retries} retries)")


def chat_messages(question: str, system_prompt: str | None) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": f"{CHAT_INSTRUCTION}\n\n{question}"}]


def served_model(cfg: GenerateRun, headers: dict[str, str]) -> str:
    """``teacher.served_model``, else the first model the endpoint lists (GET /models)."""
    t = cfg.teacher
    if t.served_model:
        return t.served_model
    url = t.url.rstrip("/") + "/models"
    listed = request_json(url, None, headers, t.timeout_s, t.retries, t.backoff_s, threading.Event())
    try:
        return listed["data"][0]["id"]
    except (KeyError, IndexError, TypeError):
        raise GenerateError(f"teacher {url}: lists no model; set teacher.served_model") from None


def _one_trace(cfg: GenerateRun, url: str, headers: dict[str, str], model: str, prompt: Any, pid: str, j: int,
               stop: threading.Event) -> tuple[str, str, int | None]:
    s, t = cfg.sampling, cfg.teacher
    payload = {"model": model, "max_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p,
               "n": 1, "seed": request_seed(cfg.seed, pid, j)}
    if s.top_k:
        payload["top_k"] = s.top_k
    if t.api == "chat":
        payload["messages"] = prompt
    else:
        payload["prompt"] = prompt + cfg.prefill
    reply = request_json(url, payload, headers, t.timeout_s, t.retries, t.backoff_s, stop)
    try:
        choice = reply["choices"][0]
        if t.api == "chat":
            msg = choice["message"]
            text = msg.get("content") or ""
            reasoning = msg.get("reasoning_content") or msg.get("reasoning")
            completion = f"<think>{reasoning}</think> {text}" if reasoning else text
        else:
            completion = cfg.prefill + choice["text"]
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        tokens = (reply.get("usage") or {}).get("completion_tokens")
    except (KeyError, IndexError, TypeError) as e:
        raise GenerateError(f"teacher {url}: a reply without choices[0] text ({type(e).__name__}: {e}): {str(reply)[:200]}") from None
    return completion, finish, tokens


def generate_http(cfg: GenerateRun, problems: list[dict[str, Any]], prompts: dict[str, Any], done: set[str],
                  writer: Writer) -> None:
    """k requests per prompt, ``teacher.concurrency`` in flight; a prompt's rows are written once
    its k traces are in. The first request that fails for good stops the rest."""
    t = cfg.teacher
    url = t.url.rstrip("/") + ("/chat/completions" if t.api == "chat" else "/completions")
    headers = {}
    if t.api_key_env:
        key = os.environ.get(t.api_key_env)
        if not key:
            raise GenerateError(f"teacher.api_key_env: the environment variable {t.api_key_env} is not set")
        headers["Authorization"] = f"Bearer {key}"
    model = served_model(cfg, headers)
    teacher = f"{model}@{t.url}"
    todo = [p for p in problems if p["id"] not in done]
    stop = threading.Event()
    pending: dict[str, list[Any]] = {p["id"]: [None] * cfg.sampling.k for p in todo}
    lock = threading.Lock()
    by_id = {p["id"]: p for p in todo}

    def run(pid: str, j: int) -> None:
        try:
            trace = _one_trace(cfg, url, headers, model, prompts[pid], pid, j, stop)
        except BaseException:
            stop.set()  # at once: no request starts after the first that failed for good
            raise
        with lock:
            pending[pid][j] = trace
            complete = all(x is not None for x in pending[pid])
        if complete:
            writer.write([trace_row(by_id[pid], prompts[pid], c, f, n, teacher, cfg, i)
                          for i, (c, f, n) in enumerate(pending[pid])])

    with ThreadPoolExecutor(max_workers=t.concurrency) as pool:
        futures = [pool.submit(run, p["id"], j) for p in todo for j in range(cfg.sampling.k)]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in finished if f.exception() is not None]
        if failed:
            for f in futures:
                f.cancel()
            # the first real failure, not the "stopped" of the requests it cut short
            errors = [f.exception() for f in failed]
            raise next((e for e in errors if not str(e).startswith("stopped:")), errors[0])


# ---------------------------------------------------------------- the stage

def generate(cfg: GenerateRun) -> tuple[Path, int]:
    """Write (or finish) ``cfg.output``; returns its path and the number of prompts it holds."""
    from r1kit.eval.benchmarks import load_benchmark
    from r1kit.eval.runner import prompt_settings

    bench = load_benchmark(cfg.data)
    t = cfg.teacher
    needs_tokenizer = t.backend != "openai" or (t.api == "completions" and (cfg.template in (None, "chat")))
    tokenizer = model = None
    if t.backend != "openai":
        from r1kit.models import load_model

        model, _, tokenizer = load_model(t.model)
    elif needs_tokenizer:
        from r1kit.models import load_tokenizer

        tokenizer = load_tokenizer(_model_path(t.model.name_or_path))
    template, prefill, system = prompt_settings(_PromptChoice(cfg), tokenizer, None)
    render = (lambda q: render_prompt(q, tokenizer, template, prefill, system))
    prompt_text = json.dumps(chat_messages("{question}", system)) if t.api == "chat" and t.backend == "openai" \
        else render("{question}")
    ident = identity(cfg, bench, prompt_text)
    out = prepare_output(cfg, ident)
    done = completed_prompts(out, cfg.sampling.k)
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(bench.problems), initial=len(done), desc="generate", unit="prompt", dynamic_ncols=True,
                   file=sys.stderr)
    writer = Writer(out, bar)
    try:
        if t.backend == "openai":
            prompts = {p["id"]: chat_messages(p["question"], system) if t.api == "chat"
                       else render(p["question"]).removesuffix(prefill) for p in bench.problems}
            generate_http(cfg, bench.problems, prompts, done, writer)
        else:
            generate_local(cfg, bench.problems, render, tokenizer, model, done, writer)
    finally:
        if bar is not None:
            bar.close()
    return out, len(completed_prompts(out, cfg.sampling.k))


class _PromptChoice:
    """The prompt keys of a generate config, shaped as the eval section ``prompt_settings`` reads."""

    def __init__(self, cfg: GenerateRun) -> None:
        self.template, self.prefill, self.system_prompt = cfg.template, cfg.prefill, cfg.system_prompt


__all__ = ["APIS", "GenerateError", "TEACHERS", "DistillError", "generate"]
