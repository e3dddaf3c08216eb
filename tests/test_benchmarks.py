"""The benchmark entry point end to end on a tiny preset: files written and the JSON schema (not the
timings)."""

import gc
import json
import os
import subprocess
import sys
import types
import weakref
from pathlib import Path

import pytest
import torch

import rnnlab
from parity import needs_triton

ROOT = Path(__file__).resolve().parents[1]
RECORD_KEYS = {"cell", "backend", "mode", "dtype", "T", "B", "I", "H", "layers", "bidirectional", "packed",
               "median_ms", "us_per_step", "p10_ms", "p90_ms", "peak_mem_bytes", "reps", "first_call_ms",
               "saved_bytes", "weight_copy_bytes", "training", "noisy", "variant"}


def test_tiny_preset_writes_json_and_markdown(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # triton rows: "not run" on a CPU
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--preset", "tiny", "--out", str(tmp_path),
         "--device", "cpu"],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["preset"] == "tiny"
    env = result["environment"]
    assert {"device", "torch", "triton", "settings", "rnnlab", "git_commit", "date"} <= env.keys()
    assert env["allow_tf32_matmul"] is env["allow_tf32_cudnn"] is False and env["cudnn"] is None
    assert env["fused_fp32_products"].startswith("3xTF32")  # the fused kernels' fp32 products are not plain fp32
    assert len(env["loadavg"]) == 3
    records = result["records"]
    assert len(records) == 2 * 2 * 3  # cases x modes x backends
    for rec in records:
        assert rec.keys() >= RECORD_KEYS
        assert rec["backend"] in {"torch", "native", "triton"} and rec["mode"] in {"fwd", "fwd+bwd"}
        if rec["backend"] == "triton":  # fused kernels need CUDA (or the interpreter): recorded as not run
            assert rec["median_ms"] is None and "CUDA" in rec["note"]
        else:
            assert 0 < rec["p10_ms"] <= rec["median_ms"] <= rec["p90_ms"] and rec["first_call_ms"] > 0
            assert (rec["saved_bytes"] or 0) > 0 if rec["mode"] == "fwd+bwd" else rec["saved_bytes"] is None
            assert rec["training"] is (rec["mode"] == "fwd+bwd")  # fwd: eval mode, torch.nn's inference kernel
    assert {r["packed"] for r in records} == {True, False}
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| lstm |") == 2 and table.count("\n| gru |") == 2
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| cell | T | B | I | H | layers | bidirectional | packed | dtype | variant | mode |")
    assert {row.count(" | ") for row in rows} == {rows[0].count(" | ")}  # every row as wide as the header
    assert "torch / native" in table and "not run" in table
    assert "fwd: forward with gradients off, modules in eval mode;" in table
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["gru_fwd.png", "gru_fwd_bwd.png", "lstm_fwd.png",
                                                              "lstm_fwd_bwd.png"]


def _fake_clock(durations_ms):
    """A perf_counter whose first call takes 1 s and whose timed calls take ``durations_ms``."""
    ticks = iter([0.0, 1.0, *(t for d in durations_ms for t in (0.0, d / 1e3))])
    return types.SimpleNamespace(perf_counter=lambda: next(ticks))


