"""Unlabelled texts for domain-adaptive pretraining (``[pretrain] corpus``): a plain text file with
one document per line, or a CSV file with one document per row in a text column.

Problems are :class:`~criteria.data.corpus.DataError`\\ s naming the file, row and column, as for
the labelled data. Texts are whitespace-normalized like posts; blank ones are skipped.
"""

from __future__ import annotations

from pathlib import Path

from criteria.data.corpus import DataError, normalize_text
from criteria.data.loaders import _read_csv, _read_text

__all__ = ["load_texts"]


def load_texts(path: Path, text_column: str = "text") -> tuple[str, ...]:
    """The documents of ``path``: each non-blank line of a text file, or the ``text_column`` of
    each row of a ``.csv`` file."""
    path = Path(path).expanduser()
    what = "pretraining corpus"
    if path.suffix.lower() == ".csv":
        rows = _read_csv(path, (text_column,), what=what,
                         hint="[pretrain] corpus names a text file (one document per line) or a CSV file")
        texts = tuple(text for _, row in rows if (text := normalize_text(row[text_column])))
    else:
        texts = tuple(text for line in _read_text(path, what=what).splitlines() if (text := normalize_text(line)))
    if not texts:
        raise DataError("has no text: every line (or row) is blank", file=path,
                        hint="a pretraining corpus holds one document per line, or a CSV with a text column")
    return texts
