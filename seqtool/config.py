"""The configuration of each part: a dataclass per model and one for training.

Light (no torch), so that the command line can build its options from these fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


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
    embed_dim: int = 128
    hidden_dim: int = 192
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    pooling: str = "max"  # max | mean | last (the course's y_h(T)) | concat (all three)
    ensemble: int = 1  # independently initialised GRUs trained together; probabilities averaged
    adversarial: float = 0.0  # radius of the adversarial shift of the embedded text, times its norm


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
    embed_dim: int = 256
    hidden_dim: int = 512
    layers: int = 1
    dropout: float = 0.3
    tie_embeddings: bool = True
    class_every_step: bool = False
    class_dim: int = 32
    class_bias: bool = False  # a learned per-class bias over the vocabulary at every step
    # Weight of a discriminative term in training (GeDi, Krause et al. 2020): the generator
    # read as a classifier by Bayes' rule, p(c|x) ∝ p(x|c), must pick the true class.
    discriminative_weight: float = 0.0


@dataclass
class TranslatorConfig(ConfigMixin):
    src_vocab_size: int
    tgt_vocab_size: int
    embed_dim: int = 256
    hidden_dim: int = 256  # the decoder's size, and per encoder direction (but see below)
    encoder_layers: int = 1
    decoder_layers: int = 1
    rnn: str = "gru"  # gru | lstm
    attention: str = "bahdanau"  # bahdanau | luong-general | luong-dot
    attention_dim: int = 256
    dropout: float = 0.2
    input_feeding: bool = True
    shared_embeddings: bool = False  # one joint vocabulary: share source and target embeddings
    label_smoothing: float = 0.1

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
    rnn: str = "gru"  # gru (for classifiers) | lstm (for generators)
    embed_dim: int = 128
    hidden_dim: int = 192
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.1  # as `seqtool pretrain`



@dataclass
class TrainConfig:
    epochs: int = 10
    max_tokens: int = 4096  # padded tokens per global batch
    lr: float = 2e-3
    warmup_steps: int = 100
    schedule: str = "plateau"  # constant | linear | plateau (halve the rate when dev stalls)
    clip_norm: float = 1.0
    eval_every: int = 0  # steps; 0 = once an epoch
    patience: int = 5  # evaluations without improvement before stopping
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16
    max_steps: int = 0  # 0 = no limit
    max_minutes: float = 0.0  # 0 = no limit
    weight_decay: float = 0.0
    half_checkpoint: bool = False  # store the best weights in fp16 (smaller files)
    keep: str = "best"  # what --out holds: the best dev evaluation's weights, or the last's
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    quiet: bool = False
    pretrained_lr_scale: float = 1.0  # rate of --init's or --embeddings' weights, relative to lr
    gradual_unfreezing: bool = False  # recorded here; the thaw epochs come with `pretrained`