def test_measure_takes_interpolated_quantiles_and_flags_a_noisy_case(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run
    from presets import Case, Preset

    monkeypatch.setattr(run, "step", lambda module, x, mode: None)
    monkeypatch.setattr(run, "time", _fake_clock([10.0, 1.0, 3.0, 2.0]))
    rec = run.measure(Case("gru", 5, 2, 3, 4), "torch", "fwd", torch.device("cpu"),
                      Preset(cases=(), backends=(), warmup=1, reps=4))
    # between the sorted runs 1, 2, 3, 10 ms: p10 at 0.3 of the way from 1 to 2, p90 at 0.7 from 3 to 10
    assert rec["median_ms"] == pytest.approx(2.5) and rec["us_per_step"] == pytest.approx(500)
    assert rec["p10_ms"] == pytest.approx(1.3) and rec["p90_ms"] == pytest.approx(7.9)
    assert rec["first_call_ms"] == pytest.approx(1000) and rec["training"] is False and rec["noisy"] is True
    assert "warning: gru T=5 B=2 I=3 H=4 fwd torch is noisy: p90 6.08x p10" in capsys.readouterr().err
    monkeypatch.setattr(run, "time", _fake_clock([1.0, 1.1, 1.2, 1.25]))
    rec = run.measure(Case("gru", 5, 2, 3, 4), "torch", "fwd", torch.device("cpu"),
                      Preset(cases=(), backends=(), warmup=1, reps=4))
    assert rec["noisy"] is False and "warning" not in capsys.readouterr().err


def test_each_compiled_record_starts_dynamo_afresh(monkeypatch):
    """Every record compiles the layers' one forward again (other sizes, grad mode): without a reset per record,
    Dynamo's recompile limit (8) left the later "compile" records running eagerly under that label."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run
    from presets import Case

    calls = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: calls.append("reset"))
    monkeypatch.setattr(torch, "compile", lambda module: calls.append("compile") or module)
    for H in (4, 8):
        run.build(Case("gru", 5, 2, 3, H), "compile", torch.device("cpu"), "fwd")
    assert calls == ["reset", "compile"] * 2


@needs_triton
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="runs the fused kernels interpreted")
@pytest.mark.parametrize(("variant", "regime"), [("", "vector regime"), ("layer_norm", "persistent regime")])
def test_the_note_names_the_regime_that_ran(monkeypatch, variant, regime):
    """The triton note comes from the launches the kernels made: a forward with layer norm runs the persistent
    regime, where plan() asked again outside the layer (no norm) said vector."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run
    from presets import Case

    rec = run.time_case(Case("lstm", 3, 2, 3, 8, variant=variant), "triton", "fwd", torch.device("cpu"), 1, 2)
    assert rec["note"] == regime


@pytest.mark.parametrize(("cell", "variant", "mode", "path"), [
    ("lstm", "", "fwd+bwd", "native"),  # oneDNN's fused LSTM
    ("gru", "", "fwd", "native"),  # inference
    ("gru", "", "fwd+bwd", "torch"),  # ATen's GRU trains step by step through autograd
    ("lstm", "zoneout", "fwd+bwd", "torch"),  # the hand-written recurrence with the option
    ("lstm", "weight_dropout", "fwd+bwd", "torch"),  # the dropped weights, which torch.nn's kernel cannot take
])
def test_auto_rows_say_which_path_ran(monkeypatch, cell, variant, mode, path):
    """An auto record's note names the path its layer call took on the CPU, as resolve_backend documents it."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run
    from presets import Case

    rec = run.time_case(Case(cell, 3, 2, 3, 8, variant=variant), "auto", mode, torch.device("cpu"), 1, 2)
    assert rec["note"] == f"ran {path}"


def test_recorded_paths_name_each_layer_call_and_stop_with_the_block():
    """Inference on the CPU: "auto" runs the native kernel; under torch.func.grad "auto" runs it too and "torch" the
    step-by-step recurrence; calls after the block are not recorded."""
    from rnnlab.layers import recorded_paths

    torch.manual_seed(0)
    layers = [rnnlab.GRU(3, 4, backend=backend) for backend in ("auto", "torch", "native")]
    x = torch.randn(5, 2, 3)
    with recorded_paths() as paths:
        with torch.no_grad():
            for layer in layers:
                layer(x)
        for layer in layers[:2]:
            torch.func.grad(lambda inp, layer=layer: layer(inp)[0].sum())(x)
    layers[0](x)
    assert paths == ["native", "torch", "native", "native", "stepwise"]


def test_the_table_says_in_which_mode_the_forwards_ran(monkeypatch, tmp_path):
    """The header names the fwd rows' module mode from the records: eval mode where they say so, training mode
    for records from before run.py kept the field (then its forwards ran in training mode)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import report

    env = {"device": "cpu", "date": "today", "torch": "2", "rnnlab": "0", "git_commit": None}
    case = {"cell": "gru", "T": 5, "B": 2, "I": 3, "H": 4, "layers": 1, "bidirectional": False, "packed": False,
            "dtype": "fp32", "backend": "native", "mode": "fwd", "median_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0,
            "reps": 3}
    for training, said in ((False, "modules in eval mode"), (None, "modules in training mode")):
        record = {**case, **({} if training is None else {"training": training})}
        report.write_markdown({"preset": "p", "environment": env, "records": [record]}, tmp_path / "t.md")
        assert f"fwd: forward with gradients off, {said};" in (tmp_path / "t.md").read_text()


def test_cuda_peak_memory_counts_from_before_the_timed_runs(monkeypatch):
    """time_case's CUDA path with a fake allocator: the peak is reset after the warm-up, and reported over the
    memory allocated then (not the process's peak since it began)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run
    from presets import Case

    log = []

    class Event:
        def __init__(self, enable_timing):
            pass

        def record(self):
            pass

        def elapsed_time(self, end):
            return 1.0

    monkeypatch.setattr(run, "build", lambda case, backend, device, mode: (torch.nn.Linear(1, 1), torch.zeros(1)))
    monkeypatch.setattr(run, "step", lambda module, x, mode: log.append("step"))
    for name, fn in {"Event": Event, "synchronize": lambda: None, "memory_allocated": lambda: 1000,
                     "reset_peak_memory_stats": lambda: log.append("reset"),
                     "max_memory_allocated": lambda: 1800}.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    rec = run.time_case(Case("gru", 5, 2, 3, 4), "torch", "fwd", torch.device("cuda"), warmup=2, reps=3)
    assert log == ["step", "step", "reset", "step", "step", "step"]
    assert rec["peak_mem_bytes"] == 800 and rec["median_ms"] == 1.0


def test_saved_memory_frees_the_graph(monkeypatch):
    """saved_memory's forward leaves nothing behind: its graph (which holds the input) is freed without the
    garbage collector, and a second measurement counts the same bytes."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from presets import Case
    from run import build, saved_memory

    module, x = build(Case("lstm", 5, 2, 3, 4), "torch", torch.device("cpu"), "fwd+bwd")
    first = saved_memory(module, x)
    assert first["saved_bytes"] > 0 and first["weight_copy_bytes"] == 0
    assert saved_memory(module, x) == first
    ref = weakref.ref(x)
    gc.disable()
    try:
        saved_memory(module, x)
        del x
        assert ref() is None
    finally:
        gc.enable()


def test_saved_copy_of_the_weights_is_counted_apart(monkeypatch):
    """A saved tensor of the parameters' total bytes in a storage of its own (cuDNN's copy of bf16 weights) is
    weight_copy_bytes, not activation memory; the parameters themselves are neither."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from run import saved_memory

    class Copying(torch.nn.Linear):
        def forward(self, x):  # x * flat saves both; the linear layer saves a view of x and the weight
            flat = torch.cat([p.reshape(-1) for p in self.parameters()])  # 3 * 2 + 3 floats: 36 bytes
            return x * flat, super().forward(x[:, :2])

    x = torch.randn(2, 9, requires_grad=True)  # 72 bytes
    assert saved_memory(Copying(2, 3), x) == {"saved_bytes": 72, "weight_copy_bytes": 36}


def test_spent_budget_records_every_measurement_as_not_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--preset", "tiny", "--out", str(tmp_path),
         "--device", "cpu", "--budget-s", "0"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert len(records) == 2 * 2 * 3
    assert all(r["median_ms"] is None and r["note"] == "not run: the 0 s budget was spent" for r in records)
    assert "budget was spent" in (tmp_path / "results.md").read_text()


def test_training_throughput_writes_json_markdown_and_a_plot(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--out", str(tmp_path), "--batches", "2",
         "--warmup", "1", "--backends", "torch", "native", "--experiments", "lm_stdlib_char_gru"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads((tmp_path / "throughput.json").read_text())["records"]
    assert [r["backend"] for r in records] == ["torch", "native"]
    assert all(r["tokens_per_s"] > 0 and r["samples_per_s"] > 0 for r in records)
    assert "| lm_stdlib_char_gru | torch |" in (tmp_path / "throughput.md").read_text()
    assert (tmp_path / "throughput.png").stat().st_size > 0


def test_cudnn_algorithm_follows_pytorchs_heuristics(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from cudnn_algo import algorithm, describe
    from presets import Case

    h100 = ((9, 0), 132)
    assert algorithm(Case("lstm", 1024, 16, 128, 128, dtype="bf16"), True, *h100) == "persist_static_small_h"
    assert algorithm(Case("lstm", 1024, 16, 192, 192, dtype="bf16"), False, *h100) == "standard"  # bwd: H <= 128
    assert algorithm(Case("lstm", 1024, 64, 256, 256, dtype="fp16"), True, *h100) == "persist_static"
    assert algorithm(Case("gru", 1024, 64, 256, 256, dtype="fp16"), True, *h100) == "standard"
    assert algorithm(Case("lstm", 1024, 64, 256, 256, dtype="bf16"), True, *h100) == "standard"  # fp16 only
    assert algorithm(Case("lstm", 1024, 64, 64, 64, packed=True), True, *h100) == "standard"
    assert describe(Case("rnn_tanh", 100, 8, 64, 300), "fwd+bwd", *h100) == (
        "cuDNN fwd: persist_static_small_h, bwd: standard")


@needs_triton
def test_activation_memory_writes_json_markdown_and_a_plot(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1"}  # the fused kernels run under the interpreter on a CPU
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--preset", "tiny", "--out", str(tmp_path),
         "--device", "cpu"],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "memory.json").read_text())["records"]
    assert len(records) == 2 * 3  # cases x backends
    sizes = {(r["cell"], r["backend"]): r["saved_bytes"] for r in records}
    assert all(size > 0 for size in sizes.values())
    # the fused LSTM keeps x, h0, c0, the gates (4H), c and y: T*B*(I + 6H) + 2*B*H floats
    assert sizes["lstm", "triton"] == 4 * (5 * 2 * (3 + 6 * 4) + 2 * 2 * 4)
    assert "| lstm | 5 | 2 | 3 | 4 |" in (tmp_path / "memory.md").read_text()
    assert (tmp_path / "memory.png").stat().st_size > 0


def test_activation_memory_table_columns_match_their_header(monkeypatch, tmp_path):
    """memory.md: one header cell per row cell (the case's fields with its variant, MiB and ratio per backend, the
    weight copy), whatever the case."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from memory import write_markdown
    from presets import Case

    env = {"device": "cpu", "date": "2026-01-01", "torch": "2", "git_commit": "abc"}
    records = [{**Case("lstm", 5, 2, 3, 4, dtype="bf16", variant="masks").record(), "backend": b, "saved_bytes": 2**20,
                "weight_copy_bytes": 2**19 if b == "native" else 0} for b in ("native", "torch", "triton")]
    write_markdown({"preset": "tiny", "environment": env, "records": records}, tmp_path / "memory.md")
    header, rule, row = [line for line in (tmp_path / "memory.md").read_text().splitlines() if line.startswith("|")]
    assert header.count("|") == rule.count("|") == row.count("|")
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert cells["variant"] == "masks" and cells["dtype"] == "bf16" and cells["torch / native"] == "1.00x"
    assert cells["weight copy"] == "native: 0.50"


def test_plot_lines_keep_the_variants_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from plot import panel_lines
    from presets import Case

    recs = [{**Case("lstm", 20, 16, 64, H, variant=v).record(), "backend": "torch", "us_per_step": 1.0}
            for v in ("", "layer_norm") for H in (64, 128)]
    assert panel_lines(recs) == {"torch plain": [(64, 1.0), (128, 1.0)], "torch layer_norm": [(64, 1.0), (128, 1.0)]}


@needs_triton
def test_tuning_times_each_choice_and_compares_it_with_the_current_one(tmp_path):
    """benchmarks/tune.py end to end under the interpreter at a tiny size (its timings need a GPU)."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tune.py"), "--out", str(tmp_path), "--device", "cpu",
         "--sizes", "gru:20", "--batches", "2", "--seq-len", "1", "--budget-s", "5"],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    regimes = [r for r in records if r["group"] == "regime"]
    warps = [r for r in records if r["group"] == "warps"]
    tiled = [r for r in records if r["group"] == "tiled"]
    batch = [r for r in records if r["group"] == "batch"]
    assert [r["choice"] for r in batch] == [{"rows": 16}, {"rows": 32}] * 2  # fwd, then fwd+bwd
    # the inference forward's regime: the vector one against the persistent one (the resident one would need
    # two programs at a grid barrier, which the CPU cannot run)
    assert [r["choice"] for r in regimes] == [{"regime": "vector"}, {"regime": "persistent"}]
    assert regimes[0]["median_ms"] > 0 and {r["mode"] for r in regimes} == {"fwd"}
    # the vector regime (H = 20: BLOCK_H 32, 4 warps) against 8 and 16 warps, forward only
    assert [r["choice"] for r in warps] == [{"warps": 4}, {"warps": 8}, {"warps": 16}]
    assert {r["mode"] for r in warps} == {"fwd"}
    assert len(tiled) == 2 * 7  # modes x tilings (the current one and six candidates)
    assert tiled[0]["choice"] == {"BLOCK_H": 32, "BLOCK_K": 64, "stages": 1, "warps": 8}  # the dispatcher's (bf16)
    assert len({tuple(r["choice"].values()) for r in tiled}) == 7
    assert all(r["median_ms"] is not None or "budget was spent" in r["note"] for r in records)
    table = (tmp_path / "results.md").read_text()
    assert "| regime | gru | 20 | 2 | fwd | regime=vector |" in table and "1.00x" in table
    assert "| warps | gru | 20 | 2 | fwd | warps=4 |" in table
    assert "| tiled | gru | 20 | 2 | fwd | BLOCK_H=32 BLOCK_K=64 stages=1 warps=8 |" in table
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tune.py"), "--out", str(tmp_path),
                          "--device", "cpu", "--sizes", "gru"], capture_output=True, text=True, timeout=120,
                         check=False, env=env)
    assert bad.returncode == 2 and "cell:hidden_size pairs" in bad.stderr


def test_latency_says_it_needs_cuda(tmp_path):
    """benchmarks/latency.py times CUDA events, graphs and kernels: without a device it says so, writing
    nothing."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--out", str(tmp_path / "lat")],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**env, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and "needs a CUDA device" in proc.stderr
    assert not (tmp_path / "lat").exists()


