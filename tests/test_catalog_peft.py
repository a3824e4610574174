"""The peft-library PEFT methods, trained for real on tiny BERT and DeBERTa-v2 encoders.

Each method wraps a bare encoder loaded with ``AutoModel`` (as the engine loads it), gets the
registry's linear head through ``CriterionClassifier``, and takes real optimizer steps: only the
method's own parameters and the head may change. Saved models reload with identical outputs,
whether the method's updates are merged into the weights or kept beside the base encoder.
"""

from __future__ import annotations

from typing import Any

import pytest
from builtin_plugins import BUILTINS
from builtin_plugins import make as make_plugin
from criteria import TrainingPlan

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
    # peft's prompt learning on a bare encoder drops segment ids, and says so
    pytest.mark.filterwarnings("ignore:Token type ids are not supported:UserWarning"),
]

REGISTRY = BUILTINS
FAMILIES = ["tiny_bert", "tiny_deberta"]
STEPS = 3
# Long enough that AdaLoRA is still near full rank after STEPS: every adapter still has weights.
PLAN = TrainingPlan(total_steps=100)
NOT_MERGEABLE = {"prompt_tuning"}

# Small, deterministic configs (no dropout) per method, and the parameter names it may train.
METHODS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "lora": ({"r": 2, "alpha": 4, "dropout": 0.0, "targets": "attention"}, ("lora_A", "lora_B")),
    "lora_plus": ({"r": 2, "alpha": 4, "dropout": 0.0}, ("lora_A", "lora_B")),
    "dora": ({"r": 2, "alpha": 4, "dropout": 0.0}, ("lora_A", "lora_B", "lora_magnitude_vector")),
    "adalora": ({"init_r": 4, "target_r": 2, "dropout": 0.0, "tinit": 0.0, "tfinal": 0.0, "delta_t": 1},
                ("lora_A", "lora_B", "lora_E")),
    "ia3": ({"ffn": True}, ("ia3_l",)),
    "loha": ({"r": 2, "alpha": 4, "targets": "attention_ffn"}, ("hada_",)),
    "lokr": ({"r": 2, "alpha": 4}, ("lokr_",)),
    # attention_ffn mixes layer shapes (32x32, 32x37, 37x32): VeRA's shared matrices must cope
    "vera": ({"r": 8, "targets": "attention_ffn"}, ("vera_lambda_",)),
    "prompt_tuning": ({"num_virtual_tokens": 4}, ("prompt_encoder.",)),
}


def make(name: str, **config: Any):
    """An instance of a registered PEFT plugin (skipped with its reason when it cannot run here)."""
    return make_plugin("peft", name, **config)


@pytest.fixture(params=FAMILIES)
def encoder_folder(request):
    return request.getfixturevalue(request.param)


def load_encoder(folder):
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers.AutoModel.from_pretrained(folder)


def classifier(encoder):
    from criteria.engine.model import CriterionClassifier

    head = REGISTRY.get("head", "linear").cls(dropout=0.0).build(encoder.config.hidden_size, 2)
    return CriterionClassifier(encoder, head)


def batch():
    import torch

    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1000, 2000, (4, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 4:] = 1  # a (post, criterion) pair
    labels = torch.tensor([0, 1, 1, 0])
    return input_ids, attention_mask, token_type_ids, labels


def train(model, plugin, steps: int = STEPS, lr: float = 1e-2) -> list[float]:
    """``steps`` AdamW steps on one batch, with the plugin's learning-rate scales and step hook
    wired as the engine wires them."""
    import torch
    from criteria.engine.optimization import parameter_groups

    groups = parameter_groups(model, head_lr_multiplier=1.0, layerwise_lr_decay=1.0, weight_decay=0.0,
                              lr_scale=plugin.lr_scale)
    optimizer = torch.optim.AdamW([{"params": g["params"], "lr": lr * g["lr_scale"]} for g in groups], lr=lr)
    input_ids, attention_mask, token_type_ids, labels = batch()
    losses = []
    model.train()
    for step in range(1, steps + 1):
        loss = torch.nn.functional.cross_entropy(model(input_ids, attention_mask, token_type_ids), labels)
        loss.backward()
        optimizer.step()
        plugin.after_optimizer_step(model.encoder, step)
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def logits(model):
    import torch

    input_ids, attention_mask, token_type_ids, _ = batch()
    with torch.no_grad():
        return model.eval()(input_ids, attention_mask, token_type_ids)


# --- every method: trains only its own parameters, and reloads exactly ----------------------


def test_every_peft_library_method_is_covered():
    from criteria_builtins import peft as module

    names = {name for name, info in REGISTRY.plugins("peft").items()
             if issubclass(info.cls, module._PeftMethod) and info.cls.__module__ == module.__name__}
    assert names == set(METHODS)



