"""Which cuDNN RNN algorithm PyTorch picks for a benchmark case, recorded next to each native CUDA timing.

A transcription of ``get_algo`` and its heuristics in PyTorch's aten/src/ATen/native/cudnn/RNN.cpp
(PyTorch 2.x): the persistent kernels apply only to unpacked, non-double input, "small H" ones up to
H = 192 (LSTM/GRU forward), 128 (their backward), 384/256 (RNN), and the static persistent one only in
fp16 for one unidirectional layer with H and I multiples of 128, H <= 1024, and device-dependent
batch sizes. It is PyTorch's choice as written in its source, not read back from cuDNN at run time.
"""

from __future__ import annotations

from presets import Case

MODES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def _small_h(mode: str, hidden: int, forward: bool, major: int) -> bool:
    if major < 6:
        return False
    if mode == "RNN":
        return hidden <= (384 if forward else 256)
    return hidden <= (192 if forward else 128)


def _persist_common(case: Case) -> bool:
    return (case.layers == 1 and case.H <= 1024 and not case.bidirectional and case.H % 128 == 0
            and case.I % 128 == 0)


def _persist_device(mode: str, case: Case, major: int, minor: int, sms: int) -> bool:
    B = case.B
    if major == 7:
        return minor != 5 and ((B % 16 == 0 and B not in (80, 112)) or B == 8) and (
            (case.T >= 40 and B <= 128) or (case.T >= 20 and B <= 96) or (case.T >= 10 and B <= 32))
    if major >= 8 and sms >= 98 and minor != 6:
        if mode == "GRU":
            return False
        if mode == "LSTM":
            return B % 8 == 0 and B <= 128
        return B % 8 == 0 and B <= 128 and (B < 96 or case.H < 896)
    return False


def algorithm(case: Case, forward: bool, capability: tuple[int, int], sms: int) -> str:
    """"standard", "persist_static_small_h" or "persist_static" for ``case`` on a device of compute
    ``capability`` with ``sms`` multiprocessors, for the forward or the backward pass."""
    mode = MODES[case.cell]
    if case.packed or case.dtype == "fp64":
        return "standard"
    if _small_h(mode, case.H, forward, capability[0]):
        return "persist_static_small_h"
    if case.dtype == "fp16" and _persist_common(case) and _persist_device(mode, case, *capability, sms):
        return "persist_static"
    return "standard"


def describe(case: Case, mode: str, capability: tuple[int, int], sms: int) -> str:
    """The note for a native CUDA record: the forward's algorithm, and the backward's for "fwd+bwd"."""
    note = f"cuDNN fwd: {algorithm(case, True, capability, sms)}"
    if mode != "fwd":
        note += f", bwd: {algorithm(case, False, capability, sms)}"
    return note
