"""Neural networks (definitions only) and their weight files."""
