"""Inference-side job stages: loading the series (and, with the model issue, segmentation)."""
