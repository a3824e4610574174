"""``criteria train``, ``predict`` and ``run``: train one configuration, score posts, run a study."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from criteria.cli.app import (
    INTERRUPTED_EXIT,
    INTERRUPTED_MESSAGE,
    SpecArg,
    app,
    console,
    err_console,
    open_spec,
    registry,
)
from criteria.cli.progress import study_progress
from criteria.files import check_output_folder


@app.command()
def train(
    spec: Path = SpecArg,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run folder (default: runs/<study>-<time>)."),
    baseline: bool = typer.Option(True, help="Also score a TF-IDF + logistic-regression baseline on the test posts."),
) -> None:
    """Train one configuration (the spec's frozen values, else plugin defaults) and save a run folder."""
    from datetime import datetime

    from criteria.engine.metrics import metrics_table
    from criteria.plugin.kinds import kind_named
    from criteria.study.single import train_from_spec

    loaded = open_spec(spec)
    folder = check_output_folder(output or Path("runs") / f"{loaded.study.name}-{datetime.now():%Y%m%d-%H%M%S}",
                                 "run folder")
    config = loaded.space.default()
    console.print("training " + ", ".join(f"{k}=[cyan]{p.name}[/]" for k, p in config.plugins.items()
                                          if config.stage_runs(kind_named(k).stage)))
    with study_progress(console, loaded.study.metric) as progress:
        result = train_from_spec(loaded, folder, progress=progress, baseline=baseline)
    best = result.fit.best
    console.print(metrics_table(result.validation, title=f"validation, best epoch {result.fit.best_epoch}"))
    if result.test is not None:
        console.print(metrics_table(result.test, title="held-out test posts"))
        line = f"test macro-F1: [bold]{result.test['overall']['macro_f1']:.3f}[/]"
        if result.baseline_test is not None:
            line += f"   TF-IDF + logistic regression: {result.baseline_test['overall']['macro_f1']:.3f}"
        console.print(line)
        if "evidence_mrr" in result.test["overall"]:
            console.print(f"test evidence: {evidence_line(result.test['overall'])}", highlight=False)
    scores = ", ".join(f"{best.metrics['overall'][m]:.3f} validation {m}" for m in loaded.study.metrics)
    console.print(f"{spec.name}: {scores}; {result.seconds:.0f} s. Run folder: [bold]{result.folder}[/]")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run folder from `criteria train` (or its model/ folder)."),
    input: Path = typer.Option(..., "--input", "-i", help="CSV with columns post_id,text."),
    output: Path = typer.Option(Path("predictions.csv"), "--output", "-o", help="Where to write the scores."),
    criteria: Optional[Path] = typer.Option(
        None, "--criteria", help="A criteria JSON to score instead of the model's own (biencoder models only)."),
    evidence: bool = typer.Option(
        False, "--evidence", help="Add an evidence column: for each met pair, the post's most likely evidence "
                                  "sentences with their probabilities (models trained with evidence binding)."),
    evidence_top: int = typer.Option(3, "--evidence-top", min=1, help="Sentences shown per met pair with --evidence."),
) -> None:
    """Score every post against every criterion the model was trained on (or, for a model that reads
    criterion texts, against the criteria of --criteria)."""
    from criteria.engine.predict import predict_file

    rows = predict_file(run_dir, input, output, registry(), criteria_json=criteria,
                        evidence_top=evidence_top if evidence else 0)
    console.print(f"wrote {rows} rows to [bold]{output}[/]")


@app.command()
def run(
    spec: Path = SpecArg,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Plots and best model (default: outputs/<study>)."),
    track: bool = typer.Option(True, help="Track the study in MLflow (MLFLOW_TRACKING_URI, else ./mlflow.db)."),
    workers: str = typer.Option(
        "1", "--workers", help="Worker processes to start here: a number, or auto (one per visible GPU, each pinned "
                               "to its own; one without a GPU). A `criteria run` anywhere else on the same storage "
                               "joins the study.",
    ),
    worker_index: Optional[int] = typer.Option(
        None, "--worker-index", min=0, help="This worker's index, which seeds its sampler (default: "
                                            "CRITERIA_WORKER_INDEX, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX, else 0, or a "
                                            "free one if a worker 0 is running).",
    ),
    export_model: bool = typer.Option(True, "--export/--no-export",
                                      help="Export the best model if this worker finishes the study."),
    spawned: bool = typer.Option(False, "--spawned", hidden=True, help="A worker started by --workers."),
) -> None:
    """Run (or resume) the spec's study: trials, pruning, tracking, best-model export."""
    from criteria.study.report import conclude
    from criteria.study.runner import run_study
    from criteria.study.workers import index_from_environment, local_worker_count

    index = worker_index if worker_index is not None else index_from_environment()
    count = local_worker_count(workers)
    loaded = open_spec(spec)
    folder = check_output_folder(output or Path("outputs") / loaded.study.name)
    if count > 1:
        from criteria.cli.workers import run_with_local_workers

        return run_with_local_workers(spec, loaded, count, index or 0, folder, track, export_model)
    with study_progress(console, loaded.study.metric) as progress:
        study, summary, data, tracker = run_study(loaded, track=track, progress=progress, output=folder,
                                                   worker_index=index)
        export = None
        if summary.export_here and not spawned:  # this worker finished the study: it exports, once
            export = conclude(study, loaded, data, folder, tracker, progress=progress, export=export_model)
    if spawned:  # its parent prints the study's summary
        mine = summary.trials_per_worker.get(summary.worker, 0)
        console.print(f"worker {summary.worker}: {mine} trials finished; {summary.seconds:.0f} s", highlight=False)
        if summary.interrupted:
            raise typer.Exit(INTERRUPTED_EXIT)
        return
    print_summary(summary, loaded.study.metric, export)
    if summary.interrupted:
        raise typer.Exit(INTERRUPTED_EXIT)
    if summary.complete and not summary.export_here:
        console.print(f"The study is complete; the worker that finished it exported the best model. "
                      f"`criteria export {spec}` exports it here.", highlight=False)


