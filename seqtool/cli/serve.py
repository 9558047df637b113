"""`seqtool serve`: load the models once and answer HTTP requests with JSON.

Light at import (click only): torch, uvicorn and the models come in when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from seqtool.cli.options import backend_option, device_option, field_option
from seqtool.config import ServerLimits
from seqtool.errors import SeqtoolError

TASKS = ("classify", "generate", "translate")


def parse_models(values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """`-m TASK=MODEL` or `-m TASK:NAME=MODEL` (repeatable) -> {task: {name: model}}; a
    model's name is its shipped name or its file's stem unless given."""
    from seqtool.shipped import SHIPPED_MODELS  # light: names only

    hint = "'--model' / '-m'"
    models: dict[str, dict[str, str]] = {}
    for value in values:
        target, sep, model = value.partition("=")
        task, _colon, name = target.partition(":")
        if not sep or task not in TASKS or not model or (_colon and not name):
            raise click.BadParameter(f"{value!r}: expected TASK=MODEL or TASK:NAME=MODEL with "
                                     f"TASK one of {', '.join(TASKS)}", param_hint=hint)
        name = name or (Path(model).stem if model not in SHIPPED_MODELS.get(task, {})
                        else model)
        if name in models.setdefault(task, {}):
            raise click.BadParameter(f"two {task} models named {name!r} (name them: "
                                     f"-m {task}:NAME=MODEL)", param_hint=hint)
        models[task][name] = model
    return models


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"cannot read {path}: {getattr(e, 'strerror', None) or e}",
                                 param_hint="'--token-file'") from None
    if not token or any(c.isspace() for c in token) or not token.isprintable():
        raise click.BadParameter(f"{path}: the token must be one line of printable characters "
                                 "without spaces", param_hint="'--token-file'")
    return token


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the loopback address: only this machine). Any "
                   "other needs --token-file, or --no-auth.")
@click.option("--port", "-p", default=8765, show_default=True,
              type=click.IntRange(0, 65535), help="Port to listen on (0 = any free one).")
@click.option("--model", "-m", "models", multiple=True, metavar="TASK[:NAME]=MODEL",
              help="A model of a task, as -m of that task's command takes it: a checkpoint "
                   "file or a shipped name (e.g. -m classify=brown-genre). Repeatable, also "
                   "for one task: a request picks one by name (\"model\"), else the first. "
                   "Tasks not named get their shipped default.")
@click.option("--tasks", default=",".join(TASKS), show_default=True,
              help="The tasks to serve, comma-separated (classify also answers /embed).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Every request but /health must carry 'Authorization: Bearer TOKEN', "
                   "TOKEN being this file's one line.")
@click.option("--no-auth", is_flag=True,
              help="Serve a --host other than the loopback address without a token: anyone "
                   "who reaches it may use the models.")
@field_option(ServerLimits, "max_texts")
@field_option(ServerLimits, "max_chars")
@field_option(ServerLimits, "max_body")
@field_option(ServerLimits, "max_samples")
@field_option(ServerLimits, "max_input_pieces")
@field_option(ServerLimits, "max_beam")
@field_option(ServerLimits, "max_translation_ratio")
@field_option(ServerLimits, "max_output_pieces")
@field_option(ServerLimits, "max_prompt_samples")
@field_option(ServerLimits, "request_timeout")
@field_option(ServerLimits, "read_timeout")
@field_option(ServerLimits, "max_queue")
@field_option(ServerLimits, "max_connections")
@field_option(ServerLimits, "model_workers")
@device_option
@backend_option
@click.option("--verbose", "-v", is_flag=True, help="Log each request on stderr.")
def serve(host, port, models, tasks, token_file, no_auth, device, backend, verbose, **limits):
    """Load the models once and answer HTTP requests with JSON.

    \b
    POST /classify  {"texts": [...]}             POST /embed {"texts": [...]}
    POST /generate  {"label": "positive", "n": 3, "seed": 0, "temperature": 0.8}
    POST /translate {"texts": [...], "beam": 5, "n_best": 1, "attention": false}
    GET  /health    GET /models    GET /openapi.json

    Each answer is {"results": [...]}, a record per input as `--format jsonl` prints it;
    an error is a 4xx or 5xx answer {"error": "..."}. Ctrl-C or SIGTERM lets the requests in
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
    token = read_token(token_file) if token_file else None
    from seqtool.serve.server import is_loopback  # uvicorn, not torch

    if token is None and not no_auth and not is_loopback(host):
        raise click.BadParameter(f"{host} is not the loopback address: give --token-file, or "
                                 "--no-auth to let anyone who reaches it use the models",
                                 param_hint="'--host'")
    from seqtool.serve.server import serve as run

    try:
        code = run({t: chosen.get(t, {"default": None}) for t in wanted}, device, backend,
                   host=host,
                   port=port, limits=ServerLimits(**limits), verbose=verbose, token=token)
    except SeqtoolError as e:
        raise click.ClickException(str(e)) from None
    click.get_current_context().exit(code)
