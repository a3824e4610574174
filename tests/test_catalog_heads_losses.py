"""The built-in heads and losses: each one's own behaviour, and real training steps of a tiny
encoder through :class:`criteria.engine.model.CriterionClassifier` with it.

Heads must ignore padding (appending or changing masked positions never moves the logits) in fp32
and under bf16 autocast; losses must match their formulas computed by hand.
"""

from __future__ import annotations

import math

import pytest
from builtin_plugins import BUILTINS as REGISTRY
from builtin_plugins import make

HEADS = ["linear", "pooler", "mean", "max", "attention", "mlp1", "mlp2"]
LOSSES = ["cross_entropy", "weighted_cross_entropy", "bce", "focal", "class_balanced_focal",
          "label_smoothing"]
CLASS_COUNTS = [90, 10]
HIDDEN = 32  # the tiny models' hidden size


@pytest.fixture(autouse=True)
def _seeded():
    import torch

    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and lose much when other processes share the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_head_and_loss_is_registered():
    assert set(HEADS) <= set(REGISTRY.plugins("head"))
    assert set(LOSSES) <= set(REGISTRY.plugins("loss"))


# --- heads on hidden states ----------------------------------------------------------------


def _hidden_and_mask():
    import torch

    hidden = torch.randn(3, 5, HIDDEN)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    return hidden, mask


def _padded(hidden, mask, extra: int = 4):
    """The same batch with other (large) values in its padded positions and ``extra`` more
    padded positions appended: a head that respects the mask gives the same logits."""
    import torch

    garbage = 100 * torch.randn_like(hidden)
    hidden = torch.where(mask.bool().unsqueeze(-1), hidden, garbage)
    tail = 100 * torch.randn(hidden.shape[0], extra, hidden.shape[2], dtype=hidden.dtype)
    return torch.cat([hidden, tail], dim=1), torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1)


@pytest.mark.parametrize("name", HEADS)
def test_head_gives_logits_that_padding_does_not_change(name):
    import torch

    head = make("head", name).build(HIDDEN, 2).eval()
    hidden, mask = _hidden_and_mask()
    logits = head(hidden, mask)
    assert logits.shape == (3, 2) and logits.dtype == torch.float32
    torch.testing.assert_close(head(*_padded(hidden, mask)), logits)


@pytest.mark.parametrize("name", HEADS)
def test_head_under_bf16_autocast_respects_the_mask_and_passes_gradients(name):
    import torch

    head = make("head", name).build(HIDDEN, 2).eval()
    hidden, mask = _hidden_and_mask()
    reference = head(hidden, mask)
    hidden = hidden.bfloat16().requires_grad_()  # what an encoder gives under bf16 autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(hidden, mask)
        padded = head(*_padded(hidden.detach(), mask))
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()
    torch.testing.assert_close(padded, logits)
    torch.testing.assert_close(logits.float(), reference, atol=0.05, rtol=0.05)
    logits.float().sum().backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in head.parameters())


def test_pooling_heads_read_what_their_names_say():
    import torch

    hidden = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [50.0, 50.0]]])  # the third token is padding
    mask = torch.tensor([[1, 1, 0]])
    with torch.no_grad():
        pooled = {name: make("head", name).build(2, 2).pool(hidden, mask)
                  for name in ("mean", "max", "attention")}
    torch.testing.assert_close(pooled["mean"], torch.tensor([[2.0, -1.0]]))
    torch.testing.assert_close(pooled["max"], torch.tensor([[3.0, 0.0]]))
    # attention: a convex combination of the real tokens only
    a = pooled["attention"][0]
    weight = (a[0] - 1.0) / 2.0
    assert 0.0 < weight < 1.0
    torch.testing.assert_close(a, torch.tensor([1.0 + 2 * weight, -2.0 + 2 * weight]))


@pytest.mark.parametrize("name, hidden_layers", [("mlp1", 1), ("mlp2", 2)])
def test_mlp_heads_have_their_hidden_layers_and_pooling(name, hidden_layers):
    import torch

    head = make("head", name, hidden_dim=64, activation="tanh", pooling="cls").build(HIDDEN, 2)
    linears = [m for m in head.classifier if isinstance(m, torch.nn.Linear)]
    shapes = [(HIDDEN, 64)] + [(64, 64)] * (hidden_layers - 1) + [(64, 2)]
    assert [(m.in_features, m.out_features) for m in linears] == shapes
    assert sum(isinstance(m, torch.nn.Tanh) for m in head.classifier) == hidden_layers
    assert sum(isinstance(m, torch.nn.Dropout) for m in head.modules()) == hidden_layers + 1

    # cls reads the first token only; mean reads every real token
    hidden, mask = _hidden_and_mask()
    changed = hidden.clone()
    changed[:, 1] += 1.0
    cls_head = head.eval()
    mean_head = make("head", name, hidden_dim=64, pooling="mean").build(HIDDEN, 2).eval()
    torch.testing.assert_close(cls_head(changed, mask), cls_head(hidden, mask))
    assert not torch.allclose(mean_head(changed, mask)[:2], mean_head(hidden, mask)[:2])


