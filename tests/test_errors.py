"""Bad arguments and inputs raise errors that name the argument, the expectation and the value."""

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab

LAYERS = [rnnlab.RNN, rnnlab.LSTM, rnnlab.GRU]


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"hidden_size": 0}, ValueError, r"hidden_size must be an int >= 1; got 0"),
        ({"hidden_size": 2.5}, TypeError, r"hidden_size must be an int >= 1; got float 2.5"),
        ({"input_size": 0}, ValueError, r"input_size must be an int >= 1; got 0"),
        ({"num_layers": 0}, ValueError, r"num_layers must be an int >= 1; got 0"),
        ({"dropout": 1.5}, ValueError, r"dropout must be a number in \[0, 1\]; got 1.5"),
        ({"dropout": -0.1}, ValueError, r"dropout must be a number in \[0, 1\]; got -0.1"),
        ({"backend": "cuda"}, ValueError, r"backend must be one of 'auto', 'torch', 'native', 'triton'; got 'cuda'"),
        ({"bidirectional": "yes"}, TypeError, r"bidirectional must be True or False; got str 'yes'"),
        ({"bias": 1}, TypeError, r"bias must be True or False; got int 1"),  # torch.nn's constructor demands a bool
        ({"batch_first": 0}, TypeError, r"batch_first must be True or False; got int 0"),
    ],
)
def test_constructor_arguments(cls, kwargs, exc, pattern):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(exc, match=pattern) as caught:
        cls(**args)
    assert isinstance(caught.value, RuntimeError)  # what torch.nn raises for many of these


def test_numpy_integers_are_named_like_torch_nn_refuses_them():
    np = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match=r"input_size must be an int >= 1; got int64 np.int64\(3\)"):
        rnnlab.LSTM(np.int64(3), 4)
    with pytest.raises(TypeError, match=r"GRU: bias must be True or False; got bool np.True_"):
        rnnlab.GRU(3, 4, bias=np.True_)


def test_a_subclass_of_a_layer_keeps_the_fused_backend():
    pytest.importorskip("triton")

    class MyLSTM(rnnlab.LSTM):
        pass

    assert MyLSTM(3, 4, backend="triton").backend == "triton"


@pytest.mark.parametrize("cls", [rnnlab.RNNCell, rnnlab.GRUCell, rnnlab.LSTMCell])
def test_triton_backend_only_where_kernels_exist(cls):
    with pytest.raises(NotImplementedError, match=r"fused kernels only for the layers LSTM, GRU, RNN"):
        cls(3, 4, backend="triton")
    cell = cls(3, 4)
    cell.backend = "triton"  # set after construction: refused at the call, not run on another path
    with pytest.raises(NotImplementedError, match=r"fused kernels only for the layers LSTM, GRU, RNN"):
        cell(torch.randn(2, 3))


@pytest.mark.parametrize("module", [rnnlab.LSTM(3, 4), rnnlab.GRUCell(3, 4)], ids=["LSTM", "GRUCell"])
def test_a_backend_set_after_construction_is_checked_at_the_call(module):
    module.backend = "cuda"
    with pytest.raises(ValueError, match=r"backend must be one of 'auto', 'torch', 'native', 'triton'; got 'cuda'"):
        module(torch.randn(2, 3))


def test_triton_backend_needs_cuda_or_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(NotImplementedError, match=r"runs on CUDA tensors \(on the CPU only under TRITON_INTERPRET=1\)"):
        rnnlab.LSTM(3, 4, backend="triton")(torch.randn(5, 2, 3))
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # set only after importing torch: Triton has read it by then
    monkeypatch.setattr(rnnlab.layers, "_INTERPRET_AT_IMPORT", False)
    with pytest.raises(NotImplementedError, match=r"TRITON_INTERPRET=1 was set after rnnlab was imported, .* set it "
                                                  r"before importing torch and rnnlab"):
        rnnlab.LSTM(3, 4, backend="triton")(torch.randn(5, 2, 3))


