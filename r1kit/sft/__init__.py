"""Supervised stages on TRL's trainers: cold-start SFT on long chain-of-thought (``train``:
``r1kit sft``), DPO on preference pairs (``dpo``: ``r1kit dpo``), the labels reasoning traces need
(``data``) and what every TRL stage shares (``trl_stage``: run directory, schedules, eval, resume)."""
