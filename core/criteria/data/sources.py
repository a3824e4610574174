"""Finding the corpus a spec's ``[data]`` section names: the embedded corpus, a ReDSM5 folder or
its files as distributed, a pairs CSV, or the post-level layout; the format is read from the
file's header when the spec does not name it, and anything else is an error that lists the
supported formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

from criteria.data.corpus import Corpus, DataError
from criteria.data.loaders import (
    ANNOTATION_COLUMNS,
    PAIRS_COLUMNS,
    POST_LABELS_COLUMNS,
    POSTS_COLUMNS,
    embedded_corpus,
    load_criteria_json,
    load_pairs_csv,
    load_post_labels,
    load_redsm5,
    read_header,
)
from criteria.errors import did_you_mean

__all__ = ["FORMATS", "DataFormat", "DataSource", "detect_format", "load_corpus"]


class DataSource(Protocol):
    """What :func:`load_corpus` needs to find a corpus (a spec's ``[data]`` section is one)."""

    format: str  # a FORMATS name, or "auto"
    path: Path | None  # a folder or a file
    posts: Path | None  # ReDSM5 files named one by one
    annotations: Path | None
    criteria: Path | None
    ignore_labels: Iterable[str]


@dataclass(frozen=True)
class DataFormat:
    """A corpus layout: the header that identifies its file, and its loader."""

    name: str
    columns: tuple[str, ...]
    description: str
    load: Callable[..., Corpus]


FORMATS: dict[str, DataFormat] = {f.name: f for f in (
    DataFormat("redsm5", POSTS_COLUMNS, "a ReDSM5 folder (posts.csv + annotations.csv, or the release's "
               "redsm5_posts*.csv + redsm5_annotations*.csv), or its posts file (post_id,text)", load_redsm5),
    DataFormat("pairs", PAIRS_COLUMNS, "one row per (post, criterion): post_id,text,criterion_id,status",
               load_pairs_csv),
    DataFormat("post_labels", POST_LABELS_COLUMNS, "one row per post: text,labels[,explanation] with "
               "labels separated by ';' (the post-level ReDSM5 layout)", load_post_labels),
)}
# Most specific first: a pairs file also has post_id,text.
_DETECTION_ORDER = ("pairs", "post_labels", "redsm5")


def _supported() -> str:
    return "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())


def detect_format(path: Path) -> DataFormat:
    """The format of a data file, from its header."""
    header = set(read_header(path))
    for name in _DETECTION_ORDER:
        if set(FORMATS[name].columns) <= header:
            return FORMATS[name]
    if set(ANNOTATION_COLUMNS) <= header:
        raise DataError("this is a ReDSM5 annotations file, not a posts file", file=path, row=1,
                        hint="set data.path to the posts file or the folder, or data.annotations to this file")
    found = ", ".join(sorted(header)) or "none"
    raise DataError(f"the header ({found}) matches no supported data format", file=path, row=1,
                    hint=f"supported formats: {_supported()}")


def _resolve(path: Path, base_dir: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def load_corpus(source: DataSource, base_dir: Path) -> Corpus:
    """The corpus a :class:`DataSource` names. Relative paths are resolved against ``base_dir``
    (the spec file's folder); no path means the embedded corpus; ``criteria``, when given,
    replaces the default criteria."""
    criteria = load_criteria_json(_resolve(source.criteria, base_dir)) if source.criteria else None
    ignore = tuple(source.ignore_labels)
    if source.format != "auto" and source.format not in FORMATS:
        raise DataError(f"unknown data format {source.format!r}{did_you_mean(source.format, FORMATS)}",
                        hint=f"supported formats: auto, {', '.join(FORMATS)}")
    annotations = _resolve(source.annotations, base_dir) if source.annotations else None
    if source.posts is not None:
        return load_redsm5(_resolve(source.posts, base_dir), annotations, criteria=criteria, ignore_labels=ignore)
    if source.path is None:
        if source.format not in ("auto", "redsm5"):
            raise DataError(f'data.format = "{source.format}" needs data.path',
                            hint="set data.path to your file, or drop data.format to use the embedded corpus")
        return embedded_corpus(criteria)
    path = _resolve(source.path, base_dir)
    if not path.exists():
        raise DataError("not found", file=path, hint="check data.path (relative paths are resolved against the "
                        "spec file's folder)")
    if path.is_dir():
        if source.format not in ("auto", "redsm5"):
            raise DataError(f'data.format = "{source.format}" reads a file, and data.path is a folder', file=path,
                            hint=f"set data.path to the file; {FORMATS[source.format].description}")
        return load_redsm5(path, annotations, criteria=criteria, ignore_labels=ignore)
    layout = detect_format(path) if source.format == "auto" else FORMATS[source.format]
    if layout.name == "redsm5":
        return load_redsm5(path, annotations, criteria=criteria, ignore_labels=ignore)
    return layout.load(path, criteria=criteria, ignore_labels=ignore)
