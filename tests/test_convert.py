"""Weight interchange between torch.nn and rnnlab modules."""

import pytest
import torch
from torch import nn

import rnnlab
from parity import CELLS, make_pair


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_loads_both_ways(cell):
    ref, _ = make_pair(cell, 3, 6, torch.float32, num_layers=2, bidirectional=True)
    kwargs = {k: getattr(ref, k) for k in ("num_layers", "bidirectional")}
    if ref.mode == "LSTM":
        kwargs["proj_size"] = ref.proj_size
    if ref.mode.startswith("RNN"):
        kwargs["nonlinearity"] = ref.nonlinearity
    mine = getattr(rnnlab, type(ref).__name__)(3, 6, backend="torch", **kwargs)
    assert mine.state_dict().keys() == ref.state_dict().keys()
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(mine(x)[0], ref(x)[0], atol=1e-6, rtol=1e-6)
    fresh = type(ref)(3, 6, **kwargs)
    fresh.load_state_dict(mine.state_dict())
    torch.testing.assert_close(fresh(x)[0], ref(x)[0], atol=0, rtol=0)


def test_same_initialisation_as_torch_nn():
    torch.manual_seed(7)
    ref = nn.LSTM(3, 5, num_layers=2)
    torch.manual_seed(7)
    mine = rnnlab.LSTM(3, 5, num_layers=2)
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), mine.named_parameters(), strict=True):
        assert n1 == n2
        torch.testing.assert_close(p1, p2, atol=0, rtol=0)


def test_round_trip_keeps_config_weights_and_class():
    ref = nn.GRU(3, 5, num_layers=2, batch_first=True, bias=False, dtype=torch.float64)
    mine = rnnlab.from_torch(ref, backend="torch")
    assert type(mine) is rnnlab.GRU and isinstance(mine, nn.GRU)
    assert (mine.batch_first, mine.bias, mine.backend) == (True, False, "torch")
    assert mine.weight_hh_l1.dtype == torch.float64
    back = rnnlab.to_torch(mine)
    assert type(back) is nn.GRU
    for a, b in zip(ref.parameters(), back.parameters(), strict=True):
        assert a is not b
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_converts_every_recurrent_submodule_of_a_model():
    model = nn.Sequential(nn.Linear(2, 3), nn.ModuleList([nn.LSTM(3, 4), nn.GRUCell(4, 4)]))
    model.eval()
    converted = rnnlab.from_torch(model, backend="torch")
    assert converted is model
    assert type(model[1][0]) is rnnlab.LSTM and type(model[1][1]) is rnnlab.GRUCell
    assert not model[1][0].training
    rnnlab.to_torch(model)
    assert type(model[1][0]) is nn.LSTM and type(model[1][1]) is nn.GRUCell


def test_pickle_and_repr():
    import io

    m = rnnlab.LSTM(3, 4, proj_size=2, backend="torch")
    assert "backend='torch'" in repr(m)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m2 = torch.load(buf, weights_only=False)
    x = torch.randn(3, 1, 3)
    torch.testing.assert_close(m(x)[0], m2(x)[0])


def test_conversion_keeps_frozen_weights_and_shared_modules():
    model = torch.nn.Module()
    model.a = model.b = torch.nn.GRU(3, 4)  # one module reached twice (tied)
    model.a.weight_hh_l0.requires_grad_(False)
    rnnlab.from_torch(model)
    assert isinstance(model.a, rnnlab.GRU) and model.a is model.b
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in torch.nn.GRU(3, 4).parameters())
    assert not model.a.weight_hh_l0.requires_grad and model.a.weight_ih_l0.requires_grad
    back = rnnlab.to_torch(model.a)
    assert type(back) is torch.nn.GRU and not back.weight_hh_l0.requires_grad
    frozen = torch.nn.LSTM(3, 4).requires_grad_(False)  # new layer-norm gains stay trainable: to train only them
    trainable = {n for n, p in rnnlab.from_torch(frozen, layer_norm=True).named_parameters() if p.requires_grad}
    assert trainable == {"ln_weight_ih_l0", "ln_weight_hh_l0", "ln_weight_c_l0", "ln_bias_c_l0"}


def test_conversion_refuses_unknown_options_and_says_when_nothing_converts():
    """A misspelt option names the options instead of surfacing as a constructor's TypeError; a model without a
    recurrent module (passed by mistake, or converted already) is returned with a warning, not silently."""
    model = nn.Sequential(nn.LSTM(4, 8))
    with pytest.raises(ValueError, match=r"from_torch: no option zonout; the options are layer_norm, zoneout, "
                                         r"zoneout_cell, recurrent_dropout, weight_dropout"):
        rnnlab.from_torch(model, zonout=0.1)
    with pytest.warns(UserWarning, match=r"from_torch: Linear holds no torch.nn or rnnlab RNN, LSTM or GRU"):
        assert isinstance(rnnlab.from_torch(nn.Linear(2, 3)), nn.Linear)
    with pytest.warns(UserWarning, match=r"to_torch: Sequential holds no rnnlab or torch.nn RNN"):
        rnnlab.to_torch(nn.Sequential(nn.ReLU()))


