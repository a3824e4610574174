"""The classifier: a transformers encoder, optionally wrapped by a PEFT plugin, and a head plugin.

Saved as a run folder ``criteria predict`` loads: the encoder and tokenizer in ``save_pretrained``
form (PEFT updates merged in where the method allows, so the folder stands alone; otherwise the
base encoder plus the method's own weights in ``peft.pt``), the head's weights, and
``criteria_model.json`` (head and PEFT plugins with their configs, criteria, max length, threshold).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from criteria.data.tokens import encode_texts
from criteria.engine.freezing import apply_freezing
from criteria.engine.model_source import ModelError, resolve_model
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
PEFT_FILE = "peft.pt"


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
                 head_outputs: int = NUM_LABELS) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.head_outputs = head_outputs
        self.formulation = formulation
        self.scorer = scorer
        for name, tensor in (criteria or {}).items():
            self.register_buffer(f"criteria_{name}", tensor, persistent=False)
        self.reads_criteria = bool(criteria)
        bind = getattr(head, "bind", None)
        if bind is not None:  # heads that reuse part of the encoder (its pooler) take it here
            bind(encoder)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The head's outputs for a batch of token ids: ``(batch, head outputs)``."""
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None and self._uses_segments else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        extra = hidden.shape[1] - attention_mask.shape[1]
        if extra > 0:  # prompt tuning prepends virtual tokens: they are real positions for the head
            attention_mask = torch.cat([attention_mask.new_ones(attention_mask.shape[0], extra), attention_mask], dim=1)
        return self.head(hidden, attention_mask)

    def set_criteria(self, criteria: dict[str, torch.Tensor]) -> None:
        """Read other criterion texts from now on (a bi-encoder scores criteria it was not trained on)."""
        device = next(self.parameters()).device
        for name, tensor in criteria.items():
            setattr(self, f"criteria_{name}", tensor.to(device))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.encode(input_ids, attention_mask, token_type_ids)
        criteria_out = None
        if self.reads_criteria:
            criteria_out = self.encode(self.criteria_input_ids, self.criteria_attention_mask,
                                       self.criteria_token_type_ids)
        scores = out.view(out.shape[0], -1, 2) if self.formulation is None else \
            self.formulation.scores(out, self.scorer, criteria_out)
        return scores[:, 0] if scores.shape[1] == 1 else scores

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


def assemble(encoder: nn.Module, config: Any, slots: int, criteria: dict[str, torch.Tensor] | None
             ) -> CriterionClassifier:
    """The classifier around ``encoder``: the head plugin's head sized by the formulation, and the
    formulation's scorer, if it has one."""
    formulation = config.formulation
    outputs = formulation.head_outputs(slots)
    head = config.head.build(encoder.config.hidden_size, outputs)
    return CriterionClassifier(encoder, head, formulation, formulation.build_scorer(outputs), criteria, outputs)


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
    return assemble(encoder, config, job.encoded.units.slots, criteria_tensors(job.encoded.criteria, job.pad_token_id))


def save_classifier(model: CriterionClassifier, tokenizer: Any, folder: Path, metadata: dict[str, Any],
                    peft: Any = None) -> Path:
    """Write a self-contained model folder. ``metadata`` needs ``head`` ({name, config}),
    ``criteria`` ([{id, name, text}]), ``max_length`` and ``threshold``, and names the
    ``formulation`` ({name, config}) when there is one; ``peft`` is the PEFT plugin that wrapped
    the encoder (None: a plain encoder)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = unwrap_compiled(model)
    metadata = {**metadata, "num_labels": model.head_outputs, "reads_criteria": model.reads_criteria}
    encoder = model.encoder
    merged = peft.merged(encoder) if peft is not None else encoder
    if merged is None:  # the method's weights cannot be folded in: keep them beside the base
        trainable = {name: p.detach().cpu() for name, p in encoder.named_parameters() if p.requires_grad}
        torch.save(trainable, folder / PEFT_FILE)
        metadata = {**metadata, "peft": {"name": peft.name, "config": peft.config.model_dump()}}
        merged = peft.base_model(encoder)
    merged.save_pretrained(folder / "encoder")
    tokenizer.save_pretrained(folder / "encoder")
    torch.save(model.head.state_dict(), folder / HEAD_FILE)
    if model.scorer is not None:
        torch.save(model.scorer.state_dict(), folder / SCORER_FILE)
    write_json(folder / MODEL_FILE, {"format": 1, **metadata}, "model description")
    return folder



def load_classifier(folder: Path, registry: Registry) -> tuple[CriterionClassifier, Any, dict[str, Any]]:
    """Load a folder written by :func:`save_classifier`: (model in eval mode, tokenizer, metadata);
    its head and PEFT plugins are looked up in ``registry``."""
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
    encoder = AutoModel.from_pretrained(folder / "encoder")
    if metadata.get("peft"):  # re-apply the method, then its trained weights
        peft = registry.get("peft", metadata["peft"]["name"]).cls(**metadata["peft"]["config"])
        encoder = peft.build(encoder, TrainingPlan(total_steps=1))
        state = torch.load(folder / PEFT_FILE, map_location="cpu", weights_only=True)
        unexpected = encoder.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            raise CriteriaError(f"{folder / PEFT_FILE} does not fit the {peft.name!r} PEFT method "
                                f"(unexpected weights {unexpected[:3]}); was it saved by another version?")
    outputs = metadata.get("num_labels", NUM_LABELS)
    head = head_plugin.build(encoder.config.hidden_size, outputs)
    tokenizer = AutoTokenizer.from_pretrained(folder / "encoder")
    formulation = scorer = criteria = None
    if metadata.get("formulation"):
        formulation = registry.get("formulation", metadata["formulation"]["name"]).cls(
            **metadata["formulation"]["config"])
        scorer = formulation.build_scorer(outputs)
    if metadata.get("reads_criteria"):
        criteria = criteria_tensors(encode_texts(tokenizer, [c["text"] for c in metadata["criteria"]],
                                                 metadata["max_length"]), tokenizer.pad_token_id or 0)
    # built (and the head bound) before the weights load: binding decides the head's weights
    model = CriterionClassifier(encoder, head, formulation, scorer, criteria, outputs)
    head.load_state_dict(torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=True))
    if scorer is not None:
        scorer.load_state_dict(torch.load(folder / SCORER_FILE, map_location="cpu", weights_only=True))
    model.eval()
    return model, tokenizer, metadata
