"""What the OpenAPI description of the API says beyond the routes' types: the error responses each
route documents (with the body the node really sends), the examples, and `node.api.spec.build_spec`
(``lgenode openapi``) writes the whole document. Examples are checked against their schemas by
tests/node/api/test_openapi.py."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

STUDY_UID = "1.2.826.0.1.3680043.8.498.10001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.10002"
SEG_SERIES_UID = "1.2.826.0.1.3680043.8.498.10003"
SEG_UID = "1.2.826.0.1.3680043.8.498.10004"
SR_UID = "1.2.826.0.1.3680043.8.498.10005"
SR_SERIES_UID = "1.2.826.0.1.3680043.8.498.10006"  # each result kind has its own series
TIME = "2026-12-03T10:15:30Z"


class Problem(BaseModel):
    """An error answer: what went wrong (and, for 401/403, why the credentials were refused)."""

    model_config = {"json_schema_extra": {"examples": [{"detail": "no job 42"}]}}
    detail: str
    reason: str | None = Field(default=None, description="401/403 only: why the credentials or role were refused")
    retry_after_seconds: int | None = Field(default=None, description="429 only: when to try again (also Retry-After)")


_ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("Malformed request (see `detail`)", {"detail": "multipart/related without a boundary"}),
    401: ("No or invalid credentials (`WWW-Authenticate: Bearer`)",
          {"detail": "not authenticated", "reason": "no credentials"}),
    403: ("Authenticated, but without the role this route needs",
          {"detail": "not authorised", "reason": "role read required"}),
    404: ("No such object", {"detail": "no job 42"}),
    406: ("Accept asks for a representation the node does not make (it sends instances as stored)",
          {"detail": 'this node sends instances as stored (multipart/related; type="application/dicom"; '
                     'transfer-syntax=* or 1.2.840.10008.1.2.1); it does not transcode'}),
    409: ("Conflict (see `detail`)", {"detail": "conflict"}),
    413: ("Body too large", {"detail": "body exceeds api.stow.max_body_mb"}),
    415: ("Unsupported media type", {"detail": 'expected Content-Type multipart/related; type="application/dicom"'}),
    429: ("Too many invalid credentials from this address (api.auth.lockout): refused until Retry-After",
          {"detail": "too many invalid credentials from this address", "retry_after_seconds": 287}),
    503: ("The OIDC issuer's keys could not be fetched: the token can be neither accepted nor refused",
          {"detail": "authentication unavailable: ..."}),
}


def errors(*codes: int, **examples: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for ``codes`` (401, 403, 429 and 503 always: every documented route is
    authenticated); ``e404={...}`` overrides the example of that code."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({401, 403, 429, 503, *codes}):
        description, example = _ERRORS[code]
        out[code] = {"model": Problem, "description": description,
                     "content": {"application/json": {"example": examples.get(f"e{code}", example)}}}
    return out


VALIDATION_422 = ("Parameters or body invalid: FastAPI's list of errors in `detail` (the field, the message)")


def json_example(example: Any, description: str | None = None) -> dict[str, Any]:
    """A 2xx ``responses=`` entry with a JSON example."""
    entry: dict[str, Any] = {"content": {"application/json": {"example": example}}}
    if description:
        entry["description"] = description
    return entry


REVIEW_EXAMPLE = {"id": 3, "job_id": 7, "decision": "accepted", "comment": "apex contour corrected",
                  "reviewer": "dr.jones", "seg_series_uid": SEG_SERIES_UID, "seg_sop_instance_uid": SEG_UID,
                  "shown": {"seg_version": 2, "sr_sop_instance_uid": SR_UID,
                            "figures": {"infarct_percent": 18.4, "myocardium_ml": 112.5, "mvo_ml": 0.9}},
                  "created_at": TIME}

JOB_EXAMPLE = {"id": 7, "kind": "segment", "series_uid": SERIES_UID, "study_uid": STUDY_UID, "revision": 1,
               "state": "done", "stage": None, "attempts": 1, "max_attempts": 3, "reason": None,
               "created_at": TIME, "started_at": TIME, "finished_at": TIME,
               "result": {"n_files": 12, "objects": [
                   {"kind": "seg", "sop_instance_uid": SEG_UID, "series_uid": SEG_SERIES_UID},
                   {"kind": "sr", "sop_instance_uid": SR_UID, "series_uid": SR_SERIES_UID}]},
               "review": REVIEW_EXAMPLE}

SERIES_EXAMPLE = {"series_uid": SERIES_UID, "study_uid": STUDY_UID, "modality": "MR",
                  "series_description": "LGE PSIR SAX", "series_number": 12, "state": "selected",
                  "reason": "LGE series, 12 slices", "revision": 1, "n_instances": 12,
                  "last_received_at": TIME, "completed_at": TIME}

REQUEST_EXAMPLE = {"id": 5, "transaction_id": "ris-4711", "study_uid": STUDY_UID, "series_uids": None,
                   "source": "pacs", "destinations": None, "priority": 0, "state": "done",
                   "stages": {"queued": "2026-12-03T10:15:30+00:00", "querying": "2026-12-03T10:15:31+00:00",
                              "retrieving": "2026-12-03T10:15:31+00:00", "stored": "2026-12-03T10:15:40+00:00",
                              "processing": "2026-12-03T10:15:40+00:00", "done": "2026-12-03T10:16:20+00:00"},
                   "found_series": [SERIES_UID], "instances_expected": 12, "instances_retrieved": 12,
                   "instances_already_stored": 0, "attempts": 1, "job_ids": [7],
                   "results": [{"kind": "seg", "sop_instance_uid": SEG_UID, "series_uid": SEG_SERIES_UID, "job_id": 7},
                               {"kind": "sr", "sop_instance_uid": SR_UID, "series_uid": SR_SERIES_UID, "job_id": 7}],
                   "reason": None, "principal": "ris", "created_at": TIME, "updated_at": TIME}
