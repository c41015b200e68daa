"""Built-in configuration defaults, installed as faceflex.configs."""
