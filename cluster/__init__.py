"""Configuration, capacity and the `fandom` CLI (the base modules import nothing of ours)."""
