"""Rows of a question/answer dataset (local file, directory or hub id) -> r1kit task rows.

Every row comes out as ``{"question", "answer", "solution", "task": "math"}``: ``answer`` is the
gold final answer the ``accuracy`` reward compares with, ``solution`` the full reference text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from r1kit.config import DatasetSection
from r1kit.rewards.extract import last_boxed

# file suffix -> datasets builder
DATA_EXTENSIONS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# format -> (question column, answer column)
DEFAULT_COLUMNS = {"gsm8k": ("question", "answer"), "math": ("problem", "solution"), "answer": ("problem", "answer")}


class DataError(ValueError):
    """The data does not look like the config says; the message names the file and the column."""


def gsm8k_answer(text: str) -> str | None:
    """GSM8K gold: the text after the last ``####``, stripped, thousands commas dropped."""
    head, sep, tail = text.rpartition("####")
    if not sep:
        return None
    return tail.strip().replace(",", "") or None


def plain_gold(value: Any) -> str | None:
    """A stored final answer as text: ``27.0`` -> ``"27"``, ``204`` -> ``"204"``, a string's
    boxed or ``#### N`` answer, math delimiters dropped. None for an empty cell."""
    from r1kit.rewards.extract import gold_answer

    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    return gold_answer(str(value)) or None


def _looks_local(path: str) -> bool:
    # "openai/gsm8k" is a hub id; "./x", "/x", "~/x", "a/b/c", "x.jsonl" are meant as files.
    return (
        os.path.isabs(path)
        or path.startswith((".", "~"))
        or path.count("/") > 1
        or (os.sep != "/" and os.sep in path)
        or Path(path).suffix.lower() in DATA_EXTENSIONS
    )


def open_dataset(path: str | None, split: str = "train", name: str | None = None, key: str = "data.dataset.path"):
    """A ``datasets.Dataset`` from a local file (one split, whatever ``split`` says), a local
    directory (splits inferred from the file names: train*.jsonl, test*.jsonl, ...) or a hub id.
    ``key`` is the config key errors name."""
    import datasets

    if not path:
        raise DataError(f"{key}: no dataset given")
    local = Path(path).expanduser()
    try:
        if local.is_file():
            builder = DATA_EXTENSIONS.get(local.suffix.lower())
            if builder is None:
                raise DataError(
                    f"{local}: unsupported file type '{local.suffix}' "
                    f"(use one of {', '.join(DATA_EXTENSIONS)})"
                )
            return datasets.load_dataset(builder, data_files=str(local), split="train")
        if local.is_dir():
            return datasets.load_dataset(str(local), split=split)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{local}: could not load ({type(e).__name__}: {e})") from e
    if _looks_local(path):
        raise DataError(f"{key}: '{path}' does not exist")
    try:
        return datasets.load_dataset(path, name=name, split=split)
    except Exception as e:
        raise DataError(
            f"{key}: could not load '{path}' (split '{split}') from the Hugging "
            f"Face hub ({type(e).__name__}: {e})"
        ) from e


def _math_answer(solution: str) -> str | None:
    """The boxed answer of a MATH solution; several boxes ("$\\boxed{1}$ and $\\boxed{2}$")
    are one answer ("1, 2"), as the reward reads them."""
    from r1kit.rewards.extract import gold_answer

    return gold_answer(solution) if last_boxed(solution) is not None else None


def load_rows(cfg: DatasetSection) -> list[dict[str, Any]]:
    """Load ``cfg.path`` and return ``[{"question", "answer", "solution", "task": "math"}, ...]``.

    Columns default to ``question``/``answer`` (gsm8k), ``problem``/``solution`` (math) or
    ``problem``/``answer`` (answer: the column holds the final answer itself) and are
    overridden by ``question_column``/``answer_column``. The gold answer is the text after the last
    ``####`` (gsm8k) or the last ``\\boxed{}`` (math); a row without one is a DataError that names
    the row, as is a missing column or path. ``limit`` keeps the first rows.
    """
    if cfg.format not in DEFAULT_COLUMNS:
        raise DataError(f"data.dataset.format: '{cfg.format}' is not one of {sorted(DEFAULT_COLUMNS)}")
    ds = open_dataset(cfg.path, cfg.split, cfg.name)
    q_col = cfg.question_column or DEFAULT_COLUMNS[cfg.format][0]
    a_col = cfg.answer_column or DEFAULT_COLUMNS[cfg.format][1]
    for col, key in ((q_col, "question_column"), (a_col, "answer_column")):
        if col not in ds.column_names:
            raise DataError(
                f"{cfg.path}: no column '{col}' (data.dataset.{key}, format {cfg.format}); "
                f"available columns: {', '.join(ds.column_names)}"
            )
    if cfg.limit is not None:
        ds = ds.select(range(min(max(cfg.limit, 0), len(ds))))
    extract = {"gsm8k": gsm8k_answer, "math": _math_answer, "answer": plain_gold}[cfg.format]
    marker = {"gsm8k": "'#### <answer>'", "math": "\\boxed{...}", "answer": "answer"}[cfg.format]
    rows = []
    for i, row in enumerate(ds.select_columns(list(dict.fromkeys([q_col, a_col]))).to_list()):
        question, solution = row[q_col], row[a_col]
        if question is None or not str(question).strip():
            raise DataError(f"{cfg.path}: row {i} has an empty '{q_col}'")
        answer = extract(solution) if cfg.format == "answer" else extract("" if solution is None else str(solution))
        solution = "" if solution is None else str(solution)
        if answer is None:
            raise DataError(
                f"{cfg.path}: row {i} has no {marker} in column '{a_col}' "
                f"(format {cfg.format}): {solution[:120]!r}"
            )
        rows.append({"question": str(question), "answer": answer, "solution": solution, "task": "math"})
    return rows
