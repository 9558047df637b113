"""`seqtool serve`: load the models once and answer HTTP requests with JSON.

Light at import (click only): torch and the models come in when the command runs."""

from __future__ import annotations

import click

from seqtool.cli.options import device_option, field_option
from seqtool.config import ServerLimits
from seqtool.errors import SeqtoolError

TASKS = ("classify", "generate", "translate")


def parse_models(values: tuple[str, ...]) -> dict[str, str]:
    """`-m TASK=MODEL` (repeatable) -> {task: model}."""
    models: dict[str, str] = {}
    for value in values:
        task, sep, model = value.partition("=")
        if not sep or task not in TASKS or not model:
            raise click.BadParameter(f"{value!r}: expected TASK=MODEL with TASK one of "
                                     f"{', '.join(TASKS)}", param_hint="'--model' / '-m'")
        if task in models:
            raise click.BadParameter(f"two models for {task}", param_hint="'--model' / '-m'")
        models[task] = model
    return models


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the loopback address: only this machine).")
@click.option("--port", "-p", default=8765, show_default=True,
              type=click.IntRange(0, 65535), help="Port to listen on (0 = any free one).")
@click.option("--model", "-m", "models", multiple=True, metavar="TASK=MODEL",
              help="The model of a task, as -m of that task's command takes it: a checkpoint "
                   "file or a shipped name (e.g. -m classify=brown-genre). Repeatable; tasks "
                   "not named get their shipped default.")
@click.option("--tasks", default=",".join(TASKS), show_default=True,
              help="The tasks to serve, comma-separated (classify also answers /embed).")
@field_option(ServerLimits, "max_texts")
@field_option(ServerLimits, "max_chars")
@field_option(ServerLimits, "max_body")
@field_option(ServerLimits, "max_samples")
@device_option
@click.option("--verbose", "-v", is_flag=True, help="Log each request on stderr.")
def serve(host, port, models, tasks, max_texts, max_chars, max_body, max_samples, device,
          verbose):
    """Load the models once and answer HTTP requests with JSON.

    \b
    POST /classify  {"texts": [...]}             POST /embed {"texts": [...]}
    POST /generate  {"label": "positive", "n": 3, "seed": 0, "temperature": 0.8}
    POST /translate {"texts": [...], "beam": 5, "n_best": 1, "attention": false}
    GET  /health    GET /models

    Each answer is {"results": [...]}, a record per input as `--format jsonl` prints it;
    an error is a 4xx answer {"error": "..."}. Ctrl-C or SIGTERM lets the requests in
    flight finish, then exits (130 or 143).

    \b
    Example:
      seqtool serve --port 8765 -m classify=brown-genre &
      curl -s localhost:8765/classify -d '{"texts": ["I love my cat."]}'
    """
    chosen = parse_models(models)
    wanted = [t.strip() for t in tasks.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TASKS]
    if unknown or not wanted:
        raise click.BadParameter(f"{tasks!r}: expected some of {', '.join(TASKS)}",
                                 param_hint="'--tasks'")
    extra = sorted(set(chosen) - set(wanted))
    if extra:
        raise click.BadParameter(f"a model for {extra[0]}, which --tasks leaves out",
                                 param_hint="'--model' / '-m'")
    from seqtool import serve as server

    try:
        loaded = server.load_models({t: chosen.get(t) for t in wanted}, device)
        limits = ServerLimits(max_texts, max_chars, max_body, max_samples)
        code = server.run(loaded, host, port, limits, verbose)
    except SeqtoolError as e:
        raise click.ClickException(str(e)) from None
    click.get_current_context().exit(code)
