"""The catalogue of bad inputs a user meets: malformed specs, data files, models and output paths.

Each one gets one clear error (what, where, how to fix), exit status 2, no traceback, and nothing
already written is lost. Inputs that only look odd (a byte-order mark, Windows line ends, a very
long post) are accepted. The commands run in this process (``criteria.cli.main``), as a user
would type them, so the catalogue stays fast.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from criteria.cli import main

POSTS = "post_id,text\np1,I cannot sleep at night.\np2,I feel fine and rested.\n"
ANN = ("post_id,sentence_id,sentence_text,DSM5_symptom,status,explanation\n"
       "p1,s1,I cannot sleep at night.,SLEEP_ISSUES,1,insomnia\n")


@dataclass
class Case:
    """``setup(folder, fixtures)`` writes the inputs and returns the command's arguments."""

    setup: Callable[[Path, dict], list[str]]
    fragments: tuple[str, ...] = ()
    exit_code: int = 2
    env: dict[str, str] = field(default_factory=dict)


def spec(folder: Path, text: str, name: str = "spec.toml") -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def data_spec(folder: Path, posts: str | bytes = POSTS, annotations: str | bytes = ANN, extra: str = "") -> str:
    data = folder / "data"
    data.mkdir(exist_ok=True)
    for name, content in (("posts.csv", posts), ("annotations.csv", annotations)):
        if isinstance(content, bytes):
            (data / name).write_bytes(content)
        else:
            (data / name).write_text(content, encoding="utf-8", newline="")
    return spec(folder, f'[data]\npath = "data"\n{extra}\n')


def validate(text: str) -> Callable[[Path, dict], list[str]]:
    return lambda folder, fx: ["validate", spec(folder, text)]


def validate_data(**kwargs) -> Callable[[Path, dict], list[str]]:
    return lambda folder, fx: ["validate", data_spec(folder, **kwargs)]


def validate_model(make_model: Callable[[Path, dict], str]) -> Callable[[Path, dict], list[str]]:
    def setup(folder: Path, fx: dict) -> list[str]:
        return ["validate", spec(folder, f'[model]\nname = "{make_model(folder, fx)}"\n')]
    return setup


def predict(make_input: Callable[[Path], Path] | None = None, output: Callable[[Path], str] | None = None,
            model: Callable[[Path, dict], str] | None = None) -> Callable[[Path, dict], list[str]]:
    def setup(folder: Path, fx: dict) -> list[str]:
        posts = make_input(folder) if make_input else _write(folder / "in.csv", POSTS)
        out = output(folder) if output else str(folder / "predictions.csv")
        where = model(folder, fx) if model else str(fx["model_folder"])
        return ["predict", where, "--input", str(posts), "--output", out]
    return setup


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def _folder(path: Path, *files: str) -> str:
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text("{}", encoding="utf-8")
    return str(path)


