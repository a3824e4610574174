"""Reading corpora and criteria from disk: ReDSM5 folders, flat pairs CSVs and criteria JSON.

Every problem is a :class:`~criteria.data.corpus.DataError` naming the file, the row (1-based
line number in the file, header included; a quoted multi-line post counts from its first line) and
the column, with a hint on how to fix it. Post text is whitespace-normalized (runs of whitespace,
newlines included, become one space; case is kept). Empty posts are skipped with one warning.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import warnings
from collections import defaultdict
from dataclasses import replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence, Union

from criteria.data.corpus import (
    CRITERION_NAMES,
    STANDARD_IDS,
    Corpus,
    Criterion,
    DataError,
    Pair,
    normalize_text,
)
from criteria.errors import did_you_mean


class DataSource(Protocol):
    """What :func:`load_corpus` needs to find a corpus (a spec's ``[data]`` section is one)."""

    format: str
    path: Path | None
    criteria: Path | None

PathLike = Union[str, Path, Traversable]
CriteriaArg = Union[Sequence[Criterion], str, Path, None]

POSTS_COLUMNS = ("post_id", "text")
ANNOTATION_COLUMNS = ("post_id", "sentence_id", "sentence_text", "DSM5_symptom", "status", "explanation")
PAIRS_COLUMNS = ("post_id", "text", "criterion_id", "status")
EMBEDDED_SOURCE = "embedded corpus"

_STATUS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
_UTF8_HINT = "re-save the file as UTF-8, e.g. `iconv -f cp1252 -t utf-8 old.csv > new.csv`"
_QUOTE_HINT = 'quote any field that contains a comma, quote or newline: "like, this"'


# --------------------------------------------------------------------------------------------
# Reading files


def _as_path(path: PathLike) -> Path | Traversable:
    return Path(path).expanduser() if isinstance(path, str) else path


def _read_text(path: Path | Traversable, *, what: str = "file", hint: str = "") -> str:
    """The file's text, decoded as UTF-8 (a leading BOM is accepted)."""
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else f"{what} not found"
        raise DataError(problem, file=path, hint=hint or "check the path (relative paths in a spec are "
                        "resolved against the spec file's folder)")
    data = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        raise DataError(
            f"is not valid UTF-8: byte 0x{data[offset]:02x} at byte offset {offset} cannot be decoded",
            file=path, row=data[:offset].count(b"\n") + 1, hint=_UTF8_HINT,
        ) from None


def _read_csv(path: Path | Traversable, columns: tuple[str, ...], *, what: str,
              hint: str = "") -> list[tuple[int, dict[str, str]]]:
    """``(line, {column: value})`` for each data row; checks the header and the field counts."""
    reader = csv.reader(io.StringIO(_read_text(path, what=what, hint=hint), newline=""), strict=True)
    expected = ",".join(columns)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(f"cannot parse the header: {exc}", file=path, row=1, hint=_QUOTE_HINT) from None
    if not header or not any(h.strip() for h in header):
        raise DataError("is empty: no header line and no rows", file=path, row=1,
                        hint=f"the first line must be the header {expected}, followed by one line per row")
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        named = ", ".join(f"{c!r}{_suggest(c, header)}" for c in missing)
        raise DataError(
            f"missing column{'s' if len(missing) > 1 else ''} {named}; "
            f"found columns: {', '.join(map(repr, header))}; expected: {', '.join(map(repr, columns))}",
            file=path, row=1, column=missing[0],
            hint=f"the header line must name the columns {expected} (extra columns are ignored)",
        )
    for name in columns:
        if header.count(name) > 1:
            raise DataError(f"column {name!r} appears {header.count(name)} times in the header",
                            file=path, row=1, column=name, hint="keep one column of each name")
    rows: list[tuple[int, dict[str, str]]] = []
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"cannot parse the row: {exc}", file=path, row=line, hint=_QUOTE_HINT) from None
        if not fields:  # a blank line
            continue
        if len(fields) != len(header):
            raise DataError(
                f"the row has {len(fields)} field{'s' if len(fields) != 1 else ''} but the header has "
                f"{len(header)} ({','.join(header)})", file=path, row=line, hint=_QUOTE_HINT,
            )
        rows.append((line, dict(zip(header, fields))))
    return rows