def print_summary(summary, metric: str, export=None) -> None:
    """The study's counts, best trial (or with several objectives the Pareto front), outputs."""
    table = Table(title=f"study {summary.name}" + (" (interrupted)" if summary.interrupted else ""),
                  title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    counts = summary.counts
    table.add_row("trials", f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed"
                  + (f", {counts['running']} running" if counts.get("running") else ""))
    if summary.best_value is not None:
        table.add_row(f"best {metric}", f"{summary.best_value:.4f} (trial {summary.best_trial})")
    if summary.front:
        table.add_row("Pareto front", f"{len(summary.front)} trial(s), below; best on {summary.metrics[0]}: "
                                      f"trial {summary.best_trial}, exported")
    if summary.best_trial is not None:
        table.add_row("best configuration", "\n".join(f"{k} = {v}" for k, v in summary.best_params.items()) or "-")
    for number, reason in summary.failures[:5]:
        table.add_row(f"trial {number} failed", reason)
    if export is not None and export.test is not None:
        table.add_row("test macro-F1", f"{export.test['overall']['macro_f1']:.4f} (best model, held-out test posts)")
        table.add_row("baseline", f"{export.baseline_test['overall']['macro_f1']:.4f} (TF-IDF + logistic regression)")
        if "evidence_mrr" in export.test["overall"]:
            table.add_row("test evidence", evidence_line(export.test["overall"]))
    ensemble = getattr(export, "ensemble", None)
    if ensemble is not None and ensemble.test is not None:
        table.add_row("ensemble", f"{ensemble.test['overall']['macro_f1']:.4f} test macro-F1 (trials "
                      f"{', '.join(map(str, ensemble.trials))}, probabilities averaged); {ensemble.folder}")
    if summary.pretraining.get("used"):
        counts = summary.pretraining
        table.add_row("continued pretraining", f"{counts['used']} adapted encoder(s) used: {counts['pretrained']} "
                                               f"pretrained, {counts['cached']} from the cache")
    if summary.seconds:
        table.add_row("time", f"{summary.seconds:.0f} s")
    table.add_row("storage", summary.storage)
    table.add_row("tracking", summary.tracking)
    if export is not None:
        table.add_row("outputs", str(export.folder))
        for note in export.notes:
            table.add_row("note", note)
    if export is not None and export.mlflow_model is not None:
        model = export.mlflow_model
        table.add_row("MLflow model", model.uri + (f" (registered: {model.registered_uri})" if model.registered_name else ""))
    console.print(table)
    if summary.front:
        console.print(_front_table(summary))
    if summary.interrupted:
        err_console.print(INTERRUPTED_MESSAGE)


def evidence_line(overall: dict) -> str:
    """Evidence binding's metrics in one line, with the number of pairs they average over."""
    return (f"sentence F1 {overall['evidence_f1']:.3f}, MRR {overall['evidence_mrr']:.3f}, nDCG@3 "
            f"{overall['evidence_ndcg_at_3']:.3f}, Recall@3 {overall['evidence_recall_at_3']:.3f} "
            f"({overall['evidence_pairs']} met pairs with annotated evidence)")


def _front_table(summary, max_params: int = 8) -> Table:
    """The Pareto front: a row per trial (the exported one first), a column per metric, and the
    parameters that set its trials apart (all of them when the front is one trial)."""
    front = summary.front
    table = Table(title=f"Pareto front ({len(front)} of {summary.counts['complete']} complete trials)",
                  title_justify="left")
    table.add_column("trial", justify="right")
    for metric, direction in zip(summary.metrics, summary.directions):
        table.add_column(f"{metric} {'↑' if direction == 'maximize' else '↓'}", justify="right")
    table.add_column("key parameters")
    names = list(dict.fromkeys(name for t in front for name in t.params))
    differing = [n for n in names if len({repr(t.params.get(n)) for t in front}) > 1]
    shown = (differing or names)[:max_params]
    for t in front:
        params = ", ".join(f"{n}={_short(t.params[n])}" for n in shown if n in t.params)
        marker = " *" if t.number == summary.best_trial else ""
        table.add_row(f"{t.number}{marker}", *(f"{v:.4f}" for v in t.values), params or "-")
    table.caption = "* exported. ↑ maximized, ↓ minimized."
    return table


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
