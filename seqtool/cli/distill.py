"""`seqtool distill`: one student classifier learns a teacher classifier's soft labels."""

from __future__ import annotations

import click

from seqtool.cli.options import field_option, option
from seqtool.cli.train import (
    canonical_command,
    classifier_training_options,
    labeled_data_options,
)
from seqtool.config import DistillConfig


@click.command()
@option("--teacher", required=True, type=click.Path(dir_okay=False), origin="distill.teacher",
        help="The classifier to learn from: a classify checkpoint (a `seqtool ensemble` "
             "combination too) or a shipped name.")
@labeled_data_options
@option("--unlabelled", "unlabelled", multiple=True, type=click.Path(dir_okay=False),
        origin="distill.unlabelled",
        help="Unlabelled text, one per line, learnt from the teacher alone (repeat for more "
             "files; lines of --train are left out).")
# Spelled --temperature, as sampling's is: `distill_temperature` keeps the names apart.
@field_option(DistillConfig, "temperature", param="distill_temperature", short=False)
@field_option(DistillConfig, "alpha")
@field_option(DistillConfig, "augment")
@classifier_training_options
def distill(teacher, train_path, dev_path, unlabelled, **opts):
    """Train one student classifier (S1) on a teacher classifier's soft labels over the
    labelled training text and unlabelled text (knowledge distillation).

    \b
    Example:
      S=corpora/sentiment/movie-snippets   # teacher: the shipped classifier
      seqtool distill --teacher sentiment --train $S/train.tsv \\
        --dev $S/dev.tsv --augment 12 --adversarial 0.05 \\
        --init checkpoints/english-gru-lm-glove.seqtool --out student.pt --half-checkpoint
    """
    from click.core import ParameterSource

    from seqtool.api_distill import distill as run_distill

    ctx = click.get_current_context()
    given = {name: value for name, value in opts.items()
             if ctx.get_parameter_source(name) != ParameterSource.DEFAULT}
    given.pop("config", None)
    if "distill_temperature" in given:
        given["temperature"] = given.pop("distill_temperature")
    out = given.pop("out")
    run_distill(teacher, train_path, dev_path, out, unlabelled,
                command=canonical_command(ctx), **given)