def _status(value: str, *, file: object, row: int, column: str) -> int:
    try:
        return _STATUS[value.strip()]
    except KeyError:
        raise DataError(f"status must be 0 or 1, got {value!r}", file=file, row=row, column=column,
                        hint="write 1 when the criterion is met and 0 when it is not") from None


def _suggest(given: str, candidates: Iterable[str]) -> str:
    """Did-you-mean that ignores case, spaces, dashes and underscores (``Sleep issues``)."""
    def fold(text: str) -> str:
        return re.sub(r"[\s_\-]+", "_", text.strip()).casefold()

    candidates = list(dict.fromkeys(candidates))
    folded = {fold(c): c for c in reversed(candidates)}
    if fold(given) in folded:
        return f" (did you mean {folded[fold(given)]!r}?)"
    return did_you_mean(given, candidates)


class _PostTable:
    """Collects posts row by row: normalizes text, rejects conflicting duplicates, skips empties."""

    def __init__(self, file: object) -> None:
        self.file = file
        self.texts: dict[str, str] = {}
        self.first_row: dict[str, int] = {}
        self.empty: set[str] = set()

    def add(self, row: int, post_id: str, text: str) -> str | None:
        """The post id, or None when the post is empty (skipped)."""
        post_id = post_id.strip()
        if not post_id:
            raise DataError("post_id is empty", file=self.file, row=row, column="post_id",
                            hint="give every row the id of its post")
        text = normalize_text(text)
        seen = self.texts.get(post_id, "" if post_id in self.empty else None)
        if seen is not None and seen != text:
            raise DataError(
                f"post_id {post_id!r} has a different text here than on row {self.first_row[post_id]}",
                file=self.file, row=row, column="text",
                hint=f"rows {self.first_row[post_id]} and {row} must repeat the same text, "
                "or give one of the posts another id",
            )
        self.first_row.setdefault(post_id, row)
        if not text:
            self.empty.add(post_id)
            return None
        self.texts[post_id] = text
        return post_id

    def finish(self, rows: int) -> dict[str, str]:
        if not rows:
            raise DataError("has no rows: the dataset is empty", file=self.file,
                            hint="add one row per post below the header line")
        if not self.texts:
            raise DataError(f"no posts left: all {len(self.empty)} posts are empty", file=self.file,
                            hint="every post needs some text")
        if self.empty:
            count = len(self.empty)
            warnings.warn(f"skipped {count} empty post{'s' if count != 1 else ''} in {_name(self.file)}",
                          UserWarning, stacklevel=3)
        return self.texts


class _CriterionLookup:
    """Maps a criterion written as id or name to its id; standard criteria outside the active set
    resolve to None (the user chose a subset)."""

    def __init__(self, criteria: Sequence[Criterion]) -> None:
        self.ids: dict[str, str] = {}
        self.listing = ", ".join(c.id if c.name == c.id else f"{c.id} ({c.name})" for c in criteria)
        for criterion in criteria:
            self.ids[criterion.id] = criterion.id
            self.ids[criterion.name] = criterion.id
        self.ignored: dict[str, int] = defaultdict(int)

    def resolve(self, value: str, *, file: object, row: int, column: str) -> str | None:
        key = value.strip()
        if key in self.ids:
            return self.ids[key]
        if key in CRITERION_NAMES or key in STANDARD_IDS:
            self.ignored[key] += 1
            return None
        raise DataError(
            f"unknown criterion {value!r}{_suggest(key, [*self.ids, *CRITERION_NAMES])}",
            file=file, row=row, column=column,
            hint=f"use one of the criteria, by id or name: {self.listing} "
            "(or add the criterion to the criteria JSON)",
        )

    def warn_ignored(self, file: object) -> None:
        if self.ignored:
            rows = sum(self.ignored.values())
            warnings.warn(
                f"ignored {rows} row{'s' if rows != 1 else ''} in {_name(file)} for criteria not in the "
                f"criteria file: {', '.join(sorted(self.ignored))}", UserWarning, stacklevel=3,
            )


