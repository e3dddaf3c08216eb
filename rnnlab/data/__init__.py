"""Data sets and Lightning data modules of rnnlab's experiments."""
