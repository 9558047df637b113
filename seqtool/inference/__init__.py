"""Inference: loaded models answering, evaluation, combination."""
