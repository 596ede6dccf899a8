"""End-to-end test of the Cardiac LGE review plugin on the node's own output, in a real browser.

1. Starts a PACS (Orthanc + DICOMweb, auto-routing MR and SEG series to the node) and the real
   LGE node in this process (DICOM SCP, workers, FastAPI review API; results by STOW-RS to the
   PACS). Stores a real-geometry MyoPS LGE series in the PACS (``pipeline.datasets.dicomize``);
   the PACS routes it to the node, which segments it and writes SEG + SR + PDF into the PACS.
2. Serves the prebuilt OHIF 3.13.2 viewer + the plugin with the PACS's DICOMweb and the node
   API proxied on one origin (``scripts/serve.mjs``).
3. Headless Chromium (``browser.mjs``): opens the study in the mode, reads the panel, brushes
   infarct pixels, saves (STOW-RS), accepts; waits for the node's re-measured SR, reloads,
   reads the panel again, rejects.
4. Checks: the panel showed the numbers of the node's SR (read back from the PACS with
   highdicom); the saved SEG in the PACS is a BINARY SEG holding exactly the AI SEG + the edit,
   with the provenance (algorithm kept, SEMIAUTOMATIC, reviewer, reference to the AI SEG),
   dciodvfy-clean; the PACS routed it to the node, whose ``remeasure`` job wrote an SR that
   references it and measures it (volumes = the edited SEG's own) into the PACS; after reload
   the panel shows that version and those numbers; both decisions are in the node's review
   history (``GET /api/jobs/{id}/reviews``).
5. The model's doubt (issue 11 item 7): the node runs a copy of the weights whose ``model.json``
   sets ``quality_threshold`` to 0.0 for the odd-sized study (never flagged: the panel shows the
   SR's "Model confidence" line) and to 1.0 for the main study (every series flagged: the panel
   shows the orange "Needs careful review" banner with the SR's score); the re-measured SR of
   the reviewed v2 carries no quality items, so the panel shows neither under v2.

Exit status 0 when every check passes, 77 when something it needs is absent (MyoPS data,
model weights, Orthanc, Chromium), 1 otherwise. Results and screenshots: ``<artefacts>/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parents[1]
REPO = PLUGIN.parent
for p in (str(REPO), str(HERE), str(PLUGIN / "test" / "fixtures")):
    if p not in sys.path:
        sys.path.insert(0, p)

from dicomweb_client.api import DICOMwebClient  # noqa: E402

from harness import (NODE_API_KEY_NAME, ViewerServer, free_port, resolve_weights,  # noqa: E402
                     set_quality_threshold, start_node, start_pacs, wait_for, weights_copy)
from inspect_seg import dciodvfy_errors, inspect  # noqa: E402
from labelcheck import compare, read_viewer_labels  # noqa: E402

if TYPE_CHECKING:
    from node.encode.readback import SrValues

log = logging.getLogger("e2e")

SKIPPED = 77
CASE = "Case3001"
MATRIX = None  # native in-plane matrix: 482 x 478 for Case3001, frames NOT byte-aligned (issue 12)
# A second study, opened, compared and checked for the no-edit Save only: an odd x odd matrix.
EXTRA = [("odd-191x187", "Case3002", (191, 187))]
REVIEWER_TYPED = "Jane Doe"  # what the reader types in "Reviewer name"
REVIEWER = "Doe^Jane"  # ... as a DICOM PN in the SEG and the review record
COMMENT = "Extended the infarct into the wall (e2e)"
REJECT_COMMENT = "On second look the extension is not convincing (e2e)"
NESTING = [(4, 3), (3, 2)]  # inner, outer (node/encode/seg.py: the segments nest)
# quality_threshold of the node's model: the extra studies are never flagged, the main one always
THRESHOLD_EXTRA, THRESHOLD_MAIN = 0.0, 1.0
REVIEW_BANNER_RGB = "rgb(192, 80, 0)"  # #c05000, the PDF report's banner colour
SEG_CLASS, SR_CLASS, PDF_CLASS = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34",
                                  "1.2.840.10008.5.1.4.1.1.104.1")


class Checks:
    def __init__(self) -> None:
        self.items: list[dict] = []

    def check(self, name: str, ok: bool, detail: object = "") -> bool:
        self.items.append({"check": name, "ok": bool(ok), "detail": detail})
        log.info("%s %s %s", "PASS" if ok else "FAIL", name, detail if not ok else "")
        return bool(ok)

    @property
    def ok(self) -> bool:
        return all(i["ok"] for i in self.items)


def missing_prerequisites(weights_arg: str | None) -> tuple[list[str], Path | None, str]:
    """What the test cannot run without, and the weights folder to use."""
    from tests.support.orthanc import orthanc_available

    missing = []
    try:
        from pipeline.datasets.dicomize import resolve_case

        resolve_case(CASE)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        missing.append(f"MyoPS {CASE} ({type(exc).__name__}: {exc}; set LGENODE_DATA_DIR)")
    if not orthanc_available():
        missing.append("Orthanc with the DICOMweb plugin (apt-get install orthanc orthanc-dicomweb)")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        missing.append(f"Chromium ({chromium})")
    weights, why = resolve_weights(weights_arg)
    if weights is None:
        missing.append(why)
    return missing, weights, why


def panel_number(text: str | None) -> float | None:
    """The first number in a panel cell ('12.3 mL' -> 12.3; '—' -> None)."""
    import re

    m = re.search(r"-?\d+(?:\.\d+)?", text or "")
    return float(m.group()) if m else None


def check_panel(checks: Checks, panel: dict, values: SrValues, algorithm: tuple[str, str], tag: str) -> None:
    """The panel shows the SR's numbers (as displayed: 1 decimal, MVO 2)."""
    st = values.structures

    def near(shown: float | None, expected: float | None, digits: int) -> bool:
        return shown is not None and expected is not None and abs(shown - expected) <= 0.5 * 10 ** -digits + 1e-9

    # rowsText: one table row per line, cells "label<TAB>value unit<TAB>extra"
    lines = (panel.get("rowsText") or "").splitlines()
    rows = {cells[0].strip(): cells for cells in (line.split("\t") for line in lines)}
    mass = panel_number(rows.get("Myocardium", ["", "", ""])[-1])
    inf_pct = panel_number(rows.get("Infarct", ["", "", ""])[-1])
    pairs = [("LV cavity", panel_number(panel["lvCavity"]), st["lv_cavity"].get("volume_ml"), 1),
             ("myocardium", panel_number(panel["myocardium"]), st["myocardium"].get("volume_ml"), 1),
             ("myocardial mass", mass, st["myocardium"].get("mass_g"), 1),
             ("infarct", panel_number(panel["infarct"]), st["infarct"].get("volume_ml"), 1),
             ("infarct %", inf_pct, st["infarct"].get("percent"), 1),
             ("MVO", panel_number(panel["mvo"]), st["mvo"].get("volume_ml"), 2)]
    for name, shown, expected, digits in pairs:
        checks.check(f"{tag}: panel {name} = SR", near(shown, expected, digits), {"shown": shown, "sr": expected})
    n = values.n_transmural_segments
    checks.check(f"{tag}: panel transmural segment count = SR",
                 (panel["transmural"] or "").startswith(str(n) if n is not None else "—"),
                 {"shown": panel["transmural"], "sr": n})
    checks.check(f"{tag}: panel algorithm name/version = SR",
                 f"{algorithm[0]} {algorithm[1]}" in (panel["algorithm"] or ""),
                 {"shown": panel["algorithm"], "sr": algorithm})
    bull = {b["segment"]: b["transmurality"] for b in panel["bullseye"]}
    bad = {}
    for number in range(1, 18):
        exp = values.aha.get(number, {}).get("mean_transmurality_percent")
        shown = bull.get(number)
        ok = (shown in ("", None)) if exp is None else (shown not in ("", None) and abs(float(shown) - exp) < 1e-6)
        if not ok:
            bad[number] = {"shown": shown, "sr": exp}
    checks.check(f"{tag}: bullseye transmurality = SR per AHA segment", not bad and len(bull) == 17, bad or len(bull))


