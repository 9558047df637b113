"""The `seqtool` command line: parse options, call library functions, print results.

One module per command group, imported only when one of its commands runs or shows its help
(`LazyGroup`): `seqtool --help` imports no command module and no torch. Heavy modules (torch,
sentencepiece, sacrebleu) are imported inside the commands. Results go to stdout, messages to
stderr.

    common.py    the group classes (errors, lazy loading) and the writing of results
    options.py   options shared by commands, and those generated from seqtool.config
    train.py     train classify|generate|translate, pretrain
    distill.py   distill (a student classifier from a teacher)
    predict.py   classify, embed, generate, translate
    evaluate.py  evaluate classify|generate|translate
    tools.py     tokenizer train, tokenize, ensemble, info, models, plot
    convert.py   convert (a torch checkpoint to a model file)
    serve.py     serve (the HTTP server is seqtool.serve)
"""

from __future__ import annotations

import sys

import click

from seqtool.cli.common import LazyGroup, PipeClosed, SeqtoolGroup
from seqtool.errors import reset_warnings
from seqtool.version import __version__

__all__ = ["cli", "main", "SeqtoolGroup", "LazyGroup"]

COMMANDS = {  # name: ("module:command", the short help `seqtool --help` lists)
    "classify": ("seqtool.cli.predict:classify",
                 "Label each text with a class and its probability (S1)."),
    "convert": ("seqtool.cli.convert:convert",
                "Write the model file of a torch checkpoint: it loads without torch, is checked "
                "byte for byte (a digest over the weights too) and serves every backend."),
    "distill": ("seqtool.cli.distill:distill",
                "Train one student classifier (S1) on a teacher classifier's soft labels over "
                "the labelled training text and unlabelled text (knowledge distillation)."),
    "embed": ("seqtool.cli.predict:embed",
              "One vector per input line from the classifier's encoder (JSONL, or .npy with "
              "--out)."),
    "ensemble": ("seqtool.cli.tools:ensemble",
                 "Combine classifiers trained apart into one that averages them."),
    "evaluate": ("seqtool.cli.evaluate:evaluate", "Score a model on labelled data."),
    "generate": ("seqtool.cli.predict:generate",
                 "Generate sentences for a class (S2); the model reads its own previous "
                 "output."),
    "info": ("seqtool.cli.tools:info",
             "Show what a checkpoint holds: task, model, labels, training history, versions."),
    "models": ("seqtool.cli.tools:models",
               "List the shipped models: name, task, labels or languages, domain, size and "
               "score."),
    "plot": ("seqtool.cli.tools:plot",
             "Draw a checkpoint's training record: train loss, dev metric and learning rate "
             "over steps (PNG)."),
    "pretrain": ("seqtool.cli.train:pretrain",
                 "Pretrain a recurrent language model on unlabelled text, for `train "
                 "classify|generate --init`: its checkpoint holds the tokenizer, the embeddings "
                 "and the recurrent layers."),
    "serve": ("seqtool.cli.serve:serve",
              "Load the models once and answer HTTP requests with JSON."),
    "tokenize": ("seqtool.cli.tools:tokenize",
                 "Split text into sentencepiece pieces (or ids), one line in, one line out."),
    "tokenizer": ("seqtool.cli.tools:tokenizer", "Train sentencepiece tokenizers."),
    "train": ("seqtool.cli.train:train", "Train a model: classify, generate or translate."),
    "translate": ("seqtool.cli.predict:translate",
                  "Translate sentences (S3): one translation per input line, in order."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqtool")
def cli() -> None:
    """Learn from text sequences with recurrent networks.

    \b
    S1 sequence -> class:    seqtool classify "I love my cat."
    S2 class -> sequence:    seqtool generate --label positive -n 3
    S3 sequence -> sequence: echo "Au commencement" | seqtool translate --beam 5

    Every command reads stdin when no file or text is given and writes results to stdout.
    """
    reset_warnings()  # each warning once per command run


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit raises nothing more."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class ClosedStdout:
    """Stands for a stdout that was closed before start (`seqtool ... >&-`): writing to it
    fails as writing to a closed descriptor does, so a command that writes results ends in one
    line (`Error: <stdout>: ...`), and one that writes only files (--out) runs as usual."""

    encoding, errors = "utf-8", "strict"

    def _closed(self, *_args: object) -> None:
        import errno

        raise OSError(errno.EBADF, "Bad file descriptor (stdout is closed)")

    write = fileno = _closed

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _guard_closed_stdout() -> None:
    """Python sets sys.stdout to None when descriptor 1 is closed at start. Then descriptor 1
    is taken (by /dev/null, read-only, so writes to it still fail), or the next file opened
    would get it and anything meant for stdout would land in that file."""
    import os

    if sys.stdout is not None:
        return
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)
    except OSError:
        pass
    sys.stdout = ClosedStdout()  # type: ignore[assignment]


def main() -> None:
    """Console entry point: one line per error, no traceback for anything a user can cause.

    A closed pipe (`| head`) exits quietly with 0; Ctrl-C exits 130; a failed write (stdout to
    a full disk, /dev/full) names what could not be written and exits 1.

    SEQTOOL_REUSE_FREED_MEMORY=1 lets glibc hand freed memory back to the next allocation
    at once (`device.reuse_freed_memory`): faster CPU training of the translator, for the
    whole process, so only when asked."""
    import errno
    import os

    _guard_closed_stdout()
    if os.environ.get("SEQTOOL_REUSE_FREED_MEMORY") == "1":  # opt-in: see its docstring
        from seqtool.device import reuse_freed_memory

        reuse_freed_memory()
    try:
        code = cli.main(prog_name="seqtool", standalone_mode=False)
        sys.stdout.flush()  # inside the try: a full disk shows up here, not at exit
    except click.exceptions.Abort as e:  # click turns KeyboardInterrupt into Abort
        code = 130 if isinstance(e.__cause__, KeyboardInterrupt) else 1
    except KeyboardInterrupt:
        code = 130
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except PipeClosed:
        _silence_stdout()
        code = 0
    except OSError as e:
        if e.errno == errno.EPIPE:
            _silence_stdout()
            code = 0
        else:
            where = e.filename if e.filename is not None else "<stdout>"
            print(f"Error: {where}: {e.strerror or e}", file=sys.stderr)
            _silence_stdout()
            code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
