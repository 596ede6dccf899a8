"""Shared test helpers (fixtures for real peers, DICOM validation, sample series)."""
