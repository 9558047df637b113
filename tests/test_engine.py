"""`seqtool.engine` (numpy inference) gives the torch modules' numbers: small random models of
every architecture in float64 (to 1e-10) and float32 (to 1e-5), batches of different lengths
(padding never leaks into a sentence's output), weights that do not fit, and a process where
torch cannot be imported. The shipped models' parity is in tests/test_engine_shipped.py."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch

from seqtool import engine
from seqtool.config import ClassifierConfig, TranslatorConfig
from seqtool.engine.ops import softmax
from seqtool.engine.translator import SOURCE_KEYS
from seqtool.engine.translator import select_state as np_select_state
from seqtool.nn.registry import build_model
from seqtool.nn.translator import select_state
from seqtool.text.tokenizer import PAD
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = [(torch.float64, np.float64, 1e-10), (torch.float32, np.float32, 1e-5)]


def randomised(model: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """`model` in eval mode with every weight drawn anew (varied, peaked outputs)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model.eval()


def numpy_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def twins(task: str, config: dict, seed: int, torch_dtype=torch.float64, np_dtype=np.float64):
    model = randomised(build_model(task, config), seed).to(torch_dtype)
    return model, engine.build(task, config, numpy_weights(model), np_dtype)


def batch(seed: int, vocab: int, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [B, max length] (no special pieces) with PAD after each row's length."""
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    tokens = torch.randint(4, vocab, (len(lengths), max(lengths)), generator=g)
    tokens[torch.arange(max(lengths))[None] >= lengths_t[:, None]] = PAD
    return tokens, lengths_t


def close(got: np.ndarray, want: torch.Tensor, tol: float) -> None:
    want = want.detach().numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


LENGTHS = [5, 1, 7, 3, 7, 2]


# ------------------------------------------------------------------------------ classifier


@pytest.mark.parametrize(("layers", "bidirectional", "pooling"), list(itertools.product(
    [1, 2], [True, False], ["max", "mean", "last", "concat"])))
@pytest.mark.parametrize(("torch_dtype", "np_dtype", "tol"), DTYPES)
def test_classifier_matches_torch(layers, bidirectional, pooling, torch_dtype, np_dtype, tol):
    config = ClassifierConfig(vocab_size=13, num_classes=3, embed_dim=5, hidden_dim=4,
                              layers=layers, bidirectional=bidirectional, pooling=pooling,
                              dropout=0.3).to_dict()
    model, twin = twins("classify", config, 1, torch_dtype, np_dtype)
    tokens, lengths = batch(2, 13, LENGTHS)
    with torch.no_grad():
        close(twin.encode(tokens.numpy(), lengths.numpy()), model.encode(tokens, lengths), tol)
        close(twin.logits(tokens.numpy(), lengths.numpy()), model(tokens, lengths), tol)
    assert twin.encoding_dim == model.encoding_dim
    assert twin.config == model.config


@pytest.mark.parametrize("pooling", ["max", "mean", "last", "concat"])
def test_classifier_padding_never_leaks(pooling):
    """Each sentence's vector in a padded batch is its vector alone, whatever the padding
    holds."""
    config = dict(vocab_size=13, num_classes=3, embed_dim=5, hidden_dim=4, layers=2,
                  pooling=pooling)
    _, twin = twins("classify", config, 3)
    tokens, lengths = batch(4, 13, LENGTHS)
    tokens = tokens.numpy()
    tokens[tokens == PAD] = 7  # padding that is a real token: must still be ignored
    together = twin.encode(tokens, lengths.numpy())
    for i, n in enumerate(LENGTHS):
        alone = twin.encode(tokens[i:i + 1, :n], np.array([n]))
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("torch_dtype", "np_dtype", "tol"), DTYPES)
def test_ensemble_classifier_matches_torch(torch_dtype, np_dtype, tol):
    config = dict(vocab_size=13, num_classes=4, embed_dim=5, hidden_dim=4, ensemble=3,
                  pooling="concat")
    model, twin = twins("classify", config, 5, torch_dtype, np_dtype)
    tokens, lengths = batch(6, 13, LENGTHS)
    with torch.no_grad():
        close(twin.encode(tokens.numpy(), lengths.numpy()), model.encode(tokens, lengths), tol)
        # torch averages the members' distributions in float32 (`.float()`)
        close(twin.logits(tokens.numpy(), lengths.numpy()).astype(np.float32),
              model(tokens, lengths), 1e-5)


