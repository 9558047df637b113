"""The configuration of each part: a dataclass per model and one for training.

Light (no torch), so that the command line can build its options from these fields: a field
with `help` in its metadata is a command-line option (`seqtool.cli.options.field_option`), and
its default here is the option's default, declared nowhere else. Metadata keys besides help:
choices (in --help order), min/max/min_open/max_open (a range), off (the negative spelling of a
boolean, e.g. "unidirectional"; without it a boolean is a plain flag), short ("-q"), metavar,
show_default (False hides it). A float option is always finite; `or_zero` also admits 0 outside
its range (temperature: 0 = greedy). The range is where the maths holds: `range_problem` checks
a value against it, for the command line (`seqtool.cli.options`) and the server alike."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def option(default: Any, help: str, **cli: Any) -> Any:
    """A field that is also a command-line option: its default and help, and how click reads
    it (see the module's docstring)."""
    return field(default=default, metadata={"help": help, **cli})


RANGE_KEYS = ("min", "max", "min_open", "max_open", "or_zero")


def describe_range(metadata: Mapping[str, Any]) -> str:
    """The range a field's metadata declares, as click writes one: `0<=x<1`, `x>=1`."""
    low, high = metadata.get("min"), metadata.get("max")
    text = "x"
    if low is not None:
        text = f"{low}{'<' if metadata.get('min_open') else '<='}{text}"
    if high is not None:
        text = f"{text}{'<' if metadata.get('max_open') else '<='}{high}"
    return f"x=0 or {text}" if metadata.get("or_zero") else text


def range_problem(metadata: Mapping[str, Any], value: float) -> str | None:
    """Why `value` is no valid value of a field with this metadata (None when it is): a
    float must be finite, and every number inside the declared range (`RANGE_KEYS`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if metadata.get("or_zero") and value == 0:
        return None
    low, high = metadata.get("min"), metadata.get("max")
    if (low is not None and (value < low or (metadata.get("min_open") and value == low))) or \
            (high is not None and (value > high or (metadata.get("max_open") and value == high))):
        return f"{value} is not in the range {describe_range(metadata)}"
    return None


def field_range_problem(config: type, name: str, value: float) -> str | None:
    """`range_problem` for the field `name` of the dataclass `config`."""
    return range_problem({f.name: f for f in fields(config)}[name].metadata, value)


class ConfigMixin:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ClassifierConfig(ConfigMixin):
    vocab_size: int
    num_classes: int
    embed_dim: int = option(128, "Size of the piece embeddings.", min=1)
    hidden_dim: int = option(192, "GRU state size (per direction).", min=1)
    layers: int = option(1, "Stacked GRU layers.", min=1)
    bidirectional: bool = option(True, "Read the text in both directions.", off="unidirectional")
    dropout: float = option(0.3, "Dropout rate.", min=0, max=1)
    # max | mean | last (the course's y_h(T)) | concat (all three)
    pooling: str = option("max", "How the GRU states become one sentence vector (concat: last, "
                          "max and mean side by side, as ULMFiT).",
                          choices=("max", "mean", "last", "concat"))
    # independently initialised GRUs trained together; probabilities averaged
    ensemble: int = option(1, "Train N GRUs together and average their predictions.", min=1)
    # radius of the adversarial shift of the embedded text, times its norm
    adversarial: float = option(
        0.0, "Adversarial training (Miyato et al. 2017): also learn from each text's embeddings "
        "shifted, by RADIUS times their norm, the way that raises the loss most (0 = off; a "
        "step costs about twice as much, and the training loss shown includes both terms).",
        min=0, metavar="RADIUS")


@dataclass
class CombinedClassifierConfig(ConfigMixin):
    parts: list[dict[str, Any]]  # one ClassifierConfig per combined checkpoint

    def __post_init__(self) -> None:
        if not (isinstance(self.parts, list) and self.parts
                and all(isinstance(p, dict) for p in self.parts)):
            raise ValueError("'parts' must be a non-empty list of classifier configurations")

    @property
    def num_classes(self) -> int:
        return ClassifierConfig.from_dict(self.parts[0]).num_classes


@dataclass
class GeneratorConfig(ConfigMixin):
    vocab_size: int
    num_classes: int
    embed_dim: int = option(256, "Size of the piece embeddings.", min=1)
    hidden_dim: int = option(512, "LSTM state size.", min=1)
    layers: int = option(1, "Stacked LSTM layers.", min=1)
    dropout: float = option(0.3, "Dropout rate.", min=0, max=1)
    tie_embeddings: bool = option(True, "Share input embeddings and output projection.",
                                  off="no-tie-embeddings")
    class_every_step: bool = option(False,
                                    "Also feed the class at every step, not only into y_h(0).")
    class_dim: int = 32
    # a learned per-class bias over the vocabulary at every step
    class_bias: bool = option(True, "A learned per-class bias on the output scores.",
                              off="no-class-bias")
    # Weight of a discriminative term in training (GeDi, Krause et al. 2020): the generator
    # read as a classifier by Bayes' rule, p(c|x) ∝ p(x|c), must pick the true class.
    discriminative_weight: float = option(
        0.0, "Also train the generator as a classifier by Bayes' rule, p(c|x) ∝ p(x|c) (GeDi): "
        "its loss per sentence, times this weight, is added to the likelihood's, so samples "
        "keep to their class without guidance. Each step runs every class: as many times the "
        "compute as classes.", min=0)


@dataclass
class TranslatorConfig(ConfigMixin):
    src_vocab_size: int
    tgt_vocab_size: int
    embed_dim: int = option(256, "Size of the piece embeddings.", min=1)
    # the decoder's size, and per encoder direction (but see below)
    hidden_dim: int = option(256, "Decoder state size (and per encoder direction).", min=1)
    encoder_layers: int = option(1, "Stacked bidirectional encoder layers.", min=1)
    decoder_layers: int = option(1, "Stacked decoder layers.", min=1)
    rnn: str = option("gru", "Recurrent cell of encoder and decoder.", choices=("gru", "lstm"))
    attention: str = option("bahdanau", "Attention type.",
                            choices=("bahdanau", "luong-general", "luong-dot"))
    attention_dim: int = option(256, "Size of the additive (bahdanau) attention layer.", min=1)
    dropout: float = option(0.2, "Dropout rate.", min=0, max=1)
    input_feeding: bool = option(True,
                                 "Feed the previous attention output into the next decoder step.",
                                 off="no-input-feeding")
    # one joint vocabulary: share source and target embeddings (`--joint-vocab`)
    shared_embeddings: bool = False
    label_smoothing: float = option(0.1, "Label smoothing of the loss.", min=0, max=1,
                                    max_open=True)

    @property
    def encoder_dim(self) -> int:
        """Size of an encoder state, both directions. Dot attention compares decoder and
        encoder states directly, so there each direction gets half the decoder's size."""
        if self.attention == "luong-dot":
            if self.hidden_dim % 2:
                raise ValueError(f"dot attention needs an even hidden size, not {self.hidden_dim}")
            return self.hidden_dim
        return 2 * self.hidden_dim


@dataclass
class LanguageModelConfig(ConfigMixin):
    vocab_size: int
    # gru (for classifiers) | lstm (for generators)
    rnn: str = option("gru", "gru to initialise classifiers, lstm for generators.",
                      choices=("gru", "lstm"))
    embed_dim: int = option(128, "Size of the piece embeddings.", min=1)
    hidden_dim: int = option(192, "RNN state size (per direction).", min=1)
    layers: int = option(1, "Stacked RNN layers (one when bidirectional).", min=1)
    bidirectional: bool = option(
        True, "Also learn to predict each piece from the text after it (classifiers).",
        off="unidirectional")
    dropout: float = option(0.1, "Dropout rate.", min=0, max=1)  # as `seqtool pretrain`


@dataclass
class TrainConfig:
    epochs: int = option(10, "Passes over the training data.", min=1)
    # padded tokens per global batch
    max_tokens: int = option(4096, "Padded tokens per batch (all processes together).", min=1)
    # Adam's step is about lr per weight; past float32's 3e38 torch fails with a traceback
    lr: float = option(2e-3, "Peak learning rate (Adam).", min=0, min_open=True, max=10)
    # a share of the planned steps, so that a short run (a few hundred examples) warms up too
    warmup: float = option(0.1, "Linear learning-rate warm-up over this share of the planned "
                           "steps (epochs x batches, or --max-steps), at most 100 steps.", min=0,
                           max=1)
    warmup_steps: int | None = option(None, "Steps of linear learning-rate warm-up, in place "
                                      "of --warmup's share.", min=0, show_default=False)
    # constant | linear | plateau (halve the rate when dev stalls)
    schedule: str = option("plateau",
                           "After warm-up: halve on a dev plateau, decay linearly, or keep.",
                           choices=("plateau", "linear", "constant"))
    clip_norm: float = option(1.0, "Clip the gradient norm (0 = off).", min=0)
    eval_every: int = option(0, "Evaluate on dev every N steps (0 = every epoch).",  # steps
                             min=0)
    # evaluations without improvement before stopping
    patience: int = option(5, "Stop after N evaluations without improvement (those before "
                           "the warm-up ends do not count).", min=1)
    # torch.manual_seed takes < 2^64, and a step's dropout seed is about 10^9 times this
    seed: int = option(0, "Random seed: same seed, same data, same model.", min=0,
                       max=2**32 - 1)
    device: str = option("auto", "Where to train (auto = cuda when available).",
                         choices=("auto", "cpu", "cuda"))
    precision: str = option("fp32", "bf16 = mixed precision through torch.autocast.",
                            choices=("fp32", "bf16"))
    max_steps: int = option(0, "Stop after N steps (0 = no limit).", show_default=False, min=0)
    max_minutes: float = option(0.0, "Stop after N minutes (0 = no limit).", show_default=False,
                                min=0)
    weight_decay: float = 0.0
    # store the best weights in fp16 (smaller files)
    half_checkpoint: bool = option(False, "Store best weights in fp16.")
    # what --out holds: the best dev evaluation's weights, or the last's
    keep: str = option("best", "What --out holds: the weights of the best dev evaluation, or of "
                       "the last (for objectives the dev metric does not measure, such as "
                       "--discriminative-weight; OUT.last.pt holds the optimizer too).",
                       choices=("best", "last"))
    # decay of an exponential moving average of the weights; 0 = off
    ema: float = option(0.0, "Evaluate and keep a moving average of the weights (e.g. 0.999).",
                        min=0, max=1, max_open=True)
    quiet: bool = option(False, "No progress lines on stderr.", short="-q")
    # rate of --init's or --embeddings' weights, relative to lr
    pretrained_lr_scale: float = option(
        1.0, "With --init or --embeddings: learning rate of the pretrained layers, relative to "
        "--lr (1 chosen on dev over 0.5; 0 = frozen).", min=0, max=100)
    # recorded here; the thaw epochs come with `pretrained`
    gradual_unfreezing: bool = option(
        False, "With --init or --embeddings: the new layers learn alone in the first epoch, "
        "then one pretrained layer joins each epoch from the top (ULMFiT).")
    # TensorBoard events (optional dependency); not part of what makes a run (resume)
    tensorboard: str | None = option(
        None, "Also write TensorBoard events (loss per step, each dev evaluation) to this "
        "folder; needs `pip install tensorboard`.", metavar="DIR", show_default=False)


# ----------------------------------------------------------------------------- using models

MAX_INPUT_LENGTH = 512  # pieces of an input line at prediction time; longer inputs are cut


@dataclass
class InferenceConfig:
    """How a trained model runs: classify, embed, generate, translate, evaluate, serve."""

    backend: str = option(
        "auto", "What runs the model: numpy (no torch needed), torch, or auto (torch for a "
        "GPU, else what measured fastest per task).", choices=("auto", "numpy", "torch"))


@dataclass
class SamplingConfig:
    """How `generate` (and `evaluate generate`, the API and the server) draws samples."""

    # below 1e-3 sampling is greedy in all but name, and near 1e-38 the scores overflow
    temperature: float = option(0.8, "Sampling temperature; 0 = greedy.", min=1e-3, max=1e3,
                                or_zero=True, short="-t")
    top_k: int = option(0, "Sample among the k most likely pieces; 0 = no limit.", min=0)
    top_p: float = option(1.0, "Nucleus sampling mass.", min=0, max=1, min_open=True)
    max_output_length: int = option(60, "Longest output in pieces (the prompt not counted).",
                                    min=1)
    guidance: float = option(
        1.0, "Strengthen the class: contrast with the other classes (0 = off).", min=0,
        max=100, short="-g")  # times the score gaps (up to ~100) over the temperature: finite
    lexicon: str = option(
        "model", "Words samples may use: model = the words of the model's training text, "
        "stored in it (no limit for a model that stores none); none = any spelling of pieces; "
        "FILE = the words of a word list or text.", metavar="model|none|FILE")
    # fairseq's and Hugging Face's name; the rule: seqtool.decoding.ngrams
    no_repeat_ngram: int = option(
        0, "Never repeat an n-gram of N pieces within a sample (prompt included); stops greedy "
        "loops. 0 = off.", min=0, metavar="N")


@dataclass
class SearchConfig:
    """How `translate` (and `evaluate translate`, the API and the server) searches."""

    beam: int = option(5, "Beam size; 1 = greedy.", min=1, short="-b")
    # ((5+len)/6)^alpha stays finite (float64) for outputs of up to 10^30 pieces
    length_penalty: float = option(1.0, "alpha of ((5+len)/6)^alpha; 0 = none.", min=0, max=10)
    n_best: int = option(1, "Hypotheses per sentence (jsonl/json), at most --beam.", min=1)
    max_length_ratio: float = option(2.0, "Stop a translation at ratio * source pieces + 5.",
                                     min=0, min_open=True, max=1000)  # a length, not inf
    batch_size: int = option(64, "Sentences decoded together.", min=1)
    precision: str = option("fp32", "bf16 runs the matrix products in bfloat16 (faster).",
                            choices=("fp32", "bf16"))


@dataclass
class InputConfig:
    """Which column of a user's file holds the texts (`-i FILE` of classify, embed,
    translate and generate; seqtool.text.columns reads it)."""

    column: str | None = option(
        None, "The texts' column of the input: a header's name or a number from 1, in a TSV, "
        "CSV (.csv, quoted fields) or JSONL (.jsonl: a key) file; one output per row. "
        "Default: the `text` column (or key, or the only column) of .tsv, .csv and .jsonl "
        "files, the whole line of others.", metavar="NAME|N", show_default=False)
    header: bool | None = option(
        None, "Whether the first row is a header (default: when it holds the --column name, "
        "or `text`).", off="no-header", show_default=False)


# ----------------------------------------------------------------------------- training data


@dataclass
class TokenizerConfig:
    """The sentencepiece model a training run learns (unless it reuses one)."""

    vocab_size: int = option(8000, "Sentencepiece vocabulary size.", min=5)
    tokenizer_type: str = option("unigram", "Sentencepiece algorithm.",
                                 choices=("unigram", "bpe"))
    character_coverage: float = option(1.0, "Share of characters the vocabulary must cover.",
                                       min=0, max=1, min_open=True)
    lowercase: bool = option(False, "Case-fold text in the tokenizer.")


# Longest training example in pieces (--max-train-length), by task: S1 cuts, the others drop.
MAX_TRAIN_LENGTH = {"classify": 256, "generate": 256, "translate": 128, "pretrain": 128}


@dataclass
class DataConfig:
    """How training text becomes examples, besides its length (MAX_TRAIN_LENGTH)."""

    subword_sampling: float = option(
        0.0, "Sample segmentations with this alpha while training (0 = off).",  # classify
        min=0)
    joint_vocab: bool = option(True, "One sentencepiece model for both languages, or one each.",
                               off="separate-vocab")  # translate


@dataclass
class GenerationReportConfig:
    """`evaluate generate`: how many samples judge the generator."""

    samples: int = option(200, "Samples per class.", min=1)


@dataclass
class ServerLimits:
    """What one request to `seqtool serve` may ask, at most, and how long it may take."""

    max_texts: int = option(256, "Texts per request at most.", min=1)
    max_chars: int = option(10_000, "Characters per text (and per prompt) at most.", min=1)
    max_body: int = option(1_000_000, "Bytes per request body at most.", min=1)
    max_samples: int = option(100, "Samples (n) per /generate request at most.", min=1)
    # Compute a request may ask for, whatever its options say (the request's own value must
    # also lie in its option's range above).
    max_input_pieces: int = option(MAX_INPUT_LENGTH, "Pieces of an input a request may ask "
                                   "to read (max_input_length) at most.", min=1)
    max_beam: int = option(16, "Beam size (beam) per /translate request at most.", min=1)
    max_translation_ratio: float = option(4.0, "Translation length ratio (max_length_ratio) "
                                          "per request at most.", min=0, min_open=True)
    max_output_pieces: int = option(512, "Pieces per generated sample (max_output_length) "
                                    "at most.", min=1)
    max_prompt_samples: int = option(10_000, "Prompt characters times samples (n) per "
                                     "/generate request at most.", min=1)
    # How long and how many
    request_timeout: float = option(60.0, "Seconds a request may take in all (queue and "
                                    "model); later it is answered 503/504.", min=0,
                                    min_open=True)
    read_timeout: float = option(30.0, "Seconds a client may take to send a whole request; "
                                 "later it gets 408 and the connection closes.", min=0,
                                 min_open=True)
    max_queue: int = option(64, "Requests waiting per model at most; more get 503 and "
                            "Retry-After.", min=1)
    max_connections: int = option(256, "Open connections at most (more get 503).", min=1)
    model_workers: int = option(2, "Requests a model answers at the same time (each in its "
                                "own thread, so that a heavy one holds a worker, not the "
                                "model).", min=1)


@dataclass
class DistillConfig:
    """`seqtool distill`: how a student learns its teacher (Hinton, Vinyals & Dean 2015)."""

    # spelled --temperature on the command line, apart from sampling's
    temperature: float = option(
        2.0, "Softens teacher and student distributions in the soft term (Hinton et al. 2015).",
        min=0.01, max=100)  # as sampling's: the divided scores stay finite
    alpha: float = option(
        0.5, "Weight of the teacher's soft labels on labelled texts; 1 - alpha goes to the "
        "gold label. Unlabelled texts learn the teacher alone.", min=0, max=1)
    augment: int = option(
        0, "Add N changed copies of each labelled text to the transfer set, labelled by the "
        "teacher alone (words dropped, swapped, n-grams; Tang et al. 2019).", min=0)


@dataclass
class ComputeConfig:
    """How a command shares the machine (`seqtool.threads`)."""

    threads: int = option(
        0, "Threads for the matrix products (PyTorch's, and the BLAS numpy uses); 0 = auto: "
        "OMP_NUM_THREADS when set, else the available cores that no other task keeps busy "
        "(at least one).", min=0)
