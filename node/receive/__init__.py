"""DICOM receiving: the Storage SCP, its access policy and header checks."""
