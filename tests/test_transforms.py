"""The layers and cells under what traces or transforms a model rather than running it: torch.export,
torch.jit.trace, torch.fx, torch.func's vmap (per-sample gradients, ensembles) and grad, forward-mode AD, and the
"meta" device. Where rnnlab's hand-written backwards cannot run, "torch" runs the step-by-step recurrence through
autograd and "auto" runs torch.nn's kernel, or the step-by-step recurrence under vmap, where torch.nn's kernel has
none."""

import pytest
import torch
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.utils._pytree import tree_leaves

import rnnlab
from parity import FUSED_DEVICE, needs_fused_device

LAYERS = [("LSTM", {"proj_size": 2}), ("GRU", {}), ("RNN", {"nonlinearity": "relu"})]
STACK = {"num_layers": 2, "bidirectional": True}


def _pair(name, backend, **kwargs):
    """An rnnlab module and torch.nn's with the same float64 weights."""
    mine = getattr(rnnlab, name)(3, 4, backend=backend, **kwargs).double()
    ref = getattr(torch.nn, name)(3, 4, **kwargs).double()
    ref.load_state_dict(mine.state_dict())
    return mine, ref


def _close(got, want):
    got, want = tree_leaves(got), tree_leaves(want)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


# torch.nn's own layers warn so under export too: their forward refreshes the list of weights it passes on
@pytest.mark.filterwarnings("ignore:The tensor attributes self._flat_weights")
@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize(("name", "options"), [*LAYERS, ("GRU", {"zoneout": 0.2})])
def test_export_gives_the_modules_outputs(backend, name, options):
    mine = getattr(rnnlab, name)(3, 4, backend=backend, **STACK, **options).double().eval()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    exported = torch.export.export(mine, (x,))
    _close(exported.module()(x), mine(x))


@pytest.mark.filterwarnings("ignore:The tensor attributes self._flat_weights")
@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_strict_export(backend, name):
    """torch.export's strict mode traces the layers with Dynamo (no graph break allowed)."""
    mine = getattr(rnnlab, name)(3, 4, backend=backend, **STACK).double().eval()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    _close(torch.export.export(mine, (x,), strict=True).module()(x), mine(x))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize(("name", "options"), LAYERS)
def test_jit_trace_holds_torch_nns_ops_on_auto(name, options):
    """torch.jit.trace (whose check reruns the module without gradients) of a layer on "auto": torch.nn's aten op,
    as torch.nn's own trace holds, so the graph traces alike with and without gradients and loads without rnnlab;
    not rnnlab's custom ops, which a training-mode call takes on the CPU."""
    mine, ref = _pair(name, "auto", **options)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    traced = torch.jit.trace(mine, x)  # check_trace=True: it raised "Graphs differed across invocations"
    kinds = {node.kind() for node in traced.graph.nodes()}
    want = {node.kind() for node in torch.jit.trace(ref, x).graph.nodes()}
    assert not any(kind.startswith("rnnlab::") for kind in kinds) and kinds == want
    _close(traced(x), ref(x))