def _name(file: object) -> str:
    return getattr(file, "name", None) or str(file)


# --------------------------------------------------------------------------------------------
# Criteria


def load_criteria_json(path: PathLike) -> tuple[Criterion, ...]:
    """``{"criteria": [{"id": "A.1", "text": "..."}, ...]}``. Ids ``A.1``..``A.9`` get the names
    in :data:`CRITERION_NAMES`; any other id is its own name (or give ``"name"`` explicitly)."""
    path = _as_path(path)
    text = _read_text(path, what="criteria file")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"is not valid JSON: {exc.msg} (line {exc.lineno}, character {exc.colno})",
                        file=path, row=exc.lineno,
                        hint='the file must look like {"criteria": [{"id": "A.1", "text": "..."}]}') from None
    shape_hint = 'the file must look like {"criteria": [{"id": "A.1", "text": "..."}, ...]}'
    if not isinstance(document, dict) or "criteria" not in document:
        raise DataError('missing the top-level key "criteria"', file=path, column="criteria", hint=shape_hint)
    entries = document["criteria"]
    if not isinstance(entries, list):
        raise DataError(f'"criteria" must be a list, got {type(entries).__name__}', file=path,
                        column="criteria", hint=shape_hint)
    if not entries:
        raise DataError('"criteria" is empty: the dataset has no criteria', file=path, column="criteria",
                        hint="list at least one criterion")
    criteria: list[Criterion] = []
    seen_ids: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"criteria[{index}]"
        if not isinstance(entry, dict):
            raise DataError(f"must be an object with keys id and text, got {json.dumps(entry)[:60]}",
                            file=path, column=where, hint=shape_hint)
        for key in ("id", "text"):
            if key not in entry:
                raise DataError(f"missing key {key!r}{did_you_mean(key, [str(k) for k in entry])}",
                                file=path, column=f"{where}.{key}", hint=shape_hint)
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise DataError(f"{key} must be a non-empty string, got {json.dumps(entry[key])}",
                                file=path, column=f"{where}.{key}",
                                hint="give every criterion an id and a description of what it means")
        criterion_id = entry["id"].strip()
        name = entry.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise DataError(f"name must be a non-empty string, got {json.dumps(name)}", file=path,
                            column=f"{where}.name", hint="leave name out to use the id as the name")
        name = name.strip() if name else STANDARD_IDS.get(criterion_id, criterion_id)
        if criterion_id in seen_ids:
            raise DataError(f"duplicate id {criterion_id!r} (also criteria[{seen_ids[criterion_id]}])",
                            file=path, column=f"{where}.id", hint="give every criterion its own id")
        if name in seen_names:
            raise DataError(f"duplicate name {name!r} (also criteria[{seen_names[name]}])",
                            file=path, column=f"{where}.name", hint="give every criterion its own name")
        seen_ids[criterion_id], seen_names[name] = index, index
        criteria.append(Criterion(id=criterion_id, name=name, text=normalize_text(entry["text"])))
    return tuple(criteria)


def _criteria(criteria: CriteriaArg) -> tuple[Criterion, ...]:
    if criteria is None:
        return embedded_criteria()
    if isinstance(criteria, (str, Path)):
        return load_criteria_json(criteria)
    criteria = tuple(criteria)
    if not criteria:
        raise DataError("no criteria given", hint="pass criteria=None for the embedded criteria")
    return criteria


# --------------------------------------------------------------------------------------------
# Corpora

_REDSM5_HINT = "a ReDSM5 folder holds posts.csv (post_id,text) and annotations.csv " \
    "(post_id,sentence_id,sentence_text,DSM5_symptom,status,explanation)"


