"""Synthetic LGE data: mask simulator (shapes, lesions, three strategies), realism report and
physics-based image rendering. See pipeline/configs/simulate.yaml for every parameter."""
