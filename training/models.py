"""Training runs and the reward-model versions they produce (see the training issue)."""
