"""The layers and a language model sharded by FSDP, as Lightning's ``trainer=fsdp`` wraps them (FSDP1's
FullyShardedDataParallel with ``use_orig_params``, Lightning's default: the parameters are views into one flat
buffer) and as FSDP2's ``fully_shard`` does (DTensor parameters, gathered before each forward and
backward): two CPU processes on gloo, the same batch on both, outputs, final states and every gradient bit for bit
against the same module unsharded (the two processes' equal gradients averaged are exact). Lightning runs its FSDP
strategy on GPUs only; the layers' part of it runs here."""

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils._pytree import tree_leaves

import rnnlab
from rnnlab.models.language_model import RNNLanguageModel

WRAPPERS = ["fsdp", "fully_shard"]
MODULES = {
    "torch.nn-control": lambda: torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh()),  # torch's own case
    "LSTM-proj": lambda: rnnlab.LSTM(5, 12, num_layers=2, bidirectional=True, proj_size=4),
    "GRU-layer-norm": lambda: rnnlab.GRU(5, 12, num_layers=2, bidirectional=True, layer_norm=True),
    "RNN-relu": lambda: rnnlab.RNN(5, 12, num_layers=2, nonlinearity="relu"),
    "LM-tied": lambda: RNNLanguageModel(11, embedding_dim=12, hidden_size=12, num_layers=2, cell="lstm",
                                        tie_weights=True),
}


def _inputs(name: str) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(0, 11, (7, 3)) if name.startswith("LM") else torch.randn(7, 3, 5)  # (T, B[, I])


def _shard(module: torch.nn.Module, wrapper: str) -> torch.nn.Module:
    if wrapper == "fully_shard":
        from torch.distributed.fsdp import fully_shard

        return fully_shard(module)
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel(module, device_id=torch.device("cpu"), use_orig_params=True)


def _gradients(module: torch.nn.Module, wrapper: str) -> dict[str, torch.Tensor]:
    """Every parameter's gradient, whole, by the unsharded module's names."""
    if wrapper == "fully_shard":
        return {name: p.grad.full_tensor() for name, p in module.named_parameters()}
    from torch.distributed.fsdp import FullyShardedDataParallel

    with FullyShardedDataParallel.summon_full_params(module, with_grads=True):
        return {name.replace("_fsdp_wrapped_module.", ""): p.grad.clone() for name, p in module.named_parameters()}


def _errors(name: str, wrapper: str) -> dict[str, float]:
    """The largest absolute difference between the sharded and the unsharded module, per output and gradient."""
    torch.manual_seed(0)
    plain = MODULES[name]()
    sharded = MODULES[name]()
    sharded.load_state_dict(plain.state_dict())
    sharded = _shard(sharded, wrapper)
    x = _inputs(name)
    errors = {}
    outputs = [tree_leaves(module(x)) for module in (plain, sharded)]
    for i, (want, got) in enumerate(zip(*outputs, strict=True)):
        errors[f"output {i}"] = (got - want).abs().max().item()
    for out in outputs:
        sum(o.square().sum() for o in out).backward()  # the final states too
    want = {n: p.grad for n, p in plain.named_parameters()}
    got = _gradients(sharded, wrapper)
    assert got.keys() == want.keys(), (sorted(got), sorted(want))
    errors |= {f"grad {n}": (got[n] - want[n]).abs().max().item() for n in want}
    return errors


def _worker(rank: int, init_file: str, out_file: str) -> None:
    """One process's cases; rank 0 writes their errors to ``out_file``. An exception reaches mp.spawn's caller."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    results = {f"{name}/{wrapper}": _errors(name, wrapper) for name in MODULES for wrapper in WRAPPERS}
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(results, f)
    dist.barrier()  # neither process leaves while the other still communicates
    dist.destroy_process_group()
    # FSDP2's device mesh still holds the process group, destroyed at the interpreter's exit, where gloo's threads
    # once aborted the process in CI ("terminate called without an active exception"): leave before that
    os._exit(0)


@pytest.fixture(scope="module")
def sharded_errors(tmp_path_factory) -> dict[str, dict[str, float]]:
    """Every module's errors under every wrapper, by "module/wrapper", from one pair of spawned processes (a few
    seconds)."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build of torch")
    folder = tmp_path_factory.mktemp("sharding")
    mp.spawn(_worker, args=(str(folder / "init"), str(folder / "errors.json")), nprocs=2)
    results = json.loads((folder / "errors.json").read_text())
    assert sorted(results) == sorted(f"{name}/{wrapper}" for name in MODULES for wrapper in WRAPPERS)
    assert all(len(errors) > 2 for errors in results.values())
    return results


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_sharded_modules_match_the_unsharded_module(sharded_errors, wrapper):
    """Where torch's own Linear comes out of the wrapper as it went in, so does every rnnlab module. torch 2.8's
    fully_shard on the CPU (gloo) gives the Linear wrong gradients (5.0 off), so there it is skipped."""
    off = {name: {k: v for k, v in sharded_errors[f"{name}/{wrapper}"].items() if v != 0.0} for name in MODULES}
    if off.pop("torch.nn-control"):
        pytest.skip(f"torch {torch.__version__}'s {wrapper} on the CPU gives torch.nn's own Linear other gradients "
                    "than unsharded: no reference for rnnlab's")
    assert not any(off.values()), off
