"""Out-of-domain benchmark for S1: sentiment classifiers trained on movie snippets, read on
short texts of other domains that are not in the repository.

The texts are the other three sets of human-rated snippets in the archive the movie snippets
come from (Hutto & Gilbert 2014, `hutto_ICWSM_2014.tar.gz` in the vaderSentiment 3.3.2 source
distribution, MIT): 4,200 tweets, 5,190 sentences of New York Times editorials and 3,708
sentences of Amazon product reviews. They are labelled as the movie snippets are: a mean
rating above 0 is positive, below 0 negative, exactly 0 dropped. Many of them are rated close
to 0 (a plain statement of fact), so a second column keeps only the clearly rated ones
(|mean| >= 1 on the -4..4 scale). The in-domain test split is read too, for reference.

Each set is cut in two halves by a hash of the text (`half`): `bench_ensemble.py --ood`
chooses the shipped combination with the dev half, and this benchmark reports the test half
(`--half test`, the default) unless told otherwise.

Their classes are not balanced as the movie snippets' are (69 % of the tweets are positive,
45 % of the editorial sentences), so a model that leans to one class out of domain gains or
loses accuracy by the lean alone. Balanced accuracy (the mean of the per-class recalls, 0.5 for
any constant answer) measures how well it tells the classes apart; both are reported.

Each `--group LABEL=PATTERN` is a set of checkpoints (a glob, e.g. the seeds that
`bench_pretrain.py --keep DIR` leaves); a group's row is the mean (± sd) over its models.

    python benchmarks/bench_ood.py --group "from scratch=runs/scratch-s*.pt" \
        --group "pretrained, finetuned=runs/init-1.0-s*.pt" [--cache DIR]
"""

from __future__ import annotations

import argparse
import glob
import html
import io
import statistics
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

from common import ROOT, output_options, progress, record, table, use_output

sys.path.insert(0, str(ROOT / "corpora"))
from prepare import VADER_SPEC, pip_download, squash  # noqa: E402

SETS = {"tweets": "tweets_GroundTruth.txt",
        "NYT editorials": "nytEditorialSnippets_GroundTruth.txt",
        "Amazon reviews": "amazonReviewSnippets_GroundTruth.txt"}
CLEAR = 1.0  # |mean rating| for the clearly rated subset
HALVES = ("dev", "test")


def half(text: str) -> str:
    """The half a text belongs to: fixed, about even, and the same for repeated texts."""
    return HALVES[zlib.crc32(text.encode("utf-8")) % 2]


def read_sets(cache: Path, which: str = "all") -> dict[str, list[tuple[str, str, float]]]:
    """(label, text, mean rating) per set, from the vaderSentiment sdist (downloaded once):
    every rated text, or those of one half ("dev" or "test")."""
    sdist = next(cache.glob("vaderSentiment-*.tar.gz"), None) or pip_download(
        VADER_SPEC, cache, sdist=True)
    with tarfile.open(sdist) as outer:
        (name,) = [n for n in outer.getnames() if n.endswith("hutto_ICWSM_2014.tar.gz")]
        inner_bytes = outer.extractfile(name).read()
    sets = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for label, member in SETS.items():
            raw = inner.extractfile(f"hutto_ICWSM_2014/{member}").read()
            rows = []
            for line in raw.decode("utf-8", errors="replace").splitlines():
                parts = line.split("\t")
                if len(parts) != 3:
                    continue
                score, text = float(parts[1]), squash(html.unescape(parts[2]))
                if score != 0 and text and which in ("all", half(text)):
                    rows.append(("positive" if score > 0 else "negative", text, score))
            sets[label] = rows
    return sets


def accuracy(model: str, path: Path) -> dict[str, float]:
    import seqtool

    r = seqtool.evaluate("classify", path, model, device="cpu")
    recalls = [c["recall"] for c in r["per_class"].values() if c["recall"] is not None]
    return {"accuracy": r["accuracy"], "balanced": sum(recalls) / len(recalls)}


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", required=True,
                        help="LABEL=GLOB of classifier checkpoints (repeat)")
    parser.add_argument("--name", default="ood",
                        help="results/NAME.{md,json} (another name keeps results/ood.md)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "seqtool-ood"),
                        help="where the downloaded source distribution is kept")
    parser.add_argument("--half", choices=[*HALVES, "all"], default="test",
                        help="which half of each out-of-domain set to read (default: test)")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)

    groups = {}
    for spec in args.group:
        label, _, pattern = spec.partition("=")
        models = sorted(m for m in glob.glob(pattern) if not m.endswith(".last.pt"))
        if not models:
            parser.error(f"--group {label}: no file matches {pattern}")
        groups[label] = models
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    sets = read_sets(cache, args.half)
    # In domain, the split that matches the half read: a choice made on dev halves must not
    # read the in-domain test split.
    split = "test" if args.half == "test" else "dev"
    files = {f"movie snippets (in domain, {split})":
             ROOT / "corpora" / "sentiment" / "movie-snippets" / f"{split}.tsv"}
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in sets.items():
            for subset, keep in (("all", rows), ("clear", [r for r in rows
                                                           if abs(r[2]) >= CLEAR])):
                path = Path(tmp) / f"{name}-{subset}.tsv".replace(" ", "_")
                path.write_text("".join(f"{lab}\t{text}\n" for lab, text, _ in keep))
                files[f"{name} ({subset})"] = path
                counts[f"{name} ({subset})"] = len(keep)
        scores = {}
        for label, models in groups.items():
            progress(f"group {label}: {len(models)} model(s) on {len(files)} sets")
            scores[label] = {f: [accuracy(m, p) for m in models] for f, p in files.items()}
    headers = ["test set", "texts", *(f"{g} ({len(groups[g])})" for g in groups)]
    markdown = "\n\n".join(
        f"{title}\n\n" + table(headers, [
            [f, counts.get(f, 1058), *(mean_sd([s[key] for s in scores[g][f]]) for g in groups)]
            for f in files])
        for key, title in (("accuracy", "Accuracy"), ("balanced", "Balanced accuracy")))
    markdown += (f"\n\nOut-of-domain texts: the {args.half} half of each set (`--half`). "
                 "A group's cell is the mean ± sd over its models. Labels as the "
                 "movie snippets': mean human rating > 0 positive, < 0 negative; 'clear' keeps "
                 f"|mean| >= {CLEAR}.\n\nModels: " + "; ".join(
                     f"{g}: {', '.join(ms)}" for g, ms in groups.items()))
    record(args.name, {"groups": groups, "half": args.half, "counts": counts, "accuracy": scores},
           markdown)


if __name__ == "__main__":
    main()
