"""A sentencepiece tokenizer whose model travels as bytes inside a checkpoint.

Piece ids are fixed: 0 = <pad>, 1 = <unk>, 2 = <start>, 3 = <end>, so every model can rely on
them. A tokenizer is trained from an iterator of sentences, never from a hidden temp file.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from seqtool.errors import SeqtoolError, warn_once

PAD, UNK, START, END = 0, 1, 2, 3


MAX_PIECE_CHARS = 16  # sentencepiece's longest piece (max_sentencepiece_length)


def cap_characters(text: str, max_pieces: int) -> str:
    """`text` cut to the characters that `max_pieces` pieces can cover at most, plus a margin,
    so tokenizing stays cheap and the first `max_pieces` pieces do not change."""
    limit = (max_pieces + 1) * MAX_PIECE_CHARS
    return text if len(text) <= limit else text[:limit]


class Tokenizer:
    """Encode text to piece ids and back with a sentencepiece model."""

    def __init__(self, model_bytes: bytes):
        import sentencepiece as spm

        self.model_bytes = bytes(model_bytes)
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=self.model_bytes)
        except (RuntimeError, TypeError, OSError):
            raise SeqtoolError("not a sentencepiece model") from None

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        vocab_size: int = 8000,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        seed: int = 0,
        lowercase: bool = False,
    ) -> Tokenizer:
        """Train on `sentences`. The vocabulary may come out smaller on a tiny corpus."""
        import sentencepiece as spm

        if model_type not in ("unigram", "bpe"):
            raise SeqtoolError(f"unknown tokenizer type {model_type!r}: use unigram or bpe")
        buffer = io.BytesIO()
        # The unigram trainer samples sentences; fix its seed so a run is reproducible.
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=buffer,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                # Case folding happens inside the model, so it also applies at prediction time.
                normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
                hard_vocab_limit=False,
                pad_id=PAD,
                unk_id=UNK,
                bos_id=START,
                eos_id=END,
                pad_piece="<pad>",
                unk_piece="<unk>",
                bos_piece="<start>",
                eos_piece="<end>",
                num_threads=1,
                minloglevel=2,
                max_sentence_length=16384,
                train_extremely_large_corpus=False,
            )
        except RuntimeError as e:
            raise SeqtoolError(f"tokenizer training failed: {e}") from None
        return cls(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a `.model` file written by `save` or by sentencepiece itself."""
        try:
            return cls(Path(path).read_bytes())
        except OSError as e:
            raise SeqtoolError(f"cannot read tokenizer: {e.strerror}", str(path)) from None
        except SeqtoolError as e:
            raise SeqtoolError(e.message, str(path)) from None

    def save(self, path: str | Path) -> None:
        from seqtool.checkpoint import atomic_write_bytes

        atomic_write_bytes(Path(path), self.model_bytes)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(
        self, texts: Sequence[str], sample_alpha: float = 0.0, seed: int = 0,
        max_length: int = 0,
    ) -> list[list[int]]:
        """Piece ids per text; with `sample_alpha` > 0 one segmentation is sampled per text
        (subword regularisation, Kudo 2018), reproducibly for a given `seed`.

        With `max_length` > 0 a text is cut to its first `max_length` pieces (and, before
        tokenizing, to the characters those can cover, so a 1 MB line costs no more than a
        long sentence); the first cut prints one warning on stderr."""
        texts = list(texts)
        if max_length > 0:
            texts = [cap_characters(t, max_length) for t in texts]
        if sample_alpha <= 0:
            ids = self.sp.encode(texts)
        else:
            import sentencepiece as spm

            spm.set_random_generator_seed(seed)
            ids = self.sp.encode(texts, enable_sampling=True, alpha=sample_alpha,
                                 nbest_size=-1, num_threads=1)
        if max_length > 0 and any(len(s) > max_length for s in ids):
            warn_once("max-length", f"cut input longer than {max_length} pieces to "
                      f"{max_length} (--max-input-length); warned once")
            ids = [s[:max_length] for s in ids]
        return ids

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def id_to_piece(self, ids: Sequence[int]) -> list[str]:
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) > END])
