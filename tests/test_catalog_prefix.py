"""The prefix tuning PEFT plugin (deep per-layer prefixes written for criteria) on tiny BERT and
DeBERTa-v2 encoders: where the prefix goes, what trains, that every layer reads its own prefix,
saving and loading, and the engine."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from builtin_plugins import make as make_plugin
from builtin_plugins import one_epoch_job, write_tiny_spec
from criteria import TrainingPlan
from criteria.engine.model import CriterionClassifier, load_classifier, save_classifier

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

FAMILIES = ["tiny_bert", "tiny_deberta"]
PLAN = TrainingPlan(total_steps=10)
TOKENS = 4
METADATA = {"head": {"name": "linear", "config": {"dropout": 0.0}},
            "criteria": [{"id": "A.1", "name": "a", "text": "a"}], "max_length": 16, "threshold": 0.5}


@pytest.fixture(params=FAMILIES)
def encoder_folder(request):
    return request.getfixturevalue(request.param)


def make(**config: Any):
    return make_plugin("peft", "prefix_tuning", **{"num_virtual_tokens": TOKENS, **config})


def load_encoder(folder):
    """The fixture encoder without dropout, so outputs and a few training steps are deterministic."""
    import transformers

    torch.manual_seed(0)
    return transformers.AutoModel.from_pretrained(folder, hidden_dropout_prob=0.0,
                                                  attention_probs_dropout_prob=0.0)


def deberta_v3_shaped():
    """A DeBERTa-v2 encoder as DeBERTa-v3 configures it: relative attention with position buckets,
    no absolute positions in the input, and the convolution after the first layer."""
    import transformers

    torch.manual_seed(0)
    config = transformers.DebertaV2Config(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37,
        relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
        position_biased_input=False, conv_kernel_size=3, type_vocab_size=0,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.DebertaV2Model(config)


def classifier(encoder) -> CriterionClassifier:
    from builtin_plugins import BUILTINS

    head = BUILTINS.get("head", "linear").cls(dropout=0.0).build(encoder.config.hidden_size, 2)
    return CriterionClassifier(encoder, head)


def batch(length: int = 7, vocab: int = 100):
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, vocab, (4, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 4:] = 1  # a (post, criterion) pair
    return input_ids, attention_mask, token_type_ids, torch.tensor([0, 1, 1, 0])


def train(model: CriterionClassifier, plugin, steps: int = 3, lr: float = 1e-3) -> list[float]:
    """AdamW steps on one batch with the engine's parameter groups (and so the plugin's lr_scale)."""
    from criteria.engine.optimization import parameter_groups

    groups = parameter_groups(model, head_lr_multiplier=1.0, layerwise_lr_decay=1.0, weight_decay=0.0,
                              lr_scale=plugin.lr_scale)
    optimizer = torch.optim.AdamW([{"params": g["params"], "lr": lr * g["lr_scale"]} for g in groups], lr=lr)
    input_ids, attention_mask, token_type_ids, labels = batch()
    model.train()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(input_ids, attention_mask, token_type_ids), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def logits(model: CriterionClassifier) -> torch.Tensor:
    input_ids, attention_mask, token_type_ids, _ = batch()
    with torch.no_grad():
        return model.eval()(input_ids, attention_mask, token_type_ids)


def layer_inputs(encoder, input_ids, attention_mask) -> list[torch.Tensor]:
    """The hidden states each transformer layer receives (after the prefix hooks, which run first)."""
    from criteria_builtins.prefix_modules import find_layers

    seen = []
    handles = [layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
               for layer in find_layers(encoder)]
    try:
        with torch.no_grad():
            encoder.eval()(input_ids=input_ids, attention_mask=attention_mask)
    finally:
        for handle in handles:
            handle.remove()
    return seen


# --- what the prefix is ----------------------------------------------------------------------


@pytest.mark.parametrize("projection", [False, True])
def test_every_layer_reads_its_own_prefix_before_the_unchanged_tokens(projection, encoder_folder):
    base = load_encoder(encoder_folder)
    input_ids, attention_mask, _, _ = batch()
    before = layer_inputs(base, input_ids, attention_mask)
    base_keys = set(base.state_dict())

    encoder = make(projection=projection).build(base, PLAN)
    states = encoder.prefix_encoder().detach()
    depth = encoder.config.num_hidden_layers
    assert states.shape == (depth, TOKENS, encoder.config.hidden_size)
    seen = layer_inputs(encoder, input_ids, attention_mask)
    assert len(seen) == depth
    for index, hidden in enumerate(seen):
        assert hidden.shape == (4, TOKENS + input_ids.shape[1], encoder.config.hidden_size)
        torch.testing.assert_close(hidden[:, :TOKENS], states[index].expand(4, -1, -1), rtol=0, atol=0)
    # the tokens are embedded as without the prefix: same embeddings, same positions
    torch.testing.assert_close(seen[0][:, TOKENS:], before[0], rtol=0, atol=0)

    out = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    assert out.shape == (4, input_ids.shape[1], encoder.config.hidden_size)  # real tokens only
    keys = set(encoder.state_dict())
    assert base_keys < keys and all(k.startswith("prefix_encoder.") for k in keys - base_keys)


def init_tokens(encoder) -> torch.Tensor:
    """The random vocabulary tokens a prefix starts from (drawn from the plugin's fixed seed)."""
    from criteria_builtins.prefix_modules import INIT_SEED

    torch.manual_seed(INIT_SEED)
    return torch.randint(encoder.get_input_embeddings().num_embeddings, (1, TOKENS))


def test_the_prefix_starts_from_real_token_states_and_the_same_values_on_every_build(encoder_folder):
    base = load_encoder(encoder_folder)
    ids = init_tokens(base)
    expected = torch.cat(layer_inputs(base, ids, torch.ones_like(ids)))
    first = make().build(base, PLAN).prefix_encoder().detach()
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    torch.manual_seed(123)  # the global seed does not move the start
    second = make().build(load_encoder(encoder_folder), PLAN).prefix_encoder().detach()
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def test_the_prefix_starts_from_embeddings_where_the_model_cannot_run_while_built(tiny_bert, monkeypatch):
    from criteria_builtins.prefix_modules import find_layers

    base = load_encoder(tiny_bert)
    with torch.no_grad():
        embedded = base.embeddings(input_ids=init_tokens(base))[0]

    def unavailable(*args, **kwargs):
        raise RuntimeError("this attention kernel needs a GPU")

    monkeypatch.setattr(find_layers(base)[-1], "forward", unavailable)
    states = make().build(base, PLAN).prefix_encoder().detach()
    torch.testing.assert_close(states, embedded.expand(2, -1, -1), rtol=0, atol=0)
    monkeypatch.undo()  # and the model is whole after the failed run
    input_ids, attention_mask, _, _ = batch()
    assert base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.shape[1] == 7


@pytest.mark.parametrize("projection", [False, True])
def test_changing_one_layers_prefix_changes_the_output(projection, encoder_folder):
    encoder = make(projection=projection).build(load_encoder(encoder_folder), PLAN)
    model = classifier(encoder)
    expected = logits(model)
    prefix = encoder.prefix_encoder
    states = prefix().detach()
    for index in range(encoder.config.num_hidden_layers):
        moved = states.clone()
        moved[index] += torch.randn_like(moved[index])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(prefix, "forward", lambda moved=moved: moved)
            changed = logits(model)
        assert not torch.allclose(changed, expected, atol=1e-6), f"layer {index}'s prefix is not read"
    torch.testing.assert_close(logits(model), expected, rtol=0, atol=0)


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_deberta", "deberta_v3_shaped"])
def test_outputs_do_not_depend_on_padding(family, request):
    if family == "deberta_v3_shaped":
        base = deberta_v3_shaped()
    else:
        base = load_encoder(request.getfixturevalue(family))
    encoder = make(num_virtual_tokens=5).build(base, PLAN).eval()
    input_ids, attention_mask, _, _ = batch()
    padded_ids = torch.cat([input_ids, torch.zeros(4, 6, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([attention_mask, torch.zeros(4, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        long = encoder(input_ids=padded_ids, attention_mask=padded_mask).last_hidden_state
    real = attention_mask.bool()
    torch.testing.assert_close(long[:, :7][real], short[real], rtol=1e-5, atol=1e-5)
    # and without a mask, every position is real
    with torch.no_grad():
        unmasked = encoder(input_ids=input_ids).last_hidden_state
    torch.testing.assert_close(unmasked[0], short[0], rtol=1e-5, atol=1e-5)


def test_the_pooler_reads_the_first_real_token(tiny_bert):
    encoder = make().build(load_encoder(tiny_bert), PLAN).eval()
    input_ids, attention_mask, _, _ = batch()
    with torch.no_grad():
        out = encoder(input_ids=input_ids, attention_mask=attention_mask)
        torch.testing.assert_close(out.pooler_output, encoder.pooler(out.last_hidden_state))


# --- training --------------------------------------------------------------------------------


@pytest.mark.parametrize("projection", [False, True])
def test_trains_only_the_prefix_and_the_head(projection, encoder_folder):
    plugin = make(projection=projection, projection_hidden_size=16)
    model = classifier(plugin.build(load_encoder(encoder_folder), PLAN))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    prefix = {n for n in trainable if not n.startswith("head.")}
    assert prefix and all(n.startswith("encoder.prefix_encoder.") for n in prefix), sorted(prefix)
    markers = (".embedding.", ".mlp.") if projection else (".layers.",)
    assert all(any(m in n for m in markers) for n in prefix)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = train(model, plugin, steps=5)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == (n in trainable), f"{n}: changed={changed}, trainable={n in trainable}"


def test_the_prefix_learns_faster_by_lr_multiplier(tiny_bert):
    from criteria.engine.optimization import parameter_groups

    plugin = make(lr_multiplier=50.0)
    model = classifier(plugin.build(load_encoder(tiny_bert), PLAN))
    groups = parameter_groups(model, head_lr_multiplier=2.0, layerwise_lr_decay=1.0, weight_decay=0.0,
                              lr_scale=plugin.lr_scale)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert scale[id(p)] == (2.0 if n.startswith("head.") else 50.0), n


def test_a_layers_prefix_counts_as_that_layer_for_the_freezing_knobs(tiny_bert):
    from criteria.engine.freezing import layer_depth

    encoder = make().build(load_encoder(tiny_bert), PLAN)
    depths = {n: layer_depth(n, 2) for n, p in encoder.named_parameters() if p.requires_grad}
    assert depths == {"prefix_encoder.layers.0.weight": 1, "prefix_encoder.layers.1.weight": 2}


def test_gradient_checkpointing_gives_the_same_gradients(tiny_deberta):
    grads = []
    for checkpointing in (False, True):
        encoder = make(projection=True, projection_hidden_size=16).build(load_encoder(tiny_deberta), PLAN)
        if checkpointing:
            # as the runtime switches it on (transformers 5 renamed the switch)
            switch = getattr(encoder, "activation_checkpointing_enable", None)
            if switch is not None:
                switch(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        input_ids, attention_mask, _, _ = batch()
        out = encoder.train()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out.pow(2).sum().backward()
        grads.append({n: p.grad for n, p in encoder.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n])


def test_a_trained_model_can_be_deep_copied(tiny_bert):
    plugin = make()
    model = classifier(plugin.build(load_encoder(tiny_bert), PLAN))
    train(model, plugin, steps=1)  # leaves a forward's prefix behind, with its autograd graph
    twin = copy.deepcopy(model)
    torch.testing.assert_close(logits(twin), logits(model), rtol=0, atol=0)


# --- saving and loading ----------------------------------------------------------------------


@pytest.mark.parametrize("projection", [False, True])
def test_save_and_load_round_trip(projection, encoder_folder, registry, tmp_path):
    import transformers
    from criteria.engine.model import PEFT_FILE
    from safetensors import safe_open

    plugin = make(projection=projection, projection_hidden_size=16)
    model = classifier(plugin.build(load_encoder(encoder_folder), PLAN))
    train(model, plugin, steps=2)
    expected = logits(model)
    method = {n.removeprefix("encoder.") for n, p in model.named_parameters()
              if p.requires_grad and not n.startswith("head.")}

    tokenizer = transformers.AutoTokenizer.from_pretrained(encoder_folder)
    folder = save_classifier(model, tokenizer, tmp_path / "model", METADATA, peft=plugin)
    with safe_open(folder / "encoder" / "model.safetensors", "pt") as saved:
        saved_keys = set(saved.keys())
    assert saved_keys and not any("prefix" in k for k in saved_keys)  # the plain base encoder
    assert set(torch.load(folder / PEFT_FILE, weights_only=True)) == method
    assert hasattr(model.encoder, "prefix_encoder"), "saving must not strip the prefix from the trained model"
    torch.testing.assert_close(logits(model), expected, rtol=0, atol=0)

    loaded, _, meta = load_classifier(folder, registry)
    assert meta["peft"] == {"name": "prefix_tuning", "config": plugin.config.model_dump()}
    torch.testing.assert_close(logits(loaded), expected, rtol=1e-5, atol=1e-6)


def test_a_prefix_frozen_by_the_freezing_knobs_reloads_as_it_was(tiny_bert, registry, tmp_path):
    """Only trainable weights are saved; a frozen layer prefix is rebuilt from the same start."""
    import transformers

    plugin = make()
    model = classifier(plugin.build(load_encoder(tiny_bert), PLAN))
    model.encoder.prefix_encoder.layers[0].requires_grad_(False)  # as freeze_layers would
    train(model, plugin, steps=2)
    expected = logits(model)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(7)
    folder = save_classifier(model, tokenizer, tmp_path / "model", METADATA, peft=plugin)
    loaded, _, _ = load_classifier(folder, registry)
    torch.testing.assert_close(logits(loaded), expected, rtol=1e-5, atol=1e-6)


# --- errors ----------------------------------------------------------------------------------


def test_applying_it_twice_is_a_clear_error(tiny_bert):
    encoder = make().build(load_encoder(tiny_bert), PLAN)
    with pytest.raises(ValueError, match="applied twice"):
        make().build(encoder, PLAN)


def test_a_model_without_transformer_layers_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="found no transformer layers in Sequential"):
        make().build(model, PLAN)


# --- the engine ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_engine_trains_an_epoch_with_prefix_tuning(family, request, tmp_path):
    from criteria.engine.fit import fit

    folder = request.getfixturevalue(family)
    spec_path = write_tiny_spec(tmp_path, folder, '[peft]\nuse = "prefix_tuning"\n[peft.prefix_tuning]\n'
                                                 'num_virtual_tokens = 10\nprojection = true\n'
                                                 'projection_hidden_size = 64\n', name="prefix")
    job = one_epoch_job(spec_path)
    assert job.config.plugins["peft"].name == "prefix_tuning"
    start = job.config.plugins["peft"].build(load_encoder(folder), PLAN).prefix_encoder.state_dict()
    result = fit(job)
    assert len(result.history) == 1 and np.isfinite(result.history[0].train_loss)
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("encoder.prefix_encoder.", "head.")) for n in trainable), trainable
    trained = result.model.encoder.prefix_encoder.state_dict()
    assert all(not torch.equal(trained[k].cpu(), start[k]) for k in start)