# --- heads on a tiny encoder ---------------------------------------------------------------


def _encoder(path):
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    return AutoModel.from_pretrained(path)


def _batch():
    """Eight padded pairs of random tokens with balanced labels."""
    import torch

    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1000, 2000, (8, 12), generator=generator)
    lengths = torch.tensor([12, 10, 7, 12, 5, 9, 12, 6])
    attention_mask = (torch.arange(12) < lengths.unsqueeze(1)).long()
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    return input_ids, attention_mask, torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])


def _train(model, loss_fn, steps: int, lr: float = 1e-3) -> tuple[float, float]:
    """``steps`` AdamW steps on one batch; the loss before and after, dropout off."""
    import torch

    input_ids, attention_mask, labels = _batch()

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            return loss_fn(model(input_ids, attention_mask), labels).item()

    before = evaluate()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(input_ids, attention_mask).float(), labels)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
    return before, evaluate()


@pytest.mark.parametrize("name", HEADS)
def test_head_trains_a_tiny_bert(name, tiny_bert):
    import torch
    from criteria.engine.model import CriterionClassifier

    model = CriterionClassifier(_encoder(tiny_bert), make("head", name).build(HIDDEN, 2))
    before, after = _train(model, torch.nn.CrossEntropyLoss(), steps=10)
    assert after < 0.8 * before, f"{name}: loss {before:.4f} -> {after:.4f}"


def test_pooler_head_uses_bert_pooler_without_owning_its_weights(tiny_bert):
    import torch
    from criteria.engine.model import CriterionClassifier

    encoder = _encoder(tiny_bert)
    head = make("head", "pooler").build(HIDDEN, 2)
    model = CriterionClassifier(encoder, head)
    assert head.pooler is encoder.pooler
    assert set(head.state_dict()) == {"classifier.weight", "classifier.bias"}
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == len(set(names)) and not any(n.startswith("head.") and "pooler" in n for n in names)

    # it is the encoder's pooler that trains
    pooler_weight = encoder.pooler.dense.weight.detach().clone()
    _train(model, torch.nn.CrossEntropyLoss(), steps=1)
    assert not torch.equal(pooler_weight, encoder.pooler.dense.weight)

    # the same head bound to the same encoder weights computes the same logits
    again = make("head", "pooler").build(HIDDEN, 2)
    reloaded = CriterionClassifier(_encoder(tiny_bert), again)
    reloaded.encoder.load_state_dict(encoder.state_dict())
    again.load_state_dict(head.state_dict())  # strict: nothing missing, nothing extra
    input_ids, attention_mask, _ = _batch()
    torch.testing.assert_close(reloaded.eval()(input_ids, attention_mask),
                               model.eval()(input_ids, attention_mask))


def test_pooler_head_brings_its_own_pooler_to_deberta(tiny_deberta):
    import torch
    from criteria.engine.model import CriterionClassifier

    encoder = _encoder(tiny_deberta)
    assert getattr(encoder, "pooler", None) is None
    head = make("head", "pooler").build(HIDDEN, 2)
    model = CriterionClassifier(encoder, head)
    assert head.pooler is head.own_pooler
    assert set(head.state_dict()) == {"own_pooler.dense.weight", "own_pooler.dense.bias",
                                      "classifier.weight", "classifier.bias"}
    before, after = _train(model, torch.nn.CrossEntropyLoss(), steps=10)
    assert after < 0.8 * before, f"loss {before:.4f} -> {after:.4f}"


def test_pooler_head_model_folder_reloads(tiny_bert, tmp_path):
    import torch
    from criteria.engine.model import CriterionClassifier, load_classifier, load_tokenizer, save_classifier

    model = CriterionClassifier(_encoder(tiny_bert), make("head", "pooler").build(HIDDEN, 2)).eval()
    metadata = {"head": {"name": "pooler", "config": {"dropout": 0.1}}, "criteria": [], "max_length": 16,
                "threshold": 0.5}
    save_classifier(model, load_tokenizer(str(tiny_bert)), tmp_path / "model", metadata)
    reloaded, _, _ = load_classifier(tmp_path / "model", REGISTRY)
    input_ids, attention_mask, _ = _batch()
    torch.testing.assert_close(reloaded(input_ids, attention_mask), model(input_ids, attention_mask))


# --- losses --------------------------------------------------------------------------------


def _logits_and_labels():
    import torch

    return torch.randn(8, 2), torch.tensor([0, 0, 0, 1, 0, 1, 0, 0])


