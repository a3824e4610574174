"""Time to quality: ``criteria run`` against ``transformers.Trainer.hyperparameter_search``.

    python benchmarks/time_to_quality.py --budget-minutes 8 [--spec specs/study.toml] [--out results.json]

Both search the same model (the spec's; the embedded MiniLM by default) on the same pairs, split
the same way (the spec's held-out test posts, and its validation split), in the same precision
(what ``precision = "auto"`` picks here), each for the same wall budget, one after the other
(nothing else should run meanwhile). The peer is the Trainer's search as its documentation shows
it: ``model_init`` with a sequence-classification head on the pairs (post, criterion text), the
Optuna backend, and the usual ``hp_space`` (learning rate, epochs, batch size, weight decay,
warmup), evaluated every epoch on the validation pairs, the objective being their macro-F1.

For each system the script records, every time its best validation score improves, the elapsed
time (from the start, data preparation included; scoring the test posts is not counted) and the
held-out test macro-F1 of that best model. It prints both curves, the TF-IDF baseline, and the
ratio of the wall time the peer needed to reach its best test macro-F1 to the time criteria
needed to reach the same.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Point:
    seconds: float  # elapsed wall time, test scoring excluded
    validation: float  # best validation macro-F1 so far
    test: float  # held-out test macro-F1 of that best model
    trial: int


class Clock:
    """Wall time that can be paused while the benchmark scores test posts (not part of a search)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def pause(self):
        clock = self

        class _Paused:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                clock.paused += time.perf_counter() - self.t

        return _Paused()


def run_criteria(spec_path: Path, budget_s: float, workdir: Path) -> tuple[list[Point], dict]:
    import os

    from criteria.engine.model import load_classifier
    from criteria.plugin.registry import get_registry
    from criteria.spec.load import load_spec
    from criteria.study.folders import KEPT_FOLDER, kept_model_folder
    from criteria.study.prepare import baseline_metrics, evaluate_indices, prepare_data
    from criteria.study.progress import StudyProgress
    from criteria.study.runner import run_study

    os.chdir(workdir)
    clock = Clock()
    registry = get_registry()
    raw = spec_path.read_text()
    spec_file = workdir / "study.toml"
    spec_file.write_text(raw)
    spec = load_spec(spec_file, registry)
    # the budget decides, not the spec's trial count
    spec = spec.__class__(**{**spec.__dict__, "study": spec.study.model_copy(
        update={"trials": 10_000, "timeout_minutes": budget_s / 60, "name": "time-to-quality"})})
    points: list[Point] = []
    best = {"value": -math.inf}
    shared: dict = {}

    class Watch(StudyProgress):
        def trial_finished(self, trial, finished):
            if trial.state.name != "COMPLETE" or trial.value <= best["value"]:
                return
            best["value"] = trial.value
            seconds = clock.now()
            with clock.pause():
                if "data" not in shared:  # the study's own data, prepared the same way (deterministic)
                    shared["data"] = prepare_data(spec)
                data = shared["data"]
                kept = kept_model_folder(workdir / "out" / KEPT_FOLDER, trial.number)  # export = "keep" kept it
                model, _, meta = load_classifier(kept / "model", registry)
                config = spec.space.suggest(__import__("optuna").trial.FixedTrial(trial.params))
                test, _, _ = evaluate_indices(model, data, config, config.backend.build(), data.test_indices,
                                              meta.get("threshold", 0.5))
            points.append(Point(seconds, trial.value, test["overall"]["macro_f1"], trial.number))
            print(f"criteria  {seconds:7.1f} s  trial {trial.number:3d}  val {trial.value:.4f}  "
                  f"test {points[-1].test:.4f}", flush=True)

    _, summary, data, _ = run_study(spec, track=False, progress=Watch(), output=workdir / "out")
    baseline = baseline_metrics(data.corpus, data.study_indices, data.test_indices, spec.study.seed)
    info = {"trials": summary.counts, "seconds": clock.now(), "baseline_test_macro_f1": baseline["overall"]["macro_f1"],
            "runtime": spec.space.default().backend.build().describe()}
    return points, {"data": data, "spec": spec, **info}


