"""Adversarial attacks, defenses, certification and the published experiments (PyTorch)."""
