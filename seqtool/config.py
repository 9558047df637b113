"""The configuration of each part: a dataclass per model and one for training.

Light (no torch), so that the command line can build its options from these fields: a field
with `help` in its metadata is a command-line option (`seqtool.cli.options.field_option`), and
its default here is the option's default, declared nowhere else. Metadata keys besides help:
choices (in --help order), min/max/min_open/max_open (a range), off (the negative spelling of a
boolean, e.g. "unidirectional"; without it a boolean is a plain flag), short ("-q"), metavar,
show_default (False hides it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def option(default: Any, help: str, **cli: Any) -> Any:
    """A field that is also a command-line option: its default and help, and how click reads
    it (see the module's docstring)."""
    return field(default=default, metadata={"help": help, **cli})


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
    ensemble: int = option(1, "Train N GRUs together and average their predictions.")
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
    max_tokens: int = option(4096, "Padded tokens per batch (all processes together).")
    lr: float = option(2e-3, "Peak learning rate (Adam).", min=0, min_open=True)
    warmup_steps: int = option(100, "Steps of linear learning-rate warm-up.", min=0)
    # constant | linear | plateau (halve the rate when dev stalls)
    schedule: str = option("plateau",
                           "After warm-up: halve on a dev plateau, decay linearly, or keep.",
                           choices=("plateau", "linear", "constant"))
    clip_norm: float = option(1.0, "Clip the gradient norm (0 = off).", min=0)
    eval_every: int = option(0, "Evaluate on dev every N steps (0 = every epoch).")  # steps
    # evaluations without improvement before stopping
    patience: int = option(5, "Stop after N evaluations without improvement.")
    seed: int = option(0, "Random seed: same seed, same data, same model.")
    device: str = option("auto", "Where to train (auto = cuda when available).",
                         choices=("auto", "cpu", "cuda"))
    precision: str = option("fp32", "bf16 = mixed precision through torch.autocast.",
                            choices=("fp32", "bf16"))
    max_steps: int = option(0, "Stop after N steps (0 = no limit).", show_default=False)
    max_minutes: float = option(0.0, "Stop after N minutes (0 = no limit).", show_default=False)
    weight_decay: float = 0.0
    # store the best weights in fp16 (smaller files)
    half_checkpoint: bool = option(False, "Store best weights in fp16.")
    # what --out holds: the best dev evaluation's weights, or the last's
    keep: str = option("best", "What --out holds: the weights of the best dev evaluation, or of "
                       "the last (for objectives the dev metric does not measure, such as "
                       "--discriminative-weight; OUT.last.pt holds the optimizer too).",
                       choices=("best", "last"))
    # decay of an exponential moving average of the weights; 0 = off
    ema: float = option(0.0, "Evaluate and keep a moving average of the weights (e.g. 0.999).")
    quiet: bool = option(False, "No progress lines on stderr.", short="-q")
    # rate of --init's or --embeddings' weights, relative to lr
    pretrained_lr_scale: float = option(
        1.0, "With --init or --embeddings: learning rate of the pretrained layers, relative to "
        "--lr (1 chosen on dev over 0.5; 0 = frozen).", min=0)
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
class SamplingConfig:
    """How `generate` (and `evaluate generate`, the API and the server) draws samples."""

    temperature: float = option(0.8, "Sampling temperature; 0 = greedy.", min=0, short="-t")
    top_k: int = option(0, "Sample among the k most likely pieces; 0 = no limit.", min=0)
    top_p: float = option(1.0, "Nucleus sampling mass.", min=0, max=1, min_open=True)
    max_output_length: int = option(60, "Longest output in pieces (the prompt not counted).",
                                    min=1)
    guidance: float = option(
        1.0, "Strengthen the class: contrast with the other classes (0 = off).", min=0,
        short="-g")
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
    length_penalty: float = option(1.0, "alpha of ((5+len)/6)^alpha; 0 = none.", min=0)
    n_best: int = option(1, "Hypotheses per sentence (jsonl/json), at most --beam.", min=1)
    max_length_ratio: float = option(2.0, "Stop a translation at ratio * source pieces + 5.",
                                     min=0, min_open=True)
    batch_size: int = option(64, "Sentences decoded together.", min=1)
    precision: str = option("fp32", "bf16 runs the matrix products in bfloat16 (faster).",
                            choices=("fp32", "bf16"))


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
        0.0, "Sample segmentations with this alpha while training (0 = off).")  # classify
    joint_vocab: bool = option(True, "One sentencepiece model for both languages, or one each.",
                               off="separate-vocab")  # translate


@dataclass
class GenerationReportConfig:
    """`evaluate generate`: how many samples judge the generator."""

    samples: int = option(200, "Samples per class.", min=1)


@dataclass
class ServerLimits:
    """What one request to `seqtool serve` may ask, at most."""

    max_texts: int = option(256, "Texts per request at most.", min=1)
    max_chars: int = option(10_000, "Characters per text (and per prompt) at most.", min=1)
    max_body: int = option(1_000_000, "Bytes per request body at most.", min=1)
    max_samples: int = option(100, "Samples (n) per /generate request at most.", min=1)


@dataclass
class DistillConfig:
    """`seqtool distill`: how a student learns its teacher (Hinton, Vinyals & Dean 2015)."""

    # spelled --temperature on the command line, apart from sampling's
    temperature: float = option(
        2.0, "Softens teacher and student distributions in the soft term (Hinton et al. 2015).",
        min=0, min_open=True)
    alpha: float = option(
        0.5, "Weight of the teacher's soft labels on labelled texts; 1 - alpha goes to the "
        "gold label. Unlabelled texts learn the teacher alone.", min=0, max=1)
    augment: int = option(
        0, "Add N changed copies of each labelled text to the transfer set, labelled by the "
        "teacher alone (words dropped, swapped, n-grams; Tang et al. 2019).", min=0)
