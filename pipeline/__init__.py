"""pipeline — the offline lab: data sets, mask simulation, image synthesis, training, evaluation.

Uses `models`; never uses `node`.
"""