def check_quality_shown(checks: Checks, panel: dict, values: SrValues, tag: str) -> None:
    """What the panel says about the model's doubt is what the SR says: the banner when the SR
    flags the series (score to 2 decimals, spread when the SR has one), the "Model confidence"
    line when it does not, nothing when the SR has no quality items."""
    banner, line = panel.get("qualityBanner"), panel.get("qualityLine")
    score = values.quality_score
    if values.needs_review is True:
        spread = values.infarct_percent_spread
        text = banner.get("aria") if banner else ""
        checks.check(f"{tag}: 'Needs careful review' banner with the SR's score"
                     + (" and spread" if spread is not None else ""),
                     bool(banner) and text.startswith("Needs careful review")
                     and f"quality {score:.2f}" in text and banner.get("text", "").endswith(text)
                     and ((f"±{spread:.1f} points" in text) if spread is not None else "spread" not in text)
                     and line is None, {"banner": banner, "line": line, "sr_score": score, "sr_spread": spread})
        checks.check(f"{tag}: the banner is orange ({REVIEW_BANNER_RGB}, as the PDF's) and above the numbers",
                     bool(banner) and banner.get("background") == REVIEW_BANNER_RGB and banner.get("aboveNumbers") is True,
                     banner)
    elif values.needs_review is False:
        checks.check(f"{tag}: no banner, 'Model confidence' line = SR score",
                     banner is None and line == f"Model confidence: {score:.2f}", {"banner": banner, "line": line, "sr_score": score})
    else:
        checks.check(f"{tag}: SR has no quality items, the panel says nothing about them",
                     score is None and banner is None and line is None,
                     {"banner": banner, "line": line, "sr_score": score})


