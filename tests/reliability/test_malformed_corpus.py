"""The generated corpus of malformed and hostile C-STOREs against a real `lgenode serve`.

Each case is answered with its expected status (stored, or refused with the right one), every
Success is in the store byte for byte (nothing acknowledged is lost), every refusal has its
reason in the JSON log under the request's SOP Instance UID, and the node answers C-ECHO after
every batch. A subset goes through DCMTK's storescu, the real peer.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info

from tests.conftest import dcmtk_env, which_dcmtk
from tests.reliability import corpus
from tests.reliability.node_process import NodeProcess, echo
from tests.reliability.tally import TALLY
from tests.support.raw_scu import AssociationFailed, RawStoreSCU

BATCH = 60  # C-STOREs per association


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    n = NodeProcess(tmp_path_factory.mktemp("corpus-node")).start()
    yield n
    n.stop()


def _send(node: NodeProcess, cases: list[corpus.Case]) -> list[int | None]:
    """Send the cases in batches, one association each; C-ECHO after each batch."""
    got: list[int | None] = []
    contexts = [(cls, [ts]) for cls, ts in corpus.CONTEXTS]
    i = 0
    while i < len(cases):
        batch = cases[i:i + BATCH]
        try:
            with RawStoreSCU(node.port, contexts) as scu:
                for case in batch:
                    status = scu.store(case.data, sop_class=case.sop_class, sop_instance=case.sop_instance,
                                       transfer_syntax=case.transfer_syntax)
                    got.append(status)
                    i += 1
                    if status is None:  # aborted or no answer: a crash of the association
                        break
        except AssociationFailed:
            got.append(None)
            i += 1
        assert echo(node.port), f"no C-ECHO after case {i}: {node.log_tail()}"
    return got


def test_corpus_each_stored_or_refused_with_its_status(node: NodeProcess) -> None:
    cases = corpus.build()
    assert len(cases) >= 300
    got = _send(node, cases)
    assert node.alive

    stored = node.stored_files()
    records = node.log_records()  # also: every log line is one JSON object
    refusals = {(r.get("sop_instance_uid"), r.get("status")): r for r in records if r["msg"] == "instance refused"}
    conflicts = {r.get("sop_instance_uid") for r in records if "different content" in r["msg"]}
    by_name = {c.name: c for c in cases}
    problems = []
    for case, status in zip(cases, got):
        ok_stored = None
        if status == 0x0000:
            path = stored.get(case.stored_uid or "")
            keep = by_name[case.same_as] if case.same_as else case  # a duplicate keeps the first copy
            ok_stored = path is not None and path.read_bytes().endswith(keep.data)
        TALLY.record(case.expected, status, stored=ok_stored)
        if status != case.expected:
            problems.append(f"{case.name}: expected 0x{case.expected:04X}, got {status if status is None else hex(status)}")
        elif status == 0x0000 and not ok_stored:
            problems.append(f"{case.name}: acknowledged but not stored as received")
        elif status != 0x0000:
            rec = refusals.get((case.sop_instance[:80], f"0x{status:04X}"))
            if rec is None or not rec.get("reason") or rec.get("peer") != "127.0.0.1" or not rec.get("association"):
                problems.append(f"{case.name}: refusal without its reason/peer/association in the log")
        if case.same_as and case.name.endswith("other content") and case.sop_instance not in conflicts:
            problems.append(f"{case.name}: conflicting duplicate not logged")
    for case in cases[len(got):]:
        problems.append(f"{case.name}: not sent (association lost before it)")
    TALLY.scenarios["malformed corpus"] = "ok" if not problems else f"{len(problems)} problems"
    assert not problems, "\n".join(problems[:40])

    # Refused instances leave nothing behind.
    assert not list((node.store / ".incoming").glob("*.part"))
    n_stored = sum(1 for c in cases if c.expected == 0 and not c.same_as)
    assert len(stored) == n_stored
    assert node.query("SELECT count(*) FROM instances") == [(n_stored,)]
    n_conflicts = sum(1 for c in cases if c.same_as and c.name.endswith("other content"))
    assert len(conflicts) == n_conflicts  # (and counted in /metrics: tests/node/receive/test_scp.py)
    categories = {c.category for c in cases}
    assert categories >= {"truncated", "garbage", "wrong SOP class", "missing UID", "invalid UID", "huge length",
                          "bad VR", "transfer-syntax mismatch", "duplicate, other content"}


def _write(path: Path, case: corpus.Case) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = case.sop_class
    meta.MediaStorageSOPInstanceUID = case.sop_instance
    meta.TransferSyntaxUID = case.transfer_syntax
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(f, meta, enforce_standard=True)
        f.write(case.data)
    return path


def test_dcmtk_storescu_as_the_peer(node: NodeProcess, tmp_path: Path) -> None:
    """DCMTK sends what it can parse itself: valid instances, spoiled UIDs, images without pixels,
    a conflicting duplicate. Its own report of each response must match."""
    from pydicom.uid import ExplicitVRLittleEndian as EX

    cases: list[corpus.Case] = []
    for i in range(5):
        cases.append(corpus._case(f"dcmtk valid {i}", "valid", corpus.mr(), EX, corpus.OK))
    for label, value in (("leading zero", b"1.2.03.4"), ("letters", b"1.2.abc.4"), ("path traversal", b"../../x"),
                         ("65 characters", b"1." + b"2" * 63)):
        ds = corpus.mr()
        sop = str(ds.SOPInstanceUID)
        cases.append(corpus._case(f"dcmtk SeriesInstanceUID {label}", "invalid UID", ds, EX, corpus.INVALID_UID,
                                  data=corpus._with_uid_bytes(ds, "SeriesInstanceUID", value, EX), sop_instance=sop))
    ds = corpus.mr()
    del ds.PixelData
    cases.append(corpus._case("dcmtk MR without Pixel Data", "wrong SOP class", ds, EX, corpus.MISMATCH))
    first = corpus.mr(SeriesDescription="original")
    other = corpus.mr(SOPInstanceUID=first.SOPInstanceUID, StudyInstanceUID=first.StudyInstanceUID,
                      SeriesInstanceUID=first.SeriesInstanceUID, SeriesDescription="changed")
    cases.append(corpus._case("dcmtk duplicate original", "duplicate, other content", first, EX, corpus.OK))
    dup = corpus._case("dcmtk duplicate other content", "duplicate, other content", other, EX, corpus.OK)
    dup.same_as = "dcmtk duplicate original"
    cases.append(dup)
    files = [_write(tmp_path / f"{i:03d}.dcm", c) for i, c in enumerate(cases)]
    # -nh: go on after a refused instance (storescu stops at the first by default).
    r = subprocess.run([which_dcmtk("storescu"), "-v", "-nh", "-aet", "STORESCU", "-aec", "LGENODE", "-xs",
                        "127.0.0.1", str(node.port), *map(str, files)], capture_output=True, text=True,
                       env=dcmtk_env(), timeout=120)
    responses = re.findall(r"Received Store Response \(([^)]*)\)", r.stdout + r.stderr)
    assert len(responses) == len(cases), r.stdout + r.stderr
    # DCMTK names the status class; the node's log gives the exact code for the refusals.
    refused = {r.get("sop_instance_uid"): int(r["status"], 16) for r in node.log_records()
               if r["msg"] == "instance refused"}
    by_name = {c.name: c for c in cases}
    stored = node.stored_files()
    problems = []
    for case, text in zip(cases, responses):
        got = 0 if text == "Success" else refused.get(case.sop_instance, -1)
        family = {0x0000: "Success", 0xA900: "Error: DataSetDoesNotMatchSOPClass"}.get(
            case.expected, "Error: CannotUnderstand")
        ok_stored = None
        if got == 0:
            keep = by_name[case.same_as] if case.same_as else case
            path = stored.get(case.stored_uid or "")
            ok_stored = path is not None and path.read_bytes().endswith(keep.data)
        TALLY.record(case.expected, got if got != -1 else 0xFFFF, stored=ok_stored)
        if got != case.expected or not text.startswith(family) or ok_stored is False:
            problems.append(f"{case.name}: {text} (node logged {got:#x})")
    assert echo(node.port)
    TALLY.scenarios["DCMTK storescu subset"] = "ok" if not problems else f"{len(problems)} problems"
    assert not problems, problems
