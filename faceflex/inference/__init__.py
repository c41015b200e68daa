"""Inference: the shipped networks loaded once and used deterministically (eval mode)."""
