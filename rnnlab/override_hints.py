"""The nearest existing keys for command-line overrides of keys that rnnlab-train's config lacks.

Hydra refuses ``model.hiden_size=32`` during composition, before rnnlab's code runs, and suggests appending it
(``+model.hiden_size=32``), which is wrong for a misspelling. rnnlab-train's entry point then composes the config
again here and names the keys that were probably meant.
"""

from __future__ import annotations

import difflib

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, ListConfig, OmegaConf


def _keys(node, prefix: str = "") -> list[str]:
    """Every dotted key of a config node, containers and leaves."""
    if isinstance(node, DictConfig):
        items = [(str(k), node._get_node(k)) for k in node]
    elif isinstance(node, ListConfig):
        items = [(str(i), node._get_node(i)) for i in range(len(node))]
    else:
        return []
    keys = []
    for name, child in items:
        key = f"{prefix}{name}"
        keys += [key, *_keys(child, f"{key}.")]
    return keys


def misspelled_keys(args: list[str]) -> str | None:
    """A hint naming, for each ``key=value`` among ``args`` (rnnlab-train's command line) whose key the composed
    config lacks, the nearest keys it has; None where every key exists or the config does not compose without
    those overrides (another mistake, which Hydra's message covers)."""
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    assignments = [o for o in overrides if "." in o.split("=", 1)[0] and not o.startswith(("+", "~", "hydra."))]
    try:
        with initialize_config_module(config_module="rnnlab.conf", version_base="1.3"):
            cfg = compose("train", overrides=[o for o in overrides if o not in assignments])
    except Exception:  # a sweep, a bad group: Hydra's own message says what is wrong
        return None
    missing = object()
    unknown = [o.split("=", 1)[0] for o in assignments]
    unknown = [k for k in unknown if OmegaConf.select(cfg, k, default=missing, throw_on_missing=False) is missing]
    if not unknown:
        return None
    keys = _keys(cfg)
    hints = []
    for key in unknown:
        near = difflib.get_close_matches(key, keys, n=3, cutoff=0.75)
        hints.append(f"{key} (did you mean {' or '.join(near)}?)" if near else key)
    return (f"the config has no key {', '.join(hints)}; a new key is added with +key=value, and rnnlab-train "
            "--cfg job prints every key")