def test_classifier_combination_matches_torch():
    parts = [ClassifierConfig(vocab_size=13, num_classes=3, embed_dim=5, hidden_dim=4,
                              ensemble=2).to_dict(),
             ClassifierConfig(vocab_size=17, num_classes=3, embed_dim=3, hidden_dim=6,
                              pooling="mean", bidirectional=False).to_dict()]
    model, twin = twins("classify", {"parts": parts}, 7)
    assert len(twin.parts) == 2 and twin.encoding_dim == model.encoding_dim
    probabilities = []
    for i, (part, twin_part) in enumerate(zip(model.parts, twin.parts)):
        tokens, lengths = batch(8 + i, part.config.vocab_size, LENGTHS)
        with torch.no_grad():
            want = torch.softmax(part(tokens, lengths).double(), -1)
        got = softmax(twin_part.logits(tokens.numpy(), lengths.numpy()))
        close(got, want, 1e-5)
        probabilities.append(want)
    close(twin.combine([p.numpy() for p in probabilities]), model.combine(probabilities), 1e-12)


# ------------------------------------------------------------------------------- generator

GENERATOR_OPTIONS = [
    dict(),
    dict(class_bias=False, tie_embeddings=False),
    dict(class_every_step=True, layers=2),
    dict(class_every_step=True, class_bias=False, tie_embeddings=True, hidden_dim=6),
    dict(tie_embeddings=False, layers=2),
]


@pytest.mark.parametrize("options", GENERATOR_OPTIONS)
@pytest.mark.parametrize(("torch_dtype", "np_dtype", "tol"), DTYPES)
def test_generator_matches_torch(options, torch_dtype, np_dtype, tol):
    config = {**dict(vocab_size=19, num_classes=3, embed_dim=6, hidden_dim=7, class_dim=3),
              **options}
    model, twin = twins("generate", config, 11, torch_dtype, np_dtype)
    labels = torch.tensor([0, 2, 1, 2, 0])
    inputs = torch.tensor([[2, 5, 9, 4]]).expand(5, -1)
    g = torch.Generator().manual_seed(12)
    with torch.no_grad():
        logits, state = model(labels, inputs)
        got, np_state = twin.start(labels.numpy(), inputs.numpy())
        close(got, logits[:, -1], tol)
        full, _ = twin.forward(labels.numpy(), inputs.numpy())
        close(full, logits, tol)
        for step in range(5):
            if step in (2, 3):  # rows leave (and are reordered) between steps
                rows = torch.tensor([2, 0, 1]) if step == 2 else torch.tensor([1, 2])
                labels, state = labels[rows], (state[0][:, rows], state[1][:, rows])
                np_state = twin.select(np_state, rows.numpy())
            tokens = torch.randint(4, 19, (len(labels),), generator=g)
            logits, state = model(labels, tokens[:, None], state=state)
            got, np_state = twin.step(np_state, tokens.numpy())
            close(got, logits[:, -1], tol)
            close(np_state.h, state[0], tol)
            close(np_state.c, state[1], tol)


# ------------------------------------------------------------------------------ translator

TRANSLATORS = [(rnn, attention, layers, feeding)
               for rnn, attention in itertools.product(["gru", "lstm"],
                                                       ["bahdanau", "luong-general", "luong-dot"])
               for layers, feeding in [(1, True), (2, False), (2, True)]]


def translator_config(rnn, attention, layers, feeding) -> dict:
    return TranslatorConfig(src_vocab_size=15, tgt_vocab_size=12, embed_dim=5, hidden_dim=6,
                            attention_dim=4, rnn=rnn, attention=attention, encoder_layers=layers,
                            decoder_layers=layers, input_feeding=feeding).to_dict()


def compare_memory(got: dict, want: dict, tol: float) -> None:
    assert set(got) == set(want)
    for key in ("values", "keys", "attentional"):
        close(got[key], want[key], tol)
    np.testing.assert_array_equal(got["mask"], want["mask"].numpy())
    flat_got = list(itertools.chain.from_iterable(
        s if isinstance(s, tuple) else (s,) for s in got["state"]))
    flat_want = list(itertools.chain.from_iterable(
        s if isinstance(s, tuple) else (s,) for s in want["state"]))
    assert len(flat_got) == len(flat_want)
    for a, b in zip(flat_got, flat_want):
        close(a, b, tol)


