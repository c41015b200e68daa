"""Measuring faceflex on labelled, held-out data."""
