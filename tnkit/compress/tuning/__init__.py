"""Healing after compression: the fine-tune or distillation loop (``healing``), the token
streams it reads, including text the original model writes (``distill``), and text
corpora (``corpus``)."""
