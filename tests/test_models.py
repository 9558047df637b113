"""Every model path on small random models: the architectures the shipped models do not use
(LSTM, several layers, no input feeding, other attentions, poolings, ensembles) learn, pass
gradients everywhere, and compute the same thing in their fast and their step-by-step forms.

Everything runs in float64, so equalities hold far below any rounding that differs between
CPUs (float32 tolerances only where the code itself computes in float32).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import small_generator

from seqtool.config import ClassifierConfig, TranslatorConfig
from seqtool.decoding.scoring import sentence_nll
from seqtool.nn.batches import classify_batch, generate_batch, translate_batch
from seqtool.nn.classifier import Classifier, adversarial_shift
from seqtool.nn.translator import Translator
from seqtool.text.tokenizer import END, START

VOCAB = 23


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float64 rounding; up to float32 rounding where the code computes a result in
    float32 on purpose (log-softmax and losses run in at least float32 under bf16 autocast)."""
    if torch.float32 in (actual.dtype, expected.dtype):
        torch.testing.assert_close(actual.float(), expected.float(), rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-11)


def random_sentences(count: int, seed: int, longest: int = 7) -> list[list[int]]:
    """Piece ids of `count` sentences of different lengths (1..longest), no special ids."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, longest + 1, (count,), generator=g).tolist()
    lengths[0] = longest  # the batch has padding for every shorter sentence
    return [torch.randint(END + 1, VOCAB, (n,), generator=g).tolist() for n in lengths]


def check_learns(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
    """The loss is finite, every parameter gets a non-zero finite gradient, and a few Adam
    steps on the same batch lower the loss."""
    model.train()
    loss, units = model.loss(batch)
    assert units > 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    first = loss.item()
    for _ in range(10):
        optimizer.zero_grad()
        loss, _ = model.loss(batch)
        loss.backward()
        optimizer.step()
    assert model.loss(batch)[0].item() < 0.9 * first


# ----------------------------------------------------------------------------- S3

TRANSLATORS = [
    dict(rnn=rnn, attention=attention, input_feeding=feeding, encoder_layers=layers,
         decoder_layers=layers)
    for rnn, attention, feeding, layers in itertools.product(
        ["gru", "lstm"], ["bahdanau", "luong-general", "luong-dot"], [True, False], [1, 2])
]


def small_translator(seed: int = 0, **options) -> Translator:
    torch.manual_seed(seed)
    config = TranslatorConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB + 2, embed_dim=6,
                              hidden_dim=6, attention_dim=5, dropout=0.0, **options)
    return Translator(config).double()


def translation_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    return translate_batch(random_sentences(4, seed), random_sentences(4, seed + 1))


def config_id(options: dict) -> str:
    return "-".join(str(v) for v in options.values())


@pytest.mark.parametrize("options", TRANSLATORS, ids=config_id)
def test_translator_learns_with_every_architecture(options):
    check_learns(small_translator(**options), translation_batch())


@pytest.mark.parametrize("options", TRANSLATORS, ids=config_id)
def test_teacher_forcing_equals_step_by_step_decoding(options):
    """Training (all target steps at once: fused, fused-RNN or step loop, depending on the
    architecture) scores the reference exactly as decoding does, one `decode_step` at a time."""
    model = small_translator(**options).eval()
    batch = translation_batch(seed=3)
    src, lengths, tgt_in = batch["src"], batch["src_lengths"], batch["tgt_in"]
    with torch.no_grad():
        hidden = model(src, lengths, tgt_in)
        memory = model.encode(src, lengths)
        for t in range(tgt_in.size(1)):
            logp, memory, weights = model.decode_step(memory, tgt_in[:, t])
            assert_same(memory["attentional"], hidden[:, t])
            assert_same(logp, torch.log_softmax(model.decoder.output(hidden[:, t]), -1))
            # Attention is a distribution over each sentence's real source tokens only.
            assert_same(weights.sum(-1), torch.ones(len(lengths), dtype=torch.double))
            assert (weights[torch.arange(weights.size(1)) >= lengths[:, None]] == 0).all()


# ----------------------------------------------------------------------------- S1

CLASSIFIERS = [
    dict(layers=layers, bidirectional=bidirectional, pooling=pooling, ensemble=ensemble)
    for layers, bidirectional, pooling, ensemble in itertools.product(
        [1, 2], [True, False], ["last", "mean", "max", "concat"], [1, 2])
]


def small_classifier(seed: int = 0, **options) -> Classifier:
    torch.manual_seed(seed)
    config = ClassifierConfig(vocab_size=VOCAB, num_classes=3, embed_dim=6, hidden_dim=5,
                              dropout=0.0, **options)
    return Classifier(config).double()


@pytest.mark.parametrize("options", CLASSIFIERS, ids=config_id)
def test_classifier_learns_with_every_architecture(options):
    ids = random_sentences(6, seed=1)
    check_learns(small_classifier(**options), classify_batch(ids, [0, 1, 2, 0, 1, 2]))


@pytest.mark.parametrize("options", CLASSIFIERS, ids=config_id)
def test_a_sentence_alone_equals_the_sentence_in_a_padded_batch(options):
    """Padding changes nothing: not the pooled vector, not the class scores."""
    model = small_classifier(**options).eval()
    ids = random_sentences(5, seed=2)
    batch = classify_batch(ids)
    with torch.no_grad():
        scores = model(batch["tokens"], batch["lengths"])
        vectors = model.encode(batch["tokens"], batch["lengths"])
        for i, sentence in enumerate(ids):
            alone = classify_batch([sentence])
            assert_same(scores[i], model(alone["tokens"], alone["lengths"])[0])
            assert_same(vectors[i], model.encode(alone["tokens"], alone["lengths"])[0])
    assert vectors.shape == (5, model.encoding_dim)


def test_ensemble_predicts_the_mean_of_its_members_distributions():
    model = small_classifier(ensemble=3).eval()
    batch = classify_batch(random_sentences(4, seed=3))
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(batch["tokens"], batch["lengths"]), -1)
                            for m in model.members]).mean(0)
        probs = torch.softmax(model(batch["tokens"], batch["lengths"]), -1)
    assert_same(probs, mean)
    members = [m.output.weight for m in model.members]
    assert not torch.equal(members[0], members[1])  # independently initialised


def test_poolings_differ_and_concat_holds_the_other_three():
    batch = classify_batch(random_sentences(4, seed=4))
    scores = [small_classifier(pooling=p)(batch["tokens"], batch["lengths"])
              for p in ("last", "mean", "max")]
    assert not torch.allclose(scores[0], scores[1]) and not torch.allclose(scores[1], scores[2])
    with torch.no_grad():
        vectors = [small_classifier(pooling=p).encode(batch["tokens"], batch["lengths"])
                   for p in ("last", "max", "mean", "concat")]
    assert_same(vectors[3], torch.cat(vectors[:3], -1))  # same seed, same GRU


def test_the_adversarial_shift_has_its_radius_and_raises_the_loss_more_than_chance():
    model = small_classifier(seed=5).eval()
    member = model.members[0]
    batch = classify_batch(random_sentences(6, seed=6), [0, 1, 2, 0, 1, 2])
    tokens, lengths, labels = batch["tokens"], batch["lengths"], batch["labels"]
    embedded = member.embedding(tokens)

    def loss_of(e: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(member.scores(e, lengths), labels,
                                                 reduction="none")

    radius = 0.01
    shift = adversarial_shift(loss_of(embedded).sum(), embedded, lengths, radius)
    padding = torch.arange(tokens.size(1)) >= lengths[:, None]
    assert (shift[padding] == 0).all()
    norms = torch.linalg.vector_norm(shift, dim=(1, 2))
    assert_same(norms, radius * torch.linalg.vector_norm(embedded.detach(), dim=(1, 2)))
    with torch.no_grad():
        clean, attacked = loss_of(embedded), loss_of(embedded + shift)
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(shift.shape, generator=g, dtype=shift.dtype) * ~padding[..., None]
        noise *= (norms / torch.linalg.vector_norm(noise, dim=(1, 2)))[:, None, None]
        random = loss_of(embedded + noise)
    # Each text's own shift raises its own loss, and by more than a random shift as long.
    assert (attacked > clean).all() and (attacked - clean > (random - clean).abs()).all()


def test_adversarial_training_adds_the_shifted_texts_loss_only_while_training():
    batch = classify_batch(random_sentences(6, seed=7), [0, 1, 2, 0, 1, 2])
    plain, adversarial = small_classifier(ensemble=2), small_classifier(ensemble=2,
                                                                        adversarial=0.05)
    clean = plain.train().loss(batch)[0]
    assert_same(adversarial.eval().loss(batch)[0], clean)  # same seed, same weights
    trained = adversarial.train().loss(batch)[0]
    assert 2 * clean < trained < 2.5 * clean  # each member: clean + (slightly worse) shifted
    check_learns(small_classifier(adversarial=0.05, pooling="last"), batch)


# ----------------------------------------------------------------------------- S2

GENERATORS = [
    dict(layers=layers, class_every_step=every_step, class_bias=bias, tie_embeddings=tie)
    for layers, every_step, bias, tie in itertools.product([1, 2], [False, True], [False, True],
                                                           [True, False])
]


@pytest.mark.parametrize("options", GENERATORS, ids=config_id)
def test_generator_learns_with_every_architecture(options):
    ids = random_sentences(6, seed=5)
    check_learns(small_generator(**options), generate_batch([0, 1, 2, 2, 1, 0], ids))


@pytest.mark.parametrize("options", GENERATORS, ids=config_id)
def test_teacher_forcing_equals_feeding_one_token_at_a_time(options):
    """The training forward (packed, with lengths) gives the logits that sampling sees when it
    feeds one token at a time and carries the state."""
    model = small_generator(**options).eval()
    ids = random_sentences(4, seed=6)
    batch = generate_batch([2, 0, 1, 2], ids)
    with torch.no_grad():
        forced, _ = model(batch["labels"], batch["inputs"], batch["lengths"])
        for i, sentence in enumerate(ids):
            label = batch["labels"][i : i + 1]
            state = None
            for t, token in enumerate([START, *sentence]):
                logits, state = model(label, torch.tensor([[token]]), state=state)
                assert_same(logits[0, 0], forced[i, t])


@pytest.mark.parametrize("options", GENERATORS, ids=config_id)
def test_sentence_nll_alone_equals_batched(options):
    model = small_generator(**options).eval()
    ids = random_sentences(9, seed=7)
    labels = [i % 3 for i in range(9)]
    batched, counts = sentence_nll(model, labels, ids, batch_size=4)
    alone = np.concatenate([sentence_nll(model, [y], [s])[0] for y, s in zip(labels, ids)])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-5)  # summed in float32
    assert counts.tolist() == [len(s) + 1 for s in ids]
    # The NLL is that of the sentence under its own class: another class scores it otherwise.
    other = sentence_nll(model, [(y + 1) % 3 for y in labels], ids)[0]
    assert not np.allclose(other, batched)


def test_class_nll_scores_every_sentence_under_every_class():
    model = small_generator(class_every_step=True, class_bias=True).eval()
    batch = generate_batch([2, 0, 1, 2], random_sentences(4, seed=8))
    table = model.class_nll(batch)
    assert table.shape == (4, 3)
    for c in range(3):
        assert_same(table[:, c], model.sentence_nll(torch.full((4,), c), batch))


def test_discriminative_loss_adds_the_bayes_classifier_in_training_only():
    """GeDi's objective: NLL of the true class + weight * -log p(c|x), p(c|x) by Bayes' rule
    over the generator's own likelihoods. It is not part of the dev loss, which stays the
    generator's likelihood."""
    model = small_generator(class_every_step=True, discriminative_weight=0.5)
    labels = torch.tensor([2, 0, 1, 2, 1])
    batch = generate_batch(labels.tolist(), random_sentences(5, seed=9))
    tokens = int((batch["targets"] != 0).sum())
    nll = torch.stack([model.sentence_nll(torch.full((5,), c), batch) for c in range(3)], 1)
    generative = nll[torch.arange(5), labels].sum()
    posterior = torch.log_softmax(-nll, 1)[torch.arange(5), labels]
    loss, units = model.train().loss(batch)
    assert units == tokens
    assert_same(loss, generative - 0.5 * posterior.sum())
    assert_same(model.eval().loss(batch)[0], generative)


def test_discriminative_loss_makes_the_generator_a_better_classifier():
    """From the same start and with the same steps, the weighted objective leaves the
    true class more probable under Bayes' rule than the likelihood alone does."""
    ids = random_sentences(12, seed=10)
    labels = torch.tensor([i % 3 for i in range(12)])
    batch = generate_batch(labels.tolist(), ids)

    def trained_posterior(weight: float) -> float:
        model = small_generator(class_every_step=True, discriminative_weight=weight)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        for _ in range(15):
            optimizer.zero_grad()
            model.train().loss(batch)[0].backward()
            optimizer.step()
        with torch.no_grad():
            nll = model.eval().class_nll(batch)
        return torch.log_softmax(-nll, 1)[torch.arange(12), labels].mean().item()

    assert trained_posterior(1.0) > trained_posterior(0.0) + 0.05


def test_the_class_conditions_every_generator():
    """The class reaches the prediction through y_h(0), and also per step when asked."""
    ids = random_sentences(3, seed=8)
    for options in GENERATORS:
        model = small_generator(**options).eval()
        a = sentence_nll(model, [0, 0, 0], ids)[0]
        b = sentence_nll(model, [1, 1, 1], ids)[0]
        assert np.abs(a - b).min() > 1e-6, options
