"""``criteria study ...``: inspect a study from its storage."""

from __future__ import annotations

from pathlib import Path

from criteria.cli.app import SpecArg, open_spec, study_app
from criteria.cli.runs import print_summary


@study_app.command("status")
def study_status(spec: Path = SpecArg) -> None:
    """Progress of a running or finished study, read from its storage."""
    from criteria.study.runner import summarize
    from criteria.study.storage import load_study

    loaded = open_spec(spec)
    study = load_study(loaded, create=False)
    print_summary(summarize(study, loaded, 0.0, False, None), loaded.study.metric)
