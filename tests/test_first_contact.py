"""First contact: defaults that fit the machine, output a log file can follow, Ctrl-C, strict JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import criteria_builtins.backends as backends
import pytest
from builtin_plugins import make
from conftest import HANG_GUARD_SECONDS
from criteria import Bf16Support, CriteriaWarning, Precision


@pytest.fixture
def restore_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_auto_picks_fp32_on_a_cpu_without_native_bf16(monkeypatch, restore_threads):
    monkeypatch.setattr(backends, "cpu_bf16_support", lambda: Bf16Support(False, "this CPU has no native bf16"))
    runtime = make("backend", "cpu").build()
    assert runtime.precision is Precision.FP32
    assert runtime.describe().endswith("fp32: this CPU has no native bf16")
    assert runtime.describe().startswith("cpu, ") and " thread" in runtime.describe()


def test_auto_picks_bf16_where_the_cpu_computes_it(monkeypatch, restore_threads):
    monkeypatch.setattr(backends, "cpu_bf16_support", lambda: Bf16Support(True, "native on this CPU (AMX)"))
    runtime = make("backend", "cpu").build()
    assert runtime.precision is Precision.BF16 and "native on this CPU (AMX)" in runtime.describe()


def test_explicit_bf16_on_an_emulating_cpu_runs_but_warns_once(monkeypatch, restore_threads):
    monkeypatch.setattr(backends, "cpu_bf16_support", lambda: Bf16Support(False, "this CPU has no native bf16"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):  # three trials build the backend three times
            runtime = make("backend", "cpu", precision="bf16").build()
    assert runtime.precision is Precision.BF16
    said = [w for w in caught if issubclass(w.category, CriteriaWarning)]
    assert len(said) == 1 and "16x to 24x slower than fp32" in str(said[0].message)


def test_the_specs_shipped_leave_precision_to_the_machine():
    root = Path(__file__).parent.parent
    for path in (root / "specs").glob("*.toml"):
        text = path.read_text()
        assert 'precision = "bf16"' not in text and 'precision = "fp32"' not in text, path


def _study_spec(folder: Path, model: Path) -> Path:
    spec = folder / "long.toml"
    spec.write_text(f"""
[study]
name = "long"
trials = 60
[data]
max_length = 64
[model]
name = "{model}"
[train]
epochs = 3
batch_size = 64
eval_batch_size = 256
patience = 0
[sampler]
use = "random"
[pruner]
use = "none"
[optimizer]
use = "adamw"
[peft]
use = "none"
""")
    return spec


def _wait_for(predicate, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + HANG_GUARD_SECONDS  # a hang guard, not a speed check
    while not predicate():
        assert process.poll() is None, "the run ended before it was expected to"
        assert time.monotonic() < deadline, "the run looks hung"
        time.sleep(0.5)


def test_a_log_file_gets_a_line_per_epoch_while_it_runs_and_ctrl_c_exits_130(workdir, tiny_bert):
    spec = _study_spec(workdir, tiny_bert)
    log, errors = workdir / "run.log", workdir / "run.err"
    with open(log, "w") as out, open(errors, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "criteria.cli", "run", str(spec), "--no-track"],
                                   stdout=out, stderr=err, cwd=workdir, env={**os.environ, "COLUMNS": "200"})
        try:
            # Read while the run goes on: lines are flushed as they happen, not when it ends.
            _wait_for(lambda: "trial 0 epoch 2:" in log.read_text(), process)
            lines = log.read_text().splitlines()
            assert "\x1b" not in log.read_text()  # no control codes in a file
            study_line = next(line for line in lines if " study long: " in line)
            assert "0 of 60 trials done" in study_line and "cpu, " in study_line
            epoch = next(line for line in lines if "trial 0 epoch 1:" in line)
            assert "val macro_f1 " in epoch and "samples/s" in epoch and epoch[2] == ":"  # HH:MM:SS first
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=HANG_GUARD_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
    stderr = errors.read_text()
    assert code == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "interrupted; run the same command to resume" in stderr


def test_metrics_files_are_strict_json(tmp_path):
    from criteria.files import write_json

    path = write_json(tmp_path / "m.json", {"auc": float("nan"), "f1": 0.5, "inf": float("inf"), "ok": [1, 2]})

    def refuse(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {"auc": None, "f1": 0.5, "inf": None, "ok": [1, 2]}
