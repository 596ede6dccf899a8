"""DICOM MR studies written from volumes: the writer (`dicomstudy.write`) and a synthetic LGE
study with known labels (`dicomstudy.synthetic`).

Shared by the lab (``lgenode pipeline to-dicom``), the node's tests and the benchmarks, so none
of them depends on another to get a study on disk. Depends on `models` only.
"""
