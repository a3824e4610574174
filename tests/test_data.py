"""criteria.data: loaders (ReDSM5, pairs CSV, criteria JSON, embedded corpus), errors and splits."""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings
from pathlib import Path

import pytest
from criteria.data import CRITERION_NAMES
from criteria.data.corpus import Corpus, Criterion, DataError, Pair
from criteria.data.loaders import (
    embedded_corpus,
    embedded_criteria,
    load_criteria_json,
    load_pairs_csv,
    load_redsm5,
    write_pairs_csv,
)
from criteria.data.sources import load_corpus
from criteria.data.splits import Split, holdout, kfold, test_split
from criteria.errors import CriteriaError
from criteria.spec.schema import DataSection

ANN_HEADER = "post_id,sentence_id,sentence_text,DSM5_symptom,status,explanation\n"
POSTS = (
    "post_id,text\n"
    "p1,\"I can't sleep.   I lie awake\nuntil 4am.\"\n"
    "p2,Had a GREAT week hiking with friends.\n"
    "p3,Nothing tastes like anything and I keep skipping meals.\n"
)
ANNOTATIONS = ANN_HEADER + (
    "p1,p1_1,I can't sleep.,SLEEP_ISSUES,1,insomnia\n"
    "p1,p1_2,  I lie awake until 4am. ,SLEEP_ISSUES,1,early waking\n"
    "p1,p1_1,I can't sleep.,FATIGUE,0,not fatigue\n"
    "p3,p3_1,Nothing tastes like anything,ANHEDONIA,0,taste not pleasure\n"
    "p3,p3_1,I keep skipping meals.,APPETITE_CHANGE,1,eating less\n"
)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def redsm5(folder: Path, posts: str | bytes = POSTS, annotations: str | bytes = ANNOTATIONS) -> Path:
    write(folder / "posts.csv", posts)
    write(folder / "annotations.csv", annotations)
    return folder


def label(corpus: Corpus, post_id: str, name: str) -> Pair:
    (pair,) = [p for p in corpus.pairs
               if p.post_id == post_id and corpus.criterion(p.criterion_id).name == name]
    return pair


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return embedded_corpus()


# ----------------------------------------------------------------------------------- ReDSM5


def test_positive_rule_evidence_and_order(tmp_path):
    c = load_redsm5(redsm5(tmp_path))
    assert list(c.posts) == ["p1", "p2", "p3"]
    assert [x.name for x in c.criteria] == list(CRITERION_NAMES)
    assert [x.id for x in c.criteria] == [f"A.{i}" for i in range(1, 10)]
    assert len(c.pairs) == 3 * 9
    # post-major order, criteria in file order
    assert [(p.post_id, p.criterion_id) for p in c.pairs[:10]] == (
        [("p1", f"A.{i}") for i in range(1, 10)] + [("p2", "A.1")]
    )
    sleep = label(c, "p1", "SLEEP_ISSUES")
    assert sleep.label == 1
    assert sleep.evidence == ("I can't sleep.", "I lie awake until 4am.")
    assert label(c, "p1", "FATIGUE") == Pair("p1", "A.6", 0)  # status-0 annotation only: negative
    assert label(c, "p3", "ANHEDONIA").label == 0
    assert label(c, "p3", "APPETITE_CHANGE").label == 1
    assert sum(c.labels) == 2
    assert all(p.label == 0 for p in c.pairs if p.post_id == "p2")
    assert c.source == str(tmp_path)
    assert c.text(c.pairs[0]) == "I can't sleep. I lie awake until 4am."


def test_posts_path_with_sibling_annotations_and_explicit_annotations(tmp_path):
    folder = redsm5(tmp_path / "d")
    by_folder = load_redsm5(folder)
    assert load_redsm5(folder / "posts.csv").sha256 == by_folder.sha256
    moved = write(tmp_path / "elsewhere.csv", ANNOTATIONS)
    assert load_redsm5(str(folder / "posts.csv"), moved).sha256 == by_folder.sha256


def test_whitespace_normalized_case_preserved_bom_and_crlf(tmp_path):
    posts = ("\ufeffpost_id,text\r\n"
             "  p1 ,\"  Hello\t\tWORLD \r\n\r\n  again  \"\r\n"
             "p2,MiXeD   case\u00a0text\r\n")
    c = load_redsm5(redsm5(tmp_path, posts=posts, annotations=ANN_HEADER))
    assert c.posts == {"p1": "Hello WORLD again", "p2": "MiXeD case text"}