@pytest.mark.parametrize(("rnn", "attention", "layers", "feeding"), TRANSLATORS)
@pytest.mark.parametrize(("torch_dtype", "np_dtype", "tol"), DTYPES)
def test_translator_matches_torch(rnn, attention, layers, feeding, torch_dtype, np_dtype, tol):
    """encode, then decode steps with one row per sentence, then with groups of 3
    hypotheses per sentence sharing its source memory, sentences leaving between steps."""
    config = translator_config(rnn, attention, layers, feeding)
    model, twin = twins("translate", config, 13, torch_dtype, np_dtype)
    src, lengths = batch(14, 15, LENGTHS)
    g = torch.Generator().manual_seed(15)
    with torch.no_grad():
        memory = model.encode(src, lengths)
        np_memory = twin.encode(src.numpy(), lengths.numpy())
        compare_memory(np_memory, memory, tol)
        rows = len(LENGTHS)
        for step in range(6):
            group = 1 if step < 2 else 3
            if step == 2:  # every sentence becomes 3 hypotheses; sentence 1 leaves
                keep = torch.tensor([0, 2, 3, 4, 5])
                copies = keep.repeat_interleave(group)
                memory = {k: select_state(v, keep if k in SOURCE_KEYS else copies)
                          for k, v in memory.items()}
                np_memory = {k: np_select_state(v, (keep if k in SOURCE_KEYS else copies)
                                                .numpy()) for k, v in np_memory.items()}
                rows = len(copies)
            if step == 4:  # sentences 0 and 3 leave, the others' hypotheses are reordered
                keep = torch.tensor([1, 2, 4])
                copies = torch.tensor([5, 3, 4, 6, 6, 8, 12, 13, 12])
                memory = {k: select_state(v, keep if k in SOURCE_KEYS else copies)
                          for k, v in memory.items()}
                np_memory = {k: np_select_state(v, (keep if k in SOURCE_KEYS else copies)
                                                .numpy()) for k, v in np_memory.items()}
                rows = len(copies)
            prev = torch.randint(2, 12, (rows,), generator=g)
            log_probs, memory, weights = model.decode_step(memory, prev, group)
            got, np_memory, np_weights = twin.decode_step(np_memory, prev.numpy(), group)
            compare_memory(np_memory, memory, tol)
            close(np_weights, weights, tol)
            # torch's log-probs are float32 (`.float()`); from its float64 attentional vectors:
            want = torch.log_softmax(model.decoder.output(memory["attentional"]), -1)
            close(got, want, tol)


