"""Errors raised by the image loaders."""

from __future__ import annotations


class GeometryError(ValueError):
    """The input does not form one well-defined stack of parallel slices.

    Raised for mixed series, mixed orientation or matrix size, non-collinear or duplicate
    slice positions, inconsistent slice spacing, and files that are not usable images.
    The message is meant for a human (an operator reading a job's failure reason) and
    names the problem without any patient data.
    """
