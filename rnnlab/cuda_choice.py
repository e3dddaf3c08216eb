"""backend="auto"'s choice on CUDA between the fused kernels and cuDNN, from GPU measurements.

Imported at a layer's first call on CUDA, not with rnnlab: torch.compiler.assume_constant_result, which lets
torch.compile take the choice as a constant, imports torch._dynamo (1.2 s on the 2-core CPU machine).
"""

from __future__ import annotations

import torch

from .layers import triton_installed

# The largest hidden sizes at which a GPU run timed the fused kernels faster than cuDNN
MEASURED_WINS = {"LSTM": 1024, "GRU": 1024}


@torch.compiler.assume_constant_result  # torch.compile takes the answer as a constant, not a graph break
def fused_beats_cudnn_on_cuda(mode: str, dtype: torch.dtype, device: torch.device, hidden_size: int, batch: int,
                              proj: bool) -> bool:
    """Whether the fused kernels run a layer of ``mode`` on ``device`` (CUDA) faster than cuDNN for ``batch``
    sequences of ``dtype``, as measured on an H100 (benchmarks/results/gpu-NVIDIA-H100-80GB-HBM3/, bf16,
    T = 1024): LSTM and GRU in fp16/bf16 whose forward runs in the persistent or resident regime (wide programs
    included), up to the hidden sizes timed (MEASURED_WINS). There a training step took 0.12-0.80x of cuDNN's
    time and the forward alone 0.09-0.54x (B in {1, 16, 64}). Not the tiled regime (1.14-1.55x cuDNN's training
    step at H = 1024, B = 64), fp32 or the plain RNN (not timed), or ``proj_size`` (tiled only). Inference
    forwards of up to 16 sequences have run in the vector regime since those timings (itself 0.50-0.75x the
    persistent regime's forward at H = 64, and its split kernel 0.77-0.93x the resident regime's at 128-256)."""
    if device.type != "cuda" or mode not in ("LSTM", "GRU") or proj or dtype not in (torch.float16, torch.bfloat16):
        return False
    if not triton_installed():
        return False
    from .kernels.dispatch import FITTED_TARGETS, grid_sync_enabled, plan

    if torch.cuda.get_device_capability(device) not in FITTED_TARGETS:  # shared memory and registers differ
        return False
    if hidden_size > 64 and not grid_sync_enabled():  # beyond the persistent regime only with the barrier
        return False
    if hidden_size > MEASURED_WINS[mode]:
        return False
    like = torch.empty(0, batch, 1, dtype=dtype, device=device)
    return plan(mode.lower(), like, hidden_size, batch).regime != "tiled"
