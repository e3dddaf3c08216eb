import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Without a GPU, Triton kernels run on the CPU through the interpreter; it must be chosen before any
# kernel module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# The default run is spread over the CPU's cores (pytest-xdist, ``-n auto`` in pyproject.toml). Collection then
# happens in the workers, whose deselections pytest-xdist does not report: each worker sends its count to the
# controller, which prints it as the run's last word on what was left out.


def pytest_deselected(items):
    config = items[0].config if items else None
    if config is not None:
        config.stash[_DESELECTED] = config.stash.get(_DESELECTED, 0) + len(items)


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker: hand the count to the controller
        session.config.workeroutput["deselected"] = session.config.stash.get(_DESELECTED, 0)


def pytest_testnodedown(node, error):
    counts = node.config.stash.get(_WORKER_DESELECTED, [])
    counts.append(node.workeroutput.get("deselected", 0))
    node.config.stash[_WORKER_DESELECTED] = counts


def pytest_terminal_summary(terminalreporter, config):
    counts = config.stash.get(_WORKER_DESELECTED, [])
    if counts:  # every worker collects the whole suite: each deselected the same tests
        terminalreporter.write_line(f"{max(counts)} deselected (-m {config.option.markexpr!r}, and -k if given; "
                                    "the slow and gpu tests run with -m slow or -m gpu)")


_DESELECTED = pytest.StashKey[int]()
_WORKER_DESELECTED = pytest.StashKey[list]()


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 parity needs full-precision products: TF32 off in cuDNN and cuBLAS (a no-op on the CPU)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def fresh_dynamo():
    """Dynamo's caches emptied before and after a test that compiles layers: every compiled layer recompiles
    the layers' shared forward, and a worker that ran other such tests before would pass Dynamo's recompile
    limit (8), which fullgraph=True turns into a failure (seen once the layer-norm compile test joined)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def programs_in_threads(monkeypatch):
    """Launches whose programs wait on each other (a grid barrier, flagged words) run under the interpreter with each
    program in a thread (tests/threaded_interpreter.py), and the dispatcher no longer refuses them for the
    interpreter's one-program-at-a-time (dispatch._co_resident_problem). On a GPU they run compiled instead
    (tests/test_cuda.py): skipped there."""
    if torch.cuda.is_available():
        pytest.skip("on a GPU the kernels whose programs wait on each other run compiled (tests/test_cuda.py)")
    from threaded_interpreter import threaded_programs

    from rnnlab.kernels import dispatch

    threaded_programs(monkeypatch)
    monkeypatch.setattr(dispatch, "_co_resident_problem", lambda *args: None)  # threads: every program at once