@pytest.mark.parametrize(("triton", "numpy", "refused"), [
    ("3.4.0", "2.4.6", True), ("3.6.0", "2.4.0", True), ("3.6.0", "2.3.5", False), ("3.7.0", "2.4.6", False),
    ("3.9.0", "2.5.2", False),
])
def test_the_interpreter_names_the_numpy_it_cannot_run_with(monkeypatch, triton, numpy, refused):
    """Triton's interpreter before 3.7 fails with NumPy 2.4 inside the kernels ("only 0-dimensional arrays can be
    converted to Python scalars"): backend="triton" on the CPU says so first, naming both versions and the fix."""
    problem = rnnlab.layers.interpreter_problem(triton, numpy)
    assert (problem is not None) == refused
    if refused:
        assert f"Triton {triton}'s interpreter" in problem and f"NumPy {numpy}" in problem
        assert "install 'numpy<2.4' or Triton >= 3.7" in problem
        pytest.importorskip("triton")
        monkeypatch.setattr(rnnlab.layers, "_INTERPRETER_PROBLEM", problem)
        with pytest.raises(NotImplementedError, match=r"LSTM: Triton .*'s interpreter cannot run the fused kernels"):
            rnnlab.LSTM(3, 4, backend="triton")(torch.randn(5, 2, 3))


@pytest.mark.parametrize("cls", [rnnlab.RNN, rnnlab.GRU])
@pytest.mark.parametrize("proj_size", [0, 2])
def test_proj_size_is_refused_outside_the_lstm_as_in_torch_nn(cls, proj_size):
    """torch.nn.RNN and GRU refuse any proj_size, 0 included, with a ValueError: so do rnnlab's, naming it."""
    with pytest.raises(ValueError, match=r"proj_size argument is only supported for LSTM"):
        getattr(torch.nn, cls.__name__)(3, 4, proj_size=proj_size)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: proj_size is only supported for LSTM.*got "
                                         rf"proj_size={proj_size}") as caught:
        cls(3, 4, proj_size=proj_size)
    assert caught.value.argument == "proj_size"


@pytest.mark.parametrize("proj_size", [4, 9])
def test_proj_size_not_below_hidden_size(proj_size):
    with pytest.raises(ValueError, match=rf"proj_size must be smaller than hidden_size \(4\).*got {proj_size}"):
        rnnlab.LSTM(3, 4, proj_size=proj_size)


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match=r"nonlinearity must be one of 'tanh', 'relu'; got 'sigmoid'"):
        rnnlab.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"nonlinearity must be one of 'tanh', 'relu'; got 'gelu'"):
        rnnlab.RNNCell(3, 4, nonlinearity="gelu")


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("cls", LAYERS)
class TestForwardInputs:
    def test_wrong_rank(self, cls, backend):
        m = cls(3, 4, backend=backend)
        pattern = r"input must be 3-D \(T, B, input_size\) or 2-D .* got 4-D shape \(2, 2, 2, 3\)"
        with pytest.raises(ValueError, match=pattern):
            m(torch.randn(2, 2, 2, 3))
        with pytest.raises(RuntimeError, match=r"input must be 3-D .* got 1-D shape \(3,\)"):  # torch.nn's type
            m(torch.randn(3))

    def test_feature_size(self, cls, backend):
        m = cls(3, 4, backend=backend, batch_first=True)
        with pytest.raises(ValueError, match=r"last dimension of input must be input_size=3; got shape \(2, 5, 7\)"):
            m(torch.randn(2, 5, 7))

    def test_integer_input(self, cls, backend):
        m = cls(3, 4, backend=backend)
        with pytest.raises(TypeError, match=r"input must be a floating-point tensor \(torch.float32.*got torch.int64"):
            m(torch.ones(5, 2, 3, dtype=torch.long))

    def test_dtype_mismatch(self, cls, backend):
        """Caught as a TypeError, and as the ValueError torch.nn's layers raise and the RuntimeError its cells do."""
        m = cls(3, 4, backend=backend)
        for expected in (TypeError, ValueError, RuntimeError):
            with pytest.raises(expected, match=r"input has dtype torch.float64 but the parameters are torch.float32"):
                m(torch.randn(5, 2, 3, dtype=torch.float64))
            with pytest.raises(expected, match=r"input must be a floating-point tensor"):
                m(torch.ones(5, 2, 3, dtype=torch.long))

    def test_empty_sequence(self, cls, backend):  # as torch.nn; an empty batch is valid (test_layer_parity)
        m = cls(3, 4, backend=backend)
        with pytest.raises(ValueError, match=r"input has sequence length 0 \(shape \(0, 2, 3\)\)"):
            m(torch.randn(0, 2, 3))

    def test_state_shape(self, cls, backend):
        m = cls(3, 4, num_layers=2, backend=backend)
        h = torch.zeros(1, 2, 4)
        hx = (h, torch.zeros(2, 2, 4)) if cls is rnnlab.LSTM else h
        name = r"hx\[h_0\]" if cls is rnnlab.LSTM else "hx"
        with pytest.raises(RuntimeError, match=rf"{name} must have shape \(2, 2, 4\).*got \(1, 2, 4\)"):
            m(torch.randn(5, 2, 3), hx)

    def test_state_dtype(self, cls, backend):
        m = cls(3, 4, backend=backend)
        h = torch.zeros(1, 2, 4, dtype=torch.float64)
        hx = (h, h) if cls is rnnlab.LSTM else h
        with pytest.raises(TypeError, match=r"has dtype torch.float64 but the parameters are torch.float32"):
            m(torch.randn(5, 2, 3), hx)

    def test_state_device(self, cls, backend):
        m = cls(3, 4, backend=backend)
        h = torch.zeros(1, 2, 4, device="meta")
        hx = (h, h) if cls is rnnlab.LSTM else h
        with pytest.raises(TypeError, match=r"is on meta but the parameters are on cpu"):
            m(torch.randn(5, 2, 3), hx)

    def test_unbatched_state_must_be_2d(self, cls, backend):
        m = cls(3, 4, backend=backend)
        h = torch.zeros(1, 1, 4)
        hx = (h, h) if cls is rnnlab.LSTM else h
        with pytest.raises(ValueError, match=r"must have shape \(1, 4\) \(num_layers \* num_directions, features\)"):
            m(torch.randn(5, 3), hx)

    def test_packed_lengths_longer_than_T(self, cls, backend):
        m = cls(3, 4, backend=backend)
        x = pack_padded_sequence(torch.randn(5, 3, 3), torch.tensor([7, 3, 2]))
        pattern = r"batch_sizes add up to 12 rows but input.data has 10.*every length must be <= T"
        with pytest.raises(ValueError, match=pattern):
            m(x)

    def test_packed_batch_sizes_increasing(self, cls, backend):
        m = cls(3, 4, backend=backend)
        x = PackedSequence(torch.randn(5, 3), torch.tensor([2, 3]))
        with pytest.raises(ValueError, match=r"batch_sizes must be positive and non-increasing; got \[2, 3\]"):
            m(x)

    def test_not_a_tensor(self, cls, backend):
        m = cls(3, 4, backend=backend)
        with pytest.raises(TypeError, match=r"input must be a torch.Tensor; got list"):
            m([[1.0, 2.0, 3.0]])


