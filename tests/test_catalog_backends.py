"""The hardware backends: each builds a Runtime that really trains the tiny BERT on its device.

A backend that cannot run here (no CUDA GPU, not an Apple-silicon Mac) is skipped with its own
availability reason, so the same file checks the GPU paths on a machine that has one.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest
import torch
from builtin_plugins import BUILTINS as REGISTRY
from builtin_plugins import make as make_plugin

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

AUTOCAST_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def make(name: str, **config: Any):
    """A backend plugin instance (skipped with its reason when it cannot run here)."""
    return make_plugin("backend", name, **config)


@pytest.fixture(autouse=True)
def _keep_torch_settings():
    """Backends set process-wide torch state (threads, matmul precision): restore it."""
    threads, matmul = torch.get_num_threads(), torch.get_float32_matmul_precision()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(matmul)


class FirstToken(torch.nn.Module):
    """A linear head on the first token (the head plugins have their own tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(32, 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden[:, 0])


def _classifier(model_dir: Any, runtime: Any) -> Any:
    """The model the engine trains (encoder + head), loaded and prepared as the engine does."""
    from criteria.engine.model import CriterionClassifier, load_encoder

    encoder = load_encoder(str(model_dir), hidden_dropout=0.0, attention_dropout=0.0, **runtime.model_kwargs())
    torch.manual_seed(0)  # the same head every time, so runs can be compared
    return runtime.prepare(CriterionClassifier(encoder, FirstToken())).train()  # as each epoch starts


def _batch(device: str) -> tuple[Any, Any, Any]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 1000, (4, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2:, 9:] = 0  # padding, so attention masking is exercised
    labels = torch.tensor([0, 1, 0, 1])
    return input_ids.to(device), attention_mask.to(device), labels.to(device)


def _train(runtime: Any, model: Any, steps: int = 3) -> tuple[list[float], Any]:
    """AdamW steps on one batch, the way the engine steps (autocast, grad scaler for fp16).
    Returns the losses and the last logits."""
    input_ids, mask, labels = _batch(runtime.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = runtime.grad_scaler()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        with runtime.autocast():
            logits = model(input_ids, mask)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
    return losses, logits


def _check_trains(runtime: Any, model: Any, steps: int = 3) -> Any:
    if runtime.grad_scaler() is not None:
        steps += 3  # the scaler may skip its first steps while it finds a scale without overflow
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses, logits = _train(runtime, model, steps)
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], losses  # the same batch, fitted a little
    assert logits.dtype == getattr(torch, AUTOCAST_DTYPE[runtime.precision])
    # every parameter on the loss's path (not BERT's unused pooler) was updated, in fp32
    updated = {name for name, p in model.named_parameters() if p.grad is not None}
    assert any("linear" in n for n in updated) and any("attention" in n for n in updated), sorted(updated)
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32  # autocast keeps fp32 master weights
        if name in updated:
            assert torch.isfinite(p.grad).all() and not torch.equal(before[name], p.detach()), name
    return logits


@pytest.mark.parametrize("name", ["cpu", "cuda", "mps"])
def test_backend_trains_tiny_bert_under_its_default_precision(name, tiny_bert):
    from criteria.engine.runtime import Runtime

    runtime = make(name).build()
    assert isinstance(runtime, Runtime) and runtime.device_type == name
    model = _classifier(tiny_bert, runtime)
    assert next(model.parameters()).device.type == name
    _check_trains(runtime, model)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_trains_in_fp32_and_bf16(precision, tiny_bert):
    runtime = make("cpu", precision=precision).build()
    assert (runtime.device, runtime.precision, runtime.compile_mode) == ("cpu", precision, None)
    assert runtime.grad_scaler() is None
    _check_trains(runtime, _classifier(tiny_bert, runtime))


def test_cpu_rejects_fp16_with_the_reason():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="about 20x slower than fp32"):
        REGISTRY.get("backend", "cpu").cls.Config(precision="fp16")


def test_cpu_sdpa_and_eager_attention_compute_the_same_thing(tiny_bert):
    outputs = {}
    for attention in ("sdpa", "eager"):
        runtime = make("cpu", attention=attention).build()
        assert runtime.model_kwargs() == {"attn_implementation": attention}
        model = _classifier(tiny_bert, runtime).eval()
        assert model.encoder.config._attn_implementation == attention
        input_ids, mask, _ = _batch("cpu")
        with torch.no_grad():
            outputs[attention] = model.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        _check_trains(runtime, model.train(), steps=2)
    # padded positions may differ (nothing reads them); every real token must agree
    real = mask.bool()
    torch.testing.assert_close(outputs["sdpa"][real], outputs["eager"][real], atol=1e-5, rtol=1e-4)


def test_auto_attention_loads_models_without_sdpa(tiny_deberta):
    # DeBERTa-v2 has no SDPA implementation: "auto" must leave the choice to transformers.
    runtime = make("cpu").build()
    assert runtime.attention is None and runtime.model_kwargs() == {}
    model = _classifier(tiny_deberta, runtime)
    assert model.encoder.config._attn_implementation == "eager"
    _check_trains(runtime, model, steps=2)


