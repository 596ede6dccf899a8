"""Job stage 3: encode SEG + SR (+ PDF) and keep them in the node's own store before delivery.

The objects are written durably under the store root (like received instances) and indexed, so
a delivery retry — even after a restart — re-sends exactly these files. UIDs are derived from
the series, its revision and the algorithm version, so re-running a job re-creates the same
objects rather than new copies.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.filewriter import dcmwrite

from node.db.models import Instance, utcnow
from node.deliver.outbox import OutgoingObject
from node.encode import AlgorithmInfo, encode_results
from node.receive.header import InstanceHeader
from node.series.tracking import record_instance

KINDS = ("seg", "sr", "pdf")


class EncodeStage:
    def __init__(self, write_report: bool = True) -> None:
        self.write_report = write_report

    def __call__(self, ctx: Any) -> None:
        from node.infer.load import series_files

        sources = [dcmread(p) for p in series_files(ctx.sessions, ctx.store_root, ctx.job.series_uid)]
        name, version = ctx.model
        algorithm = AlgorithmInfo(name=name, version=version)
        job_key = f"{ctx.job.series_uid}/r{ctx.job.revision}"
        objects = encode_results(sources, ctx.labels, ctx.volume, ctx.measurements, ctx.aha, algorithm,
                                 job_key=job_key, with_report=self.write_report)
        outgoing: list[OutgoingObject] = []
        for kind, ds in zip(KINDS, objects):
            buf = BytesIO()
            dcmwrite(buf, ds, enforce_file_format=True)
            data = buf.getvalue()
            header = InstanceHeader(
                sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
                study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                attrs={"Modality": str(ds.Modality), "SeriesDescription": str(ds.get("SeriesDescription", "")),
                       "SeriesNumber": str(ds.get("SeriesNumber", ""))},
            )
            relpath = ctx.files.relpath_for(header.study_uid, header.series_uid, header.sop_instance_uid)
            stored = ctx.files.write(relpath, data)
            if stored.created:
                with ctx.sessions.begin() as s:
                    if s.get(Instance, header.sop_instance_uid) is None:
                        s.add(Instance(sop_instance_uid=header.sop_instance_uid, sop_class_uid=header.sop_class_uid,
                                       study_uid=header.study_uid, series_uid=header.series_uid,
                                       transfer_syntax_uid=header.transfer_syntax_uid, path=relpath,
                                       size_bytes=stored.size, calling_ae=None, received_at=utcnow(),
                                       attrs=header.attrs))
                        s.flush()
                        record_instance(s, header, utcnow(), "store_only", produced=True)
            outgoing.append(OutgoingObject(kind, header.sop_instance_uid, header.sop_class_uid, relpath))
        ctx.outgoing = outgoing
        ctx.result["objects"] = [{"kind": o.kind, "sop_instance_uid": o.sop_instance_uid,
                                  "series_uid": relp.split("/")[1]} for o, relp in ((o, o.relpath) for o in outgoing)]