def run_peer(context: dict, budget_s: float, workdir: Path) -> tuple[list[Point], dict]:
    import numpy as np
    import torch
    import transformers
    from criteria.data.splits import holdout
    from criteria.engine.metrics import evaluate
    from criteria.engine.model import resolve_model_name
    from transformers import AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    transformers.logging.set_verbosity_error()
    clock = Clock()
    spec, data = context["spec"], context["data"]
    corpus, tokenizer = data.corpus, data.tokenizer
    split = holdout(corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)
    texts = {c.id: c.text for c in corpus.criteria}

    def dataset(indices):
        pairs = [corpus.pairs[i] for i in indices]
        encoded = tokenizer([corpus.text(p) for p in pairs], [texts[p.criterion_id] for p in pairs],
                            truncation="only_first", max_length=spec.data.max_length)
        return [{"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": p.label}
                for ids, mask, types, p in zip(encoded["input_ids"], encoded["attention_mask"],
                                               encoded["token_type_ids"], pairs)]

    train, validation, test = dataset(split.train), dataset(split.validation), dataset(data.test_indices)
    test_groups = [corpus.pairs[i].criterion_id for i in data.test_indices]
    collator = transformers.DataCollatorWithPadding(tokenizer)
    location = resolve_model_name(spec.model.name)
    bf16 = "bf16" in context["runtime"].split(":")[0]

    def model_init(trial=None):
        return AutoModelForSequenceClassification.from_pretrained(location, num_labels=2)

    def compute_metrics(prediction):
        logits, labels = prediction
        probs = torch.softmax(torch.as_tensor(logits).float(), -1)[:, 1].numpy()
        return {"macro_f1": evaluate(labels.tolist(), probs, ["x"] * len(labels))["overall"]["macro_f1"]}

    def hp_space(trial):  # the usual space of the Trainer's documentation, lr moved up for a small model
        return {
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 5e-4, log=True),
            "num_train_epochs": trial.suggest_int("num_train_epochs", 1, 4),
            "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [8, 16, 32]),
            "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
            "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.1),
        }

    points: list[Point] = []
    best = {"value": -math.inf, "trial": 0}

    class Watch(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            evals = [log["eval_macro_f1"] for log in state.log_history if "eval_macro_f1" in log]
            best["trial"] += 1
            if not evals or evals[-1] <= best["value"]:  # the search's objective: the last evaluation
                return
            best["value"] = evals[-1]
            seconds = clock.now()
            with clock.pause():
                model.eval()
                probs = []
                with torch.inference_mode():
                    for start in range(0, len(test), 64):
                        batch = collator([{k: v for k, v in row.items() if k != "labels"}
                                          for row in test[start:start + 64]])
                        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                            logits = model(**batch).logits
                        probs.extend(torch.softmax(logits.float(), -1)[:, 1].tolist())
                labels = [row["labels"] for row in test]
                score = evaluate(labels, np.asarray(probs), test_groups)["overall"]["macro_f1"]
            points.append(Point(seconds, evals[-1], score, best["trial"] - 1))
            print(f"peer      {seconds:7.1f} s  trial {best['trial'] - 1:3d}  val {evals[-1]:.4f}  test {score:.4f}",
                  flush=True)

    args = TrainingArguments(output_dir=str(workdir / "hf"), eval_strategy="epoch", save_strategy="no",
                             logging_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, bf16=bf16,
                             per_device_eval_batch_size=64, seed=spec.study.seed, dataloader_num_workers=0)
    trainer = Trainer(model_init=model_init, args=args, train_dataset=train, eval_dataset=validation,
                      data_collator=collator, compute_metrics=compute_metrics, callbacks=[Watch()])
    trainer.hyperparameter_search(direction="maximize", backend="optuna", hp_space=hp_space, n_trials=10_000,
                                  timeout=budget_s - clock.now(), compute_objective=lambda m: m["eval_macro_f1"])
    return points, {"trials": best["trial"], "seconds": clock.now()}


def time_to_reach(points: list[Point], target: float) -> float | None:
    return next((p.seconds for p in points if p.test >= target - 1e-12), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=8.0)
    parser.add_argument("--spec", type=Path, default=Path(__file__).parent.parent / "specs" / "study.toml")
    parser.add_argument("--out", type=Path, default=None, help="write both curves as JSON here")
    args = parser.parse_args()
    from criteria import hardware

    budget = args.budget_minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        ours, context = run_criteria(args.spec.resolve(), budget, Path(tmp))
        theirs, peer = run_peer(context, budget, Path(tmp))
    flags = " ".join(hardware.cpu_flags(("avx2", "avx512f", "avx512_bf16", "amx_bf16"))) or "none"
    print(f"\n{context['runtime']}; cpu flags: {flags}; budget {args.budget_minutes:g} min each")
    print(f"TF-IDF + logistic regression, held-out test macro-F1: {context['baseline_test_macro_f1']:.4f}")
    for name, points, info in (("criteria", ours, context), ("Trainer.hyperparameter_search", theirs, peer)):
        final = points[-1] if points else None
        print(f"{name}: {info['trials']} trials in {info['seconds']:.0f} s; best validation "
              f"{final.validation if final else float('nan'):.4f}, its test {final.test if final else float('nan'):.4f}")
    if theirs:
        target = theirs[-1].test
        peer_time = time_to_reach(theirs, target)
        ours_time = time_to_reach(ours, target)
        if ours_time is None:
            print(f"criteria did not reach the peer's best test macro-F1 ({target:.4f}) within the budget")
        else:
            print(f"time to the peer's best test macro-F1 ({target:.4f}): peer {peer_time:.0f} s, criteria "
                  f"{ours_time:.0f} s: {peer_time / max(ours_time, 1e-9):.1f}x shorter")
    if args.out:
        args.out.write_text(json.dumps({
            "criteria": [asdict(p) for p in ours], "peer": [asdict(p) for p in theirs],
            "baseline_test_macro_f1": context["baseline_test_macro_f1"], "runtime": context["runtime"],
            "cpu_flags": flags, "budget_minutes": args.budget_minutes,
        }, indent=2))


if __name__ == "__main__":
    main()
