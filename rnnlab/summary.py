"""A Keras-style model summary: every layer's type, output shape and parameter count."""

from __future__ import annotations

import torch
from torch import nn


def _shape(out) -> str:
    if isinstance(out, torch.Tensor):
        return str(tuple(out.shape))
    if isinstance(out, torch.nn.utils.rnn.PackedSequence):
        return f"packed{tuple(out.data.shape)}"
    if isinstance(out, (tuple, list)):
        return "[" + ", ".join(_shape(o) for o in out) + "]"
    return type(out).__name__


def summarize(model: nn.Module, *example_inputs) -> str:
    """Run ``model`` once on ``example_inputs`` and tabulate its submodules in call order.

    Shows each module that holds parameters directly or has no children (a "layer"), its output shape
    and its own parameter count (not its children's; a parameter it shares with a module called before it, a tied
    weight, is counted there and shown as shared), then the totals. The run changes nothing: it is made in
    eval mode without gradients (no dropout draw, no batch-norm statistics), on a fork of the random generators,
    and every module's mode is restored afterwards.
    """
    rows, hooks = [], []
    for name, module in model.named_modules():
        leaf = not list(module.children()) or any(True for _ in module.parameters(recurse=False))
        if name and leaf:
            hooks.append(module.register_forward_hook(
                lambda m, args, out, name=name: rows.append((name, m, _shape(out)))
            ))
    modes = {m: m.training for m in model.modules()}
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            model.eval()(*example_inputs)
    finally:
        for m, training in modes.items():
            m.training = training
        for h in hooks:
            h.remove()
    seen, counted, lines = set(), set(), []
    for name, module, shape in rows:
        if name in seen:  # a module called several times is listed once
            continue
        seen.add(name)
        own = list(module.parameters(recurse=False))
        count = sum(p.numel() for p in own if id(p) not in counted)
        shared = sum(p.numel() for p in own) - count  # tied weights, counted where first called
        counted.update(id(p) for p in own)
        lines.append((f"{name} ({type(module).__name__})", shape,
                      f"{count:,}" + (f" (+{shared:,} shared)" if shared else "")))
    head = ("Layer (type)", "Output Shape", "Param #")
    w = [max(len(x) for x in col) for col in zip(head, *lines, strict=True)]
    rule = "=" * (sum(w) + 4)
    out = [rule, f"{head[0]:<{w[0]}}  {head[1]:<{w[1]}}  {head[2]:>{w[2]}}", rule]
    out += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:>{w[2]}}" for a, b, c in lines]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}", rule]
    return "\n".join(out)