CASES: dict[str, Case] = {
    # --- spec files and values ---------------------------------------------------------------
    "spec file missing": Case(lambda f, fx: ["validate", str(f / "nope.toml")], ("spec file not found",)),
    "spec not TOML": Case(validate("[study\nname = 1\n"), ("not valid TOML",)),
    "spec not UTF-8": Case(lambda f, fx: ["validate", str(_write(f / "s.toml", b"[study]\nname = \"caf\xe9\"\n"))],
                           ("not UTF-8",)),
    "a bool for a count": Case(validate("[study]\ntrials = true\n"), ("study.trials", "bool")),
    "a bool for a number": Case(validate("[train]\nepochs = false\n"), ("train.epochs", "bool")),
    "a bool for a float": Case(validate('[optimizer]\nuse = "adamw"\n[optimizer.adamw]\nlr = true\n'),
                               ("optimizer.adamw.lr", "bool")),
    "a string for a count": Case(validate('[study]\ntrials = "ten"\n'), ("study.trials",)),
    "zero trials": Case(validate("[study]\ntrials = 0\n"), ("study.trials", "greater than or equal to 1")),
    "a key given twice": Case(validate("[study]\ntrials = 2\ntrials = 1\n"), ("not valid TOML",)),
    "unknown section": Case(validate("[studdy]\nname = 'x'\n"), ("unknown section [studdy]", "did you mean")),
    "unknown metric": Case(validate('[study]\nmetric = "f2"\n'), ("study.metric",)),
    "fraction above one": Case(validate("[data]\nvalidation_fraction = 1.5\n"), ("data.validation_fraction",)),
    "max length too small": Case(validate("[data]\nmax_length = 4\n"), ("data.max_length",)),
    "range outside bounds": Case(validate('[optimizer]\nuse = "adamw"\n[optimizer.adamw]\nlr = {low = 1e-9, high = 1e-4}\n'),
                                 ("outside the valid values",)),
    "unknown plugin": Case(validate('[optimizer]\nuse = "adamv"\n'), ("unknown optimizer 'adamv'", "did you mean")),
    "enqueue unknown parameter": Case(validate('[study]\n[[study.enqueue]]\n"optimizer.adamw.learning_rate" = 1e-4\n'),
                                      ("not a searched parameter",)),
    "posts and path together": Case(validate('[data]\npath = "d"\nposts = "p.csv"\n'), ("not both",)),
    "unknown data format": Case(validate('[data]\nformat = "jsonl"\npath = "x"\n'), ("data.format",)),
    # --- data files ----------------------------------------------------------------------------
    "data folder missing": Case(validate('[data]\npath = "missing"\n'), ("not found", "data.path")),
    "posts file empty": Case(validate_data(posts=""), ("posts.csv", "is empty")),
    "posts header only": Case(validate_data(posts="post_id,text\n"), ("posts.csv", "has no rows")),
    "posts missing a column": Case(validate_data(posts="post_id,body\np1,x\n"), ("missing column 'text'",)),
    "posts not UTF-8": Case(validate_data(posts=b"post_id,text\np1,caf\xe9\n"), ("not valid UTF-8", "row 2")),
    "posts unbalanced quote": Case(validate_data(posts='post_id,text\np1,"never closed\n'), ("posts.csv",)),
    "same id, two texts": Case(validate_data(posts=POSTS + "p1,Another text.\n"), ("different text", "row 2")),
    "annotation for an unknown post": Case(validate_data(annotations=ANN + "p9,s,x,FATIGUE,1,\n"),
                                           ("post_id 'p9' is not in posts.csv",)),
    "annotation status not 0/1": Case(validate_data(annotations=ANN + "p1,s,x,FATIGUE,yes,\n"),
                                      ("status must be 0 or 1", "row 3")),
    "unknown criterion label": Case(validate_data(annotations=ANN + "p1,s,x,SLEEP_ISSEUS,1,\n"),
                                    ("unknown criterion 'SLEEP_ISSEUS'", "did you mean 'SLEEP_ISSUES'")),
    "no annotations file": Case(lambda f, fx: ["validate", spec(f, '[data]\npath = "p.csv"\n')] if _write(
        f / "p.csv", POSTS) else [], ("annotations file not found beside p.csv", "guessed")),
    "a file no format matches": Case(lambda f, fx: ["validate", spec(f, '[data]\npath = "x.csv"\n')] if _write(
        f / "x.csv", "a,b\n1,2\n") else [], ("matches no supported data format", "post_labels:")),
    "criteria JSON broken": Case(lambda f, fx: ["validate", spec(f, '[data]\ncriteria = "c.json"\n')] if _write(
        f / "c.json", "{criteria: [") else [], ("is not valid JSON",)),
    "criteria JSON empty": Case(lambda f, fx: ["validate", spec(f, '[data]\ncriteria = "c.json"\n')] if _write(
        f / "c.json", '{"criteria": []}') else [], ('"criteria" is empty',)),
    # --- models --------------------------------------------------------------------------------
    "model folder missing": Case(validate_model(lambda f, fx: str(f / "no-model")), ("model folder not found",)),
    "model is a file": Case(validate_model(lambda f, fx: str(_write(f / "model.bin", "x"))), ("is a file",)),
    "folder is not a model": Case(validate_model(lambda f, fx: _folder(f / "empty")), ("no config.json",)),
    "config without weights": Case(validate_model(lambda f, fx: _folder(f / "m", "config.json")),
                                   ("no weights",)),
    "weights without tokenizer": Case(validate_model(lambda f, fx: _folder(f / "m", "config.json", "model.safetensors")),
                                      ("no tokenizer files",)),
    "hub name offline": Case(validate_model(lambda f, fx: "some-org/some-model"), ("HF_HUB_OFFLINE",),
                             env={"HF_HUB_OFFLINE": "1"}),
    "run folder as a model": Case(validate_model(lambda f, fx: str(fx["model_folder"])),
                                  ("criteria run folder", "criteria predict")),
    # --- predict -------------------------------------------------------------------------------
    "predict: model folder missing": Case(predict(model=lambda f, fx: str(f / "nothing")), ("model folder not found",)),
    "predict: not a model folder": Case(predict(model=lambda f, fx: _folder(f / "plain")),
                                        ("not a criteria model folder",)),
    "predict: input missing": Case(predict(make_input=lambda f: f / "none.csv"), ("input file not found",)),
    "predict: input without text": Case(predict(make_input=lambda f: _write(f / "i.csv", "post_id,body\np,x\n")),
                                        ("missing column 'text'",)),
    "predict: duplicate ids": Case(predict(make_input=lambda f: _write(f / "i.csv", POSTS + "p1,Other words.\n")),
                                   ("post_id 'p1' has a different text", "row 4")),
    "predict: input not UTF-8": Case(predict(make_input=lambda f: _write(f / "i.csv", b"post_id,text\np,\xff\n")),
                                     ("not valid UTF-8",)),
    "predict: input empty": Case(predict(make_input=lambda f: _write(f / "i.csv", "")), ("is empty",)),
    "predict: output is a folder": Case(predict(output=lambda f: _folder(f / "out")), ("is a folder",)),
    "predict: output under a file": Case(predict(output=lambda f: str(_write(f / "afile", "x") / "p.csv")),
                                         ("is a file, not a folder",)),
    "train: output is a file": Case(lambda f, fx: ["train", spec(f, ""), "--output", str(_write(f / "o", "x"))],
                                    ("is a file, not a folder",)),
    "run: output is a file": Case(lambda f, fx: ["run", spec(f, ""), "--output", str(_write(f / "o", "x"))],
                                  ("is a file, not a folder",)),
    # --- odd but fine --------------------------------------------------------------------------
    "a byte-order mark": Case(validate_data(posts=b"\xef\xbb\xbf" + POSTS.encode()), ("2 posts",), exit_code=0),
    "Windows line ends": Case(validate_data(posts=POSTS.replace("\n", "\r\n"), annotations=ANN.replace("\n", "\r\n")),
                              ("2 posts",), exit_code=0),
    "a very long post": Case(validate_data(posts=POSTS + "p3," + "word " * 20000 + "\n"), ("3 posts",), exit_code=0),
}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, tiny_bert) -> dict:
    """A saved criteria model folder (random tiny weights: what predict reads, not what it scores)."""
    from criteria.engine.model import CriterionClassifier, load_encoder, load_tokenizer, save_classifier
    from criteria.plugin.registry import get_registry

    head = get_registry().get("head", "linear").cls()
    encoder = load_encoder(str(tiny_bert), hidden_dropout=0.0, attention_dropout=0.0)
    model = CriterionClassifier(encoder, head.build(encoder.config.hidden_size, 2))
    folder = tmp_path_factory.mktemp("run") / "model"
    save_classifier(model, load_tokenizer(str(tiny_bert)), folder, {
        "head": {"name": "linear", "config": head.config.model_dump()},
        "criteria": [{"id": "A.1", "name": "DEPRESSED_MOOD", "text": "Feels sad or empty most of the day."}],
        "max_length": 64, "threshold": 0.5, "num_labels": 2,
    })
    return {"model_folder": folder}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", list(CASES))
