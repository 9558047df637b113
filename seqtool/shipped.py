"""The models shipped in checkpoints/, by task and name; light enough for `--help`.

One table (`SHIPPED`) declares each model: its name, task, file, domain and headline score
(from checkpoints/README.md); `seqtool models` lists it without loading any of them. A model
is named by its name (`bible-fr-en`), its file name (`english-gru-lm.seqtool`) or that without the
suffix, wherever a command or the API takes a checkpoint."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seqtool.errors import SeqtoolError

BROWN_GENRES = ("adventure", "belles_lettres", "editorial", "fiction", "government", "hobbies",
                "humor", "learned", "lore", "mystery", "news", "religion", "reviews",
                "romance", "science_fiction")


@dataclass(frozen=True)
class ShippedModel:
    name: str
    task: str  # classify | generate | translate | pretrain
    file: str  # in checkpoints_folder()
    domain: str
    score: str  # the headline result on held-out data
    labels: tuple[str, ...] = ()  # classify, generate
    languages: str = ""  # translate: "fr → en"; pretrain: the language


# The first model of each task is its default. The scores are checkpoints/README.md's.
SHIPPED = (
    ShippedModel("sentiment", "classify", "sentiment-gru.seqtool", "English movie-review snippets",
                 "test accuracy 0.826", ("negative", "positive")),
    ShippedModel("brown-genre", "classify", "brown-genre-gru.seqtool",
                 "single English sentences of the Brown Corpus",
                 "test accuracy 0.260 (most frequent genre 0.136)", BROWN_GENRES),
    ShippedModel("sentiment", "generate", "sentiment-lstm-generator.seqtool",
                 "English movie-review snippets",
                 "1.774 bits per character, class consistency 0.993", ("negative", "positive")),
    ShippedModel("brown-genre", "generate", "brown-genre-lstm-generator.seqtool",
                 "sentences of the Brown Corpus",
                 "1.884 bits per character, genre consistency 0.44", BROWN_GENRES),
    ShippedModel("bible-fr-en", "translate", "bible-fr-en-gru-attention.seqtool", "Bible verses",
                 "test BLEU 34.3, chrF 52.6 (beam 5)", languages="fr → en"),
    ShippedModel("english-gru-lm", "pretrain", "english-gru-lm.seqtool",
                 "English of every task's training text; for train classify --init",
                 "dev perplexity 124, 1.73 bits per character", languages="en"),
    ShippedModel("english-gru-lm-glove", "pretrain", "english-gru-lm-glove.seqtool",
                 "the same, embeddings from GloVe; for train classify --init",
                 "dev perplexity 86, 1.60 bits per character", languages="en"),
    ShippedModel("english-lstm-lm", "pretrain", "english-lstm-lm.seqtool",
                 "English of every task's training text; for train generate --init",
                 "dev perplexity 94.4, 1.63 bits per character", languages="en"),
)

# `-m NAME` picks one of these; the first of each task is its default.
SHIPPED_MODELS: dict[str, dict[str, str]] = {}
for _model in SHIPPED:
    SHIPPED_MODELS.setdefault(_model.task, {})[_model.name] = _model.file
DEFAULT_MODELS = {task: next(iter(models.values())) for task, models in SHIPPED_MODELS.items()}
# What a wheel carries (setup.py): the default model of each task that answers; the language
# models only start training, which finds them in a clone or $SEQTOOL_CHECKPOINTS.
BUNDLED_MODELS = {task: DEFAULT_MODELS[task] for task in ("classify", "generate", "translate")}
ALL_TASKS = tuple(SHIPPED_MODELS)
SUFFIXES = (".pt", ".seqtool")  # a shipped file named with or without its suffix


# An installed package (a wheel, `pip install .`) carries the default models here, inside the
# package (setup.py copies them from checkpoints/ at build time); the repository holds no copy.
BUNDLED_FOLDER = "models"


def checkpoints_folder() -> Path:
    """$SEQTOOL_CHECKPOINTS; else the repository's checkpoints/ (a clone, an editable install);
    else the default models bundled with the installed package."""
    folder = os.environ.get("SEQTOOL_CHECKPOINTS")
    if folder:
        return Path(folder)
    package = Path(__file__).resolve().parent
    repository = package.parent / "checkpoints"
    bundled = package / BUNDLED_FOLDER
    return repository if repository.is_dir() or not bundled.is_dir() else bundled


def _stem(name: str) -> str:
    return next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)


def find_shipped(spec: str, tasks: tuple[str, ...] = ALL_TASKS) -> list[ShippedModel]:
    """The shipped models of `tasks` that `spec` names (by name, file, or file without its
    suffix), in `tasks`' order."""
    if "/" in spec or os.sep in spec:
        return []
    key = _stem(spec)
    return [m for task in tasks for m in SHIPPED
            if m.task == task and key in (m.name, _stem(m.file))]


def names_of(tasks: tuple[str, ...]) -> str:
    """The shipped models of `tasks`, each name once."""
    return ", ".join(dict.fromkeys(n for t in tasks for n in SHIPPED_MODELS.get(t, {})))


def resolve_model(spec: str | os.PathLike | None, tasks: str | tuple[str, ...]) -> Path:
    """The checkpoint to use for one of `tasks` (the first is the one the command runs): an
    existing file, a shipped model's name or file name, or (None) the first task's default.
    A shipped model of another task fails in one line naming the models there are."""
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if spec is not None and not str(spec):
        spec = None
    if spec is not None and Path(spec).exists():
        return Path(spec)
    if spec is None:
        file = DEFAULT_MODELS[tasks[0]]
    else:
        found = find_shipped(str(spec), tasks)
        if not found:
            other = find_shipped(str(spec))
            if other:
                kinds = "/".join(dict.fromkeys(m.task for m in other))
                wanted = "/".join(tasks)
                raise SeqtoolError(f"{spec} is a {kinds} model; {wanted} models: "
                                   f"{names_of(tasks)}")
            if not Path(spec).suffix and "/" not in str(spec):  # a name, not a file
                what = "" if tasks == ALL_TASKS else f"{'/'.join(tasks)} "
                raise SeqtoolError(f"no such checkpoint file, nor a shipped {what}model (those: "
                                   f"{names_of(tasks)}; `seqtool models` describes them)",
                                   str(spec))
            return Path(spec)  # let the loader say what is wrong with the file
        file = found[0].file
    shipped = checkpoints_folder() / file
    if not shipped.is_file():
        raise SeqtoolError(
            f"no shipped {tasks[0]} model here; set SEQTOOL_CHECKPOINTS to the folder holding "
            f"{file} (the repository's checkpoints/) or pass -m FILE", str(shipped))
    return shipped


def listing() -> list[dict[str, object]]:
    """Each shipped model as `seqtool models` shows it; the size is its file's (None when the
    file is not here). Reads no model."""
    rows = []
    for m in SHIPPED:
        path = checkpoints_folder() / m.file
        rows.append({"name": m.name, "task": m.task, "labels": list(m.labels),
                     "languages": m.languages, "domain": m.domain, "score": m.score,
                     "file": m.file, "bytes": path.stat().st_size if path.is_file() else None})
    return rows
