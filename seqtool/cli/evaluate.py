"""`seqtool evaluate classify|generate|translate`: score a model on labelled data."""

from __future__ import annotations

from pathlib import Path

import click

from seqtool.cli.common import SeqtoolGroup
from seqtool.cli.options import (
    REPORT_FORMATS,
    backend_option,
    batch_size_option,
    beam_option,
    data_option,
    device_option,
    format_option,
    guidance_option,
    json_alias,
    labeled_input_option,
    length_penalty_option,
    lexicon_option,
    max_input_length_option,
    model_option,
    option,
    out_option,
    precision_option,
    report_format,
    seed_option,
    temperature_option,
    top_p_option,
)


@click.group(cls=SeqtoolGroup)
def evaluate() -> None:
    """Score a model on labelled data."""


@evaluate.command("classify")
@model_option("classify")
@labeled_input_option
@format_option(REPORT_FORMATS)
@json_alias
@max_input_length_option
@device_option
@backend_option
def evaluate_classify(model, input_path, fmt, as_json, max_input_length, device, backend):
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix.

    \b
    Example:
      seqtool evaluate classify -i corpora/sentiment/movie-snippets/test.tsv
    """
    from seqtool.inference.evaluation import evaluate_classifier
    from seqtool.report import print_classification, print_report

    report = evaluate_classifier(model, input_path, device, max_input_length, backend)
    print_report(report, report_format(fmt, as_json), print_classification)


@evaluate.command("generate")
@model_option("generate")
@labeled_input_option
@click.option("--judge", type=click.Path(dir_okay=False),
              help="Classifier that judges class consistency (default: the shipped one).")
@data_option("--train", "train_path", required=False, variant="copies",
             help="Training file, to count verbatim copies (default: the --train file of the "
                   "command recorded in the checkpoint, when that file can be found).")
@click.option("--samples", default=200, show_default=True, type=click.IntRange(min=1),
              help="Samples per class.")
@temperature_option("Sampling temperature of the samples; 0 = greedy.")
@top_p_option("Nucleus sampling mass of the samples, as in `seqtool generate`.")
@guidance_option("Class guidance of the samples, as in `seqtool generate`.")
@lexicon_option
@seed_option("Random seed of the samples.")
@click.option("--wordlist", type=click.Path(dir_okay=False),
              help="Text whose words are the real ones, for the non-word rate (default: the "
                   "English corpora of the repository).")
@format_option(REPORT_FORMATS)
@json_alias
@device_option
@backend_option
def evaluate_generate(model, input_path, judge, train_path, samples, temperature, top_p,
                      guidance, lexicon, seed, wordlist, fmt, as_json, device, backend):
    """Perplexity (right vs wrong class), bits per character, diversity, copying, non-words
    and class consistency.

    \b
    Example:
      seqtool evaluate generate -i corpora/sentiment/movie-snippets/test.tsv
    """
    from seqtool.inference.evaluation import evaluate_generator
    from seqtool.report import print_generation, print_report

    report = evaluate_generator(model, input_path, judge, train_path, samples, temperature,
                                seed, guidance, device, wordlist, top_p=top_p, lexicon=lexicon,
                                backend=backend)
    print_report(report, report_format(fmt, as_json), print_generation)


@evaluate.command("translate")
@model_option("translate")
@option("--src", "-i", "--input", "src", old=("--input",), required=True,
        type=click.Path(dir_okay=False), origin="evaluate.src",
        help="Source sentences, one per line.")
@click.option("--ref", required=True, type=click.Path(dir_okay=False),
              help="Reference translations, aligned with --src.")
@beam_option
@length_penalty_option
@batch_size_option
@max_input_length_option
@out_option("Also write the translations, one per --src line (blank lines kept).")
@format_option(REPORT_FORMATS)
@json_alias
@precision_option
@device_option
@backend_option
def evaluate_translate(model, src, ref, beam, length_penalty, batch_size, max_input_length, out,
                       fmt, as_json, precision, device, backend):
    """BLEU and chrF (sacrebleu, detokenized) and decoding speed.

    \b
    Example:
      D=corpora/translation/bible-fr-en
      seqtool evaluate translate --src $D/test.fr --ref $D/test.en --beam 5
    """
    from seqtool.inference.evaluation import evaluate_translator
    from seqtool.report import print_report, print_translation

    if out:
        from seqtool.checkpoint import check_writable, refuse_overwriting_input

        refuse_overwriting_input(out, [src, ref, model])
        check_writable(Path(out), special_ok=True)  # results may go to /dev/stdout
    report = evaluate_translator(model, src, ref, beam, length_penalty, batch_size, out,
                                 precision, device, max_input_length, backend)
    print_report(report, report_format(fmt, as_json), print_translation)
