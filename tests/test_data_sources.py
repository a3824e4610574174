"""Real data files as distributed: the ReDSM5 release's file names, explicit files, labels that are
no criterion, the post-level layout, and errors that name the supported formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from criteria.data.corpus import DataError
from criteria.data.loaders import load_post_labels, post_id_of
from criteria.data.sources import load_corpus
from criteria.spec.schema import DataSection
from test_data import ANN_HEADER, ANNOTATIONS, POSTS, label, write


def test_the_release_file_names_are_found_in_a_folder(tmp_path):
    write(tmp_path / "redsm5_posts.csv", POSTS)
    write(tmp_path / "redsm5_annotations.csv", ANNOTATIONS)
    corpus = load_corpus(DataSection(path=Path(".")), tmp_path)
    assert len(corpus.posts) == 3 and label(corpus, "p1", "SLEEP_ISSUES").label == 1


def test_explicit_posts_and_annotations_files(tmp_path):
    write(tmp_path / "a" / "my_posts.csv", POSTS)
    write(tmp_path / "b" / "labels.csv", ANNOTATIONS)
    corpus = load_corpus(DataSection(posts=Path("a/my_posts.csv"), annotations=Path("b/labels.csv")), tmp_path)
    assert label(corpus, "p3", "APPETITE_CHANGE").label == 1


def test_a_guessed_annotations_path_is_said_to_be_guessed(tmp_path):
    write(tmp_path / "my_posts.csv", POSTS)
    with pytest.raises(DataError) as info:
        load_corpus(DataSection(path=Path("my_posts.csv")), tmp_path)
    message = str(info.value)
    assert "annotations file not found beside my_posts.csv" in message and "data.annotations" in message


def test_labels_that_are_no_criterion_are_skipped_and_counted(tmp_path):
    write(tmp_path / "posts.csv", POSTS)
    write(tmp_path / "annotations.csv", ANNOTATIONS + "p2,p2_1,x,SPECIAL_CASE,1,\np2,p2_2,y,SPECIAL_CASE,1,\n")
    with pytest.warns(UserWarning, match=r"ignored 2 rows .* not criteria .*SPECIAL_CASE \(2\)"):
        corpus = load_corpus(DataSection(path=Path(".")), tmp_path)
    assert sum(p.label for p in corpus.pairs if p.post_id == "p2") == 0
    with pytest.raises(DataError) as info:
        load_corpus(DataSection(path=Path("."), ignore_labels=()), tmp_path)
    assert "unknown criterion 'SPECIAL_CASE'" in str(info.value) and "data.ignore_labels" in str(info.value)


POST_LEVEL = (
    "text,labels,explanation\n"
    "\"I sleep four hours, then stare at the ceiling.\",SLEEP_ISSUES,insomnia\n"
    "Nothing tastes of anything; I skip meals.,ANHEDONIA;APPETITE_CHANGE,two\n"
    "Great week hiking.,,none\n"
    "Odd one.,SPECIAL_CASE,\n"
)


def test_the_post_level_layout_loads_as_pairs_with_stable_ids(tmp_path):
    path = write(tmp_path / "redsm5_post_level.csv", POST_LEVEL)
    with pytest.warns(UserWarning, match="SPECIAL_CASE"):
        corpus = load_corpus(DataSection(path=Path(path.name)), tmp_path)  # format read from the header
    assert len(corpus.posts) == 4 and len(corpus.pairs) == 4 * 9
    hiking = post_id_of("Great week hiking.")
    assert hiking == post_id_of("  Great   week hiking. ")  # from the normalized text, stable
    assert label(corpus, hiking, "SLEEP_ISSUES").label == 0
    tastes = post_id_of("Nothing tastes of anything; I skip meals.")
    assert {corpus.criterion(p.criterion_id).name for p in corpus.pairs if p.post_id == tastes and p.label} == {
        "ANHEDONIA", "APPETITE_CHANGE"}


def test_a_post_listed_twice_with_other_labels_is_an_error(tmp_path):
    path = write(tmp_path / "posts.csv", "text,labels\nSame words.,FATIGUE\nSame words.,ANHEDONIA\n")
    with pytest.raises(DataError) as info:
        load_post_labels(path)
    assert info.value.row == 3 and "row 2" in str(info.value)


@pytest.mark.parametrize("header, fragment", [
    ("body,label\nhello,1\n", "matches no supported data format"),
    (ANN_HEADER + "p1,s,x,FATIGUE,1,\n", "this is a ReDSM5 annotations file"),
])
def test_an_unknown_layout_names_the_supported_formats(tmp_path, header, fragment):
    write(tmp_path / "data.csv", header)
    with pytest.raises(DataError) as info:
        load_corpus(DataSection(path=Path("data.csv")), tmp_path)
    message = str(info.value)
    assert fragment in message and info.value.row == 1
    if "no supported" in fragment:
        assert all(name in message for name in ("redsm5:", "pairs:", "post_labels:"))


def test_a_file_format_with_a_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="reads a file, and data.path is a folder"):
        load_corpus(DataSection(path=Path("."), format="pairs"), tmp_path)