def test_latency_ranks_where_the_cpu_queues_a_call(monkeypatch):
    """latency.cpu_top: the functions with the most time of their own in a call, from cProfile over the calls
    (synchronised between them, outside the profile), named by file from the package folder on."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import time

    from latency import cpu_top

    import rnnlab

    gru, x, synced = rnnlab.GRU(4, 4, backend="torch"), torch.zeros(3, 2, 4), []

    def call():
        time.sleep(0.002)
        gru(x)

    gru(x)  # the first call imports modules (marshal.loads then tops the list where no other test ran one before)
    top = cpu_top(call, reps=3, sync=lambda: synced.append(1), top=4)
    assert len(synced) == 3 and len(top) == 4
    assert top[0]["function"] == "<built-in method time.sleep>" and top[0]["self_us"] >= 2000
    assert all(t["self_us"] <= t["total_us"] for t in top)
    assert [t["self_us"] for t in top] == sorted((t["self_us"] for t in top), reverse=True)
    assert any(t["function"].startswith("rnnlab/layers.py:") for t in cpu_top(call, 3, lambda: None, top=100))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_latency_splits_a_forward_into_call_graph_kernel_and_queue(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--out", str(tmp_path), "--cells", "gru",
         "--hidden", "64", "128", "--batch", "16", "--seq-len", "64", "--reps", "3"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    persistent, resident = json.loads((tmp_path / "latency.json").read_text())["records"]
    assert persistent["note"] == "persistent regime" and "exchange_ms" not in persistent
    assert resident["note"].startswith("resident regime")
    for rec, columns in ((persistent, ("call", "graph", "kernel", "queue")),
                         (resident, ("call", "graph", "kernel", "queue", "exchange"))):
        for column in columns:
            assert rec[f"{column}_ms"] > 0
            assert rec[f"{column}_us_per_step"] == pytest.approx(rec[f"{column}_ms"] * 1e3 / 64)
        assert rec["cpu_top"] and rec["cpu_top"][0]["self_us"] > 0
    markdown = (tmp_path / "latency.md").read_text()
    assert "| gru | 64 | 16 | 64 | 64 | bf16 |" in markdown and "- gru H=128 B=16: `" in markdown


@needs_triton
def test_exchange_floor_kernel_compiles_with_the_grid_barrier():
    """benchmarks/step_floor.py's kernel runs only on a GPU (its programs wait on each other); here it
    cross-compiles for sm_90 with the fused kernels' grid barrier (an acquiring load of the arrival counter)."""
    code = (
        "import triton\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from triton.compiler import ASTSource\n"
        "from step_floor import _exchange_kernel\n"
        "sig = {'HQ': '*bf16', 'COUNT': '*i32', 'T': 'i32', 'B': 'i32', 'H': 'i32', 'BLOCK_B': 'constexpr',\n"
        "       'BLOCK_H': 'constexpr', 'K_RES': 'constexpr'}\n"
        "src = ASTSource(fn=_exchange_kernel, signature=sig, constexprs={'BLOCK_B': 16, 'BLOCK_H': 16, 'K_RES': 256})\n"
        "print(triton.compile(src, target=GPUTarget('cuda', 90, 32), options={'num_warps': 8}).asm['ptx'])\n"
    )
    assert "ld.global.gpu.acquire" in _compiled_output(code)


