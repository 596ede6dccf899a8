"""STOW-RS (dicomweb-client): send a list of objects to a DICOMweb service in one request.

The response (a PS3.18 Store Instances Response) lists each instance under Referenced SOP
Sequence (stored; a Warning Reason means stored with coercion) or Failed SOP Sequence (with a
Failure Reason); each object gets a `DeliveryResult` from it. An HTTP error (4xx/5xx, connection
refused, timeout) fails every object of the request with the error text, so the caller can retry.
The optional Authorization header is passed to the session and never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from node.deliver.cstore import load_objects
from node.deliver.destinations import DeliveryResult, StowDestination

__all__ = ["send_stow", "make_client"]

log = logging.getLogger(__name__)


def make_client(dest: StowDestination) -> DICOMwebClient:
    session = requests.Session()
    # requests: True (system CAs), a CA bundle path, or False (no check: verify_tls false).
    session.verify = (dest.ca_file or True) if dest.verify_tls else False
    if session.verify is not True:
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's verify; the
        # configured CA bundle (or verify_tls: false) must win. Proxies from the environment stay.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(dest.url))
    headers = dict(dest.headers)
    if dest.auth_header:
        headers["Authorization"] = dest.auth_header
    client = DICOMwebClient(url=dest.url.rstrip("/"), session=session, headers=headers or None,
                            timeout=dest.timeout_s)
    # dicomweb-client retries failed requests itself (5 attempts, exponential back-off: ~30 s
    # against a PACS that is down). Retries belong to the job layer, which re-sends the same
    # objects on its own schedule, so one attempt per call here.
    client.set_http_retry_params(retry=False)
    return client


def _uid_list(seq) -> dict[str, Dataset]:
    return {str(item.ReferencedSOPInstanceUID): item for item in (seq or [])}


def send_stow(objects: Sequence[Dataset | str | Path], dest: StowDestination) -> list[DeliveryResult]:
    """Send ``objects`` to ``dest``; one result per object, in order."""
    datasets = load_objects(objects)
    if not datasets:
        return []
    client = make_client(dest)
    try:
        response = client.store_instances(datasets=datasets)
        http_status = 200
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        log.warning("STOW-RS to %s: HTTP %s", dest.label, code)
        return [DeliveryResult(str(ds.SOPInstanceUID), str(ds.SOPClassUID), False, code,
                               f"HTTP {code}") for ds in datasets]
    except requests.RequestException as exc:
        log.warning("STOW-RS to %s: %s", dest.label, type(exc).__name__)
        return [DeliveryResult(str(ds.SOPInstanceUID), str(ds.SOPClassUID), False, None,
                               f"{type(exc).__name__}: {exc}") for ds in datasets]

    stored = _uid_list(response.get("ReferencedSOPSequence"))
    failed = _uid_list(response.get("FailedSOPSequence"))
    results = []
    for ds in datasets:
        uid, cls = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
        if uid in stored:
            reason = stored[uid].get("WarningReason")
            results.append(DeliveryResult(uid, cls, True, http_status,
                                          f"stored (warning 0x{int(reason):04X})" if reason else "stored",
                                          warning=reason is not None))
        elif uid in failed:
            reason = failed[uid].get("FailureReason")
            results.append(DeliveryResult(uid, cls, False, http_status,
                                          f"failed (reason 0x{int(reason):04X})" if reason is not None
                                          else "failed"))
        else:
            results.append(DeliveryResult(uid, cls, False, http_status, "not in the STOW-RS response"))
    log.info("STOW-RS to %s: %d/%d objects stored", dest.label, sum(r.ok for r in results), len(results))
    return results