def load_redsm5(folder_or_posts: PathLike, annotations: PathLike | None = None, *,
                criteria: CriteriaArg = None) -> Corpus:
    """A ReDSM5-format corpus: a folder with ``posts.csv`` and ``annotations.csv``, or the path of
    ``posts.csv`` (``annotations`` defaults to ``annotations.csv`` beside it).

    A (post, criterion) pair is positive iff some annotation of that post and symptom has
    status 1; every other pair is negative. The status-1 sentences are kept as evidence.
    ``criteria``: criteria, or the path of a criteria JSON (default: the embedded criteria).
    """
    given = _as_path(folder_or_posts)
    if given.is_dir():
        folder, posts_path = given, given / "posts.csv"
    elif given.is_file():
        folder, posts_path = None, given
    else:
        raise DataError("not found", file=given,
                        hint=f"give a ReDSM5 folder or its posts.csv; {_REDSM5_HINT}")
    if annotations is not None:
        annotations_path = _as_path(annotations)
    elif folder is not None:
        annotations_path = folder / "annotations.csv"
    else:
        annotations_path = Path(posts_path).with_name("annotations.csv")
    active = _criteria(criteria)

    rows = _read_csv(posts_path, POSTS_COLUMNS, what="posts file", hint=_REDSM5_HINT)
    table = _PostTable(posts_path)
    for row, values in rows:
        table.add(row, values["post_id"], values["text"])
    posts = table.finish(len(rows))

    lookup = _CriterionLookup(active)
    positive: set[tuple[str, str]] = set()
    evidence: dict[tuple[str, str], list[str]] = defaultdict(list)
    known_ids = list(table.first_row)
    for row, values in _read_csv(annotations_path, ANNOTATION_COLUMNS, what="annotations file",
                                 hint=_REDSM5_HINT):
        post_id = values["post_id"].strip()
        if post_id not in table.first_row:
            raise DataError(
                f"post_id {post_id!r} is not in {_name(posts_path)}{did_you_mean(post_id, known_ids)}",
                file=annotations_path, row=row, column="post_id",
                hint=f"add the post to {_name(posts_path)} or remove its annotations",
            )
        criterion_id = lookup.resolve(values["DSM5_symptom"], file=annotations_path, row=row,
                                      column="DSM5_symptom")
        status = _status(values["status"], file=annotations_path, row=row, column="status")
        if criterion_id is None or post_id not in posts or not status:
            continue
        positive.add((post_id, criterion_id))
        sentence = normalize_text(values["sentence_text"])
        if sentence:
            evidence[(post_id, criterion_id)].append(sentence)
    lookup.warn_ignored(annotations_path)

    pairs = tuple(
        Pair(post_id, c.id, int((post_id, c.id) in positive),
             tuple(dict.fromkeys(evidence.get((post_id, c.id), ()))))
        for post_id in posts for c in active
    )
    source = str(folder) if folder is not None else str(posts_path)
    return Corpus(posts=posts, criteria=active, pairs=pairs, source=source)