def test_conversion_is_all_or_nothing():
    """An error on a later module (an option a cell does not take, a backend a cell refuses, a layer to_torch
    refuses) leaves the model as it was: no module replaced before it."""
    model = nn.Sequential(nn.LSTM(3, 4), nn.LSTMCell(4, 4))
    before = list(model)
    with pytest.raises(ValueError, match=r"LSTMCell takes no recurrent_dropout"):
        rnnlab.from_torch(model, recurrent_dropout=0.2)
    with pytest.raises(NotImplementedError, match=r"backend='triton'"):
        rnnlab.from_torch(model, backend="triton")
    assert list(model) == before and all(m is b for m, b in zip(model, before, strict=True))
    model = nn.Sequential(rnnlab.GRU(3, 4), rnnlab.GRU(4, 4, zoneout=0.1))
    before = list(model)
    with pytest.raises(ValueError, match=r"to_torch: GRU with zoneout=0.1 has no torch.nn equivalent"):
        rnnlab.to_torch(model)
    assert all(m is b for m, b in zip(model, before, strict=True))


def test_from_torch_names_an_option_a_class_does_not_take():
    """An option the converted class does not take is a ValueError naming it, the class and the class's
    options, not the constructor's TypeError."""
    with pytest.raises(ValueError, match=r"^from_torch: LSTMCell takes no recurrent_dropout \(its options: "
                                         r"layer_norm, zoneout, zoneout_cell\); convert the LSTMCell modules "
                                         r"apart without it$"):
        rnnlab.from_torch(nn.Sequential(nn.LSTM(3, 4), nn.LSTMCell(4, 4)), recurrent_dropout=0.2)
    with pytest.raises(ValueError, match=r"^from_torch: GRU takes no zoneout_cell \(its options: layer_norm, "
                                         r"zoneout, recurrent_dropout, weight_dropout\); convert the GRU modules "
                                         r"apart without it$"):
        rnnlab.from_torch(nn.GRU(3, 4), zoneout_cell=0.1)


def test_from_torch_keeps_an_rnnlab_modules_backend_and_forget_bias():
    """An rnnlab module converted again keeps its backend and forget_bias (so reset_parameters still restores
    it) unless given; a torch.nn module gets backend "auto"; forget_bias is still refused as an option."""
    src = rnnlab.LSTM(3, 4, backend="torch", forget_bias=1.0, zoneout=0.1)
    with torch.no_grad():
        src.bias_ih_l0[4:8] = 0.5  # trained away from forget_bias
    new = rnnlab.from_torch(src)
    assert (new.backend, new.forget_bias, new.variant.zoneout) == ("torch", 1.0, 0.1)
    torch.testing.assert_close(new.bias_ih_l0, src.bias_ih_l0, atol=0, rtol=0)
    new.reset_parameters()
    assert new.bias_ih_l0[4:8].tolist() == [1.0] * 4
    assert rnnlab.from_torch(src, backend="auto").backend == "auto"
    assert rnnlab.from_torch(nn.LSTM(3, 4)).backend == "auto"
    with pytest.raises(ValueError, match=r"from_torch: forget_bias is an initialisation"):
        rnnlab.from_torch(src, forget_bias=1.0)


def test_conversion_warns_about_subclasses_it_leaves():
    """A subclass of a recurrent class (a user's, a parametrized module) is left as it is, converting it would
    lose its own code, with one warning from the caller naming each one left."""
    from torch.nn.utils import parametrizations

    class MyLSTM(nn.LSTM):
        pass

    class MyGRU(rnnlab.GRU):
        pass

    model = nn.Sequential(nn.GRU(3, 4), MyLSTM(4, 4), parametrizations.weight_norm(nn.LSTM(4, 4), "weight_hh_l0"))
    with pytest.warns(UserWarning) as record:
        rnnlab.from_torch(model, backend="torch")
    assert len(record) == 1 and record[0].filename == __file__
    assert str(record[0].message) == (
        "from_torch: left 1 (MyLSTM), 2 (ParametrizedLSTM) as they are: subclasses of the recurrent classes, "
        "which converting would strip of their own code (methods, parametrizations); convert them by hand"
    )
    assert [type(m) for m in model][::2] == [rnnlab.GRU, type(model[2])]
    model = nn.Sequential(rnnlab.GRU(3, 4), MyGRU(4, 4))
    with pytest.warns(UserWarning, match=r"^to_torch: left 1 \(MyGRU\) as they are"):
        rnnlab.to_torch(model)
    assert type(model[0]) is nn.GRU and type(model[1]) is MyGRU
    with pytest.warns(UserWarning) as record:  # a subclass alone: that one warning, not also "holds no LSTM"
        assert type(rnnlab.from_torch(MyLSTM(3, 4))) is MyLSTM
    assert [str(w.message)[:36] for w in record] == ["from_torch: left the module given (M"]


def test_from_torch_refuses_to_drop_layer_norm():
    """layer_norm=False on an rnnlab module with layer norm is a ValueError naming it (its trained gains would
    be lost), not load_state_dict's error about unexpected keys."""
    with pytest.raises(ValueError, match=r"^from_torch: layer_norm=False would drop GRU's trained layer-norm "
                                         r"parameters"):
        rnnlab.from_torch(rnnlab.GRU(4, 8, layer_norm=True), layer_norm=False)
