"""``r1kit <stage> ...``: parse, dispatch, report errors in one line. Nothing else lives here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    """Usage errors in the same one-line form as every other error, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"r1kit: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="r1kit", description="R1-style reasoning RL post-training.")
    sub = p.add_subparsers(dest="command", required=True)

    for stage, what in (("grpo", "train with GRPO (R1-Zero style)"),
                        ("sft", "supervised fine-tuning on chain-of-thought data (cold start, distillation)"),
                        ("dpo", "direct preference optimization on chosen/rejected pairs")):
        g = sub.add_parser(stage, help=what)
        g.add_argument("config", nargs="?", help="YAML config (see configs/)")
        g.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.max_steps=10")
        g.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")

    _eval_parser(sub)

    gen = sub.add_parser("generate", help="k traces per prompt from a teacher (local model or OpenAI-compatible endpoint)")
    gen.add_argument("config", nargs="?", help="YAML config (stage: generate)")
    gen.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. sampling.k=8")

    pp = sub.add_parser("pipeline", help="the R1 recipe in one resumable command: the stages a YAML lists")
    pp.add_argument("config", help="YAML config (stage: pipeline), e.g. configs/r1_pipeline_cpu.yaml")
    pp.add_argument("overrides", nargs="*", help="section.key=value overrides")
    pp.add_argument("--from", dest="from_stage", metavar="STAGE", help="run this stage and all after it again")

    _distill_parser(sub)

    pl = sub.add_parser("plot", help="draw curves from metrics.jsonl: one run, or several overlaid")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("--out", help="output PNG (default RUN_DIR/curves.png for one run, runs.png for several)")
    pl.add_argument("--reference", metavar="REF.yaml", help="a recipe (or its reference: block): published numbers as markers")

    rp = sub.add_parser("report", help="write RUN_DIR/report.md: config, curves, eval table, first/last metrics, samples")
    rp.add_argument("run_dir")

    c = sub.add_parser("config", help="print the resolved config (defaults + CONFIG + overrides) as YAML")
    c.add_argument("config", nargs="?", help="YAML config; omit to see every key with its default")
    c.add_argument("overrides", nargs="*", help="section.key=value overrides")

    f = sub.add_parser("fetch-model", help="download and convert a builtin model into the cache")
    f.add_argument("name", nargs="?", default="smollm2-135m-instruct")

    from r1kit.rollout.vllm_serve import add_arguments

    add_arguments(
        sub.add_parser(
            "vllm-serve", help="start a vLLM generation server for rollout.backend=vllm-server",
            usage="r1kit vllm-serve MODEL [options] [-- vLLM server options]",
            epilog="Options after `--` go to vLLM's OpenAI server unchanged (python -m "
            "vllm.entrypoints.openai.api_server --help lists them). Train against it with "
            "rollout.backend=vllm-server rollout.url=http://HOST:PORT.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
    )
    return p


def _distill_parser(sub) -> None:
    d = sub.add_parser("distill", help="train a student on filtered traces (distill CONFIG), rejection sampling "
                       "(distill filter) and preference pairs (distill pairs)",
                       usage="r1kit distill CONFIG [key=value ...] | distill filter IN.jsonl --output OUT.jsonl | "
                       "distill pairs IN.jsonl --output PAIRS.jsonl")
    dsub = d.add_subparsers(dest="action", required=True)
    t = dsub.add_parser("train", help="`r1kit distill CONFIG`: SFT of a student on a teacher's kept traces")
    t.add_argument("config", nargs="?", help="YAML config (stage: distill)")
    t.add_argument("overrides", nargs="*", help="section.key=value overrides")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    f = dsub.add_parser("filter", help="keep verified-correct, well-formed, language-consistent traces; "
                        "write OUT.jsonl and OUT.report.json")
    f.add_argument("input", metavar="IN.jsonl", help="traces in the layout `r1kit generate` writes")
    f.add_argument("--output", required=True, metavar="OUT.jsonl")
    f.add_argument("--max-tokens", type=int, help="reject traces with more completion tokens than this")
    f.add_argument("--language", default="en", help="target of the language check; 'none' to skip it (default: en)")
    f.add_argument("--min-language-share", type=float, default=0.95,
                   help="least share of the reasoning's words in --language (default: 0.95)")
    f.add_argument("--pass-rate-band", metavar="LOW,HIGH", help="keep only prompts whose pass rate lies in [LOW, HIGH]")
    f.add_argument("--max-per-prompt", type=int, metavar="M", help="keep at most M traces per prompt")
    pr = dsub.add_parser("pairs", help="DPO preference pairs (chosen: verified and well formed; rejected: "
                         "wrong or malformed) from the same traces")
    pr.add_argument("input", metavar="IN.jsonl")
    pr.add_argument("--output", required=True, metavar="PAIRS.jsonl")
    pr.add_argument("--max-pairs-per-prompt", type=int, metavar="N")


def _band(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    from r1kit.distill.traces import DistillError

    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise DistillError(f"--pass-rate-band must be LOW,HIGH (e.g. 0.2,0.8), got {text!r}") from None
    return lo, hi


def _distill(args: argparse.Namespace) -> int:
    if args.action == "train":
        return _train(args)
    if args.action == "pairs":
        from r1kit.distill.pairs import pair_traces

        r = pair_traces(args.input, args.output, args.max_pairs_per_prompt)
        print(f"[r1kit] {r['pairs']} pairs from {r['read']} traces of {r['prompts']} prompts ({r['paired']} paired, "
              f"{r['no_chosen']} without a verified trace, {r['no_rejected']} without a failed one) -> {args.output}")
        return 0
    from r1kit.distill.filter import FilterSettings, filter_traces, format_report
    from r1kit.distill.traces import report_path

    settings = FilterSettings(
        max_tokens=args.max_tokens, language=None if args.language.lower() == "none" else args.language,
        min_language_share=args.min_language_share, pass_rate_band=_band(args.pass_rate_band),
        max_per_prompt=args.max_per_prompt,
    )
    report = filter_traces(args.input, args.output, settings)
    print(format_report(report))
    print(f"[r1kit] kept {report['kept']} of {report['read']} traces -> {args.output} "
          f"(report: {report_path(Path(args.output))})")
    return 0


def _eval_parser(sub) -> None:
    e = sub.add_parser(
        "eval", help="evaluate a model or run: pass@1 ± se, maj@k, pass@k per dataset",
        usage="r1kit eval CONFIG.yaml [key=value ...]\n       r1kit eval MODEL --data NAME=PATH [--data ...] "
        "[options] [key=value ...]\n       r1kit eval --responses FILE [--output DIR]",
        epilog="NAME is a layout (gsm8k, math500, aime24, amc23), a procedural task (arithmetic, countdown: "
        "--data arithmetic), or any name with --prompt-column/--answer-column. MODEL: an HF directory, a hub "
        "id, a builtin model name, or a run directory (its final/ model, or --checkpoint step-N).",
    )
    e.add_argument("target", nargs="?", help="CONFIG.yaml, or the MODEL to evaluate")
    e.add_argument("overrides", nargs="*", help="key=value overrides, e.g. eval.batch_size=32")
    e.add_argument("--data", action="append", metavar="NAME=PATH", help="a dataset (repeatable)")
    e.add_argument("--k", type=int, help="samples per problem (r1: 16, greedy: 1)")
    e.add_argument("--protocol", choices=("r1", "greedy"), help="r1: T=0.6, top-p 0.95, k samples (default); greedy: k=1")
    e.add_argument("--temperature", type=float)
    e.add_argument("--top-p", type=float)
    e.add_argument("--max-new-tokens", type=int)
    e.add_argument("--limit", type=int, help="first N problems of each dataset")
    e.add_argument("--seed", type=int)
    e.add_argument("--output", metavar="DIR", help="output directory (default RUN_DIR/eval or runs/eval/MODEL)")
    e.add_argument("--backend", choices=("hf", "vllm"))
    e.add_argument("--checkpoint", metavar="step-N", help="evaluate this checkpoint of a run directory")
    e.add_argument("--prompt-column", help="column mapping for a custom dataset (with --answer-column)")
    e.add_argument("--answer-column")
    e.add_argument("--id-column")
    e.add_argument("--overwrite", action="store_true", help="start over in an output directory that holds results")
    e.add_argument("--responses", metavar="FILE", help="re-grade saved completions (a problems.jsonl) without a model")


def _eval_options(args: argparse.Namespace) -> dict:
    """The eval flags as a config tree (merged between the file and the key=value overrides)."""
    ev: dict = {}
    for flag, key in (("k", "k"), ("protocol", "protocol"), ("temperature", "temperature"), ("top_p", "top_p"),
                      ("max_new_tokens", "max_new_tokens"), ("limit", "limit")):
        if getattr(args, flag) is not None:
            ev[key] = getattr(args, flag)
    if args.data:
        mapping = {k: getattr(args, k) for k in ("prompt_column", "answer_column", "id_column") if getattr(args, k)}
        datasets = []
        for item in args.data:
            name, sep, path = item.partition("=")
            spec = {"name": name.strip(), **({"path": path.strip()} if sep else {}), **mapping}
            if mapping.get("prompt_column") and "layout" not in spec:
                from r1kit.eval.benchmarks import KNOWN

                if spec["name"] not in KNOWN:
                    spec["layout"] = "custom"
            datasets.append(spec)
        ev["datasets"] = datasets
    tree: dict = {"eval": ev} if ev else {}
    for flag, key in (("seed", "seed"), ("output", "output_dir"), ("backend", "backend"), ("checkpoint", "checkpoint")):
        if getattr(args, flag) is not None:
            tree[key] = getattr(args, flag)
    if args.overwrite:
        tree["overwrite"] = True
    return tree


def _eval(args: argparse.Namespace) -> int:
    from r1kit.config import ConfigError, load_config
    from r1kit.eval.runner import evaluate, print_summary, regrade

    if args.responses:
        if args.target:
            raise ConfigError("r1kit eval --responses FILE re-grades saved completions; it takes no MODEL or CONFIG")
        out, results = regrade(args.responses, args.output, args.k)
        print_summary(out, results)
        return 0
    if not args.target:
        raise ConfigError("r1kit eval: give a CONFIG.yaml, a MODEL with --data NAME=PATH, or --responses FILE")
    is_config = args.target.endswith((".yaml", ".yml"))
    options = _eval_options(args)
    if not is_config:
        options = {"model": {"name_or_path": args.target}, **options}
    cfg = load_config(args.target if is_config else None, args.overrides, stage="eval", options=options)
    out, results, target = evaluate(cfg)
    reference = cfg.reference or getattr(target.run_cfg, "reference", None) or {}
    print_summary(out, results, reference, trained=target.run_dir is not None)
    return 0


# training stage -> the module with its train(cfg, resume), resume_config(run_dir, overrides), summarize(run_dir)
TRAINING_STAGES = {"grpo": "r1kit.grpo.train", "sft": "r1kit.sft.train", "dpo": "r1kit.sft.dpo",
                   "distill": "r1kit.distill.student"}


def _train(args: argparse.Namespace) -> int:
    import importlib

    from r1kit.config import ConfigError, load_config

    stage = importlib.import_module(TRAINING_STAGES[args.command])
    resume_config, summarize, train = stage.resume_config, stage.summarize, stage.train

    if args.resume:
        # with --resume, positional words are all overrides (argparse fills `config` first)
        overrides = ([args.config] if args.config else []) + args.overrides
        for word in overrides:
            if "=" not in word:
                raise ConfigError(
                    f"with --resume the run's own config.yaml is used; '{word}' is not a key=value override"
                )
        cfg = resume_config(args.resume, overrides)
        run_dir = train(cfg, resume=True)
    else:
        path, overrides = args.config, args.overrides
        if path and "=" in path and not Path(path).is_file():  # `r1kit sft data.path=...`: defaults + overrides
            path, overrides = None, [path] + overrides
        if not path and not overrides:
            raise ConfigError(f"r1kit {args.command}: give a CONFIG file or --resume RUN_DIR")
        cfg = load_config(path, overrides, stage=args.command)
        run_dir = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # under `accelerate launch`, process 0 reports
        print(f"[r1kit] run directory: {run_dir}")
        print(f"[r1kit] {summarize(run_dir)}")
    return 0


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The parsed command line; SystemExit on a usage error (2) or ``--help`` (0)."""
    passthrough: list[str] = []
    if argv[:1] == ["distill"] and argv[1:2] and argv[1] not in ("filter", "pairs", "train", "-h", "--help"):
        argv = ["distill", "train", *argv[1:]]  # `r1kit distill CONFIG` trains a student
    if argv[:1] == ["vllm-serve"]:  # after `--`: vLLM's own server options
        from r1kit.rollout.vllm_serve import split_passthrough

        argv, passthrough = split_passthrough(argv)
    # parse_known_args + this check lets overrides follow options: `grpo --resume RUN k=v` and
    # `grpo CONFIG --resume RUN k=v` (argparse alone stops filling positionals at the first option).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in w or w.startswith("-") for w in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = args.overrides + extra
    if args.command == "vllm-serve":
        args.vllm_args = passthrough
    return args


def _config_or_overrides(args: argparse.Namespace, must_be_file: bool) -> tuple[str | None, list[str]]:
    """``(config path, overrides)``: a first argument ``k=v`` (that is not a file, with
    ``must_be_file``) is an override, and there is no config file."""
    path, overrides = args.config, args.overrides
    if path and "=" in path and not (must_be_file and Path(path).is_file()):
        return None, [path] + overrides
    return path, overrides


def _pipeline(args) -> int:
    from r1kit.config import load_config
    from r1kit.pipeline import format_summary, run

    out, rows = run(load_config(args.config, args.overrides, stage="pipeline"), args.from_stage)
    print(format_summary(rows))
    print(f"[r1kit] pipeline directory: {out} (summary.json)")
    return 0


def _generate(args) -> int:
    from r1kit.config import load_config
    from r1kit.distill.generate import generate

    out, n = generate(load_config(*_config_or_overrides(args, must_be_file=True), stage="generate"))
    print(f"[r1kit] {n} prompts with all their traces in {out}")
    return 0


def _plot(args) -> int:
    from r1kit.eval.plots import plot_runs, read_reference

    reference = read_reference(args.reference) if args.reference else None
    default = Path(args.run_dirs[0]) / "curves.png" if len(args.run_dirs) == 1 else Path("runs.png")
    print(plot_runs(args.run_dirs, args.out or default, reference))
    return 0


def _report(args) -> int:
    from r1kit.eval.report import write_report

    print(write_report(args.run_dir))
    return 0


def _config(args) -> int:
    import yaml

    from r1kit.config import load_config, to_dict

    # `r1kit config train.lr=1e-5`: no file, only overrides
    print(yaml.safe_dump(to_dict(load_config(*_config_or_overrides(args, must_be_file=False))), sort_keys=False), end="")
    return 0


def _fetch_model(args) -> int:
    from r1kit.models import BUILTIN_MODELS, ModelError, ensure_builtin

    if args.name not in BUILTIN_MODELS:
        raise ModelError(f"unknown builtin model {args.name!r} (available: {', '.join(BUILTIN_MODELS)})")
    print(ensure_builtin(args.name))
    return 0


def _vllm_serve(args) -> int:
    from r1kit.rollout.vllm_serve import serve

    serve(args)  # execs: on success this process becomes the server
    return 0


COMMANDS = {
    "eval": _eval, "distill": _distill, "pipeline": _pipeline,
    "generate": _generate, "plot": _plot, "report": _report, "config": _config, "fetch-model": _fetch_model,
    "vllm-serve": _vllm_serve,
}


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors a command reports as ``r1kit: error: ...`` (imported after parsing: ``--help``
    and usage errors should not wait for torch)."""
    from r1kit.config import ConfigError
    from r1kit.data import DataError
    from r1kit.distill.generate import GenerateError
    from r1kit.distill.traces import DistillError
    from r1kit.eval.metrics import MetricsError
    from r1kit.eval.records import EvalError
    from r1kit.models import ModelError
    from r1kit.pipeline import PipelineError
    from r1kit.rollout.vllm import RolloutError
    from r1kit.rundir import TrainingError

    return (ConfigError, ModelError, DataError, DistillError, GenerateError, PipelineError, TrainingError, RolloutError,
            EvalError, MetricsError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(_parser(), list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # usage error (2) or --help (0): a return code, as for every other error
        return e.code if isinstance(e.code, int) else 2

    # `module:function` rewards resolve against the working directory, as with `python -m`
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    errors = _user_errors()
    try:
        if args.command in TRAINING_STAGES and args.command != "distill":
            return _train(args)
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
    except errors as e:
        print(f"r1kit: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
