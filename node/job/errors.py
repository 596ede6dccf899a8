"""Errors a job stage raises to tell the worker how to record a failure."""

from __future__ import annotations


class PermanentError(Exception):
    """A failure that a retry cannot fix (bad geometry, no images, no model): the job fails at once.

    Any other exception from a stage is taken as transient: the job is retried with back-off.
    """
