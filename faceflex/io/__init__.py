"""Input and output: finding inputs, loading photos and videos, writing files atomically."""
