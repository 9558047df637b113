"""Text in: readers of corpora and input lines, the sentencepiece tokenizer, batches."""
