"""Pretraining: the language model sees only its own side of each piece, and `--init` starts
classifiers and generators from its tokenizer, embeddings and recurrent layers."""

from __future__ import annotations

import pytest
import torch
from conftest import TOY, run_cli, run_seqtool

from seqtool.checkpoint import Checkpoint
from seqtool.config import ClassifierConfig, GeneratorConfig, LanguageModelConfig
from seqtool.errors import SeqtoolError
from seqtool.nn.batches import pretrain_batch
from seqtool.nn.classifier import Classifier
from seqtool.nn.generator import Generator
from seqtool.nn.language_model import LanguageModel
from seqtool.training.pretrained import init_from_language_model

TINY_PRETRAIN = ["--vocab-size", "60", "--embed-dim", "16", "--hidden-dim", "16",
                 "--max-tokens", "200", "--epochs", "20", "--lr", "0.01", "--warmup-steps",
                 "0", "--quiet"]


def small_language_model(rnn: str = "gru", bidirectional: bool = True, seed: int = 0,
                         layers: int = 1) -> LanguageModel:
    torch.manual_seed(seed)
    config = LanguageModelConfig(vocab_size=19, rnn=rnn, embed_dim=5, hidden_dim=6,
                                 layers=layers, bidirectional=bidirectional, dropout=0.0)
    return LanguageModel(config).double().eval()


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("seed", range(3))
def test_each_direction_sees_only_its_own_side(rnn, seed):
    """Changing piece k changes the forward states only from k on (the state at j predicts
    piece j+1), the backward states only up to k (the state at j predicts piece j): neither
    direction sees the piece it predicts, and padding changes nothing."""
    model = small_language_model(rnn, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    ids = [torch.randint(4, 19, (n,), generator=generator).tolist() for n in (7, 3, 5)]
    batch = pretrain_batch(ids)
    (forward, next_pieces), (backward, previous_pieces) = model.predicting_states(**batch)
    assert torch.equal(next_pieces, batch["tokens"][:, 1:])
    assert torch.equal(previous_pieces, batch["tokens"][:, :-1])
    for k in range(1, 8):  # the real pieces of the first sentence (0 is <start>)
        changed = batch["tokens"].clone()
        changed[0, k] = 4 + (changed[0, k] - 3) % 15
        (f, _), (b, _) = model.predicting_states(changed, batch["lengths"])
        f_moved = (f - forward).abs().amax(-1)[0] > 1e-12
        b_moved = (b - backward).abs().amax(-1)[0] > 1e-12
        assert f_moved.nonzero().min() == k and f_moved[k:8].all(), (k, f_moved)
        assert b_moved.nonzero().max() == k - 1 and b_moved[:k].all(), (k, b_moved)
        assert torch.equal(f[1:], forward[1:]) and torch.equal(b[1:], backward[1:])
    nll = model.piece_nll(**batch)
    assert (nll[:, 1, 4:] == 0).all() and (nll[:, 1, :4] > 0).all()


def test_loss_counts_every_piece_once_per_direction():
    ids = [[5, 6, 7], [8]]
    batch = pretrain_batch(ids)
    for bidirectional, directions in ((True, 2), (False, 1)):
        model = small_language_model(bidirectional=bidirectional)
        loss, units = model.loss(batch)
        assert units == directions * (4 + 2)  # n pieces + <end> (or <start>) per sentence
        assert loss.item() == pytest.approx(model.piece_nll(**batch).sum().item())


def test_a_bidirectional_language_model_has_one_layer():
    with pytest.raises(ValueError, match="one layer"):
        small_language_model(layers=2)
    small_language_model(bidirectional=False, layers=2)


def language_model_checkpoint(model: LanguageModel) -> Checkpoint:
    return Checkpoint("pretrain", model.config.to_dict(), model.state_dict(), {"src": b""}, [],
                      {})


def test_init_copies_embedding_and_rnn_into_every_ensemble_member():
    lm = small_language_model()
    classifier = Classifier(ClassifierConfig(vocab_size=19, num_classes=3, embed_dim=5,
                                             hidden_dim=6, ensemble=2)).double()
    copied = init_from_language_model(classifier, language_model_checkpoint(lm), "lm.pt")
    for member in classifier.members:
        assert torch.equal(member.embedding.weight, lm.embedding.weight)
        for name, weight in lm.rnn.named_parameters():
            assert torch.equal(getattr(member.rnn, name), weight)
    assert "members.1.rnn.weight_hh_l0_reverse" in copied
    assert not any(name.startswith(("members.0.output", "members.1.output")) for name in copied)


def test_init_keeps_the_generators_class_columns_fresh():
    lm = small_language_model("lstm", bidirectional=False)
    generator = Generator(GeneratorConfig(vocab_size=19, num_classes=2, embed_dim=5,
                                          hidden_dim=6, class_every_step=True,
                                          class_dim=3)).double()
    fresh = generator.rnn.weight_ih_l0[:, 5:].detach().clone()
    copied = init_from_language_model(generator, language_model_checkpoint(lm), "lm.pt")
    assert torch.equal(generator.rnn.weight_ih_l0[:, :5], lm.rnn.weight_ih_l0)
    assert torch.equal(generator.rnn.weight_ih_l0[:, 5:], fresh)
    assert torch.equal(generator.bottleneck.weight, lm.bottleneck.weight)
    assert torch.equal(generator.output.bias, lm.output.bias)
    assert (generator.initial.weight == 0).all()  # y_h(0) = 0, as in pretraining
    assert {"embedding.weight", "rnn.weight_ih_l0", "bottleneck.weight"} <= copied


@pytest.mark.parametrize("build, message", [
    (lambda: Classifier(ClassifierConfig(19, 2, embed_dim=5, hidden_dim=7)), "hidden-dim"),
    (lambda: Classifier(ClassifierConfig(19, 2, embed_dim=5, hidden_dim=6,
                                         bidirectional=False)), "bidirectional"),
    (lambda: Classifier(ClassifierConfig(19, 2, embed_dim=5, hidden_dim=6, layers=2)),
     "layers"),
    (lambda: Generator(GeneratorConfig(19, 2, embed_dim=5, hidden_dim=6)), "--rnn lstm"),
])
def test_mismatches_are_one_clear_error(build, message):
    lm = language_model_checkpoint(small_language_model())
    with pytest.raises(SeqtoolError, match=message) as error:
        init_from_language_model(build().double(), lm, "lm.pt")
    assert "\n" not in str(error.value)


def test_pretrain_then_finetune_end_to_end(tmp_path):
    """A frozen (--pretrained-lr-scale 0) finetuning keeps the language model's embedding
    and GRU exactly and its tokenizer; the class layer learns."""
    text = tmp_path / "text.txt"
    text.write_text("".join(line.split("\t")[1] + "\n" for line in
                            (TOY / "sentiment.tsv").read_text().splitlines()))
    lm_path = tmp_path / "lm.pt"
    run_cli("pretrain", "--train", text, "--train", TOY / "en-de.en", "--dev", text, "--out",
            lm_path, *TINY_PRETRAIN)
    lm = Checkpoint.load(lm_path)
    assert lm.task == "pretrain" and lm.meta["history"][-1]["bits_per_character"] > 0
    out = tmp_path / "classifier.pt"
    finetune = ["train", "classify", "--train", TOY / "sentiment.tsv", "--dev",
                TOY / "sentiment.tsv", "--out", out, "--init", lm_path, "--epochs", "5",
                "--max-tokens", "64", "--warmup-steps", "0", "--pretrained-lr-scale", "0",
                "--quiet"]
    # A size given that differs from the language model's is one error line...
    other = run_seqtool(*finetune, "--hidden-dim", "24")
    assert other.returncode == 1 and "in the language model" in other.stderr
    assert other.stderr.strip().count("\n") == 0 and not out.exists()
    run_cli(*finetune)  # ... and sizes left out are the language model's (16, not 128/192)
    classifier = Checkpoint.load(out)
    assert classifier.tokenizers["src"] == lm.tokenizers["src"]
    assert (classifier.model_config["embed_dim"], classifier.model_config["hidden_dim"]) == (16, 16)
    for name in ("embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0_reverse"):
        assert torch.equal(classifier.weights[f"members.0.{name}"], lm.weights[name]), name
    # The class layer was trained: it moved from its seeded initialisation.
    torch.manual_seed(0)
    untrained = Classifier(ClassifierConfig(**classifier.model_config))
    assert not torch.equal(classifier.weights["members.0.output.weight"],
                           untrained.members[0].output.weight)


def test_init_errors_are_one_line(tmp_path, toy_generator):
    text = tmp_path / "text.txt"
    text.write_text("a b c\nd e f\n")
    wrong = run_seqtool("train", "classify", "--train", TOY / "sentiment.tsv", "--dev",
                        TOY / "sentiment.tsv", "--out", tmp_path / "c.pt", "--init",
                        toy_generator, "--quiet")
    assert wrong.returncode == 1
    assert wrong.stderr.strip().count("\n") == 0 and "seqtool pretrain" in wrong.stderr
    deep = run_seqtool("pretrain", "--train", text, "--dev", text, "--out", tmp_path / "lm.pt",
                       "--layers", "2", "--quiet")
    assert deep.returncode == 1 and "one layer" in deep.stderr
    assert "Traceback" not in deep.stderr + wrong.stderr


def test_pretrain_and_finetune_resume_exactly(tmp_path):
    """`pretrain` and `train classify --init` (two learning rates) resume to the very model an
    uninterrupted run trains."""
    from seqtool.training.loop import last_path

    text = tmp_path / "text.txt"
    text.write_text("".join(line.split("\t")[1] + "\n" for line in
                            (TOY / "sentiment.tsv").read_text().splitlines()))
    options = [*TINY_PRETRAIN, "--epochs", "6", "--dropout", "0.2"]
    runs = {}
    for name, extra in (("full", []), ("part", ["--max-steps", "4"])):
        runs[name] = tmp_path / f"lm-{name}.pt"
        run_cli("pretrain", "--train", text, "--dev", text, "--out", runs[name], *options,
                *extra)
    run_cli("pretrain", "--train", text, "--dev", text, "--out", runs["part"], *options,
            "--resume")
    weights = [Checkpoint.load(last_path(runs[n])).weights for n in ("full", "part")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    finetune = ["--train", TOY / "sentiment.tsv", "--dev", TOY / "sentiment.tsv", "--init",
                runs["full"], "--embed-dim", "16", "--hidden-dim", "16", "--epochs", "6",
                "--max-tokens", "64", "--warmup-steps", "0", "--pretrained-lr-scale", "0.5",
                "--quiet"]
    run_cli("train", "classify", *finetune, "--out", tmp_path / "c-full.pt")
    run_cli("train", "classify", *finetune, "--out", tmp_path / "c-part.pt", "--max-steps", "3")
    run_cli("train", "classify", *finetune, "--out", tmp_path / "c-part.pt", "--resume")
    full, part = (Checkpoint.load(last_path(tmp_path / f"c-{n}.pt")) for n in ("full", "part"))
    assert all(torch.equal(full.weights[k], part.weights[k]) for k in full.weights)
    groups = full.train_state["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [0.002, 0.001]  # fresh, pretrained (x 0.5)


def test_generators_inherit_the_language_models_words(tmp_path):
    """The lexicon of a generator finetuned from a language model (`generate --lexicon
    model`) is the words of both training texts, so pretraining widens what it may write."""
    from seqtool.decoding.lexicon import words_of

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\nzebras graze in the sun.\n"
                    "a dog and a fox are friends.\n" * 3)
    lm_path = tmp_path / "lm.pt"
    run_cli("pretrain", "--train", text, "--dev", text, "--out", lm_path, *TINY_PRETRAIN,
            "--epochs", "2", "--rnn", "lstm", "--unidirectional")
    lm_words = words_of(text.read_text().splitlines())
    assert Checkpoint.load(lm_path).meta["lexicon"] == sorted(lm_words)
    out = tmp_path / "generator.pt"
    run_cli("train", "generate", "--train", TOY / "sentiment.tsv", "--dev",
            TOY / "sentiment.tsv", "--out", out, "--init", lm_path, "--embed-dim", "16",
            "--hidden-dim", "16", "--epochs", "1", "--max-tokens", "64", "--quiet")
    own = words_of(line.split("\t")[1] for line in
                   (TOY / "sentiment.tsv").read_text().splitlines())
    assert own - lm_words and lm_words - own  # the union is wider than either
    assert Checkpoint.load(out).meta["lexicon"] == sorted(own | lm_words)


def test_continuing_a_language_model_starts_from_all_its_weights():
    lm = small_language_model(seed=1)
    other = small_language_model(seed=2)
    copied = init_from_language_model(other, language_model_checkpoint(lm), "lm.pt")
    assert copied == {name for name, _ in other.named_parameters()}
    assert all(torch.equal(a, b) for a, b in zip(lm.state_dict().values(),
                                                 other.state_dict().values()))
    damaged = language_model_checkpoint(lm)
    damaged.weights.pop("bottleneck.bias")
    with pytest.raises(SeqtoolError, match="does not fit") as error:
        init_from_language_model(small_language_model(), damaged, "lm.pt")
    assert "\n" not in str(error.value)


def test_pretrain_init_goes_on_from_the_language_model(tmp_path):
    """`pretrain --init` (ULMFiT's second stage) keeps the language model's tokenizer and sizes
    whatever the size flags say, starts from its weights (a zero learning rate keeps them)
    and knows the words of both texts."""
    from seqtool.decoding.lexicon import words_of

    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("the quick brown fox jumps over the lazy dog.\n" * 4)
    second.write_text("zebras graze in the sun.\nthe dog sleeps.\n" * 4)
    lm_path, adapted = tmp_path / "lm.pt", tmp_path / "adapted.pt"
    run_cli("pretrain", "--train", first, "--dev", first, "--out", lm_path, *TINY_PRETRAIN,
            "--epochs", "2")
    run_cli("pretrain", "--init", lm_path, "--train", second, "--dev", second, "--out", adapted,
            *TINY_PRETRAIN, "--epochs", "1", "--hidden-dim", "9", "--unidirectional")
    lm, new = Checkpoint.load(lm_path), Checkpoint.load(adapted)
    assert new.model_config == lm.model_config and new.tokenizers == lm.tokenizers
    assert not torch.equal(new.weights["rnn.weight_hh_l0"], lm.weights["rnn.weight_hh_l0"])
    assert new.meta["lexicon"] == sorted(words_of([first.read_text(), second.read_text()]))
    frozen = tmp_path / "frozen.pt"
    run_cli("pretrain", "--init", lm_path, "--train", second, "--dev", second, "--out", frozen,
            *TINY_PRETRAIN, "--epochs", "1", "--lr", "1e-30")
    kept = Checkpoint.load(frozen).weights
    assert all(torch.allclose(kept[k], lm.weights[k]) for k in lm.weights)
    wrong = run_seqtool("pretrain", "--init", second, "--train", second, "--dev", second,
                        "--out", tmp_path / "x.pt", "--quiet")
    assert wrong.returncode == 1 and wrong.stderr.strip().count("\n") == 0
    assert "Traceback" not in wrong.stderr


def test_gradual_unfreezing_thaws_one_layer_an_epoch_from_the_top():
    from seqtool.training.pretrained import thaw_epochs

    lm = language_model_checkpoint(small_language_model("lstm", bidirectional=False))
    generator = Generator(GeneratorConfig(vocab_size=19, num_classes=2, embed_dim=5,
                                          hidden_dim=6)).double()
    thaw = thaw_epochs(init_from_language_model(generator, lm, "lm.pt"), gradual=True)
    assert thaw["bottleneck.weight"] == thaw["output.bias"] == 1
    assert thaw["rnn.weight_hh_l0"] == 2 and thaw["embedding.weight"] == 3
    classifier = Classifier(ClassifierConfig(19, 2, embed_dim=5, hidden_dim=6, ensemble=2))
    copied = init_from_language_model(classifier.double(),
                                      language_model_checkpoint(small_language_model()), "lm.pt")
    thaw = thaw_epochs(copied, gradual=True)
    assert thaw["members.1.rnn.weight_ih_l0"] == 1 and thaw["members.0.embedding.weight"] == 2
    assert set(thaw_epochs(copied, gradual=False).values()) == {0}


def test_gradual_unfreezing_keeps_pretrained_layers_until_their_epoch(tmp_path):
    """Epoch 1 trains only the class layer, epoch 2 adds the GRU, epoch 3 the embeddings; the
    run resumes exactly across a thaw."""
    from seqtool.training.loop import last_path

    text = tmp_path / "text.txt"
    text.write_text("".join(line.split("\t")[1] + "\n" for line in
                            (TOY / "sentiment.tsv").read_text().splitlines()))
    lm_path = tmp_path / "lm.pt"
    run_cli("pretrain", "--train", text, "--dev", text, "--out", lm_path, *TINY_PRETRAIN,
            "--epochs", "2")
    lm = Checkpoint.load(lm_path).weights
    finetune = ["--train", TOY / "sentiment.tsv", "--dev", TOY / "sentiment.tsv", "--init",
                lm_path, "--embed-dim", "16", "--hidden-dim", "16", "--max-tokens", "64",
                "--warmup-steps", "0", "--gradual-unfreezing", "--patience", "9", "--quiet"]
    weights = {}
    for epochs in (1, 2, 3):
        out = tmp_path / f"c{epochs}.pt"
        run_cli("train", "classify", *finetune, "--epochs", str(epochs), "--out", out)
        weights[epochs] = Checkpoint.load(last_path(out)).weights
    untrained = {}
    for epochs, w in weights.items():
        untrained[epochs] = {name for name in ("rnn.weight_hh_l0", "embedding.weight")
                             if torch.equal(w[f"members.0.{name}"], lm[name])}
    assert untrained == {1: {"rnn.weight_hh_l0", "embedding.weight"},
                         2: {"embedding.weight"}, 3: set()}
    part = tmp_path / "part.pt"
    run_cli("train", "classify", *finetune, "--epochs", "3", "--out", part, "--max-steps", "2")
    run_cli("train", "classify", *finetune, "--epochs", "3", "--out", part, "--resume")
    resumed = Checkpoint.load(last_path(part)).weights
    assert all(torch.equal(resumed[k], weights[3][k]) for k in resumed)


def test_init_from_a_model_of_the_same_task_takes_all_its_weights(tmp_path, toy_generator):
    """Warm start: `train generate --init GENERATOR.pt` goes on from every weight, the tokenizer
    and the words of a generator with the same labels and sizes (a zero rate keeps them);
    other labels or sizes are one error line."""
    from conftest import TINY_GENERATE

    data = TOY / "sentiment.tsv"
    out = tmp_path / "warm.pt"
    run_cli("train", "generate", "--train", data, "--dev", data, "--out", out, "--init",
            toy_generator, *TINY_GENERATE, "--epochs", "1", "--lr", "1e-30",
            "--discriminative-weight", "1")
    start, warm = Checkpoint.load(toy_generator), Checkpoint.load(out)
    assert warm.tokenizers == start.tokenizers and warm.labels == start.labels
    assert warm.meta["lexicon"] == start.meta["lexicon"]
    assert warm.model_config["discriminative_weight"] == 1.0
    assert all(torch.allclose(warm.weights[k], start.weights[k]) for k in start.weights)
    genres = tmp_path / "genres.tsv"
    genres.write_text("news\tThe jury said it.\nlore\tThe old tale goes on.\n")
    relabelled = run_seqtool("train", "generate", "--train", genres, "--dev", genres, "--out",
                             tmp_path / "g.pt", "--init", toy_generator, *TINY_GENERATE)
    smaller = run_seqtool("train", "generate", "--train", data, "--dev", data, "--out",
                          tmp_path / "s.pt", "--init", toy_generator, *TINY_GENERATE,
                          "--hidden-dim", "16")
    for failed, message in ((relabelled, "labels"), (smaller, "does not fit")):
        assert failed.returncode == 1 and message in failed.stderr
        assert failed.stderr.strip().count("\n") == 0 and "Traceback" not in failed.stderr
