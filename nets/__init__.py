"""Data sets, the model zoo, the one training loop and checkpoints (torch, numpy)."""
