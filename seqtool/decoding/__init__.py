"""From model outputs to answers: search, sampling, lexicon, batched scoring."""