@pytest.mark.parametrize("name", list(METHODS))
def test_method_trains_only_its_parameters_and_reloads_exactly(name, encoder_folder, registry, tmp_path):
    import torch
    import transformers
    from criteria.engine.model import PEFT_FILE, load_classifier, save_classifier

    config, markers = METHODS[name]
    plugin = make(name, **config)
    model = classifier(plugin.build(load_encoder(encoder_folder), PLAN))

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    method = {n for n in trainable if not n.startswith("head.")}
    assert method, "the method added no trainable parameters"
    assert all(any(m in n for m in markers) for n in method), sorted(method)
    total = sum(p.numel() for p in model.encoder.parameters())
    assert sum(p.numel() for n, p in model.named_parameters() if n in method) < 0.25 * total

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = train(model, plugin)
    assert all(torch.isfinite(torch.tensor(losses)))
    for n, p in model.named_parameters():
        if n in trainable:
            assert not torch.equal(p, before[n]), f"{n} did not change"
        else:
            assert torch.equal(p, before[n]), f"frozen {n} changed"

    # saved and loaded as `criteria predict` does: the same outputs
    expected = logits(model)
    metadata = {"head": {"name": "linear", "config": {"dropout": 0.0}},
                "criteria": [{"id": "A.1", "name": "DEPRESSED_MOOD", "text": "Feels low most of the day."}],
                "max_length": 16, "threshold": 0.5}
    tokenizer = transformers.AutoTokenizer.from_pretrained(encoder_folder)
    save_classifier(model, tokenizer, tmp_path / "model", metadata, peft=plugin)
    loaded, _, meta = load_classifier(tmp_path / "model", registry)
    kept = tmp_path / "model" / PEFT_FILE
    if name in NOT_MERGEABLE:  # the base encoder, plus exactly the method's weights beside it
        assert meta["peft"] == {"name": name, "config": plugin.config.model_dump()}
        assert {f"encoder.{n}" for n in torch.load(kept, weights_only=True)} == method
    else:  # merged: a plain transformers encoder that stands alone
        assert "peft" not in meta and not kept.exists()
        assert isinstance(loaded.encoder, transformers.PreTrainedModel)
    torch.testing.assert_close(logits(loaded), expected, rtol=1e-4, atol=1e-5)


# --- method specifics ----------------------------------------------------------------------


def test_roles_tell_the_attention_output_from_the_feed_forward_output(tiny_bert, tiny_deberta):
    from criteria_builtins.peft import modules_in_roles, target_modules

    for folder in (tiny_bert, tiny_deberta):
        encoder = load_encoder(folder)
        assert modules_in_roles(encoder, ("ffn_output",)) == [
            f"encoder.layer.{i}.output.dense" for i in range(2)]
        assert modules_in_roles(encoder, ("attention_output",)) == [
            f"encoder.layer.{i}.attention.output.dense" for i in range(2)]
        # q, k, v, attention output, FFN in and out: six per layer, whatever the family calls them
        assert len(target_modules(encoder, "attention_ffn")) == 12
        assert len(target_modules(encoder, "query_value")) == 4


@pytest.mark.parametrize("ffn", [True, False])
def test_ia3_rescales_keys_values_and_optionally_the_feed_forward(ffn, encoder_folder):
    model = make("ia3", ffn=ffn).build(load_encoder(encoder_folder), TrainingPlan(total_steps=1))
    wrapped = {n.removeprefix("base_model.model."): m
               for n, m in model.named_modules() if hasattr(m, "ia3_l")}
    keys_values = {n for n in wrapped if n.endswith(("key", "key_proj", "value", "value_proj"))}
    feed_forward = {n for n, m in wrapped.items() if m.is_feedforward}
    assert len(keys_values) == 4
    assert feed_forward == ({f"encoder.layer.{i}.output.dense" for i in range(2)} if ffn else set())
    assert set(wrapped) == keys_values | feed_forward


