"""The one flow every command runs: load -> detect -> align -> step -> paste back -> outputs, and the batch runner."""