@pytest.mark.parametrize("module", [rnnlab.GRU(3, 4), rnnlab.LSTMCell(3, 4)], ids=["GRU", "LSTMCell"])
def test_fx_symbolic_trace_says_how_to_keep_the_module_whole(module):
    """torch.fx's default tracer keeps only torch.nn's own modules whole and so traces into rnnlab's: a clear error
    naming the way out, and that way (a tracer that keeps them whole) works."""
    model = torch.nn.Sequential(module)
    with pytest.raises(TypeError, match=r"torch.fx.symbolic_trace cannot trace into rnnlab's recurrent modules.*"
                                         r"is_leaf_module.*rnnlab.to_torch"):
        torch.fx.symbolic_trace(model)

    class KeepRecurrent(torch.fx.Tracer):
        def is_leaf_module(self, m, name):
            return isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase)) or super().is_leaf_module(m, name)

    traced = torch.fx.GraphModule(model, KeepRecurrent().trace(model))
    x = torch.randn(5, 2, 3) if isinstance(module, torch.nn.RNNBase) else torch.randn(2, 3)
    _close(traced(x), model(x))


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_export_of_cells(backend, name):
    mine, _ = _pair(name, backend)
    x = torch.randn(2, 3, dtype=torch.float64)
    _close(torch.export.export(mine, (x,)).module()(x), mine(x))


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize(("name", "options"), LAYERS)
def test_per_sample_gradients_under_vmap(backend, name, options):
    """vmap(grad(...)) over the batch, which torch.nn's fused recurrences refuse, against a loop of
    torch.nn's gradients one sequence at a time."""
    mine, ref = _pair(name, backend, batch_first=True, **STACK, **options)
    x = torch.randn(4, 5, 3, dtype=torch.float64)  # (B, T, I): one sequence a vmap lane

    def loss(module, params, seq):
        return functional_call(module, params, (seq.unsqueeze(0),))[0].pow(2).sum()

    params = {k: v.detach() for k, v in mine.named_parameters()}
    got = vmap(grad(lambda p, seq: loss(mine, p, seq)), in_dims=(None, 0))(params, x)
    for b in range(x.shape[0]):
        want = torch.autograd.grad(loss(ref, dict(ref.named_parameters()), x[b]), list(ref.parameters()))
        for (key, _), w in zip(ref.named_parameters(), want, strict=True):
            torch.testing.assert_close(got[key][b], w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("options", [{"zoneout": 0.3}, {"recurrent_dropout": 0.3}, {"weight_dropout": 0.3}])
def test_vmap_draws_each_samples_masks_with_randomness_different(options):
    """In training, vmap(randomness="different") gives each lane its own masks (the draws are out of place; in
    place, on a tensor without the vmap dimension, they raised), "same" one mask for all lanes."""
    torch.manual_seed(0)
    layer = rnnlab.GRU(3, 16, **options).double().train()  # 16 units: two lanes' masks differ
    x = torch.randn(5, 1, 3, dtype=torch.float64).expand(4, 5, 1, 3)  # 4 lanes of one sequence
    same = vmap(lambda seq: layer(seq)[0], randomness="same")(x)
    different = vmap(lambda seq: layer(seq)[0], randomness="different")(x)
    assert all(torch.equal(same[0], lane) for lane in same[1:])
    assert not any(torch.equal(different[0], lane) for lane in different[1:])


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize(("name", "options"), LAYERS)
def test_ensembles_under_vmap(backend, name, options):
    """vmap over stacked weights (torch.func.stack_module_state) runs every member of an ensemble at once."""
    pairs = [_pair(name, backend, **STACK, **options) for _ in range(3)]
    params, buffers = stack_module_state([mine for mine, _ in pairs])
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    got = vmap(lambda p, b: functional_call(pairs[0][0], (p, b), (x,)))(params, buffers)
    _close(got, [torch.stack(out) for out in zip(*(tree_leaves(ref(x)) for _, ref in pairs), strict=True)])


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_under_vmap(backend, name):
    mine, ref = _pair(name, backend)
    x = torch.randn(4, 3, dtype=torch.float64)
    _close(vmap(mine)(x), ref(x))


@pytest.mark.parametrize(("name", "options"), LAYERS)
def test_torch_backend_under_grad(name, options):
    """torch.func.grad over backend "torch" (the step-by-step recurrence) gives torch.nn's gradients."""
    mine, ref = _pair(name, "torch", **STACK, **options)
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def grads(module):
        params = {k: v.detach() for k, v in module.named_parameters()}
        return grad(lambda p: functional_call(module, p, (x,))[0].pow(2).sum())(params)

    _close(grads(mine), grads(ref))


@pytest.mark.parametrize("backend", ["auto", "torch", "native"])
@pytest.mark.parametrize(("name", "options"), LAYERS)
def test_meta_tensors_take_the_shapes_of_torch_nn(backend, name, options):
    """On the "meta" device (deferred initialisation, FSDP's empty init, shape inference) a layer runs forward
    and backward with torch.nn's output and gradient shapes, on every backend that runs off CUDA."""
    kwargs = dict(device="meta", **STACK, **options)
    layer = getattr(rnnlab, name)(5, 4, backend=backend, **kwargs)
    ref = getattr(torch.nn, name)(5, 4, **kwargs)
    x = torch.randn(7, 3, 5, device="meta", requires_grad=True)
    got, want = layer(x), ref(x)
    assert [t.shape for t in tree_leaves(got)] == [t.shape for t in tree_leaves(want)]
    got[0].sum().backward()
    assert x.grad.shape == x.shape and layer.weight_hh_l0.grad.shape == layer.weight_hh_l0.shape


def test_meta_tensors_run_the_cell_options():
    layer = rnnlab.LSTM(5, 4, layer_norm=True, zoneout=0.1, recurrent_dropout=0.2, device="meta")
    assert layer(torch.randn(7, 3, 5, device="meta"))[0].shape == (7, 3, 4)
    assert rnnlab.GRUCell(5, 4, backend="torch", device="meta")(torch.randn(3, 5, device="meta")).shape == (3, 4)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_weight_dropout_under_grad(backend):
    """In training, torch.func.grad over a layer with weight dropout gives the eager call's gradients from the
    same seed (the same DropConnect mask)."""
    layer = rnnlab.GRU(3, 4, weight_dropout=0.5, backend=backend).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    params = {k: v.detach() for k, v in layer.named_parameters()}
    torch.manual_seed(0)
    got = grad(lambda p: functional_call(layer, p, (x,))[0].pow(2).sum())(params)
    torch.manual_seed(0)
    layer(x)[0].pow(2).sum().backward()
    _close(got, {k: p.grad for k, p in layer.named_parameters()})


# forward_ad.make_dual's first call loads torch's jvp decompositions through torch.jit.script, which warns
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN", "LSTMCell"])
def test_forward_mode_ad(backend, name):
    """Dual tensors of torch.autograd.forward_ad (which oneDNN's LSTM refuses) give torch.func.jvp's tangent."""
    mine, ref = _pair(name, backend)
    x = torch.randn(*(() if "Cell" in name else (5,)), 2, 3, dtype=torch.float64)
    tangent = torch.randn_like(x)
    with torch.autograd.forward_ad.dual_level():
        got = torch.autograd.forward_ad.unpack_dual(mine(torch.autograd.forward_ad.make_dual(x, tangent))[0]).tangent
    _, want = torch.func.jvp(lambda z: ref(z)[0], (x,), (tangent,))
    _close(got, want)


@needs_fused_device
def test_fused_kernels_under_grad_say_what_runs_instead():
    """PyTorch's autograd of custom ops (the fused kernels') does not take torch.func's differentiating transforms:
    backend="triton" says so and names the backends that run there, rather than PyTorch's own message."""
    layer = rnnlab.GRU(3, 4, backend="triton").double().to(FUSED_DEVICE)
    x = torch.randn(5, 2, 3, dtype=torch.float64, device=FUSED_DEVICE)
    params = {k: v.detach() for k, v in layer.named_parameters()}
    with pytest.raises(NotImplementedError, match=r"'triton' cannot run under .* Use backend='auto' or 'torch'"):
        grad(lambda p: functional_call(layer, p, (x,))[0].pow(2).sum())(params)
