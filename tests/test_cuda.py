"""The pure-PyTorch path on CUDA tensors, unchanged, against torch.nn on cuDNN with TF32 off.

Marked ``gpu``: deselected by default and skipped without CUDA; run with ``pytest -m gpu`` (see
scripts/gpu_check.sh).
"""

import pytest
import torch

from parity import CELLS, assert_same, make_inputs, make_pair, run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("form", ["batched", "packed"])
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_matches_cudnn(cell, form):
    torch.manual_seed(0)
    ref, mine = make_pair(cell, 24, 50, torch.float32, num_layers=2, bidirectional=True)
    ref, mine = ref.cuda(), mine.cuda()
    x, hx, leaves = make_inputs(ref, form, T=33, B=7, dtype=torch.float32, with_state=True, seed=3, device="cuda")
    assert_same(run(mine, x, hx, leaves), run(ref, x, hx, leaves), 2e-5)
