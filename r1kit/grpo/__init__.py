"""GRPO: group-relative advantages, the clipped policy loss, the learner and the training loop."""
