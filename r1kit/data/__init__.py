"""Prompt sources: procedural tasks or a dataset, rendered with a template, resumable exactly.

``build_source(cfg.data, tokenizer, seed).next_batch(n)`` gives the next ``n`` Samples; its
``state_dict()`` is a small JSON-able cursor saved with each checkpoint, and a source restored
from it continues with exactly the batches the original would have produced.
"""

from __future__ import annotations

import copy
import functools
import random
from typing import Any, Callable

from r1kit.config import DataSection
from r1kit.data.loaders import DataError, last_boxed, load_rows
from r1kit.data.tasks import make_arithmetic, make_countdown
from r1kit.data.templates import R1ZERO_TEMPLATE, TEMPLATES, render_prompt, require_chat_template
from r1kit.types import Sample

# data.source: where prompts come from
SOURCES = ("arithmetic", "countdown", "dataset")

__all__ = [
    "DataError",
    "PromptSource",
    "R1ZERO_TEMPLATE",
    "build_source",
    "last_boxed",
    "load_rows",
    "make_arithmetic",
    "make_countdown",
    "render_prompt",
]


class PromptSource:
    """A deterministic stream of Samples with a resumable cursor.

    Procedural (``generate`` given): sample ``i`` is ``generate(i)``; the cursor is ``i``.
    Dataset (``rows`` given): epoch ``e`` visits the rows in a permutation drawn from
    ``(seed, e)``; the cursor is ``(epoch, pos)`` and wraps into the next epoch.
    """

    def __init__(
        self,
        kind: str,
        render: Callable[[str], str],
        prefill: str,
        seed: int,
        generate: Callable[[int], dict[str, Any]] | None = None,
        rows: list[dict[str, Any]] | None = None,
    ) -> None:
        if (generate is None) == (rows is None):
            raise ValueError("PromptSource needs exactly one of generate= and rows=")
        if rows is not None and not rows:
            raise DataError("the dataset has no rows")
        self.kind = kind
        self.seed = seed
        self.prefill = prefill
        self._render = render
        self._generate = generate
        self._rows = rows
        self.index = 0  # procedural cursor
        self.epoch, self.pos = 0, 0  # dataset cursor
        self._order: list[int] = []
        self._order_epoch = -1

    def _epoch_order(self) -> list[int]:
        if self._order_epoch != self.epoch:
            order = list(range(len(self._rows)))
            random.Random(f"data:{self.seed}:{self.epoch}").shuffle(order)
            self._order, self._order_epoch = order, self.epoch
        return self._order

    def next_row(self) -> dict[str, Any]:
        """Advance the cursor by one and return that row (a copy the caller may keep)."""
        if self._generate is not None:
            row = self._generate(self.index)
            self.index += 1
            return row
        row = self._rows[self._epoch_order()[self.pos]]
        self.pos += 1
        if self.pos == len(self._rows):
            self.epoch, self.pos = self.epoch + 1, 0
        return copy.deepcopy(row)

    def next_batch(self, n: int) -> list[Sample]:
        """The next ``n`` prompts; ``columns`` is the task row (question, answer, task, ...)."""
        if n < 0:
            raise ValueError(f"next_batch: n must be >= 0, got {n}")
        samples = []
        for _ in range(n):
            row = self.next_row()
            samples.append(Sample(prompt=self._render(row["question"]), prefill=self.prefill, columns=row))
        return samples

    def state_dict(self) -> dict[str, Any]:
        if self._generate is not None:
            return {"kind": self.kind, "seed": self.seed, "index": self.index}
        return {
            "kind": self.kind,
            "seed": self.seed,
            "epoch": self.epoch,
            "pos": self.pos,
            "num_rows": len(self._rows),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a cursor from ``state_dict()``; refuses one from a different source or data."""
        if state.get("kind") != self.kind or state.get("seed") != self.seed:
            raise DataError(
                f"data state is for source '{state.get('kind')}' with seed {state.get('seed')}, "
                f"but this source is '{self.kind}' with seed {self.seed}"
            )
        if self._generate is not None:
            self.index = int(state["index"])
            return
        if state["num_rows"] != len(self._rows):
            raise DataError(
                f"data state was saved with {state['num_rows']} dataset rows, "
                f"but the dataset now has {len(self._rows)}"
            )
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])


def build_source(cfg: DataSection, tokenizer: Any, seed: int) -> PromptSource:
    """The prompt source ``cfg.source`` describes, rendering prompts with ``cfg.template``.

    Fails here, not at the first step, on a missing chat template, a bad task config or a dataset
    that does not load.
    """
    if cfg.template not in TEMPLATES:
        raise DataError(f"data.template: '{cfg.template}' is not one of {', '.join(TEMPLATES)}")
    if cfg.template == "chat":
        require_chat_template(tokenizer)
    render = functools.partial(
        render_prompt,
        tokenizer=tokenizer,
        template=cfg.template,
        prefill=cfg.prefill,
        system_prompt=cfg.system_prompt,
    )
    if cfg.source in ("arithmetic", "countdown"):
        make, task_cfg = {
            "arithmetic": (make_arithmetic, cfg.arithmetic),
            "countdown": (make_countdown, cfg.countdown),
        }[cfg.source]
        generate = functools.partial(make, task_cfg, seed)
        generate(0)  # validates the task config
        return PromptSource(cfg.source, render, cfg.prefill, seed, generate=generate)
    if cfg.source == "dataset":
        return PromptSource("dataset", render, cfg.prefill, seed, rows=load_rows(cfg.dataset))
    raise DataError(f"data.source: '{cfg.source}' is not one of {', '.join(SOURCES)}")