def test_empty_posts_skipped_with_one_warning(tmp_path):
    posts = POSTS + "e1,\ne2,   \ne3,\"\n\t\n\"\n"
    annotations = ANNOTATIONS + "e1,e1_1,,DEPRESSED_MOOD,1,\n"  # annotations of a skipped post are dropped
    with pytest.warns(UserWarning) as record:
        c = load_redsm5(redsm5(tmp_path, posts=posts, annotations=annotations))
    messages = [str(w.message) for w in record]
    assert messages == ["skipped 3 empty posts in posts.csv"]
    assert list(c.posts) == ["p1", "p2", "p3"]
    assert len(c.pairs) == 27


def test_no_warning_without_empty_posts(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_redsm5(redsm5(tmp_path))


def test_duplicate_post_with_same_text_is_merged(tmp_path):
    posts = POSTS + "p2,Had a GREAT   week hiking with friends.\n"
    assert list(load_redsm5(redsm5(tmp_path, posts=posts)).posts) == ["p1", "p2", "p3"]


def test_subset_of_criteria_ignores_other_symptoms_with_warning(tmp_path):
    crit = write(tmp_path / "c.json", json.dumps({"criteria": [{"id": "A.4", "text": "sleep"}]}))
    with pytest.warns(UserWarning, match=r"ignored 3 rows in annotations.csv .*APPETITE_CHANGE"):
        c = load_redsm5(redsm5(tmp_path / "d"), criteria=crit)
    assert [p.label for p in c.pairs] == [1, 0, 0]


# ------------------------------------------------------------------------------------ errors

BAD_UTF8 = b"post_id,text\np1,fine\np2,caf\xe9 au lait\n"


def _case_missing_posts(tmp):
    write(tmp / "annotations.csv", ANNOTATIONS)
    return lambda: load_redsm5(tmp)


def _case(posts=POSTS, annotations=ANNOTATIONS):
    def make(tmp):
        redsm5(tmp, posts, annotations)
        return lambda: load_redsm5(tmp)
    return make


def _pairs_case(text):
    def make(tmp):
        path = write(tmp / "pairs.csv", text)
        return lambda: load_pairs_csv(path)
    return make


def _missing_annotations(tmp):
    write(tmp / "posts.csv", POSTS)
    return lambda: load_redsm5(tmp)


ERROR_CASES = {
    # id: (make, file name, row, column, fragments of the message)
    "missing folder": (lambda tmp: (lambda: load_redsm5(tmp / "nope")), "nope", None, None, ["not found"]),
    "missing posts.csv": (_case_missing_posts, "posts.csv", None, None, ["posts file not found", "hint:"]),
    "missing annotations.csv": (_missing_annotations, "annotations.csv", None, None, ["not found"]),
    "missing pairs file": (lambda tmp: (lambda: load_pairs_csv(tmp / "x.csv")), "x.csv", None, None,
                           ["not found"]),
    "missing column posts": (_case(posts="post_id,body\np1,hi\n"), "posts.csv", 1, "text",
                             ["missing column 'text'", "found columns: 'post_id', 'body'",
                              "expected: 'post_id', 'text'"]),
    "missing column annotations": (
        _case(annotations="post_id,sentence_id,sentence_text,symptom,status,explanation\n"),
        "annotations.csv", 1, "DSM5_symptom", ["missing column 'DSM5_symptom'", "'symptom'"]),
    "unknown symptom": (_case(annotations=ANN_HEADER + "p1,s,x,SLEEP_ISSUE,1,\n"), "annotations.csv", 2,
                        "DSM5_symptom", ["unknown criterion 'SLEEP_ISSUE'", "did you mean 'SLEEP_ISSUES'"]),
    "unknown symptom case": (_case(annotations=ANN_HEADER + "p1,s,x,fatigue,1,\n"), "annotations.csv", 2,
                             "DSM5_symptom", ["did you mean 'FATIGUE'"]),
    "status yes": (_case(annotations=ANNOTATIONS + "p2,s,x,FATIGUE,yes,\n"), "annotations.csv", 7, "status",
                   ["status must be 0 or 1, got 'yes'"]),
    "status 2": (_case(annotations=ANN_HEADER + "p2,s,x,FATIGUE,2,\n"), "annotations.csv", 2, "status",
                 ["got '2'"]),
    "status empty": (_case(annotations=ANN_HEADER + "p2,s,x,FATIGUE,,\n"), "annotations.csv", 2, "status",
                     ["got ''"]),
    "same id different text": (
        _case(posts=POSTS + "p2,Had a bad week.\n"), "posts.csv", 6, "text",
        ["'p2' has a different text here than on row 4", "rows 4 and 6"]),
    "non utf-8": (_case(posts=BAD_UTF8), "posts.csv", 3, None,
                  ["not valid UTF-8", "byte 0xe9 at byte offset 27", "iconv"]),
    "no rows": (_case(posts="post_id,text\n"), "posts.csv", None, None, ["no rows", "empty"]),
    "empty file": (_case(posts=""), "posts.csv", 1, None, ["is empty"]),
    "no posts left": (_case(posts="post_id,text\np1,  \np2,\n", annotations=ANN_HEADER), "posts.csv", None,
                      None, ["no posts left: all 2 posts are empty"]),
    "annotation for unknown post": (_case(annotations=ANNOTATIONS + "p4,s,x,FATIGUE,1,\n"), "annotations.csv",
                                    7, "post_id", ["post_id 'p4' is not in posts.csv"]),
    "ragged row": (_case(posts="post_id,text\np1,hello, world\n"), "posts.csv", 2, None,
                   ["3 fields but the header has 2", "quote"]),
    "empty post id": (_case(posts="post_id,text\n ,hello\n"), "posts.csv", 2, "post_id",
                      ["post_id is empty"]),
    "pairs unknown criterion": (_pairs_case("post_id,text,criterion_id,status\np1,hi,A.1,1\np1,hi,A.10,0\n"),
                                "pairs.csv", 3, "criterion_id", ["unknown criterion 'A.10'", "did you mean"]),
    "pairs status": (_pairs_case("post_id,text,criterion_id,status\np1,hi,A.1,true\n"), "pairs.csv", 2,
                     "status", ["got 'true'"]),
    "pairs different text": (
        _pairs_case("post_id,text,criterion_id,status\np1,hi,A.1,1\np2,yo,A.1,1\np1,hello,A.2,0\n"),
        "pairs.csv", 4, "text", ["different text here than on row 2"]),
    "pairs conflicting status": (
        _pairs_case("post_id,text,criterion_id,status\np1,hi,A.1,1\np1,hi,A.1,0\n"),
        "pairs.csv", 3, "status", ["has status 0 here but 1 on row 2"]),
    "pairs missing column": (_pairs_case("post_id,text,criterion,status\n"), "pairs.csv", 1, "criterion_id",
                             ["missing column 'criterion_id'", "did you mean 'criterion'"]),
    "pairs no rows": (_pairs_case("post_id,text,criterion_id,status\n"), "pairs.csv", None, None,
                      ["no rows"]),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_loader_errors(tmp_path, case):
    make, file, row, column, fragments = case
    load = make(tmp_path)
    with pytest.raises(DataError) as info:
        load()
    error = info.value
    assert isinstance(error, CriteriaError)
    message = str(error)
    assert Path(error.file).name == file and file in message.splitlines()[0]
    assert error.row == row
    assert error.column == column
    if row is not None:
        assert f"row {row}" in message
    if column is not None:
        assert f"column {column!r}" in message
    assert error.hint and "hint:" in message
    for fragment in fragments:
        assert fragment in message


def test_row_numbers_count_multiline_posts(tmp_path):
    posts = 'post_id,text\np1,"line one\nline two\nline three"\np2,ok\np3,"a\nb"\np3,other\n'
    with pytest.raises(DataError) as info:
        load_redsm5(redsm5(tmp_path, posts=posts, annotations=ANN_HEADER))
    assert info.value.row == 8
    assert "row 6" in str(info.value)  # the first p3 row starts on line 6


def test_non_utf8_offset_counts_bom(tmp_path):
    with pytest.raises(DataError, match="byte offset 30") as info:
        load_redsm5(redsm5(tmp_path, posts=b"\xef\xbb\xbf" + BAD_UTF8))
    assert info.value.row == 3


# ------------------------------------------------------------------------------ criteria JSON


def test_criteria_json_custom_ids_and_standard_names(tmp_path):
    path = write(tmp_path / "c.json", json.dumps({"criteria": [
        {"id": "A.2", "text": "  Lost   interest\n in things. "},
        {"id": "SELF_HARM", "text": "Hurts themselves."},
        {"id": "X.1", "name": "LONELINESS", "text": "Feels alone.", "note": "extra keys are ignored"},
    ]}))
    assert load_criteria_json(path) == (
        Criterion("A.2", "ANHEDONIA", "Lost interest in things."),
        Criterion("SELF_HARM", "SELF_HARM", "Hurts themselves."),
        Criterion("X.1", "LONELINESS", "Feels alone."),
    )


def test_custom_criteria_drive_redsm5_and_pairs(tmp_path):
    crit = write(tmp_path / "c.json", json.dumps({"criteria": [
        {"id": "LONELY", "text": "Feels alone."}, {"id": "A.9", "text": "Thinks of death."}]}))
    annotations = ANN_HEADER + "p1,s,Nobody calls.,LONELY,1,\np2,s,x,SUICIDAL_THOUGHTS,1,\n"
    c = load_redsm5(redsm5(tmp_path / "d", annotations=annotations), criteria=crit)
    assert [(p.post_id, p.criterion_id, p.label) for p in c.pairs[:4]] == [
        ("p1", "LONELY", 1), ("p1", "A.9", 0), ("p2", "LONELY", 0), ("p2", "A.9", 1)]
    assert c.pairs[0].evidence == ("Nobody calls.",)
    assert c.criterion("A.9").name == "SUICIDAL_THOUGHTS"


def test_embedded_criteria():
    criteria = embedded_criteria()
    assert [c.id for c in criteria] == [f"A.{i}" for i in range(1, 10)]
    assert [c.name for c in criteria] == list(CRITERION_NAMES)
    assert all(len(c.text) > 20 for c in criteria)


CRITERIA_ERRORS = {
    "bad json": ('{"criteria": [\n  {"id": "A.1", "text": "x"},\n]}', 3, None, ["not valid JSON"]),
    "not an object": ("[]", None, "criteria", ['missing the top-level key "criteria"']),
    "not a list": ('{"criteria": {"id": "A.1"}}', None, "criteria", ["must be a list"]),
    "empty list": ('{"criteria": []}', None, "criteria", ["no criteria"]),
    "missing text": ('{"criteria": [{"id": "A.1", "txt": "x"}]}', None, "criteria[0].text",
                     ["missing key 'text'", "did you mean 'txt'"]),
    "missing id": ('{"criteria": [{"id": "A.1", "text": "x"}, {"text": "y"}]}', None, "criteria[1].id",
                   ["missing key 'id'"]),
    "empty text": ('{"criteria": [{"id": "A.1", "text": "  \\n "}]}', None, "criteria[0].text",
                   ["non-empty string"]),
    "text not a string": ('{"criteria": [{"id": "A.1", "text": 3}]}', None, "criteria[0].text",
                          ["non-empty string, got 3"]),
    "duplicate id": ('{"criteria": [{"id": "A.1", "text": "x"}, {"id": "A.1", "text": "y"}]}', None,
                     "criteria[1].id", ["duplicate id 'A.1' (also criteria[0])"]),
    "entry not an object": ('{"criteria": ["A.1"]}', None, "criteria[0]", ["must be an object"]),
}


@pytest.mark.parametrize("case", CRITERIA_ERRORS.values(), ids=CRITERIA_ERRORS.keys())
def test_criteria_json_errors(tmp_path, case):
    text, row, column, fragments = case
    path = write(tmp_path / "criteria.json", text)
    with pytest.raises(DataError) as info:
        load_criteria_json(path)
    assert info.value.file == str(path) and info.value.row == row and info.value.column == column
    assert info.value.hint
    for fragment in fragments:
        assert fragment in str(info.value)


def test_criteria_json_missing_and_not_utf8(tmp_path):
    with pytest.raises(DataError, match="criteria file not found"):
        load_criteria_json(tmp_path / "none.json")
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        load_criteria_json(write(tmp_path / "c.json", b'{"criteria": [{"id": "A.1", "text": "\xff"}]}'))
    assert info.value.row == 1


# -------------------------------------------------------------------------------- pairs CSV


def test_pairs_csv_round_trip(tmp_path):
    original = load_redsm5(redsm5(tmp_path / "d"))
    path = write_pairs_csv(original, tmp_path / "out" / "pairs.csv")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["post_id", "text", "criterion_id", "status"] and len(rows) == 1 + len(original.pairs)
    again = load_pairs_csv(path)
    assert again.posts == original.posts
    assert again.criteria == original.criteria
    assert [dataclasses.replace(p, evidence=()) for p in original.pairs] == list(again.pairs)
    assert again.sha256 == original.sha256
    assert again.source == str(path)


def test_pairs_csv_names_partial_pairs_and_duplicates(tmp_path):
    path = write(tmp_path / "pairs.csv", (
        "post_id,text,criterion_id,status,extra\n"
        "b,Second   post,FATIGUE,1,x\n"
        "a,First post,A.9,0,x\n"
        "a,First post,A.1,1,x\n"
        "a,First post,A.1,1,x\n"  # an exact duplicate is fine
        "c,,A.1,1,x\n"
    ))
    with pytest.warns(UserWarning, match="skipped 1 empty post in pairs.csv"):
        c = load_pairs_csv(path)
    assert c.posts == {"b": "Second post", "a": "First post"}
    assert [x.id for x in c.criteria] == ["A.1", "A.6", "A.9"]  # only the criteria used, in criteria order
    assert [(p.post_id, p.criterion_id, p.label) for p in c.pairs] == [
        ("b", "A.6", 1), ("a", "A.1", 1), ("a", "A.9", 0)]


# ----------------------------------------------------------------------------- corpus object


def test_embedded_corpus(corpus):
    assert corpus.source == "embedded corpus"
    assert len(corpus.posts) >= 240
    assert len(corpus.criteria) == 9
    assert len(corpus.pairs) == 9 * len(corpus.posts)
    for criterion in corpus.criteria:
        labels = [p.label for p in corpus.pairs if p.criterion_id == criterion.id]
        assert 0 < sum(labels) < len(labels), criterion.name
    assert all(p.evidence for p in corpus.pairs if p.label)
    positives_per_post = {}
    for p in corpus.pairs:
        positives_per_post[p.post_id] = positives_per_post.get(p.post_id, 0) + p.label
    assert 0 in positives_per_post.values()  # symptom-free posts exist
    assert all(text == " ".join(text.split()) and text for text in corpus.posts.values())


def test_sha256_stable_and_sensitive(tmp_path, corpus):
    assert len(corpus.sha256) == 64
    assert embedded_corpus().sha256 == corpus.sha256  # a fresh load hashes the same
    c = load_redsm5(redsm5(tmp_path))
    assert load_redsm5(redsm5(tmp_path / "copy")).sha256 == c.sha256  # source is not hashed
    flipped = list(c.pairs)
    flipped[5] = dataclasses.replace(flipped[5], label=1 - flipped[5].label)
    assert dataclasses.replace(c, pairs=tuple(flipped)).sha256 != c.sha256
    edited = dict(c.posts, p2="Had a great week hiking with friends.")
    assert dataclasses.replace(c, posts=edited).sha256 != c.sha256
    reworded = (dataclasses.replace(c.criteria[0], text="other"), *c.criteria[1:])
    assert dataclasses.replace(c, criteria=reworded).sha256 != c.sha256


def test_corpus_helpers(tmp_path):
    c = load_redsm5(redsm5(tmp_path))
    assert c.subset([3, 0]) == [c.pairs[3], c.pairs[0]]
    assert c.labels[3] == 1 and c.criterion("A.4").name == "SLEEP_ISSUES"
    with pytest.raises(DataError, match=r"unknown criterion id 'A.44' \(did you mean 'A.4'"):
        c.criterion("A.44")
    assert "3 posts x 9 criteria = 27 pairs, 2 positive" in c.summary()


# -------------------------------------------------------------------------------- load_corpus


def test_load_corpus_dispatch(tmp_path, corpus):
    assert load_corpus(DataSection(), tmp_path).sha256 == corpus.sha256
    redsm5(tmp_path / "data")
    crit = write(tmp_path / "conf" / "crit.json", json.dumps({"criteria": [{"id": "A.4", "text": "sleep"}]}))
    with pytest.warns(UserWarning, match="ignored"):
        c = load_corpus(DataSection(path=Path("data"), criteria=Path("conf/crit.json")), tmp_path)
    assert [p.label for p in c.pairs] == [1, 0, 0]
    absolute = load_corpus(DataSection(path=tmp_path / "data"), Path("/elsewhere"))
    assert absolute.source == str(tmp_path / "data")
    pairs = write_pairs_csv(load_redsm5(tmp_path / "data"), tmp_path / "pairs.csv")
    assert load_corpus(DataSection(format="pairs", path=Path("pairs.csv")), tmp_path).sha256 == \
        load_redsm5(tmp_path / "data").sha256
    assert pairs.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        custom = load_corpus(DataSection(criteria=crit), tmp_path)
    assert custom.source == "embedded corpus" and [x.id for x in custom.criteria] == ["A.4"]
    with pytest.raises(DataError, match="needs data.path"):
        load_corpus(DataSection(format="pairs"), tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_corpus(DataSection(path=Path("missing")), tmp_path)


# ------------------------------------------------------------------------------------- splits


def posts_of(corpus: Corpus, indices) -> set[str]:
    return {corpus.pairs[i].post_id for i in indices}


def rate(corpus: Corpus, indices) -> float:
    return sum(corpus.pairs[i].label for i in indices) / len(indices)


def test_test_split_holds_out_whole_posts(corpus):
    rest, test = test_split(corpus, 0.2, seed=7)
    assert not posts_of(corpus, rest) & posts_of(corpus, test)
    assert sorted(rest + test) == list(range(len(corpus.pairs)))
    assert len(posts_of(corpus, test)) == pytest.approx(0.2 * len(corpus.posts), abs=1)
    # every pair of a held-out post is held out
    held = posts_of(corpus, test)
    assert set(test) == {i for i, p in enumerate(corpus.pairs) if p.post_id in held}
    assert abs(rate(corpus, test) - rate(corpus, rest)) < 0.05
    assert test_split(corpus, 0.0, seed=7) == (tuple(range(len(corpus.pairs))), ())


def test_holdout_grouped_stratified(corpus):
    rest, _ = test_split(corpus, 0.2, seed=1)
    split = holdout(corpus, rest, 0.25, seed=1)
    assert isinstance(split, Split) and split.name == "holdout"
    assert not posts_of(corpus, split.train) & posts_of(corpus, split.validation)
    assert sorted(split.train + split.validation) == sorted(rest)
    assert list(split.train) == sorted(split.train)
    assert abs(rate(corpus, split.validation) - rate(corpus, rest)) < 0.05
    assert len(posts_of(corpus, split.validation)) == pytest.approx(0.25 * len(posts_of(corpus, rest)), abs=1)


@pytest.mark.parametrize("folds", [2, 5])
def test_kfold_grouped_stratified_and_covering(corpus, folds):
    rest, _ = test_split(corpus, 0.2, seed=3)
    splits = kfold(corpus, rest, folds, seed=3)
    assert [s.name for s in splits] == [f"fold-{k}" for k in range(folds)]
    overall = rate(corpus, rest)
    seen: list[int] = []
    for split in splits:
        assert not posts_of(corpus, split.train) & posts_of(corpus, split.validation)
        assert sorted(split.train + split.validation) == sorted(rest)
        assert abs(rate(corpus, split.validation) - overall) < 0.05, (split.name, overall)
        seen.extend(split.validation)
    assert sorted(seen) == sorted(rest)  # every index is validated exactly once


def test_splits_are_deterministic_and_seeded(corpus):
    assert test_split(corpus, 0.2, 5) == test_split(corpus, 0.2, 5)
    assert test_split(corpus, 0.2, 5) != test_split(corpus, 0.2, 6)
    indices = range(len(corpus.pairs))
    assert holdout(corpus, indices, 0.2, 5) == holdout(corpus, reversed(indices), 0.2, 5)
    assert holdout(corpus, indices, 0.2, 5) != holdout(corpus, indices, 0.2, 6)
    assert kfold(corpus, indices, 3, 5) == kfold(corpus, list(indices), 3, 5)
    assert kfold(corpus, indices, 3, 5) != kfold(corpus, indices, 3, 6)


def test_splits_on_tiny_corpora(tmp_path):
    c = load_redsm5(redsm5(tmp_path))  # 3 posts, strata too small to stratify
    split = holdout(c, range(len(c.pairs)), 0.3, seed=0)
    assert len(posts_of(c, split.validation)) == 1 and len(posts_of(c, split.train)) == 2
    folds = kfold(c, range(len(c.pairs)), 3, seed=0)
    assert [len(posts_of(c, s.validation)) for s in folds] == [1, 1, 1]
    with pytest.raises(DataError, match="cannot make 4 folds from 3 posts"):
        kfold(c, range(len(c.pairs)), 4, seed=0)
    with pytest.raises(DataError, match="keep some for training"):
        holdout(c, range(9), 0.5, seed=0)  # the 9 pairs of one post
    with pytest.raises(DataError, match="between 0 and 1"):
        test_split(c, 1.0, seed=0)
    with pytest.raises(DataError, match="out of range"):
        holdout(c, [0, 99], 0.5, seed=0)
