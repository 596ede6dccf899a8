"""Inference-side job stages: load the series as a volume, segment it, and map a reviewed SEG back."""