def test_cross_entropy_is_torch_cross_entropy():
    import torch

    logits, labels = _logits_and_labels()
    loss = make("loss", "cross_entropy").build(CLASS_COUNTS)(logits, labels)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))


def test_weighted_cross_entropy_weighs_classes_by_inverse_frequency():
    import torch

    logits, labels = _logits_and_labels()
    loss = make("loss", "weighted_cross_entropy").build(CLASS_COUNTS)(logits, labels)
    weights = torch.tensor([100 / (2 * 90), 100 / (2 * 10)])
    per_example = -torch.log_softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
    # torch's weighted mean: divided by the total weight of the batch
    torch.testing.assert_close(loss, (weights[labels] * per_example).sum() / weights[labels].sum())


def test_bce_on_the_logit_difference_weighs_positives():
    import torch

    logits, labels = _logits_and_labels()
    loss = make("loss", "bce", pos_weight=3.0).build(CLASS_COUNTS)(logits, labels)
    p = torch.sigmoid(logits[:, 1] - logits[:, 0])
    y = labels.float()
    torch.testing.assert_close(loss, -(3.0 * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean())
    # pos_weight 1: the logit difference's BCE is the two-way softmax's cross entropy
    plain = make("loss", "bce", pos_weight=1.0).build(CLASS_COUNTS)(logits, labels)
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(logits, labels))


def test_focal_with_gamma_zero_is_cross_entropy():
    import torch

    logits, labels = _logits_and_labels()
    loss = make("loss", "focal", gamma=0.0, alpha="none").build(CLASS_COUNTS)(logits, labels)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))


def test_class_balanced_focal_uses_effective_number_weights():
    import torch

    beta = 0.99
    effective = [(1 - beta ** n) / (1 - beta) for n in CLASS_COUNTS]
    inverse = [1 / e for e in effective]
    weights = torch.tensor([w * 2 / sum(inverse) for w in inverse])  # summing to the number of classes

    logits, labels = _logits_and_labels()
    loss_fn = make("loss", "class_balanced_focal", beta=beta, gamma=2.0).build(CLASS_COUNTS)
    log_pt = torch.log_softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
    expected = (-weights[labels] * (1 - log_pt.exp()) ** 2 * log_pt).mean()
    torch.testing.assert_close(loss_fn(logits, labels), expected)


def test_effective_number_weights_run_from_equal_to_inverse_frequency():
    import torch
    from criteria_builtins.modules import effective_number_weights

    torch.testing.assert_close(effective_number_weights(CLASS_COUNTS, 0.0), torch.tensor([1.0, 1.0]))
    near_one = effective_number_weights(CLASS_COUNTS, 1 - 1e-9)
    torch.testing.assert_close(near_one[1] / near_one[0], torch.tensor(9.0), rtol=1e-4, atol=0)
    weights = [effective_number_weights(CLASS_COUNTS, beta) for beta in (0.9, 0.99, 0.999)]
    ratios = [float(w[1] / w[0]) for w in weights]
    assert 1.0 < ratios[0] < ratios[1] < ratios[2] < 9.0
    assert effective_number_weights([5, 0], 0.99).tolist() == [2.0, 0.0]  # an absent class weighs nothing


def test_label_smoothing_spreads_the_target():
    import torch

    logits, labels = _logits_and_labels()
    loss = make("loss", "label_smoothing", smoothing=0.15).build(CLASS_COUNTS)(logits, labels)
    target = torch.nn.functional.one_hot(labels, 2).float() * (1 - 0.15) + 0.15 / 2
    torch.testing.assert_close(loss, -(target * torch.log_softmax(logits, -1)).sum(-1).mean())


@pytest.mark.parametrize("name", LOSSES)
def test_loss_passes_finite_gradients_and_rewards_right_answers(name):
    import torch

    loss_fn = make("loss", name).build(CLASS_COUNTS)
    logits, labels = _logits_and_labels()
    logits.requires_grad_()
    loss = loss_fn(logits, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    right = torch.nn.functional.one_hot(labels, 2).float() * 4 - 2
    assert loss_fn(right, labels) < loss_fn(-right, labels)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_trains_a_tiny_bert(name, tiny_bert):
    import torch
    from criteria.engine.model import CriterionClassifier

    model = CriterionClassifier(_encoder(tiny_bert), make("head", "linear").build(HIDDEN, 2))
    before_params = {n: p.detach().clone() for n, p in model.named_parameters()}
    before, after = _train(model, make("loss", name).build(CLASS_COUNTS), steps=5)
    assert math.isfinite(after) and after < before, f"{name}: loss {before:.4f} -> {after:.4f}"
    unchanged = [n for n, p in model.named_parameters() if torch.equal(before_params[n], p.detach())]
    # all but BERT's pooler, which the linear head does not read
    assert unchanged == ["encoder.pooler.dense.weight", "encoder.pooler.dense.bias"]
