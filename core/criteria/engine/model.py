"""The classifier: a transformers encoder, optionally wrapped by a PEFT plugin, and a head plugin.

Saved as a run folder ``criteria predict`` loads: what training changed, the head's (and the
formulation's scorer's and evidence module's) weights, the tokenizer, and ``criteria_model.json``
(head, formulation and PEFT plugins with their configs, criteria, max length, threshold). An
encoder that trained only some of its weights (a PEFT method, frozen layers) keeps just those
(``trained.pt``) beside a reference to its base model (name and SHA-256 of its weights); one that
trained them all is saved whole in ``save_pretrained`` form.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from criteria.data.tokens import encode_texts
from criteria.engine.freezing import apply_freezing
from criteria.engine.model_source import ModelError, locate_base, resolve_model
from criteria.errors import CriteriaError
from criteria.files import write_json
from criteria.plugin.kinds import TrainingPlan

if TYPE_CHECKING:  # pragma: no cover
    from criteria.engine.job import TrainingJob
    from criteria.plugin.registry import Registry

#: The classifier's outputs: one logit each for "not met" (0) and "met" (1).
NUM_LABELS = 2
MODEL_FILE = "criteria_model.json"
HEAD_FILE = "head.pt"
SCORER_FILE = "scorer.pt"
PEFT_FILE = "peft.pt"  # a PEFT method's weights beside a full copy of its base encoder
TRAINED_FILE = "trained.pt"  # the encoder weights training changed, beside a reference to the base model
EVIDENCE_FILE = "evidence.pt"


def quiet_libraries() -> None:
    """Keep the terminal for criteria's own progress: no per-file progress bars from transformers,
    no warnings about optional kernels from bitsandbytes (imported by peft)."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # peft calls a transformers property that transformers 5 deprecates; nothing for users to do.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def resolve_model_name(name: str | None) -> str:
    """What ``from_pretrained`` loads for a hub name or local path (None: the embedded model),
    checked first (:func:`~criteria.engine.model_source.resolve_model`)."""
    return resolve_model(name).location


def load_tokenizer(name: str | None) -> Any:
    from transformers import AutoTokenizer

    location = resolve_model_name(name)
    quiet_libraries()
    try:
        return AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer of model {name or location!r}: {_first_line(exc)}") from None


