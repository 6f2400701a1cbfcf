"""r1kit: reasoning-oriented RL post-training (GRPO, R1-Zero) in modules small enough to read.

Start at ``r1kit.grpo.train`` (the loop), ``r1kit.setup`` (what every stage builds first) and
``r1kit.config`` (the sections and stage roots); the README's architecture section maps the rest.
"""
