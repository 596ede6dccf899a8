"""node — the DICOM service: receive -> store -> series -> job -> infer -> encode -> deliver."""

__version__ = "0.1.0"
