"""Engine throughput against a plain PyTorch loop and the transformers Trainer, on identical batches.

    python benchmarks/engine_throughput.py                 # embedded MiniLM, 40 batches of 16
    python benchmarks/engine_throughput.py --batches 20 --repeats 3 --model path/or/hub-name

All three train the same encoder + linear [CLS] head with AdamW, a linear schedule, clipping at 1.0
and cross entropy, in fp32 on the same bucketed batches in the same order. Throughput is training
samples per second over the whole epoch (forward, backward, optimizer step; the engine's
evaluation is not counted), timed the same way for all three; the best of ``--repeats`` runs is
kept to damp noise from other processes. Also reports padded tokens per real
token with and without length bucketing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from criteria.data.batching import bucketed_batches, iterate, padding_ratio, shuffled_batches
from criteria.data.loaders import embedded_corpus
from criteria.data.splits import holdout, test_split
from criteria.data.tokens import encode_pairs
from criteria.engine.config import TrainConfig, TrialConfig
from criteria.engine.fit import fit
from criteria.engine.job import TrainingJob
from criteria.engine.model import load_tokenizer, resolve_model_name
from criteria.plugin.registry import get_registry


def plugins(lr: float) -> dict:
    registry = get_registry()

    def make(kind: str, name: str, **values):
        return registry.get(kind, name).cls(**values)

    return {
        "optimizer": make("optimizer", "adamw", lr=lr, weight_decay=0.0), "scheduler": make("scheduler", "linear"),
        "peft": make("peft", "none"), "head": make("head", "linear", dropout=0.1),
        "loss": make("loss", "cross_entropy"), "backend": make("backend", "cpu", precision="fp32"),
        "formulation": make("formulation", "pair"),
    }


def engine_run(job: TrainingJob) -> float:
    return fit(job).history[0].train_samples_per_second


def plain_run(job: TrainingJob, batches: list[np.ndarray]) -> float:
    from transformers import AutoModel, get_linear_schedule_with_warmup

    torch.manual_seed(job.seed)
    encoder = AutoModel.from_pretrained(resolve_model_name(job.model_name))
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(encoder.config.hidden_size, 2))
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(batches))
    loss_fn = torch.nn.CrossEntropyLoss()
    encoder.train(), head.train()
    seen, start = 0, time.perf_counter()
    for batch in iterate(job.encoded, batches, job.corpus.labels, job.pad_token_id):
        hidden = encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         token_type_ids=batch.token_type_ids).last_hidden_state
        loss = loss_fn(head(hidden[:, 0]), batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(batch.labels)
    return seen / (time.perf_counter() - start)


def trainer_run(job: TrainingJob, batches: list[np.ndarray], output_dir: str) -> float:
    import transformers
    from transformers import AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    transformers.logging.set_verbosity_error()
    torch.manual_seed(job.seed)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model_name(job.model_name), num_labels=2)
    collated = [
        {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "token_type_ids": b.token_type_ids, "labels": b.labels}
        for b in iterate(job.encoded, batches, job.corpus.labels, job.pad_token_id)
    ]

    class Timer(TrainerCallback):
        start = end = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()

    class SameBatches(Trainer):
        def get_train_dataloader(self):
            return torch.utils.data.DataLoader(collated, batch_size=None, shuffle=False)

    timer = Timer()
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=len(batches[0]), num_train_epochs=1,
        learning_rate=2e-4, weight_decay=0.0, lr_scheduler_type="linear", max_grad_norm=1.0,
        logging_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True,
        dataloader_num_workers=0, seed=job.seed,
    )
    SameBatches(model=model, args=args, train_dataset=collated, callbacks=[timer]).train()
    return sum(len(b) for b in batches) / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="hub name or path (default: the embedded MiniLM)")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    corpus = embedded_corpus()
    tokenizer = load_tokenizer(args.model)
    encoded = encode_pairs(tokenizer, corpus, args.max_length)
    rest, _ = test_split(corpus, 0.2, 0)
    split = holdout(corpus, rest, 0.2, 0)
    train_idx = np.asarray(split.train)
    lengths = encoded.lengths[train_idx]
    bucketed = [train_idx[b] for b in bucketed_batches(lengths, args.batch_size, seed=0, epoch=1)]
    shuffled = [train_idx[b] for b in shuffled_batches(lengths, args.batch_size, seed=0, epoch=1)]
    print(f"padded tokens per real token (train split, batch {args.batch_size}): "
          f"bucketed {padding_ratio(encoded, bucketed):.3f}, unbucketed {padding_ratio(encoded, shuffled):.3f}")

    # The engine draws its epoch-1 batches exactly as `bucketed` above; train only on the indices
    # the first N batches cover so all three see the same batches in the same order.
    chosen = bucketed[:args.batches]
    covered = np.concatenate(chosen)
    train = TrainConfig(epochs=1, batch_size=args.batch_size, max_grad_norm=1.0, warmup_ratio=0.0,
                        hidden_dropout=0.1, attention_dropout=0.1, patience=0, eval_batch_size=256)
    config = TrialConfig(train, plugins(lr=2e-4))
    job = TrainingJob(corpus=corpus, encoded=encoded, train_indices=covered, validation_indices=np.asarray(split.validation[:64]),
                      config=config, model_name=args.model, pad_token_id=tokenizer.pad_token_id, seed=0)
    engine_batches = [covered[b] for b in bucketed_batches(encoded.lengths[covered], args.batch_size, seed=0, epoch=1)]

    results: dict[str, list[float]] = {"plain loop": [], "engine": [], "transformers Trainer": []}
    import tempfile

    for _ in range(args.repeats):
        results["plain loop"].append(plain_run(job, engine_batches))
        results["engine"].append(engine_run(job))
        with tempfile.TemporaryDirectory() as tmp:
            results["transformers Trainer"].append(trainer_run(job, engine_batches, tmp))
    best = {name: max(values) for name, values in results.items()}
    print(f"\n{len(engine_batches)} batches of {args.batch_size}, max length {args.max_length}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}:")
    for name, value in best.items():
        overhead = (best["plain loop"] / value - 1) * 100
        print(f"  {name:<22} {value:7.1f} samples/s   ({overhead:+.1f}% time vs plain loop)")


if __name__ == "__main__":
    main()
