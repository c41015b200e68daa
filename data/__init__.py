"""Shipped data: the alignment template (and later model weights and vectors), installed as faceflex.data."""
