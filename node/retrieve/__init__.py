"""Retrieve: studies pulled from a source (DICOMweb) for inference requests, the stage before store."""
