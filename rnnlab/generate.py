"""rnnlab-generate: sample text from a language-model checkpoint written by rnnlab-train.

    rnnlab-generate logs/train/runs/<time>/checkpoints/last.ckpt --prompt "def " --length 400
"""

from __future__ import annotations

import argparse
import sys

import torch

from .checkpoints import load_run, run_on_cpu
from .errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Console entry point of rnnlab-generate."""
    parser = argparse.ArgumentParser(prog="rnnlab-generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by rnnlab-train for a language model")
    parser.add_argument("--prompt", default="", help="text to continue (default: none: the text starts where a line "
                        "begins, after a newline at character level, after <eos> at word level)")
    parser.add_argument("--length", type=int, default=300, help="tokens to generate (default 300)")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="a finite number > 0; lower is more conservative")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens only")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampler")
    args = parser.parse_args(argv)
    if args.length < 1:
        parser.error(f"--length must be >= 1; got {args.length}")
    try:
        model, _ = load_run(args.checkpoint)
        if not hasattr(model, "generate"):
            raise ConfigError(f"{args.checkpoint} holds a {type(model).__name__}, not a language model: "
                              "rnnlab-generate samples text from a language model; for this model's metrics run "
                              f"rnnlab-eval {args.checkpoint}")
        run_on_cpu(model, "rnnlab-generate")
        text = model.generate(args.prompt, args.length, args.temperature, args.top_k,
                              generator=torch.Generator().manual_seed(args.seed))
    except (ConfigError, ValueError) as err:
        print(f"rnnlab-generate: error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
