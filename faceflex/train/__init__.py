"""Training: the aligned face cache and one trainer per model."""
