"""Each command's model step: what it does to the aligned faces of one photo."""
