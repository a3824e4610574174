"""After a study: plots, the best configuration retrained and exported, and its evaluation.

Everything is written to an output folder and, when tracking is on, to the study's parent MLflow
run. The best model is exported by one process (the worker that finished the study, or
``criteria export``), into a temporary folder moved into place once complete: a failure (a full
disk) leaves the previous export as it was and closes the MLflow parent run as failed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from criteria.data.splits import holdout
from criteria.engine.fit import fit
from criteria.engine.metrics import (
    classification_report_dict,
    confusion_matrix_figure,
    per_criterion_f1_figure,
)
from criteria.engine.model import MODEL_FILE, load_classifier
from criteria.engine.thresholds import thresholds_of
from criteria.errors import CriteriaError
from criteria.files import write_json
from criteria.spec.load import Spec
from criteria.study.folders import KEPT_FOLDER, atomic_folder, kept_model_folder, write_failure
from criteria.study.pareto import exported_trial, order_front
from criteria.study.prepare import PreparedData, baseline_metrics, evaluate_indices, make_job
from criteria.study.progress import StudyProgress
from criteria.study.runner import BEST_MODEL_FOLDER
from criteria.study.single import save_run_model
from criteria.study.tracking import StudyTracker

#: Parameter importances (fANOVA over the complete trials) say nothing from a handful of trials:
#: every parameter gets a similar share. Below this many complete trials they are not drawn.
MIN_TRIALS_FOR_IMPORTANCES = 10


class ExportError(CriteriaError):
    """The best model could not be written (a full disk, a read-only folder)."""


@dataclass
class Export:
    folder: Path
    test: dict[str, Any] | None
    baseline_test: dict[str, Any] | None
    plots: list[Path]
    notes: list[str] = field(default_factory=list)  # what was left out and why, for the summary
    mlflow_model: Any = None  # criteria.study.mlflow_model.LoggedModel, when tracking is on


def write_plots(study: Any, folder: Path, metrics: Sequence[str] = (), notes: list[str] | None = None) -> list[Path]:
    """Optuna's optimization history, parameter importances and parallel coordinates as PNGs;
    for a multi-objective study the Pareto front, and history and importances per metric
    (``metrics`` names the objectives). A plot that needs more finished trials than there are
    is skipped; importances are drawn from :data:`MIN_TRIALS_FOR_IMPORTANCES` complete trials on
    (``notes`` says so when they are not)."""
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
    from optuna.trial import TrialState

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if complete < MIN_TRIALS_FOR_IMPORTANCES:
        plots = [(name, draw) for name, draw in plots if not name.startswith("param_importances")]
        if notes is not None:
            notes.append(f"parameter importances need {MIN_TRIALS_FOR_IMPORTANCES} complete trials to mean "
                         f"something; this study has {complete}, so none were drawn")
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


def conclude(study: Any, spec: Spec, data: PreparedData, output: Path, tracker: StudyTracker | None,
             progress: Any = None, export: bool = True) -> Export | None:
    """Export the best model (when ``export``) and close the study's MLflow parent run: finished,
    or failed (interrupted) when the export fails (is interrupted)."""
    try:
        result = export_best(study, spec, data, output, tracker, progress) if export else None
    except KeyboardInterrupt:
        if tracker:
            tracker.finish(interrupted=True)
        raise
    except BaseException:
        if tracker:
            tracker.finish(failed=True)
        raise
    if tracker:
        tracker.finish()
    return result


def export_best(study: Any, spec: Spec, data: PreparedData, output: Path,
                tracker: StudyTracker | None, progress: StudyProgress | None = None) -> Export | None:
    """The best model as a run folder ``criteria predict`` loads, evaluated on the held-out test
    posts next to the TF-IDF baseline. With ``export = "keep"`` the study already saved the best
    trial's own model (under ``kept/``); with ``"refit"``, or when that model is not on this machine,
    the best configuration is retrained (same split and seed). With several objectives "best" is
    the Pareto front's best trial on the first metric. Raises :class:`ExportError` when the folder
    cannot be written, leaving any earlier export as it was."""
    folder = output / BEST_MODEL_FOLDER
    try:
        return _export_best(study, spec, data, output, folder, tracker, progress)
    except Exception as exc:
        reason = write_failure(exc, output)
        if reason is None:
            raise
        raise ExportError(
            f"could not export the best model: {reason}. Nothing was half-written ({folder} is as it was); "
            f"free some space, then run `criteria export {spec.path}`"
        ) from None


def _export_best(study: Any, spec: Spec, data: PreparedData, output: Path, folder: Path,
                 tracker: StudyTracker | None, progress: Any) -> Export:
    import optuna

    if progress:
        progress.export_started()
    output.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    plots = write_plots(study, output / "plots", spec.study.metrics, notes)
    _log(tracker, plots, "plots")
    best = exported_trial(study, spec)
    if best is None or spec.study.export == "none":
        return Export(output, None, None, plots, notes)
    config = spec.space.suggest(optuna.trial.FixedTrial(best.params, number=best.number))
    runtime = config.backend.build()
    kept = kept_model_folder(output / KEPT_FOLDER, best.number)
    with atomic_folder(folder) as partial:
        if spec.study.export == "keep" and _kept_trial(kept / "model" / MODEL_FILE) == best.number:
            shutil.copytree(kept, partial, dirs_exist_ok=True)
        else:
            split = holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)
            result = fit(make_job(spec, data, config, split.train, split.validation, runtime=runtime),
                         progress=progress)
            save_run_model(result, data, spec, config, partial, study=spec.study.name, trial=best.number)
        test, baseline_test, names = _evaluate_into(partial, study, spec, data, best, config, runtime)
    _log(tracker, [folder / name for name in names], "best")
    if tracker and test is not None:
        tracker.log_summary({"test_macro_f1": test["overall"]["macro_f1"],
                             "baseline_test_macro_f1": baseline_test["overall"]["macro_f1"]})
    logged = None
    if tracker:
        from criteria.study.mlflow_model import log_classifier_model

        logged = log_classifier_model(folder / "model", tracker, spec.registry, register_as=spec.study.register_model)
    return Export(folder, test, baseline_test, plots, notes, logged)


def _evaluate_into(folder: Path, study: Any, spec: Spec, data: PreparedData, best: Any, config: Any,
                   runtime: Any) -> tuple[dict | None, dict | None, list[str]]:
    """Score the model in ``folder`` on the held-out test posts and write the reports beside it;
    returns the test and baseline metrics and the names of the files to log."""
    model, _, metadata = load_classifier(folder / "model", spec.registry)
    threshold = metadata.get("threshold", 0.5)
    test = baseline_test = None
    files = ["spec.resolved.json"]
    if data.test_indices:
        test, probs, labels = evaluate_indices(model, data, config, runtime, data.test_indices, threshold)
        baseline_test = baseline_metrics(data.corpus, data.study_indices, data.test_indices, spec.study.seed)
        each = thresholds_of(threshold, [data.corpus.pairs[i].criterion_id for i in data.test_indices])
        figure = confusion_matrix_figure(labels, probs, each, title=f"best trial {best.number}, test posts")
        figure.savefig(folder / "confusion_matrix.png", dpi=110, bbox_inches="tight")
        names = {c.id: c.name for c in data.corpus.criteria}
        baseline_f1 = {names.get(g, g): m["f1"] for g, m in baseline_test["per_group"].items()}
        per_criterion_f1_figure({names.get(g, g): m["f1"] for g, m in test["per_group"].items()}, baseline_f1,
                                title=f"best trial {best.number}: F1 per criterion, test posts",
                                ).savefig(folder / "per_criterion_f1.png", dpi=110, bbox_inches="tight")
        write_json(folder / "classification_report.json", classification_report_dict(labels, probs, each),
                   "classification report")
        files += ["confusion_matrix.png", "per_criterion_f1.png", "classification_report.json"]
    if spec.study.multi_objective:
        chosen = {"best_values": dict(zip(spec.study.metrics, best.values)),
                  "pareto_front": [t.number for t in order_front(study.best_trials, spec.study.directions)]}
    else:
        chosen = {"best_value": best.value}
    write_json(folder / "metrics.json", {
        "best_trial": best.number, **chosen, "export": spec.study.export,
        "test": test, "baseline_test": baseline_test, "threshold": threshold,
    }, "best model's metrics")
    return test, baseline_test, [*files, "metrics.json"]


def _kept_trial(metadata: Path) -> int | None:
    """The trial whose model the study kept there (None: none kept)."""
    if not metadata.is_file():
        return None
    return json.loads(metadata.read_text()).get("trial")


def _log(tracker: StudyTracker | None, paths: list[Path], folder: str) -> None:
    if tracker:
        for path in paths:
            tracker.log_artifact(path, folder)