def test_cpu_gradient_checkpointing_gives_the_same_gradients(tiny_bert):
    grads = {}
    for checkpointing in (False, True):
        runtime = make("cpu", gradient_checkpointing=checkpointing).build()
        assert runtime.gradient_checkpointing is checkpointing
        model = _classifier(tiny_bert, runtime)
        input_ids, mask, labels = _batch("cpu")
        torch.nn.functional.cross_entropy(model(input_ids, mask), labels).backward()
        grads[checkpointing] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys()
    for name, grad in grads[True].items():
        torch.testing.assert_close(grad, grads[False][name], msg=name)
    _check_trains(runtime, model)


def test_cpu_gradient_checkpointing_recomputes_the_encoder_in_backward(tiny_bert):
    runtime = make("cpu", gradient_checkpointing=True).build()
    model = _classifier(tiny_bert, runtime)
    # a module inside the layer: transformers checkpoints the layer's forward, keeping the layer's
    # own hooks outside the recomputation
    calls = [0]
    model.encoder.encoder.layer[0].intermediate.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    input_ids, mask, labels = _batch("cpu")
    loss = torch.nn.functional.cross_entropy(model(input_ids, mask), labels)
    assert calls[0] == 1
    loss.backward()
    assert calls[0] == 2  # the checkpointed layer ran again during backward


@pytest.mark.slow  # inductor compiles C++ kernels: about 15 s with a warm cache, minutes cold on 2 cores
def test_cpu_compile_trains_a_compiled_model(tiny_bert):
    runtime = make("cpu", compile=True, compile_mode="default").build()
    assert runtime.compile_mode == "default"
    model = _classifier(tiny_bert, runtime)
    assert isinstance(model, torch._dynamo.eval_frame.OptimizedModule)
    _check_trains(runtime, model, steps=2)


def test_cpu_compile_off_leaves_the_model_eager(tiny_bert):
    runtime = make("cpu", compile_mode="max-autotune").build()  # a mode alone compiles nothing
    assert runtime.compile_mode is None
    assert type(_classifier(tiny_bert, runtime)).__name__ == "CriterionClassifier"


# --- CUDA ----------------------------------------------------------------------------------


def test_flash_attention_2_without_flash_attn_is_rejected_with_the_reason():
    import importlib.util

    from pydantic import ValidationError

    config = REGISTRY.get("backend", "cuda").cls.Config
    if importlib.util.find_spec("flash_attn") is not None:
        assert config(attention="flash_attention_2", precision="bf16").attention == "flash_attention_2"
        with pytest.raises(ValidationError, match="bf16 or fp16"):
            config(attention="flash_attention_2", precision="fp32")
        return
    with pytest.raises(ValidationError, match="needs the flash-attn package.*pip install flash-attn"):
        config(attention="flash_attention_2")


def test_cuda_availability_is_what_the_driver_and_torch_build_say():
    from criteria import hardware

    availability = REGISTRY.get("backend", "cuda").availability()
    if not hardware.cuda_devices():
        assert not availability and "CUDA" in availability.reason
    elif hardware.torch_build()["cuda"] is None:
        assert not availability and "torch build" in availability.reason
    else:
        assert availability


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_cuda_trains_in_each_precision(precision, tiny_bert):
    from criteria import hardware

    plugin = make("cuda", precision=precision)
    if precision == "bf16" and hardware.cuda_devices()[0].compute_capability < (8, 0):
        pytest.skip("bf16 needs compute capability 8.0+")
    runtime = plugin.build()
    assert (runtime.grad_scaler() is not None) == (precision == "fp16")
    _check_trains(runtime, _classifier(tiny_bert, runtime))


@pytest.mark.parametrize("tf32", [True, False])
def test_cuda_tf32_applies_only_on_ampere_or_newer(tf32):
    from criteria import hardware

    make("cuda", tf32=tf32, precision="fp32").build()
    ampere = hardware.cuda_devices()[0].compute_capability >= (8, 0)
    assert torch.get_float32_matmul_precision() == ("high" if tf32 and ampere else "highest")


# --- MPS -----------------------------------------------------------------------------------


def test_mps_availability_is_true_here_and_needs_no_torch_import():
    import platform

    availability = REGISTRY.get("backend", "mps").availability()
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        assert not availability and "Apple-silicon Mac" in availability.reason
    # listing answers from platform facts: a fresh process checks every backend without torch
    code = ("import sys; from criteria.plugin.registry import Registry; r = Registry.from_entry_points(allowed=[]); "
            "[i.availability() for i in r.plugins('backend').values()]; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_mps_trains_in_fp32_and_fp16(precision, tiny_bert):
    runtime = make("mps", precision=precision).build()
    assert (runtime.grad_scaler() is not None) == (precision == "fp16")
    _check_trains(runtime, _classifier(tiny_bert, runtime))