def load_encoder(name: str | None, *, hidden_dropout: float, attention_dropout: float, **kwargs: Any) -> nn.Module:
    """The bare encoder (no task head), with the dropout rates applied to its config."""
    from transformers import AutoConfig, AutoModel

    path = resolve_model_name(name)
    quiet_libraries()
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load model {name or path!r}: {_first_line(exc)}") from None
    # Config attribute names differ across families; set whichever this one has.
    for attr in ("hidden_dropout_prob", "dropout"):
        if hasattr(config, attr):
            setattr(config, attr, hidden_dropout)
    for attr in ("attention_probs_dropout_prob", "attention_dropout"):
        if hasattr(config, attr):
            setattr(config, attr, attention_dropout)
    try:
        return AutoModel.from_pretrained(path, config=config, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the weights of model {name or path!r}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The module ``torch.compile`` wrapped (its weights are the same), or ``model`` itself."""
    return getattr(model, "_orig_mod", model)


class CriterionClassifier(nn.Module):
    """``encoder`` followed by ``head``, scored by a formulation: returns one logit pair per
    output slot of each input unit (:mod:`criteria.data.units`), ``(units, slots, 2)``; where
    each unit scores one pair (a cross-encoder), simply ``(units, 2)``.

    Without a formulation the head's outputs are read as logit pairs (``2 * slots`` outputs). A
    formulation whose units read criterion texts (a bi-encoder) gets the head's outputs for them
    too: ``criteria`` holds their token ids (``input_ids``, ``attention_mask``,
    ``token_type_ids``), encoded once per forward."""

    def __init__(self, encoder: nn.Module, head: nn.Module, formulation: Any = None,
                 scorer: nn.Module | None = None, criteria: dict[str, torch.Tensor] | None = None,
                 head_outputs: int = NUM_LABELS, evidence: nn.Module | None = None, slots: int | None = None,
                 ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.head_outputs = head_outputs
        self.formulation = formulation
        self.scorer = scorer
        self.evidence = evidence  # the formulation's evidence module (evidence binding), or None
        self.slots = slots  # output slots per unit (the formulation's units), where known
        for name, tensor in (criteria or {}).items():
            self.register_buffer(f"criteria_{name}", tensor, persistent=False)
        self.reads_criteria = bool(criteria)
        bind = getattr(head, "bind", None)
        if bind is not None:  # heads that reuse part of the encoder (its pooler) take it here
            bind(encoder)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The head's outputs for a batch of token ids: ``(batch, head outputs)``."""
        return self.head(*self._hidden_states(input_ids, attention_mask, token_type_ids))

    def _hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       token_type_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's last hidden states and the mask of their real positions."""
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None and self._uses_segments else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        extra = hidden.shape[1] - attention_mask.shape[1]
        if extra > 0:  # prompt tuning prepends virtual tokens: they are real positions for the head
            attention_mask = torch.cat([attention_mask.new_ones(attention_mask.shape[0], extra), attention_mask], dim=1)
        return hidden, attention_mask

    def set_criteria(self, criteria: dict[str, torch.Tensor]) -> None:
        """Read other criterion texts from now on (a bi-encoder scores criteria it was not trained on)."""
        device = next(self.parameters()).device
        for name, tensor in criteria.items():
            setattr(self, f"criteria_{name}", tensor.to(device))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None,
        sentence_ids: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The logits; with ``sentence_ids`` (each token's sentence, -1: none; see
        :mod:`criteria.engine.evidence`) also the evidence logits ``(units, sentences, slots)``,
        as a tuple."""
        hidden, mask = self._hidden_states(input_ids, attention_mask, token_type_ids)
        out = self.head(hidden, mask)
        criteria_out = None
        if self.reads_criteria:
            criteria_out = self.encode(self.criteria_input_ids, self.criteria_attention_mask,
                                       self.criteria_token_type_ids)
        scores = out.view(out.shape[0], -1, 2) if self.formulation is None else \
            self.formulation.scores(out, self.scorer, criteria_out)
        scores = scores[:, 0] if scores.shape[1] == 1 else scores
        if sentence_ids is None:
            return scores
        if self.evidence is None:
            raise ValueError("this model has no evidence module: it was built without evidence binding")
        from criteria.engine.evidence import sentence_states

        states = sentence_states(hidden, sentence_ids)
        return scores, self.formulation.evidence_scores(states, self.evidence, criteria_out)

    @property
    def _uses_segments(self) -> bool:
        config = getattr(self.encoder, "config", None)
        return getattr(config, "type_vocab_size", 0) > 1

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.hidden_size


def criteria_tensors(encoded: Any, pad_token_id: int) -> dict[str, torch.Tensor] | None:
    """The token ids of the criterion texts a bi-encoder reads (``EncodedUnits.criteria``), padded."""
    if encoded is None:
        return None
    width = int(encoded.lengths.max())
    ids = torch.full((len(encoded), width), pad_token_id, dtype=torch.long)
    types = torch.zeros((len(encoded), width), dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row in range(len(encoded)):
        unit_ids, segments = encoded.unit(row)
        ids[row, : len(unit_ids)] = torch.from_numpy(unit_ids.astype("int64"))
        types[row, : len(unit_ids)] = torch.from_numpy(segments.astype("int64"))
        mask[row, : len(unit_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def assemble(encoder: nn.Module, config: Any, slots: int, criteria: dict[str, torch.Tensor] | None,
             evidence: bool = False) -> CriterionClassifier:
    """The classifier around ``encoder``: the head plugin's head sized by the formulation, the
    formulation's scorer, if it has one, and its evidence module when ``evidence`` is asked."""
    formulation = config.formulation
    outputs = formulation.head_outputs(slots)
    hidden = encoder.config.hidden_size
    head = config.head.build(hidden, outputs)
    evidence_module = formulation.build_evidence(hidden, outputs, slots) if evidence else None
    return CriterionClassifier(encoder, head, formulation, formulation.build_scorer(outputs), criteria, outputs,
                               evidence_module, slots)


def build_model(job: TrainingJob, runtime: Any, plan: TrainingPlan) -> CriterionClassifier:
    """The job's encoder with its dropout rates, wrapped by the PEFT plugin, frozen as the
    ``[train]`` knobs say, under the head plugin's head, scored by the formulation."""
    train, config = job.config.train, job.config
    encoder = load_encoder(
        job.model_name, hidden_dropout=train.hidden_dropout, attention_dropout=train.attention_dropout,
        **runtime.model_kwargs(),
    )
    encoder = config.peft.build(encoder, plan)
    apply_freezing(encoder, train)
    return assemble(encoder, config, job.encoded.units.slots, criteria_tensors(job.encoded.criteria, job.pad_token_id),
                    evidence=job.evidence is not None)


def save_classifier(model: CriterionClassifier, tokenizer: Any, folder: Path, metadata: dict[str, Any],
                    peft: Any = None, base: dict[str, Any] | None = None) -> Path:
    """Write a model folder ``criteria predict`` loads. ``metadata`` needs ``head`` ({name,
    config}), ``criteria`` ([{id, name, text}]), ``max_length`` and ``threshold``, and names the
    ``formulation`` ({name, config}) when there is one; ``peft`` is the PEFT plugin that wrapped
    the encoder (None: a plain encoder).

    With ``base`` (:func:`~criteria.engine.model_source.base_reference` of the model it was
    fine-tuned from), an encoder that trained only some of its weights (a PEFT method, frozen
    layers) is saved as those weights beside the reference (name and SHA-256 of the base), not as
    a full copy; loading finds the base, checks its hash, re-applies the PEFT method and restores
    the trained weights. Otherwise the folder stands alone: updates merged into the encoder where
    the method allows, else the base encoder plus the method's weights."""
    folder.mkdir(parents=True, exist_ok=True)
    model = unwrap_compiled(model)
    metadata = {**metadata, "num_labels": model.head_outputs, "reads_criteria": model.reads_criteria}
    if model.evidence is not None:  # predict cuts posts into sentences by criteria.data.sentences' rule
        metadata["evidence"] = {"sentences": "rule", "slots": model.slots}
    encoder = model.encoder
    trained = {name: p.detach().cpu() for name, p in encoder.named_parameters() if p.requires_grad}
    everything = sum(1 for _ in encoder.parameters())
    if base is not None and len(trained) < everything:
        torch.save(trained, folder / TRAINED_FILE)
        method = peft if peft is not None else None
        metadata = {**metadata, "base_model": base}
        if method is not None:
            metadata["peft"] = {"name": method.name, "config": method.config.model_dump()}
        plain = method.base_model(encoder) if method is not None else encoder
        plain.config.save_pretrained(folder / "encoder")  # the architecture, read without the base at hand
    else:
        merged = peft.merged(encoder) if peft is not None else encoder
        if merged is None:  # the method's weights cannot be folded in: keep them beside the base
            torch.save(trained, folder / PEFT_FILE)
            metadata = {**metadata, "peft": {"name": peft.name, "config": peft.config.model_dump()}}
            merged = peft.base_model(encoder)
        merged.save_pretrained(folder / "encoder")
    tokenizer.save_pretrained(folder / "encoder")
    torch.save(model.head.state_dict(), folder / HEAD_FILE)
    if model.scorer is not None:
        torch.save(model.scorer.state_dict(), folder / SCORER_FILE)
    if model.evidence is not None:
        torch.save(model.evidence.state_dict(), folder / EVIDENCE_FILE)
    write_json(folder / MODEL_FILE, {"format": 1, **metadata}, "model description")
    return folder


def load_classifier(folder: Path, registry: Registry, *, base_location: str | None = None
                    ) -> tuple[CriterionClassifier, Any, dict[str, Any]]:
    """Load a folder written by :func:`save_classifier`: (model in eval mode, tokenizer, metadata);
    its head and PEFT plugins are looked up in ``registry``. A folder that refers to its base
    model finds it (``base_location`` overrides where) and checks its hash."""
    from transformers import AutoModel, AutoTokenizer

    meta_path = folder / MODEL_FILE
    if not folder.exists():
        raise ModelError(f"model folder not found: {folder}. Pass the run folder `criteria train` wrote "
                         "(runs/...), or a study's outputs/<study>/best-model")
    if not meta_path.is_file():
        raise ModelError(f"{folder} is not a criteria model folder (no {MODEL_FILE}); "
                         "pass the run folder `criteria train` wrote, or its model/ folder")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{meta_path} is damaged ({exc}); export or train the model again") from None
    head_plugin = registry.get("head", metadata["head"]["name"]).cls(**metadata["head"]["config"])
    quiet_libraries()
    reference = metadata.get("base_model")
    encoder = AutoModel.from_pretrained(locate_base(reference, base_location) if reference else folder / "encoder")
    if metadata.get("peft"):  # re-apply the method, then its trained weights
        peft = registry.get("peft", metadata["peft"]["name"]).cls(**metadata["peft"]["config"])
        encoder = peft.build(encoder, TrainingPlan(total_steps=1))
    weights = folder / (TRAINED_FILE if reference else PEFT_FILE)
    if weights.is_file():
        state = torch.load(weights, map_location="cpu", weights_only=True)
        unexpected = encoder.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            method = metadata.get("peft", {}).get("name", "none")
            raise CriteriaError(f"{weights} does not fit the {method!r} PEFT method "
                                f"(unexpected weights {unexpected[:3]}); was it saved by another version?")
        if reference and metadata.get("peft"):
            encoder = peft.merged(encoder) or encoder  # fold the updates in where the method can: faster
    outputs = metadata.get("num_labels", NUM_LABELS)
    head = head_plugin.build(encoder.config.hidden_size, outputs)
    tokenizer = AutoTokenizer.from_pretrained(folder / "encoder")
    formulation = scorer = criteria = evidence = None
    if metadata.get("formulation"):
        formulation = registry.get("formulation", metadata["formulation"]["name"]).cls(
            **metadata["formulation"]["config"])
        scorer = formulation.build_scorer(outputs)
        if metadata.get("evidence"):
            evidence = formulation.build_evidence(encoder.config.hidden_size, outputs, metadata["evidence"]["slots"])
    if metadata.get("reads_criteria"):
        criteria = criteria_tensors(encode_texts(tokenizer, [c["text"] for c in metadata["criteria"]],
                                                 metadata["max_length"]), tokenizer.pad_token_id or 0)
    # built (and the head bound) before the weights load: binding decides the head's weights
    slots = metadata["evidence"]["slots"] if metadata.get("evidence") else None
    model = CriterionClassifier(encoder, head, formulation, scorer, criteria, outputs, evidence, slots)
    head.load_state_dict(torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=True))
    if scorer is not None:
        scorer.load_state_dict(torch.load(folder / SCORER_FILE, map_location="cpu", weights_only=True))
    if evidence is not None:
        evidence.load_state_dict(torch.load(folder / EVIDENCE_FILE, map_location="cpu", weights_only=True))
    model.eval()
    return model, tokenizer, metadata