def test_translator_padding_never_leaks():
    _, twin = twins("translate", translator_config("lstm", "bahdanau", 2, True), 16)
    src, lengths = batch(17, 15, LENGTHS)
    src = src.numpy()
    src[src == PAD] = 9
    memory = twin.encode(src, lengths.numpy())
    prev = np.full(len(LENGTHS), 2)
    log_probs, _, weights = twin.decode_step(memory, prev)
    for i, n in enumerate(LENGTHS):
        alone = twin.encode(src[i:i + 1, :n], np.array([n]))
        np.testing.assert_allclose(memory["values"][i, :n], alone["values"][0], atol=1e-12)
        assert not memory["values"][i, n:].any()
        alone_logp, _, alone_weights = twin.decode_step(alone, prev[:1])
        np.testing.assert_allclose(log_probs[i], alone_logp[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(weights[i, :n], alone_weights[0], atol=1e-12)
        assert not weights[i, n:].any()


# -------------------------------------------------------------------------- what can fail


def test_weights_that_do_not_fit_are_refused():
    config = dict(vocab_size=13, num_classes=3, embed_dim=5, hidden_dim=4)
    model = build_model("classify", config)
    weights = numpy_weights(model)
    missing = {k: v for k, v in weights.items() if k != "members.0.output.bias"}
    with pytest.raises(KeyError, match="members.0.output.bias"):
        engine.build("classify", config, missing)
    with pytest.raises(ValueError, match="extra.weight"):
        engine.build("classify", config, {**weights, "extra.weight": np.zeros(3)})
    wrong = {**weights, "members.0.rnn.weight_hh_l0": np.zeros((12, 5))}
    with pytest.raises(ValueError, match="weight_hh_l0"):
        engine.build("classify", config, wrong)
    with pytest.raises(ValueError, match="pooling"):
        engine.build("classify", {**config, "pooling": "median"}, weights)
    with pytest.raises(ValueError, match="task"):
        engine.build("summarise", config, weights)
    twin = engine.build("classify", config, weights)
    with pytest.raises(ValueError, match="length"):
        twin.encode(np.ones((2, 3), np.int64), np.array([4, 1]))


@pytest.mark.parametrize("task", ["classify", "generate", "translate", "pretrain"])
def test_models_keep_their_own_copy_of_the_weights(task):
    """Changing the caller's arrays after `build` changes nothing (in both dtypes, where no
    conversion copies them anyway)."""
    configs = {"classify": dict(vocab_size=13, num_classes=3, embed_dim=5, hidden_dim=4),
               "generate": dict(vocab_size=13, num_classes=3, embed_dim=5, hidden_dim=4),
               "translate": translator_config("lstm", "bahdanau", 1, True),
               "pretrain": dict(vocab_size=13, embed_dim=5, hidden_dim=4)}
    model = randomised(build_model(task, configs[task]), 25).double()
    weights = numpy_weights(model)
    twin = engine.build(task, configs[task], weights, np.float64)
    tokens, lengths = batch(26, 13, LENGTHS)

    def run() -> np.ndarray:
        if task == "classify":
            return twin.logits(tokens.numpy(), lengths.numpy())
        if task == "pretrain":
            return twin.piece_nll(tokens.numpy(), lengths.numpy())
        if task == "generate":
            return twin.forward(np.zeros(len(LENGTHS), np.int64), tokens.numpy())[0]
        memory = twin.encode(tokens.numpy(), lengths.numpy())
        return twin.decode_step(memory, np.full(len(LENGTHS), 2))[0]

    before = run()
    with torch.no_grad():
        for array in weights.values():
            array *= 2  # the torch tensors' memory too: the model's state_dict is shared
    np.testing.assert_array_equal(run(), before)


def test_empty_batches():
    _, classify = twins("classify", dict(vocab_size=13, num_classes=3, embed_dim=5,
                                         hidden_dim=4, ensemble=2), 27)
    no_tokens, no_lengths = np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    assert classify.logits(no_tokens, no_lengths).shape == (0, 3)
    assert classify.encode(no_tokens, no_lengths).shape == (0, classify.encoding_dim)
    _, translate = twins("translate", translator_config("lstm", "bahdanau", 2, True), 28)
    memory = translate.encode(no_tokens, no_lengths)
    log_probs, memory, weights = translate.decode_step(memory, np.zeros(0, np.int64), 3)
    assert log_probs.shape == (0, 12) and weights.shape == (0, 4)


@pytest.mark.parametrize("np_dtype", [np.float64, np.float32])
def test_token_gates_are_the_product_and_the_same_bits_whatever_came_before(np_dtype,
                                                                           monkeypatch):
    """The first layer's gates come from a table filled block by block: they are the
    product's numbers, and the same bits for a text alone, beside other texts, before or after
    others, with the table kept or not (a vocabulary too large to keep)."""
    from seqtool.engine import cells

    _, twin = twins("classify", dict(vocab_size=75, num_classes=3, embed_dim=5, hidden_dim=4,
                                     bidirectional=True), 29, np_dtype=np_dtype)
    gates = twin.members[0].rnn.token_gates
    layer = twin.members[0].rnn.layers[0]
    tokens = np.stack([np.array([[4, 40, 74], [70, 5, 5]])] * 2)  # [D, B, T]
    first = gates(tokens)
    assert gates.filled.sum() == 3  # blocks 0, 1 and 2 of 3: none needed twice
    embedded = gates.embedding[tokens.reshape(2, -1)]  # [D, 6, E]
    product = layer.input_gates(embedded, slice(0, 5)).reshape(first.shape)
    np.testing.assert_allclose(first, product, rtol=1e-6, atol=1e-6)

    alone = twin.encode(*(t.numpy() for t in batch(30, 75, [6])))
    twin.encode(*(t.numpy() for t in batch(31, 75, [40, 3, 17])))  # other texts first
    assert np.array_equal(twin.encode(*(t.numpy() for t in batch(30, 75, [6]))), alone)
    assert np.array_equal(gates(tokens), first)

    monkeypatch.setattr(cells, "MAX_TOKEN_TABLE", 10)  # nothing kept: blocks computed per call
    _, small = twins("classify", dict(vocab_size=75, num_classes=3, embed_dim=5, hidden_dim=4,
                                      bidirectional=True), 29, np_dtype=np_dtype)
    assert not small.members[0].rnn.token_gates.kept
    assert np.array_equal(small.members[0].rnn.token_gates(tokens), first)
    assert np.array_equal(small.encode(*(t.numpy() for t in batch(30, 75, [6]))), alone)


def test_extreme_logits_raise_no_warnings():
    """Large scores (a peaked model) overflow no exp: every warning is an error here."""
    config = translator_config("gru", "luong-dot", 1, True)
    model, twin = twins("translate", config, 18)
    big = {k: v * 300 for k, v in numpy_weights(model).items()}
    twin = engine.build("translate", config, big)
    src, lengths = batch(19, 15, LENGTHS)
    with np.errstate(all="raise", under="ignore"):  # underflow to 0 is the right answer
        memory = twin.encode(src.numpy(), lengths.numpy())
        log_probs, _, weights = twin.decode_step(memory, np.full(len(LENGTHS), 2))
    assert np.isfinite(log_probs).all() and np.allclose(weights.sum(1), 1)


def test_engine_runs_where_torch_cannot_be_imported():
    script = """
import sys
sys.modules["torch"] = None  # `import torch` now raises ImportError
import numpy as np
from seqtool import engine
from seqtool.engine import classifier, generator, translator, cells, ops
rng = np.random.default_rng(0)
def weights(shapes):
    return {k: rng.normal(0, 0.5, v) for k, v in shapes.items()}
from seqtool.config import ClassifierConfig, GeneratorConfig, TranslatorConfig
c = ClassifierConfig(vocab_size=9, num_classes=2, embed_dim=3, hidden_dim=4)
model = engine.build("classify", c.to_dict(), weights(classifier.classifier_shapes(c)))
print(model.logits(np.array([[4, 5, 6]]), np.array([3])).shape)
g = GeneratorConfig(vocab_size=9, num_classes=2, embed_dim=3, hidden_dim=4)
gen = engine.build("generate", g.to_dict(), weights(generator.generator_shapes(g)))
logits, state = gen.start(np.array([0, 1]), np.array([[2], [2]]))
print(gen.step(state, np.array([4, 5]))[0].shape)
t = TranslatorConfig(src_vocab_size=9, tgt_vocab_size=9, embed_dim=3, hidden_dim=4,
                     attention_dim=3)
tr = engine.build("translate", t.to_dict(), weights(translator.translator_shapes(t)))
memory = tr.encode(np.array([[4, 5, 6]]), np.array([3]))
print(tr.decode_step(memory, np.array([2]))[0].shape)
assert "torch" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["(1, 2)", "(2, 9)", "(1, 9)"]


@pytest.mark.parametrize(("rnn", "attention", "layers", "feeding"), TRANSLATORS[:6])
def test_translator_teacher_forced_matches_torch(rnn, attention, layers, feeding):
    config = translator_config(rnn, attention, layers, feeding)
    model, twin = twins("translate", config, 20)
    src, lengths = batch(21, 15, LENGTHS)
    tgt_in, _ = batch(22, 12, [4] * len(LENGTHS))
    with torch.no_grad():
        want = model(src, lengths, tgt_in)
        got = twin.forward(src.numpy(), lengths.numpy(), tgt_in.numpy())
        close(got, want, 1e-10)
        close(twin.logits(got), model.decoder.output(want), 1e-10)


# -------------------------------------------------------------------------- language model


@pytest.mark.parametrize(("rnn", "bidirectional", "layers"),
                         [("gru", True, 1), ("lstm", False, 2), ("lstm", True, 1)])
@pytest.mark.parametrize(("torch_dtype", "np_dtype", "tol"), DTYPES)
def test_language_model_matches_torch(rnn, bidirectional, layers, torch_dtype, np_dtype, tol):
    config = dict(vocab_size=13, rnn=rnn, embed_dim=5, hidden_dim=4, layers=layers,
                  bidirectional=bidirectional)
    model, twin = twins("pretrain", config, 23, torch_dtype, np_dtype)
    tokens, lengths = batch(24, 13, LENGTHS)
    with torch.no_grad():
        for (states, targets), (want_states, want_targets) in zip(
                twin.predicting_states(tokens.numpy(), lengths.numpy()),
                model.predicting_states(tokens, lengths), strict=True):
            close(states, want_states, tol)
            close(targets, want_targets, 0)
        got = twin.piece_nll(tokens.numpy(), lengths.numpy())
        # torch's cross-entropy runs in float32 (`.float()`), whatever the model's dtype
        close(got.astype(np.float32), model.piece_nll(tokens, lengths), 1e-5)
    assert got.shape[0] == (2 if bidirectional else 1)
