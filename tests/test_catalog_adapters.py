"""The bottleneck adapter PEFT plugins (pfeiffer, houlsby, compacter) on tiny BERT and DeBERTa-v2
encoders: placement, what trains, Compacter's sharing, saving and loading, and the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from builtin_plugins import one_epoch_job, write_tiny_spec
from criteria import TrainingPlan
from criteria.engine.model import CriterionClassifier, load_classifier, save_classifier

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

ADAPTERS = ["pfeiffer", "houlsby", "compacter"]
FAMILIES = ["tiny_bert", "tiny_deberta"]
PLAN = TrainingPlan(total_steps=10)
#: adapters per adapted layer
SITES_PER_LAYER = {"pfeiffer": 1, "houlsby": 2, "compacter": 2}


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def load_encoder(path: Path):
    """The fixture encoder without dropout, so a few steps on one batch reliably lower the loss."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(path, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def make(registry, name: str, **config):
    info = registry.get("peft", name)
    availability = info.availability()
    if not availability:
        pytest.skip(availability.reason)
    return info.cls(**config)


def inputs(vocab_size: int, batch: int = 4, length: int = 10) -> dict[str, torch.Tensor]:
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 7:] = 0
    return {"input_ids": torch.randint(5, vocab_size, (batch, length)), "attention_mask": mask}


def adapters_of(model) -> dict[str, torch.nn.Module]:
    from criteria_builtins.adapter_modules import Bottleneck

    return {name: module for name, module in model.named_modules() if isinstance(module, Bottleneck)}


def trains_with_adapters(name: str) -> bool:
    """Whether a parameter of a classifier may train under an adapter method (default config)."""
    return ".adapter." in name or ".LayerNorm." in name or name.startswith("head.")


def classifier(registry, encoder) -> CriterionClassifier:
    head = registry.get("head", "linear").cls(dropout=0.0).build(encoder.config.hidden_size, 2)
    return CriterionClassifier(encoder, head)


def train_steps(model: CriterionClassifier, batch: dict[str, torch.Tensor], labels: torch.Tensor,
                steps: int) -> list[float]:
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(**batch), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ADAPTERS)
def test_wrapped_encoder_starts_as_the_base_and_keeps_its_weight_names(name, family, request, registry):
    base = load_encoder(request.getfixturevalue(family)).eval()
    batch = inputs(base.config.vocab_size)
    before_keys = set(base.state_dict())
    with torch.no_grad():
        expected = base(**batch).last_hidden_state

    model = make(registry, name).build(base, PLAN).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).last_hidden_state, expected, rtol=0, atol=0)
    keys = set(model.state_dict())
    assert before_keys < keys and all(".adapter." in k for k in keys - before_keys)
    assert len(adapters_of(model)) == SITES_PER_LAYER[name] * model.config.num_hidden_layers


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ADAPTERS)
def test_only_adapters_layernorms_and_head_train(name, family, request, registry):
    encoder = make(registry, name, dropout=0.0).build(load_encoder(request.getfixturevalue(family)), PLAN)
    model = classifier(registry, encoder)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(trains_with_adapters(n) for n in trainable), trainable
    assert any(".LayerNorm." in n for n in trainable)  # train_layer_norm defaults to True
    assert not any("embeddings" in n for n in trainable)

    batch = inputs(encoder.config.vocab_size)
    losses = train_steps(model, batch, torch.tensor([0, 1, 1, 0]), steps=6)
    assert losses[-1] < losses[0], losses
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == (n in trainable), f"{n}: changed={changed}, trainable={n in trainable}"


def test_layer_norms_stay_frozen_when_asked(tiny_bert, registry):
    model = make(registry, "houlsby", train_layer_norm=False).build(load_encoder(tiny_bert), PLAN)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".adapter." in n for n in trainable)


@pytest.mark.parametrize("name", ADAPTERS)
def test_layers_option_puts_adapters_on_the_top_layers(name, registry, tiny_bert):
    import transformers

    depth = 10
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=depth,
                                     num_attention_heads=2, intermediate_size=37)
    for layers, count in {"all": depth, "top4": 4, "top8": 8}.items():
        model = make(registry, name, layers=layers).build(transformers.BertModel(config), PLAN)
        adapted = {int(n.split(".")[2]) for n in adapters_of(model)}
        assert adapted == set(range(depth - count, depth)), layers
        assert len(adapters_of(model)) == SITES_PER_LAYER[name] * count
        norms = {int(n.split(".")[2]) for n, p in model.named_parameters()
                 if p.requires_grad and "LayerNorm" in n}
        assert norms == adapted
    # a model with fewer layers than asked for gets them all
    small = make(registry, name, layers="top4").build(load_encoder(tiny_bert), PLAN)
    assert len(adapters_of(small)) == SITES_PER_LAYER[name] * small.config.num_hidden_layers