def load_pairs_csv(path: PathLike, *, criteria: CriteriaArg = None) -> Corpus:
    """A flat CSV with one row per pair: ``post_id,text,criterion_id,status`` (the rows of one
    post repeat its text). ``criterion_id`` may be an id (``A.1``) or a name (``DEPRESSED_MOOD``).

    The corpus holds exactly the pairs listed (a pair that is not listed is not assumed negative)
    and the criteria that at least one row uses, in the criteria file's order.
    """
    path = _as_path(path)
    active = _criteria(criteria)
    rows = _read_csv(path, PAIRS_COLUMNS, what="pairs file",
                     hint="a pairs CSV has the columns post_id,text,criterion_id,status")
    table = _PostTable(path)
    lookup = _CriterionLookup(active)
    labels: dict[tuple[str, str], tuple[int, int]] = {}
    for row, values in rows:
        post_id = table.add(row, values["post_id"], values["text"])
        criterion_id = lookup.resolve(values["criterion_id"], file=path, row=row, column="criterion_id")
        status = _status(values["status"], file=path, row=row, column="status")
        if post_id is None or criterion_id is None:
            continue
        key = (post_id, criterion_id)
        if key in labels and labels[key][0] != status:
            raise DataError(
                f"post {post_id!r}, criterion {criterion_id!r} has status {status} here but "
                f"{labels[key][0]} on row {labels[key][1]}", file=path, row=row, column="status",
                hint=f"keep one row per (post, criterion) pair: fix row {labels[key][1]} or {row}",
            )
        labels.setdefault(key, (status, row))
    posts = table.finish(len(rows))
    lookup.warn_ignored(path)
    used = {criterion_id for _, criterion_id in labels}
    kept = tuple(c for c in active if c.id in used)
    pairs = tuple(
        Pair(post_id, c.id, labels[(post_id, c.id)][0])
        for post_id in posts for c in kept if (post_id, c.id) in labels
    )
    return Corpus(posts=posts, criteria=kept, pairs=pairs, source=str(path))


def write_pairs_csv(corpus: Corpus, path: str | Path) -> Path:
    """Write ``corpus`` as a pairs CSV (``post_id,text,criterion_id,status``); returns the path.
    ``load_pairs_csv(path, criteria=corpus.criteria)`` gives back the same corpus (evidence aside)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PAIRS_COLUMNS)
        for pair in corpus.pairs:
            writer.writerow([pair.post_id, corpus.text(pair), pair.criterion_id, pair.label])
    return path


# --------------------------------------------------------------------------------------------
# The embedded corpus, and a corpus by format and path


def embedded_folder() -> Traversable:
    """The folder of the corpus shipped with criteria (posts.csv, annotations.csv, criteria.json)."""
    return resources.files("criteria") / "resources" / "mdd_corpus"


def embedded_criteria() -> tuple[Criterion, ...]:
    """The nine criteria A.1..A.9 described in the project's own words."""
    return load_criteria_json(embedded_folder() / "criteria.json")


def embedded_corpus(criteria: CriteriaArg = None) -> Corpus:
    """The ReDSM5-format corpus shipped with criteria (written for the project)."""
    corpus = load_redsm5(embedded_folder(), criteria=criteria)
    return replace(corpus, source=EMBEDDED_SOURCE)


_LOADERS: dict[str, Callable[..., Corpus]] = {
    "redsm5": load_redsm5,
    "pairs": load_pairs_csv,
}


def _resolve(path: Path, base_dir: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def load_corpus(section: DataSource, base_dir: Path) -> Corpus:
    """The corpus a :class:`DataSource` (a spec's ``[data]`` section) names. Relative paths are resolved against
    ``base_dir`` (the spec file's folder); no path means the embedded corpus; ``criteria``, when
    given, replaces the default criteria."""
    criteria = load_criteria_json(_resolve(section.criteria, base_dir)) if section.criteria else None
    if section.path is None:
        if section.format != "redsm5":
            raise DataError(f'data.format = "{section.format}" needs data.path',
                            hint="set data.path to your file, or drop data.format to use the embedded corpus")
        return embedded_corpus(criteria)
    try:
        loader = _LOADERS[section.format]
    except KeyError:
        raise DataError(f"unknown data format {section.format!r}{did_you_mean(section.format, _LOADERS)}",
                        hint=f"known formats: {', '.join(_LOADERS)}") from None
    return loader(_resolve(section.path, base_dir), criteria=criteria)


__all__ = [
    "ANNOTATION_COLUMNS",
    "DataSource",
    "PAIRS_COLUMNS",
    "POSTS_COLUMNS",
    "embedded_corpus",
    "embedded_criteria",
    "embedded_folder",
    "load_corpus",
    "load_criteria_json",
    "load_pairs_csv",
    "load_redsm5",
    "write_pairs_csv",
]
