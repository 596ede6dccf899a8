"""Evaluation of a trained model through the inference entry point (``models.segment``)."""
