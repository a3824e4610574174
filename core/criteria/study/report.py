"""After a study: plots, the best configuration retrained and exported, and its evaluation.

Everything is written to an output folder and, when tracking is on, to the study's parent MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from criteria.data.splits import holdout
from criteria.engine.fit import fit
from criteria.engine.metrics import classification_report_dict, confusion_matrix_figure
from criteria.engine.model import MODEL_FILE, load_classifier
from criteria.spec.load import Spec
from criteria.study.pareto import exported_trial, order_front
from criteria.study.prepare import PreparedData, baseline_metrics, evaluate_indices, make_job
from criteria.study.runner import BEST_MODEL_FOLDER
from criteria.study.single import save_run_model
from criteria.study.tracking import StudyTracker


@dataclass
class Export:
    folder: Path
    test: dict[str, Any] | None
    baseline_test: dict[str, Any] | None
    plots: list[Path]
    mlflow_model: Any = None  # criteria.study.mlflow_model.LoggedModel, when tracking is on


def write_plots(study: Any, folder: Path, metrics: Sequence[str] = ()) -> list[Path]:
    """Optuna's optimization history, parameter importances and parallel coordinates as PNGs;
    for a multi-objective study the Pareto front, and history and importances per metric
    (``metrics`` names the objectives). A plot that needs more finished trials than there are
    is skipped."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    plots: list[tuple[str, Callable[[Any], Any]]] = [
        ("optimization_history", vis.plot_optimization_history),
        ("param_importances", vis.plot_param_importances),
        ("parallel_coordinate", vis.plot_parallel_coordinate),
    ]
    if len(study.directions) > 1:
        # These plots need one target per figure; the Pareto front shows the objectives together
        # (Optuna draws it for two or three of them).
        names = list(metrics) or [f"objective_{i}" for i in range(len(study.directions))]
        plots = [("pareto_front", lambda s: vis.plot_pareto_front(s, target_names=names))]
        for i, metric in enumerate(names):
            def target(t: Any, i: int = i) -> float:
                return t.values[i]

            plots += [
                (f"optimization_history_{metric}",
                 lambda s, target=target, metric=metric: vis.plot_optimization_history(s, target=target, target_name=metric)),
                (f"param_importances_{metric}",
                 lambda s, target=target, metric=metric: vis.plot_param_importances(s, target=target, target_name=metric)),
            ]
    for name, draw in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few complete trials for this plot
            continue
        figure = getattr(axes, "figure", None) or plt.gcf()
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def export_best(study: Any, spec: Spec, data: PreparedData, output: Path,
                tracker: StudyTracker | None, progress: Any = None) -> Export | None:
    """The best model as a run folder ``criteria predict`` loads, evaluated on the held-out test
    posts next to the TF-IDF baseline. With ``export = "keep"`` the study already saved the best
    trial's own model; with ``"refit"`` the best configuration is retrained (same split and seed).
    With several objectives "best" is the Pareto front's best trial on the first metric."""
    import optuna

    output.mkdir(parents=True, exist_ok=True)
    plots = write_plots(study, output / "plots", spec.study.metrics)
    _log(tracker, plots, "plots")
    best = exported_trial(study, spec)
    folder = output / BEST_MODEL_FOLDER
    if best is None or spec.study.export == "none":
        return Export(output, None, None, plots)
    config = spec.space.suggest(optuna.trial.FixedTrial(best.params, number=best.number))
    runtime = config.backend.build()
    # A kept model from another trial (a worker's race, or a tie the front settled) is not the best one.
    if spec.study.export == "refit" or _kept_trial(folder / "model" / MODEL_FILE) != best.number:
        split = holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)
        result = fit(make_job(spec, data, config, split.train, split.validation, runtime=runtime), progress=progress)
        save_run_model(result, data, spec, config, folder, study=spec.study.name, trial=best.number)
    model, _, metadata = load_classifier(folder / "model", spec.registry)
    threshold = float(metadata.get("threshold", 0.5))
    test = baseline_test = None
    files = [folder / "spec.resolved.json"]
    if data.test_indices:
        test, probs, labels = evaluate_indices(model, data, runtime, data.test_indices, threshold,
                                               config.train.eval_batch_size)
        baseline_test = baseline_metrics(data.corpus, data.study_indices, data.test_indices, spec.study.seed)
        figure = confusion_matrix_figure(labels, probs, threshold, title=f"best trial {best.number}, test posts")
        figure.savefig(folder / "confusion_matrix.png", dpi=110, bbox_inches="tight")
        (folder / "classification_report.json").write_text(
            json.dumps(classification_report_dict(labels, probs, threshold), indent=2))
        files += [folder / "confusion_matrix.png", folder / "classification_report.json"]
    if spec.study.multi_objective:
        chosen = {"best_values": dict(zip(spec.study.metrics, best.values)),
                  "pareto_front": [t.number for t in order_front(study.best_trials, spec.study.directions)]}
    else:
        chosen = {"best_value": best.value}
    (folder / "metrics.json").write_text(json.dumps({
        "best_trial": best.number, **chosen, "export": spec.study.export,
        "test": test, "baseline_test": baseline_test, "threshold": threshold,
    }, indent=2, default=float))
    _log(tracker, [*files, folder / "metrics.json"], "best")
    if tracker and test is not None:
        tracker.log_summary({"test_macro_f1": test["overall"]["macro_f1"],
                             "baseline_test_macro_f1": baseline_test["overall"]["macro_f1"]})
    logged = None
    if tracker:
        from criteria.study.mlflow_model import log_classifier_model

        logged = log_classifier_model(folder / "model", tracker, spec.registry, register_as=spec.study.register_model)
    return Export(folder, test, baseline_test, plots, logged)


def _kept_trial(metadata: Path) -> int | None:
    """The trial whose model the study kept there (None: none kept)."""
    if not metadata.is_file():
        return None
    return json.loads(metadata.read_text()).get("trial")


def _log(tracker: StudyTracker | None, paths: list[Path], folder: str) -> None:
    if tracker:
        for path in paths:
            tracker.log_artifact(path, folder)