def _compiled_output(code: str) -> str:
    """What ``code`` prints, run in benchmarks/ without the interpreter (interpreted kernels do not compile)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "benchmarks", capture_output=True, text=True,
                          timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@needs_triton
def test_vector_exchange_floor_kernel_compiles_with_either_exchange():
    """step_floor.py's floor for the split vector regime cross-compiles for sm_90 with the grid barrier (an
    acquiring load of the arrival counter) and with the flagged exchange (volatile loads of the tagged words)."""
    code = (
        "import triton\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from triton.compiler import ASTSource\n"
        "from step_floor import _vector_exchange_kernel\n"
        "for flagged in (False, True):\n"
        "    sig = {'HQ': '*i64' if flagged else '*bf16', 'COUNT': '*i32', 'LEN': '*i32', 'W': '*bf16', 'B': 'i32',\n"
        "           'H': 'i32', 'BLOCK_H': 'constexpr', 'BLOCK_U': 'constexpr', 'FLAGGED': 'constexpr'}\n"
        "    src = ASTSource(fn=_vector_exchange_kernel, signature=sig,\n"
        "                    constexprs={'BLOCK_H': 256, 'BLOCK_U': 16, 'FLAGGED': flagged})\n"
        "    ptx = triton.compile(src, target=GPUTarget('cuda', 90, 32), options={'num_warps': 16}).asm['ptx']\n"
        "    print(flagged, 'ld.global.gpu.acquire' in ptx, 'ld.volatile.global' in ptx)\n"
    )
    assert _compiled_output(code).split("\n")[:2] == ["False True False", "True False True"]


@needs_triton
def test_held_exchange_floor_kernel_compiles_with_each_exchange():
    """held_floor.py's floor for the split held regime (Gluon) cross-compiles for sm_90 with each exchange: the grid
    barrier's acquiring load, the flagged words' volatile loads, the cluster's st.shared::cluster and st.async (its
    numbers under the interpreter: tests/test_held_regime.py)."""
    pytest.importorskip("triton.experimental.gluon.language.nvidia.ampere", reason="the held kernels are Gluon's")
    code = (
        "import triton\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from triton.experimental.gluon._runtime import GluonASTSource\n"
        "from held_floor import _held_exchange_kernel\n"
        "for flagged, cluster in ((False, 0), (True, 0), (False, 1), (False, 2)):\n"
        "    sig = {'H0': '*fp32', 'LEN': '*i32', 'Y': '*bf16', 'HQ': '*i64' if flagged else '*bf16',\n"
        "           'COUNT': '*i32', 'B': 'i32', 'H': 'i32', 'BLOCK_U': 'constexpr', 'BLOCK_K': 'constexpr',\n"
        "           'GRID_SYNC': 'constexpr', 'FLAGGED': 'constexpr', 'CLUSTER': 'constexpr'}\n"
        "    src = GluonASTSource(fn=_held_exchange_kernel, signature=sig, constexprs={\n"
        "        'BLOCK_U': 32, 'BLOCK_K': 256, 'GRID_SYNC': True, 'FLAGGED': flagged, 'CLUSTER': cluster})\n"
        "    ptx = triton.compile(src, target=GPUTarget('cuda', 90, 32), options={'num_warps': 8}).asm['ptx']\n"
        "    print(*(int(op in ptx) for op in ('ld.global.gpu.acquire', 'ld.volatile.global', 'st.shared::cluster',\n"
        "                                      'st.async')))\n"
    )
    assert _compiled_output(code).split("\n")[:4] == ["1 0 0 0", "0 1 0 0", "0 0 1 0", "0 0 0 1"]


@needs_triton
@pytest.mark.parametrize("flagged", [False, True], ids=["barrier", "flagged"])
def test_vector_exchange_floor_under_the_interpreter(flagged, monkeypatch):
    """The floor kernel with one program a row holding every unit (the interpreter runs one program at a time):
    each step writes the maximum of the h it read, so after T steps slot T % 2 holds each row's largest h_0
    value in every unit (tagged T where flagged)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from step_floor import _vector_exchange_kernel

    from rnnlab.kernels.common import flagged_ping_pong, ping_pong

    B, H, T = 3, 20, 5
    h0 = torch.randn(B, H, generator=torch.Generator().manual_seed(0))
    hq = flagged_ping_pong(h0) if flagged else ping_pong(h0, torch.float32)
    counters = None if flagged else torch.zeros(B, dtype=torch.int32)
    lengths = torch.full((B,), T, dtype=torch.int32)
    _vector_exchange_kernel[(B, 1)](hq, counters, lengths, h0, B, H, BLOCK_H=32, BLOCK_U=32, FLAGGED=flagged)
    final = hq[T % 2]
    if flagged:
        assert (final >> 32).eq(T).all()
        final = final.to(torch.int32).view(torch.float32)
    assert torch.equal(final, h0.max(dim=1, keepdim=True).values.expand(B, H))
