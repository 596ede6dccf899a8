"""The stages of each job kind, wired from the node's config.

    segment:   load -> segment (+ measurements) -> encode (SEG, SR) -> deliver
               -> report (PDF) -> deliver            (the report stages only with model.write_report)
    remeasure: load_reviewed (reviewed SEG on its source volume, + measurements) -> encode (SR) -> deliver
"""

from __future__ import annotations

from node.config import NodeConfig
from node.deliver.outbox import Outbox
from node.deliver.stage import DeliverStage
from node.encode.stage import EncodeStage, ReportStage, stage_encode_reviewed_sr
from node.infer.load import stage_load
from node.infer.remeasure import stage_load_reviewed
from node.infer.segment import SegmentStage
from node.job.worker import NamedStages


def build_stages(cfg: NodeConfig, outbox: Outbox) -> dict[str, NamedStages]:
    """Stages per job kind (``segment``, ``remeasure``) for ``cfg``, delivering through ``outbox``."""
    weights = cfg.resolve(cfg.model.weights_dir) if cfg.model.weights_dir else None
    deliver = DeliverStage(outbox)
    segment: NamedStages = [
        ("load", stage_load),
        ("segment", SegmentStage(weights, cfg.model.runtime)),
        ("encode", EncodeStage()),
        ("deliver", deliver),
    ]
    if cfg.model.write_report:
        segment += [("report", ReportStage()), ("deliver_report", deliver)]
    return {
        "segment": segment,
        "remeasure": [
            ("load", stage_load_reviewed),
            ("encode", stage_encode_reviewed_sr),
            ("deliver", deliver),
        ],
    }