def test_compacter_shares_its_rule_and_is_smaller_than_pfeiffer(tiny_bert, registry):
    from criteria_builtins.adapter_modules import PHMLinear

    model = make(registry, "compacter", bottleneck=64, phm_dim=4).build(load_encoder(tiny_bert), PLAN)
    phm = [m for m in model.modules() if isinstance(m, PHMLinear)]
    assert len(phm) == 2 * 2 * model.config.num_hidden_layers  # down + up, attention + ffn, per layer
    assert all(m.rule is phm[0].rule for m in phm) and phm[0].rule.shape == (4, 4, 4)
    assert sum(n.endswith(".rule") for n, _ in model.named_parameters()) == 1  # one shared parameter

    # W = sum_i A_i kron B_i, with B_i = left_i @ right_i
    layer = phm[0]
    blocks = layer.left @ layer.right
    expected = sum(torch.kron(layer.rule[i], blocks[i]) for i in range(4))
    torch.testing.assert_close(layer.weight(), expected)

    def adapter_size(m) -> int:
        return sum(p.numel() for n, p in m.named_parameters() if ".adapter." in n)

    pfeiffer = make(registry, "pfeiffer", bottleneck=64).build(load_encoder(tiny_bert), PLAN)
    plus_plus = make(registry, "compacter", bottleneck=64, placement="ffn")
    plus_plus = plus_plus.build(load_encoder(tiny_bert), PLAN)
    assert adapter_size(plus_plus) < adapter_size(model) < adapter_size(pfeiffer)


def test_phm_widths_must_divide_by_phm_dim(tiny_bert, registry):
    with pytest.raises(ValueError, match="divisible by phm_dim = 3"):
        make(registry, "compacter", phm_dim=3).build(load_encoder(tiny_bert), PLAN)


def test_a_model_without_transformer_layers_is_a_clear_error(registry):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="found no transformer layers in Sequential"):
        make(registry, "pfeiffer").build(model, PLAN)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ADAPTERS)
def test_save_and_load_round_trip(name, family, request, registry, tmp_path):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    path = request.getfixturevalue(family)
    peft = make(registry, name)
    model = classifier(registry, peft.build(load_encoder(path), PLAN))
    batch = inputs(model.encoder.config.vocab_size)
    train_steps(model, batch, torch.tensor([1, 0, 0, 1]), steps=2)  # adapters away from their zero start
    adapters = adapters_of(model.encoder).values()
    assert all(m(torch.ones(1, m.down.in_features)).abs().sum() > 0 for m in adapters)
    model.eval()
    with torch.no_grad():
        expected = model(**batch)

    metadata = {"head": {"name": "linear", "config": {"dropout": 0.0}},
                "criteria": [{"id": "A.1", "name": "a", "text": "a"}], "max_length": 16, "threshold": 0.5}
    tokenizer = AutoTokenizer.from_pretrained(path)
    folder = save_classifier(model, tokenizer, tmp_path / "model", metadata, peft=peft)
    # the saved encoder is the plain base model: no adapter weights for AutoModel to trip over
    with safe_open(folder / "encoder" / "model.safetensors", "pt") as saved:
        saved_keys = set(saved.keys())
    assert saved_keys and not any("adapter" in k for k in saved_keys)
    assert adapters_of(model.encoder), "saving must not strip the adapters from the trained model"

    loaded, _, meta = load_classifier(folder, registry)
    assert meta["peft"]["name"] == name
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch), expected)


def test_engine_trains_an_epoch_with_houlsby(tiny_bert, tmp_path):
    from criteria.engine.fit import fit

    spec_path = write_tiny_spec(tmp_path, tiny_bert, '[peft]\nuse = "houlsby"\n[peft.houlsby]\nbottleneck = 32\n'
                                                    'layers = "top4"\n', name="houlsby")
    job = one_epoch_job(spec_path)
    assert job.config.plugins["peft"].name == "houlsby"
    result = fit(job)
    assert len(result.history) == 1 and np.isfinite(result.history[0].train_loss)
    encoder = result.model.encoder
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all(trains_with_adapters(n) for n in trainable), trainable
    ups = [m.up.weight for m in adapters_of(encoder).values()]
    assert len(ups) == 2 * encoder.config.num_hidden_layers and all(w.abs().sum() > 0 for w in ups)