def test_every_bad_input_gets_one_clear_error(name, tmp_path, fixtures, capsys, monkeypatch):
    case = CASES[name]
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if "HF_HUB_OFFLINE" in case.env:
        import huggingface_hub.constants

        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = run_cli(case.setup(tmp_path, fixtures), capsys)
    text = out + err
    assert "Traceback" not in text, text
    assert code == case.exit_code, text
    if case.exit_code == 2:
        assert err.startswith("error: "), text
    for fragment in case.fragments:
        assert fragment in " ".join(text.split()), text
    if code:
        after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        assert set(before) <= set(after)  # a failed command removed nothing


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 45


def test_a_full_disk_while_writing_predictions_leaves_no_half_file(tmp_path, fixtures, capsys, monkeypatch):
    """The predictions are written beside the output and renamed into place: when the disk fills
    up, the error says so and the previous file is kept whole."""
    out = tmp_path / "predictions.csv"
    out.write_text("previous,predictions\n", encoding="utf-8")
    posts = _write(tmp_path / "in.csv", POSTS)
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run_cli(["predict", str(fixtures["model_folder"]), "--input", str(posts), "--output", str(out)],
                           capsys)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 2 and "no space is left on the device" in err and "Traceback" not in err
    assert out.read_text(encoding="utf-8") == "previous,predictions\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
