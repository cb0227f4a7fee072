"""Training: the trainer, its callbacks and the frozen-backbone feature cache."""