def test_lstm_hx_must_be_a_pair():
    m = rnnlab.LSTM(3, 4)
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\); got a torch.float32 tensor of shape"):
        m(torch.randn(5, 2, 3), torch.zeros(1, 2, 4))
    h = torch.zeros(1, 2, 4)
    for owner in (m, rnnlab.LSTMCell(3, 4, backend="torch")):
        with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\); got tuple of length 3"):
            owner(torch.randn(5, 2, 3) if owner is m else torch.randn(2, 3), (h, h, h))


@pytest.mark.parametrize("cls", [rnnlab.RNNCell, rnnlab.LSTMCell, rnnlab.GRUCell])
def test_cell_inputs(cls):
    m = cls(3, 4, backend="torch")
    with pytest.raises(ValueError, match=r"input must have shape \(batch, 3\) or \(3,\).*got \(2, 5\)"):
        m(torch.randn(2, 5))
    with pytest.raises(TypeError, match=r"floating-point"):
        m(torch.ones(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"hidden_size must be an int >= 1; got -1"):
        cls(3, -1)
    h = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"must have shape \(2, 4\); got \(3, 4\)"):
        m(torch.randn(2, 3), (h, h) if cls is rnnlab.LSTMCell else h)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("module", [rnnlab.LSTM(3, 4), rnnlab.GRUCell(3, 4)], ids=["layer", "cell"])
def test_torch_jit_script_says_what_to_use_instead(module):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), module)
    with pytest.raises(NotImplementedError, match=r"torch.jit.script does not take .* use torch.compile, or "
                                                  r"rnnlab.to_torch\(model\)"):
        torch.jit.script(model)
    torch.jit.script(rnnlab.to_torch(model))  # the torch.nn copy, as the message says