def sr_algorithm(sr: pydicom.Dataset) -> tuple[str, str]:
    """Algorithm name/version of our SR (the first Algorithm Name/Version items of its tree)."""
    found: dict[str, str] = {}

    def walk(items):  # type: ignore[no-untyped-def]
        for it in items:
            code = it.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in it else None
            if code in ("111001", "111003") and code not in found and "TextValue" in it:
                found[code] = str(it.TextValue)
            walk(it.get("ContentSequence", []))

    walk(sr.get("ContentSequence", []))
    return found.get("111001", ""), found.get("111003", "")


def instances_in(client: DICOMwebClient, study_uid: str) -> dict[str, dict]:
    """SOP Instance UID -> {class, series} of every instance of the study in the PACS."""
    out = {}
    for inst in client.search_for_instances(study_instance_uid=study_uid):
        out[inst["00080018"]["Value"][0]] = {"class": inst["00080016"]["Value"][0],
                                             "series": inst["0020000E"]["Value"][0]}
    return out


def run(artifacts: Path, keep: bool, browser_timeout: int, weights_arg: str | None) -> int:
    missing, weights, weights_why = missing_prerequisites(weights_arg)
    if missing:
        log.warning("SKIPPED: missing %s", "; ".join(missing))
        return SKIPPED
    from node.encode.readback import seg_volumes_ml, sr_values
    from node.encode.stage import REVIEWED_SR_DESCRIPTION as SR_DESCRIPTION  # (moved from node.infer.remeasure)
    from pipeline.datasets.dicomize import dicomize_case

    artifacts.mkdir(parents=True, exist_ok=True)
    for old in artifacts.glob("*.png"):
        old.unlink()
    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="lge-ohif-e2e-"))
    pacs = node = viewer = None
    result: dict = {"case": CASE, "weights": weights_why, "timings_s": {}, "checks": checks.items}
    timings = result["timings_s"]
    t0 = time.monotonic()

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.monotonic() - since, 1)
        return time.monotonic()

    try:
        # ---- PACS + node; the modality sends the LGE series to the PACS, which routes it on
        t = time.monotonic()
        node_port = free_port()
        pacs = start_pacs(work / "pacs", node_port)
        # the node's weights: a copy whose quality threshold the test sets per study
        node_weights = weights_copy(weights, work / "weights")
        set_quality_threshold(node_weights, THRESHOLD_EXTRA)
        node = start_node(work / "node", node_port, pacs, node_weights, work / "node.log")
        client = DICOMwebClient(pacs.dicomweb_url)
        extras = []
        for name, extra_case, matrix in EXTRA:
            ex = dicomize_case(extra_case, work / name, matrix=matrix, seed=11, with_cine=False)
            ex_lge = [pydicom.dcmread(f) for f in ex.lge_files]
            client.store_instances(ex_lge)
            extras.append({"name": name, "case": extra_case, "study": str(ex_lge[0].StudyInstanceUID),
                           "series": str(ex_lge[0].SeriesInstanceUID),
                           "sources": [str(d.SOPInstanceUID) for d in ex_lge]})
        for ex in extras:  # segmented with THRESHOLD_EXTRA before the threshold changes
            def ex_job(ex: dict = ex) -> dict | None:
                jobs = node.api(f"/api/jobs?study_uid={ex['study']}&series_uid={ex['series']}")
                if jobs and jobs[0]["state"] == "failed":
                    raise RuntimeError(f"the node's job failed: {jobs[0]['reason']}")
                return jobs[0] if jobs and jobs[0]["state"] == "done" else None
            ex["job"] = wait_for(ex_job, 240, f"the node's job of {ex['name']}")
        set_quality_threshold(node_weights, THRESHOLD_MAIN)
        case = dicomize_case(CASE, work / "study", matrix=MATRIX, seed=7, with_cine=False)
        lge = [pydicom.dcmread(f) for f in case.lge_files]
        study_uid, lge_series_uid = str(lge[0].StudyInstanceUID), str(lge[0].SeriesInstanceUID)
        sources = [str(ds.SOPInstanceUID) for ds in lge]
        result["matrix"] = [int(lge[0].Rows), int(lge[0].Columns)]
        client.store_instances(lge)
        t = lap("setup", t)

        def segment_job() -> dict | None:
            jobs = node.api(f"/api/jobs?study_uid={study_uid}&series_uid={lge_series_uid}")
            if jobs and jobs[0]["state"] == "failed":
                raise RuntimeError(f"the node's job failed: {jobs[0]['reason']}")
            return jobs[0] if jobs and jobs[0]["state"] == "done" else None

        job = wait_for(segment_job, 300, "the node's segment job of the LGE series")
        objects = {o["kind"]: o for o in job["result"]["objects"]}
        wanted = {objects[k]["sop_instance_uid"] for k in ("seg", "sr", "pdf")}
        in_pacs = wait_for(lambda: (found := instances_in(client, study_uid)) and wanted <= set(found) and found, 60,
                           "the node's SEG, SR and PDF in the PACS")
        t = lap("node_segment_and_deliver", t)
        result["segment_job"] = {"id": job["id"], "kind": job["kind"], "timings_s": job["result"].get("timings_s")}
        checks.check("node: one segment job for the LGE series, done", job["kind"] == "segment", job["kind"])
        classes = {k: in_pacs[objects[k]["sop_instance_uid"]]["class"] for k in ("seg", "sr", "pdf")}
        checks.check("node's SEG, SR and PDF are in the PACS", classes == {"seg": SEG_CLASS, "sr": SR_CLASS, "pdf": PDF_CLASS},
                     classes)

        for ex in extras:
            ex_objects = {o["kind"]: o for o in ex["job"]["result"]["objects"]}
            ex["seg"], ex["sr"] = ex_objects["seg"], ex_objects["sr"]
            wait_for(lambda ex=ex: {ex["seg"]["sop_instance_uid"], ex["sr"]["sop_instance_uid"]}
                     <= set(instances_in(client, ex["study"])), 60, f"the SEG and SR of {ex['name']} in the PACS")
            ex_sr = client.retrieve_instance(ex["study"], ex["sr"]["series_uid"], ex["sr"]["sop_instance_uid"])
            ex["sr_values"] = sr_values(ex_sr)
            q = ex["job"]["result"].get("quality") or {}
            checks.check(f"{ex['name']}: node's job not flagged (threshold {THRESHOLD_EXTRA}), its SR says No with the score",
                         q.get("needs_review") is False and q.get("threshold") == THRESHOLD_EXTRA
                         and ex["sr_values"].needs_review is False and ex["sr_values"].quality_score is not None
                         and abs(ex["sr_values"].quality_score - q["score"]) < 1e-4,
                         {"job": q, "sr": (ex["sr_values"].needs_review, ex["sr_values"].quality_score)})

        ai_seg = client.retrieve_instance(study_uid, objects["seg"]["series_uid"], objects["seg"]["sop_instance_uid"])
        ai_sr = client.retrieve_instance(study_uid, objects["sr"]["series_uid"], objects["sr"]["sop_instance_uid"])
        ai_values = sr_values(ai_sr)
        algorithm = sr_algorithm(ai_sr)
        q = job["result"].get("quality") or {}
        result["node_output"] = {"quality_job": q}
        checks.check(f"node flagged the series (threshold {THRESHOLD_MAIN}); its SR says Yes with the job's score",
                     q.get("needs_review") is True and q.get("threshold") == THRESHOLD_MAIN
                     and ai_values.needs_review is True and ai_values.quality_score is not None
                     and abs(ai_values.quality_score - q["score"]) < 1e-4,
                     {"job": q, "sr": (ai_values.needs_review, ai_values.quality_score, ai_values.infarct_percent_spread)})
        ai_info, ai_masks = inspect(ai_seg, sources)
        result["node_output"] |= {"seg_series_number": int(ai_seg.SeriesNumber),
                                 "sr_series_number": int(ai_sr.SeriesNumber), "algorithm": algorithm,
                                 "sr_values": ai_values.structures, "n_transmural_segments": ai_values.n_transmural_segments}
        checks.check("node's SR references the node's SEG",
                     {ref[0] for ref in ai_values.referenced_segments.values()} == {str(ai_seg.SOPInstanceUID)})
        checks.check("node's SEG is AUTOMATIC on the LGE series",
                     all(s["algorithm_type"] == "AUTOMATIC" for s in ai_info["segments"])
                     and ai_info["referenced_series"] == [lge_series_uid])

        # ---- viewer + browser
        viewer = ViewerServer(PLUGIN, pacs.dicomweb_url, node.api_url, work).start()
        params = {"url": viewer.url, "study": study_uid, "artifacts": str(artifacts), "workDir": str(work),
                  "extraStudies": [{"name": ex["name"], "study": ex["study"]} for ex in extras], "reviewer": REVIEWER,
                  "reviewerTyped": REVIEWER_TYPED, "studyListHint": CASE,
                  "comment": COMMENT, "rejectComment": REJECT_COMMENT, "reviewedSrDescription": SR_DESCRIPTION,
                  "timeoutMs": browser_timeout * 1000, "remeasureTimeoutMs": 90_000}
        (work / "params.json").write_text(json.dumps(params))
        proc = subprocess.run([shutil.which("node") or "node", str(HERE / "browser.mjs"), str(work / "params.json")],
                              cwd=PLUGIN, capture_output=True, text=True, timeout=browser_timeout + 120)
        t = lap("browser", t)
        sys.stderr.write(proc.stderr)
        browser = json.loads((artifacts / "browser-result.json").read_text())
        result["browser"] = {k: browser.get(k) for k in ("ok", "error", "steps", "panel", "panelAfter", "target",
                                                           "lastSaved", "saveMessage", "statusAfterAccept",
                                                           "statusAfterReject", "nodeLine", "nodeLineAfterReject",
                                                           "saveDisabledBeforeEdit", "saveDisabledAfterEdit",
                                                           "noEditSave", "afterSave", "panelAfterSave", "extra",
                                                           "labelDumps", "modeButton", "console", "elapsed_s")}
        checks.check("study list: the mode button label is not cut off",
                     "LGE review" in ((browser.get("modeButton") or {}).get("text") or "")
                     and (browser.get("modeButton") or {}).get("clipped") is False, browser.get("modeButton"))

        # ---- the viewer's labelmap = pydicom/highdicom's decode of the SEG, every frame
        def label_check(tag: str, seg_ds: pydicom.Dataset, srcs: list[str], what: str) -> None:
            dump = (browser.get("labelDumps") or {}).get(tag)
            if not checks.check(f"{what}: the viewer's labelmap was read", bool(dump), tag):
                return
            viewer_labels = read_viewer_labels(Path(dump["dir"]), srcs, int(seg_ds.Rows), int(seg_ds.Columns))
            cmp = compare(seg_ds, viewer_labels, srcs)
            result.setdefault("label_checks", {})[tag] = cmp
            checks.check(f"{what}: viewer labelmap = pydicom decode on every frame "
                         f"({cmp['rows']}x{cmp['columns']}, {cmp['frames_compared']} frames)",
                         dump["segSopInstanceUID"] == str(seg_ds.SOPInstanceUID) and cmp["differing_pixels"] == 0
                         and cmp["frames_compared"] == len(srcs) * len(seg_ds.SegmentSequence), cmp)

        label_check("opened", ai_seg, sources, f"{CASE} AI SEG")
        for ex, shown in zip(extras, browser.get("extra") or []):
            ex_seg = client.retrieve_instance(ex["study"], ex["seg"]["series_uid"], ex["seg"]["sop_instance_uid"])
            label_check(ex["name"], ex_seg, ex["sources"], f"{ex['name']} ({ex['case']}) AI SEG")
            check_quality_shown(checks, shown.get("panel") or {}, ex["sr_values"], ex["name"])
            checks.check(f"{ex['name']}: Save disabled without an edit", shown.get("saveDisabledBeforeEdit") is True)
            nes = shown.get("noEditSave") or {}
            checks.check(f"{ex['name']}: a no-edit Save is refused", nes.get("returned") is None
                         and "nothing to save" in (nes.get("message") or ""), nes)
            segs_now = [i for i in instances_in(client, ex["study"]).values() if i["class"] == SEG_CLASS]
            checks.check(f"{ex['name']}: no SEG was written by the refused save", len(segs_now) == 1, len(segs_now))
        checks.check("Save disabled before any edit", browser.get("saveDisabledBeforeEdit") is True)
        nes = browser.get("noEditSave") or {}
        checks.check("a no-edit Save is refused (nothing written)", nes.get("returned") is None
                     and "nothing to save" in (nes.get("message") or ""), nes)
        panel = browser.get("panel")
        if panel:  # checked even when a later step failed
            check_panel(checks, panel, ai_values, algorithm, "opened")
            check_quality_shown(checks, panel, ai_values, "opened")
            checks.check("opened: panel shows the node's SEG and SR",
                         panel["segSopInstanceUID"] == str(ai_seg.SOPInstanceUID)
                         and panel["reportSopInstanceUID"] == str(ai_sr.SOPInstanceUID) and panel["reportMatchesSeg"],
                         {k: panel[k] for k in ("segSopInstanceUID", "reportSopInstanceUID", "reportMatchesSeg")})
            checks.check("opened: panel found the node's job", panel["jobId"] == job["id"], panel["node"])
        if not checks.check("browser flow completed", browser.get("ok"), browser.get("error")):
            return 1
        checks.check("Save enabled after the brush edit", browser.get("saveDisabledAfterEdit") is False)
        after_save = browser.get("afterSave") or {}
        checks.check("after Save: v2 on screen, its numbers 'being computed', v1's numbers not shown",
                     " v2" in (after_save.get("segInfo") or "") and "v2" in (after_save.get("pending") or "")
                     and after_save.get("numbersShown") is False and after_save.get("saveDisabled") is True, after_save)

        # ---- the saved SEG in the PACS
        saved = browser["lastSaved"]
        ds = client.retrieve_instance(study_uid, saved["seriesInstanceUID"], saved["sopInstanceUID"])
        stored = work / "seg_v2_from_pacs.dcm"
        ds.save_as(stored, enforce_file_format=True)
        info, masks = inspect(ds, sources)
        result["seg_v2"] = info
        checks.check("SOP class BINARY SEG (1.2.840.10008.5.1.4.1.1.66.4)", info["sop_class_uid"] == SEG_CLASS,
                     info["sop_class_uid"])
        checks.check("SegmentationType BINARY", info["segmentation_type"] == "BINARY")
        checks.check("series description = the node's + ' v2'",
                     info["series_description"] == f"{ai_seg.SeriesDescription} v2", info["series_description"])
        checks.check("series number is new",
                     info["series_number"] not in (int(ai_seg.SeriesNumber), int(ai_sr.SeriesNumber)),
                     info["series_number"])
        checks.check("all segments SEMIAUTOMATIC",
                     all(s["algorithm_type"] == "SEMIAUTOMATIC" for s in info["segments"]),
                     [s["algorithm_type"] for s in info["segments"]])
        checks.check("algorithm identification kept (= the node's)",
                     all((s["identification_name"], s["identification_version"])
                         == (a["identification_name"], a["identification_version"])
                         for s, a in zip(info["segments"], ai_info["segments"]))
                     and ai_info["segments"][0]["identification_name"] == algorithm[0])
        checks.check("segments, labels and codes kept",
                     [(s["number"], s["label"], s["property_type"]) for s in info["segments"]]
                     == [(s["number"], s["label"], s["property_type"]) for s in ai_info["segments"]])
        checks.check("reviewer is the content creator", info["content_creator"] == REVIEWER, info["content_creator"])
        src = {s["sop_instance"]: s["purpose"] for s in info["source_images"]}
        checks.check("references the node's SEG it derives from (Source Image Sequence, DCM 121322)",
                     src.get(str(ai_seg.SOPInstanceUID)) == "121322", src)
        checks.check("referenced series = LGE series", info["referenced_series"] == [lge_series_uid],
                     info["referenced_series"])
        errors = dciodvfy_errors(stored)
        checks.check("dciodvfy: no Error lines", errors in ([], None), errors)

        # exactly the edit: the node's masks + the brush stroke (closed under nesting)
        expected = ai_masks.copy()
        k = sources.index(browser["edit"]["sop"])
        for seg_no, changes in browser["edit"]["changed"].items():
            plane = expected[k, ..., int(seg_no) - 1].reshape(-1)
            for idx, val in changes:
                plane[idx] = val
            expected[k, ..., int(seg_no) - 1] = plane.reshape(expected.shape[1:3])
        for inner, outer in NESTING:
            expected[..., outer - 1] |= expected[..., inner - 1]
        n_added = len(browser["edit"]["segment3Added"])
        diff = int((masks != expected).sum())
        checks.check("stored SEG = node's SEG + brush edit", diff == 0, {"differing_voxels": diff})
        gained = int(masks[..., 2].sum()) - int(ai_masks[..., 2].sum())
        checks.check("infarct gained the painted pixels", gained == n_added and n_added > 0,
                     {"gained": gained, "painted": n_added})

        # ---- the PACS routed the edit to the node; its remeasure job wrote an SR into the PACS
        def remeasure_jobs() -> list[dict] | None:
            jobs = node.api(f"/api/jobs?series_uid={saved['seriesInstanceUID']}")
            return jobs if jobs and all(j["state"] in ("done", "failed") for j in jobs) else None

        remeasure = wait_for(remeasure_jobs, 30, "the node's remeasure job of the saved SEG")
        result["remeasure_job"] = remeasure[0] if remeasure else None
        if checks.check("node: a done remeasure job for the saved SEG",
                        len(remeasure) == 1 and remeasure[0]["kind"] == "remeasure" and remeasure[0]["state"] == "done",
                        [(j["kind"], j["state"], j["reason"]) for j in remeasure]):
            rjob = remeasure[0]["result"]
            checks.check("remeasure job read the saved SEG and its reviewer",
                         rjob["reviewed_seg"]["sop_instance_uid"] == saved["sopInstanceUID"]
                         and rjob["reviewed_seg"]["content_creator"] == REVIEWER
                         and rjob["source_series_uid"] == lge_series_uid, rjob.get("reviewed_seg"))
            new_sr_ref = rjob["objects"][0]
            pacs_now = instances_in(client, study_uid)
            checks.check("re-measured SR is in the PACS",
                         pacs_now.get(new_sr_ref["sop_instance_uid"], {}).get("class") == SR_CLASS, new_sr_ref)
            new_sr = client.retrieve_instance(study_uid, new_sr_ref["series_uid"], new_sr_ref["sop_instance_uid"])
            new_values = sr_values(new_sr)
            checks.check("re-measured SR references the saved SEG (every structure)",
                         {ref[0] for ref in new_values.referenced_segments.values()} == {saved["sopInstanceUID"]}
                         and len(new_values.referenced_segments) == 4, new_values.referenced_segments)
            checks.check("re-measured SR: series number = saved SEG's + 1, description",
                         int(new_sr.SeriesNumber) == info["series_number"] + 1
                         and str(new_sr.SeriesDescription) == SR_DESCRIPTION,
                         (int(new_sr.SeriesNumber), str(new_sr.SeriesDescription)))
            checks.check("browser saw the same re-measured SR series",
                         browser.get("reviewedSrSeriesUID") == new_sr_ref["series_uid"])
            vols = seg_volumes_ml(ds)
            vol_ok = all(abs(new_values.structures[key]["volume_ml"] - ml) < 1e-6 for key, ml in vols.items())
            checks.check("re-measured volumes = the saved SEG's own volumes", vol_ok,
                         {key: (new_values.structures[key]["volume_ml"], ml) for key, ml in vols.items()})
            voxel_ml = vols["infarct"] / max(int(masks[..., 2].sum()), 1)
            delta = new_values.structures["infarct"]["volume_ml"] - ai_values.structures["infarct"]["volume_ml"]
            checks.check("re-measured infarct = node's infarct + the painted voxels",
                         abs(delta - n_added * voxel_ml) < 1e-6, {"delta_ml": delta, "painted_ml": n_added * voxel_ml})
            result["remeasured"] = {"sr_values": new_values.structures, "sr_series_number": int(new_sr.SeriesNumber)}
            # without reload, the panel replaced "being computed" by these numbers
            check_panel(checks, browser["panelAfterSave"], new_values, algorithm, "after save (no reload)")
            checks.check("re-measured SR carries no quality items (a reviewed SEG has no model confidence)",
                         (new_values.quality_score, new_values.needs_review, new_values.infarct_percent_spread)
                         == (None, None, None))
            check_quality_shown(checks, browser["panelAfterSave"], new_values, "after save (no reload)")
            checks.check("after save (no reload): panel shows the re-measured SR of the saved SEG",
                         browser["panelAfterSave"]["reportSopInstanceUID"] == new_sr_ref["sop_instance_uid"]
                         and browser["panelAfterSave"]["reportMatchesSeg"], browser["panelAfterSave"].get("reportSopInstanceUID"))
            # after reload the panel opens the saved version with these numbers
            after = browser["panelAfter"]
            check_panel(checks, after, new_values, algorithm, "reloaded")
            check_quality_shown(checks, after, new_values, "reloaded")
            checks.check("reloaded: panel shows the saved SEG and the re-measured SR",
                         after["segSopInstanceUID"] == saved["sopInstanceUID"]
                         and after["reportSopInstanceUID"] == new_sr_ref["sop_instance_uid"]
                         and after["reportMatchesSeg"],
                         {k: after[k] for k in ("segSopInstanceUID", "reportSopInstanceUID", "reportMatchesSeg")})
            checks.check("reloaded: panel names the version and the reviewer",
                         " v2" in (after["segInfo"] or "") and "edited by Jane Doe" in (after["segInfo"] or ""),
                         after["segInfo"])

            label_check("reloaded", ds, sources, "saved v2 SEG reopened from the PACS")

        # the node's own AI SEG, routed back by the PACS with every SEG series, makes no job
        ai_seg_series = objects["seg"]["series_uid"]
        ai_row = {s["series_uid"]: s for s in node.api("/api/series")}.get(ai_seg_series)
        checks.check("node made no job for its own AI SEG routed back",
                     node.api(f"/api/jobs?series_uid={ai_seg_series}") == []
                     and (ai_row or {}).get("state") in ("result", "ignored"), ai_row)

        # ---- both decisions reached the node (its review history, newest first)
        reviews = node.api(f"/api/jobs/{job['id']}/reviews")
        result["reviews"] = reviews
        checks.check("node has two reviews of the job, newest first: rejected, accepted",
                     [r["decision"] for r in reviews] == ["rejected", "accepted"], [r["decision"] for r in reviews])
        if len(reviews) == 2:
            rej, acc = reviews
            # The node records the authenticated caller as the reviewer (the viewer's API key here),
            # never a name from the request; the typed name is the SEG's content creator above.
            checks.check("accept: reviewer (verified identity), comment and the saved SEG recorded",
                         (acc["reviewer"], acc["comment"], acc["seg_series_uid"], acc["seg_sop_instance_uid"])
                         == (NODE_API_KEY_NAME, COMMENT, saved["seriesInstanceUID"], saved["sopInstanceUID"]), acc)
            checks.check("reject (after reload): reviewer (verified identity), comment and the displayed SEG recorded",
                         (rej["reviewer"], rej["comment"], rej["seg_sop_instance_uid"])
                         == (NODE_API_KEY_NAME, REJECT_COMMENT, saved["sopInstanceUID"]), rej)
        latest = node.api(f"/api/jobs?study_uid={study_uid}&series_uid={lge_series_uid}")[0]["review"]
        checks.check("GET /api/jobs shows the latest decision", (latest or {}).get("decision") == "rejected", latest)
        checks.check("panel showed ACCEPTED, then REJECTED",
                     (browser.get("statusAfterAccept"), browser.get("statusAfterReject")) == ("ACCEPTED", "REJECTED"),
                     (browser.get("statusAfterAccept"), browser.get("statusAfterReject")))
        return 0 if checks.ok else 1
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        log.exception("e2e failed")
        checks.check("e2e ran without exceptions", False, repr(exc))
        return 1
    finally:
        result["ok"] = checks.ok
        timings["total"] = round(time.monotonic() - t0, 1)
        for proc in (viewer, node, pacs):
            if proc is not None:
                proc.stop()
        for f in ("serve.log", "node.log", "pacs/orthanc/orthanc.log"):
            if (work / f).exists():
                shutil.copy(work / f, artifacts / Path(f).name)
        (artifacts / "e2e-result.json").write_text(json.dumps(result, indent=1, default=str))
        if keep:
            log.info("work folder kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        log.info("%s in %.1f s (%d checks; %s) - %s", "PASSED" if checks.ok else "FAILED", timings["total"],
                 len(checks.items), timings, artifacts / "e2e-result.json")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path,
                   default=Path(os.environ.get("LGE_E2E_ARTIFACTS", REPO / "test-artifacts" / "ohif")))
    p.add_argument("--weights", help="model weights folder for the node (default: $LGENODE_TEST_WEIGHTS, "
                                     "then the node's default weights)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    p.add_argument("--browser-timeout", type=int, default=420, help="seconds for the browser part")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("highdicom", "dicomweb_client", "pynetdicom", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run(args.artifacts, args.keep, args.browser_timeout, args.weights)


if __name__ == "__main__":
    raise SystemExit(main())