def test_lora_plus_learning_rates_follow_peft_create_loraplus_optimizer(tiny_bert):
    """Our lr_scale must give every trainable parameter the learning rate peft's own LoRA+
    optimizer gives it (B and vectors at lr_ratio x, A at 1x)."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    plugin = make("lora_plus", r=2, alpha=4, bias="all", lr_ratio=8.0)
    encoder = plugin.build(load_encoder(tiny_bert), TrainingPlan(total_steps=1))
    optimizer = create_loraplus_optimizer(encoder, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=8.0)
    peft_lr = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    scales = {n: plugin.lr_scale(n) for n, p in encoder.named_parameters() if p.requires_grad}
    peft_scales = {n: peft_lr[id(p)] / 1e-3 for n, p in encoder.named_parameters() if p.requires_grad}
    assert peft_scales == pytest.approx(scales)
    assert {s for n, s in scales.items() if "lora_B" in n} == {8.0}
    assert {s for n, s in scales.items() if "lora_A" in n} == {1.0}


def test_adalora_reallocates_ranks_down_to_its_budget(encoder_folder, monkeypatch):
    import torch

    total, init_r, target_r = 8, 4, 2
    plugin = make("adalora", init_r=init_r, target_r=target_r, dropout=0.0,
                  tinit=0.25, tfinal=0.25, delta_t=1)
    model = classifier(plugin.build(load_encoder(encoder_folder), TrainingPlan(total_steps=total)))
    adalora = model.encoder.base_model
    peft_config = adalora.peft_config["default"]
    assert (peft_config.total_step, peft_config.tinit, peft_config.tfinal) == (total, 2, 2)

    def kept() -> dict[str, int]:
        """Ranks each adapter keeps (peft masks the dropped singular values of E to zero)."""
        return {n: int((p != 0).sum()) for n, p in model.named_parameters() if "lora_E" in n}

    history = []
    update = adalora.update_and_allocate
    monkeypatch.setattr(adalora, "update_and_allocate",
                        lambda step: (update(step), history.append((step, sum(kept().values())))))
    # one adapter frozen, as the core's freeze_layers would: it must not break the allocation
    frozen = "layer.0.attention.self.query"
    for n, p in model.named_parameters():
        if frozen in n and "lora_" in n:
            p.requires_grad_(False)
    train(model, plugin, steps=total)

    ranks = kept()
    initial, final = init_r * (len(ranks) - 1), target_r * len(ranks)  # the frozen E never leaves 0
    assert [step for step, _ in history] == list(range(1, total + 1))
    assert [r for _, r in history[:2]] == [initial] * 2  # tinit: full rank
    assert all(final <= r < initial for _, r in history[2:6])  # the budget shrinks...
    assert [r for _, r in history[6:]] == [final] * 2  # ...to target_r per adapter at tfinal
    # reallocated, not cut evenly: the frozen adapter (it cannot learn) gave its rank to others
    assert not any(any(pattern) for n, pattern in peft_config.rank_pattern.items() if frozen in n)
    assert max(ranks.values()) > target_r
    assert torch.isfinite(logits(model)).all()


@pytest.mark.parametrize("total_steps", [1, 2, 3])
def test_adalora_trains_on_tiny_plans(total_steps, tiny_deberta):
    plugin = make("adalora", init_r=4, target_r=2)  # the default tinit / tfinal shares
    model = classifier(plugin.build(load_encoder(tiny_deberta), TrainingPlan(total_steps=total_steps)))
    train(model, plugin, steps=total_steps)
    ranks = [int((p != 0).sum()) for n, p in model.named_parameters() if "lora_E" in n]
    # one step leaves no earlier importance scores to reallocate by: the ranks stay as they are
    assert sum(ranks) == (4 if total_steps == 1 else 2) * len(ranks)


def test_adalora_rejects_a_budget_that_does_not_shrink():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="target_r"):
        REGISTRY.get("peft", "adalora").cls(init_r=8, target_r=8)


def test_prompt_tuning_prepends_vocabulary_initialised_prompts(encoder_folder):
    import torch

    plugin = make("prompt_tuning", num_virtual_tokens=5)
    base = load_encoder(encoder_folder)
    vocabulary = base.get_input_embeddings().weight.detach().clone()
    encoder = plugin.build(base, TrainingPlan(total_steps=1))
    prompts = encoder.prompt_encoder["default"].embedding.weight.detach()
    # sample_vocab: each prompt starts as the embedding of some real token
    assert all((vocabulary == row).all(dim=1).any() for row in prompts)
    input_ids, attention_mask, _, _ = batch()
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    assert hidden.shape[1] == input_ids.shape[1] + 5
    assert torch.isfinite(logits(classifier(encoder))).all()


def test_adalora_orthogonality_penalty_is_added_and_trains_p_and_q(tiny_bert):
    import transformers

    plugin = make("adalora", orth_reg_weight=0.5)
    model = plugin.build(transformers.AutoModel.from_pretrained(tiny_bert), TrainingPlan(total_steps=20))
    penalty = plugin.regularization(model)
    assert penalty is not None and penalty.ndim == 0 and penalty > 0
    penalty.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n and p.requires_grad]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert make("adalora", orth_reg_weight=0.0).regularization(model) is None
    assert make("lora").regularization(model) is None
