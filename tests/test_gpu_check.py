"""scripts/gpu_check.sh, the one command a lent GPU machine runs, end to end on the CPU with the tiny
preset: the tests it names collect (and skip without CUDA), every step keeps to the budget, and the
results come back packed in one file beside the log; likewise gpu_recheck.sh, gpu_profile.sh and gpu_train.sh."""

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from train_helpers import SHARED

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 90


def test_gpu_check_keeps_to_its_budget_and_packs_the_results(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # triton rows: "not run" on a CPU
    env.update(OUT=str(tmp_path), PYTHON=sys.executable, PRESET="tiny")
    # a budget of 90 s: a fresh clone's first run (CI) took 11 s for the GPU tests' collection and 11 s for the
    # benchmark, which left a budget of 60 s too little for the memory step (each step needs 20 s left)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(BUDGET)], capture_output=True,
                          text=True, timeout=240, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.log", "gpu_check.tar.gz"]
    log = (tmp_path / "gpu_check.log").read_text()
    for step in ("gpu tests", "benchmark tiny", "activation memory"):
        assert f"=== {step}: exit 0" in log, log[-3000:]
    assert "=== forward latency: skipped, no CUDA device" in log
    spent = re.search(r"done in (\d+)s", log)
    assert spent and int(spent.group(1)) <= BUDGET + 5, log[-1000:]  # the budget, and packing the results
    with tarfile.open(tmp_path / "gpu_check.tar.gz") as tar:
        names = set(tar.getnames())
        results = json.load(tar.extractfile("gpu-cpu/results.json"))
    assert {"gpu-cpu/gpu_check.log", "gpu-cpu/results.md", "gpu-cpu/memory.json"} <= names
    assert results["preset"] == "tiny" and len(results["records"]) == 2 * 2 * 3
    assert all(r["median_ms"] is not None for r in results["records"] if r["backend"] != "triton")


def test_gpu_profile_says_what_it_needs_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a machine with a GPU profiles instead")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_profile.sh"), "30"], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert proc.returncode == 1 and "needs a CUDA device and ncu (Nsight Compute); found device 'cpu'" in proc.stdout


@pytest.mark.slow  # about 2 minutes on 2 cores: the selected tests that run on the CPU run interpreted
def test_gpu_recheck_runs_the_split_held_tests_first_and_packs_the_results(tmp_path):
    """scripts/gpu_recheck.sh, the short check that decides dispatch.AUTO_HELD_H: its tests select the split held
    regime's (one line each, before the latency runs that a hung kernel could cut short) and its results come back
    in two files, where the device tool returns eight at most."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(OUT=str(tmp_path), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_recheck.sh")], capture_output=True, text=True,
                          timeout=600, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_recheck.log", "gpu_recheck.tar.gz"]
    log = (tmp_path / "gpu_recheck.log").read_text()
    split_held = set(re.findall(r"test_split_held_regime_matches_cudnn\[[^\]]+\]", log))
    assert len(split_held) == 16, sorted(split_held)  # lstm and gru, four exchanges, B = 1 and 11
    assert " failed" not in log and log.index("split_held_regime") < log.index("latency.py")
    with tarfile.open(tmp_path / "gpu_recheck.tar.gz") as tar:
        assert "recheck/gpu_recheck.log" in tar.getnames()


@pytest.mark.slow  # about 2 minutes on 2 cores: seven runs of one batch each
def test_gpu_train_runs_every_experiment_and_packs_the_results(tmp_path):
    """scripts/gpu_train.sh on the CPU (trainer=cpu, one batch a run): the overrides it gives rnnlab-train, the
    data sets found through RNNLAB_DATA_DIR, and the results packed without checkpoints."""
    if torch.cuda.is_available():
        pytest.skip("a machine with a GPU trains there instead")
    if not SHARED.is_dir():
        pytest.skip(f"the real data sets are not on this machine ({SHARED})")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(OUT=str(tmp_path), PYTHON=sys.executable, EXTRA="debug=fast_dev_run", RNNLAB_DATA_DIR=str(SHARED))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh"), "600"], capture_output=True, text=True,
                          timeout=700, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_train.log", "gpu_train.tar.gz"]
    log = (tmp_path / "gpu_train.log").read_text()
    runs = ["main", "bf16-torch", "sentiment_sst2", "forecast_etth1", "forecast_airline", "lm_shakespeare_char"]
    for step in [f"train {run}" for run in runs] + ["generate"]:
        assert f"=== {step}: exit 0" in log, log[-3000:]
    assert "=== train fsdp: skipped, Lightning's FSDP strategy needs a GPU" in log
    with tarfile.open(tmp_path / "gpu_train.tar.gz") as tar:
        names = tar.getnames()
    assert "train/gpu_train.log" in names and not [n for n in names if n.endswith(".ckpt")]
    assert {f"train/{run}" for run in runs} <= set(names)
