"""Training: the loop, the per-task recipes, resume, pretrained starts."""
