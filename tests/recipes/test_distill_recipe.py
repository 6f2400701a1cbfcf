"""configs/recipes/r1_distill_qwen.yaml: every stage's config checks out as written, and the whole
chain runs with stand-ins: a fake OpenAI-compatible teacher that solves the problems, a tiny
random Qwen2 student, two problems, one step."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from transformers import AutoModelForCausalLM

from r1kit.config import config_from_dict, load_config
from r1kit.pipeline import resolve, run

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "recipes" / "r1_distill_qwen.yaml"


class _Solver(BaseHTTPRequestHandler):
    """Chat completions that answer "What is A + B?" correctly, with R1-style reasoning_content."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # /v1/models: the recipe leaves served_model to the endpoint
        self._send({"object": "list", "data": [{"id": "r1-teacher", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        a, b = map(int, re.search(r"What is (\d+) \+ (\d+)\?", body["messages"][-1]["content"]).groups())
        msg = {"role": "assistant", "content": f"<answer>{a + b}</answer>", "reasoning_content": f"{a} plus {b} is {a + b}."}
        self._send({"choices": [{"message": msg, "finish_reason": "stop"}], "usage": {"completion_tokens": 20}})

    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_the_recipe_as_written_resolves_with_open_r1_settings():
    cfg = load_config(RECIPE)
    steps = {s.stage.name: s for s in resolve(cfg)}
    student = steps["student"].cfg
    assert student.model.name_or_path == "Qwen/Qwen2.5-Math-1.5B"
    assert (student.train.lr, student.train.num_epochs, student.data.max_length) == (4e-5, 5.0, 32768)
    assert student.train.batch_size * student.train.gradient_accumulation_steps == 128
    assert steps["kept"].data_in == steps["traces"].data_out and steps["student"].data_in == steps["kept"].data_out
    assert cfg.reference["after"] == {"math500": 89.0}


def test_the_chain_runs_with_stand_ins(tmp_path, tiny_qwen_dir):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Solver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        problems = tmp_path / "problems.jsonl"
        problems.write_text("".join(json.dumps({"problem": f"What is {i} + 2?", "answer": str(i + 2)}) + "\n" for i in range(2)))
        math500 = tmp_path / "math500.jsonl"
        math500.write_text("".join(json.dumps({"problem": "What is 1 + 1?", "answer": "2", "subject": "Algebra", "level": 1,
                                               "unique_id": f"t/{i}"}) + "\n" for i in range(2)))
        tree = yaml.safe_load(RECIPE.read_text())
        tree.update(output_dir=str(tmp_path / "run"), student=str(tiny_qwen_dir))
        tree["eval"].update(k=1, max_new_tokens=4, datasets=[{"name": "math500", "path": str(math500)}])
        traces, kept, student = tree["stages"]
        traces["config"]["data"]["path"] = str(problems)
        traces["config"]["teacher"]["url"] = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        traces["config"]["sampling"]["max_new_tokens"] = 64
        student["config"]["model"] = {}
        student["config"]["data"]["max_length"] = 512
        student["config"]["train"].update(num_epochs=1, gradient_accumulation_steps=1, save_every=0, progress=False)
        out, rows = run(config_from_dict(tree), progress=False)
    finally:
        srv.shutdown()
        srv.server_close()
    report = json.loads((out / "kept" / "kept.report.json").read_text())
    assert report["read"] == 4 and report["kept"] == 2  # both prompts solved; the second trace of each is a duplicate
    # the teacher is asked concurrently: prompts are written in the order their traces complete
    kept = sorted(json.loads(x)["completion"] for x in (out / "kept" / "kept.jsonl").read_text().splitlines())
    assert kept == [f"<think>{i} plus 2 is {i + 2}.</think> <answer>{i + 2}</answer>" for i in range(2)]
    assert [r["stage"] for r in rows] == ["traces", "kept", "student"] and "math500" in rows[-1]["eval"]
    assert AutoModelForCausalLM.from_pretrained(out / "student" / "final").config.model_type == "qwen2"
