"""End-to-end test of the Cardiac LGE review plugin in a real browser.

1. Builds a study with the node's own encoders (``test/fixtures/make_fixtures.py``): a real-
   geometry LGE series from MyoPS (``--kind myops``, when the shared data is present) or the
   synthetic phantom, the AI SEG and the TID 1500 SR.
2. Starts Orthanc with DICOMweb (loopback only) and stores the study by STOW-RS; starts a
   stand-in of the node's review API (API.md) with one job for the LGE series; serves the
   prebuilt OHIF 3.13.2 viewer + the plugin + a DICOMweb/node proxy on one origin.
3. Drives headless Chromium (``browser.mjs``): opens the study in the mode, reads the panel,
   brushes infarct pixels, saves, accepts with a comment. Screenshots go to the artefacts folder.
4. Verifies with dicomweb-client + highdicom that a new BINARY SEG is in Orthanc with exactly
   the edit, the provenance (algorithm kept, SEMIAUTOMATIC, reviewer, reference to the AI SEG),
   no dciodvfy errors, and that the decision reached the node API.

Exit status 0 when every check passes. Results: ``<artefacts>/e2e-result.json``.
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

import numpy as np
import pydicom

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parents[1]
REPO = PLUGIN.parent
for p in (str(REPO), str(HERE), str(PLUGIN / "test" / "fixtures")):
    if p not in sys.path:
        sys.path.insert(0, p)

from dicomweb_client.api import DICOMwebClient  # noqa: E402

from harness import NodeApiStub, Orthanc, ViewerServer  # noqa: E402
from inspect_seg import dciodvfy_errors, inspect  # noqa: E402
from make_fixtures import make  # noqa: E402

log = logging.getLogger("e2e")

REVIEWER = "Doe^Jane"
COMMENT = "Extended the infarct into the septum (e2e)"
SEGMENT_LABELS = {1: (1,), 2: (2, 3, 4), 3: (3, 4), 4: (4,)}
NESTING = [(4, 3), (3, 2)]  # inner, outer (node/encode/seg.py: the segments nest)


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


def myops_available() -> bool:
    try:
        from pipeline.datasets.dicomize import resolve_case

        resolve_case("Case3001")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def expected_masks(labels: np.ndarray) -> np.ndarray:
    """(n, rows, cols, 4) masks of the node's four nested segments."""
    return np.stack([np.isin(labels, SEGMENT_LABELS[s]) for s in (1, 2, 3, 4)], axis=-1).astype(np.uint8)


def run(artifacts: Path, kind: str, keep: bool, browser_timeout: int) -> int:
    artifacts.mkdir(parents=True, exist_ok=True)
    for old in artifacts.glob("*.png"):
        old.unlink()
    checks = Checks()
    work = Path(tempfile.mkdtemp(prefix="lge-ohif-e2e-"))
    orthanc = stub = viewer = None
    result: dict = {"kind": None, "checks": checks.items}
    t0 = time.monotonic()
    try:
        if kind == "auto":
            kind = "myops" if myops_available() else "synthetic"
        result["kind"] = kind
        manifest = make(work / "fixtures", kind, size=160)
        fx = work / "fixtures"
        shape = tuple(manifest["shape"])
        labels = np.fromfile(fx / "labels.u8", np.uint8).reshape(shape)
        sources = manifest["lge_sop_instance_uids"]

        orthanc = Orthanc(work / "orthanc").start()
        client = DICOMwebClient(orthanc.dicomweb)
        files = sorted((fx / "lge").glob("*.dcm")) + [fx / "seg_ai.dcm", fx / "sr_ai.dcm"]
        client.store_instances([pydicom.dcmread(f) for f in files])
        stub = NodeApiStub().start()
        job = stub.add_job(manifest["study_instance_uid"], manifest["lge_series_instance_uid"])
        viewer = ViewerServer(PLUGIN, orthanc.dicomweb, stub.url, work).start()
        result["setup_s"] = round(time.monotonic() - t0, 1)

        params = {"url": viewer.url, "study": manifest["study_instance_uid"], "artifacts": str(artifacts),
                  "reviewer": REVIEWER, "comment": COMMENT, "timeoutMs": browser_timeout * 1000}
        (work / "params.json").write_text(json.dumps(params))
        t_browser = time.monotonic()
        proc = subprocess.run([shutil.which("node") or "node", str(HERE / "browser.mjs"), str(work / "params.json")],
                              cwd=PLUGIN, capture_output=True, text=True, timeout=browser_timeout + 60)
        result["browser_s"] = round(time.monotonic() - t_browser, 1)
        sys.stderr.write(proc.stderr)
        browser = json.loads((artifacts / "browser-result.json").read_text())
        result["browser"] = {k: browser.get(k) for k in ("ok", "error", "steps", "panel", "lastSaved", "saveMessage",
                                                           "statusAfterAccept", "nodeLine", "elapsed_s")}
        if not checks.check("browser flow completed", browser.get("ok"), browser.get("error")):
            return 1

        # ---- the panel shows the node's numbers (1 decimal as displayed)
        exp = manifest["expected"]
        panel = browser["panel"]
        for key, field in (("lv_cavity_ml", "lvCavity"), ("myocardium_ml", "myocardium"), ("infarct_ml", "infarct")):
            checks.check(f"panel {field} = SR value", f"{exp[key]:.1f} mL" in panel[field], (panel[field], exp[key]))
        checks.check("panel infarct % = SR value",
                     f"{exp['infarct_percent_of_myocardium']:.1f} %" in panel["rowsText"], panel["rowsText"])
        checks.check("panel mass = SR value", f"{exp['myocardial_mass_g']:.1f} g" in panel["rowsText"])
        checks.check("panel MVO = SR value", f"{exp['mvo_ml']:.2f} mL" in panel["mvo"], panel["mvo"])
        checks.check("panel transmural segment count", panel["transmural"].startswith(str(exp["n_transmural_segments"])),
                     panel["transmural"])
        checks.check("panel algorithm name/version",
                     f"{manifest['algorithm']['name']} {manifest['algorithm']['version']}" in (panel["algorithm"] or ""))
        bull = {b["segment"]: b["transmurality"] for b in panel["bullseye"]}
        bull_ok = all(
            (v["mean_transmurality"] is None and bull.get(int(k)) in ("", None))
            or (v["mean_transmurality"] is not None and abs(float(bull[int(k)]) - v["mean_transmurality"]) < 1e-6)
            for k, v in exp["aha"].items())
        checks.check("bullseye transmurality = SR per AHA segment", bull_ok, bull)

        # ---- the new SEG in Orthanc
        saved = browser["lastSaved"]
        series = client.search_for_series(search_filters={"StudyInstanceUID": manifest["study_instance_uid"],
                                                          "Modality": "SEG"})
        seg_series = {pydicom.Dataset.from_json(s).SeriesInstanceUID for s in series}
        checks.check("new SEG series stored by STOW-RS", saved["seriesInstanceUID"] in seg_series, sorted(seg_series))
        ds = client.retrieve_instance(manifest["study_instance_uid"], saved["seriesInstanceUID"], saved["sopInstanceUID"])
        stored = work / "seg_v2_from_orthanc.dcm"
        ds.save_as(stored, enforce_file_format=True)
        info, masks = inspect(ds, sources)
        ai_info, ai_masks = inspect(pydicom.dcmread(fx / "seg_ai.dcm"), sources)
        result["seg_v2"] = info
        checks.check("SOP class BINARY SEG (1.2.840.10008.5.1.4.1.1.66.4)",
                     info["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.66.4", info["sop_class_uid"])
        checks.check("SegmentationType BINARY", info["segmentation_type"] == "BINARY")
        checks.check("series description ends in v2", info["series_description"].endswith(" v2"),
                     info["series_description"])
        checks.check("series number is a new number", info["series_number"] not in (manifest["seg"]["series_number"],),
                     info["series_number"])
        checks.check("all segments SEMIAUTOMATIC", all(s["algorithm_type"] == "SEMIAUTOMATIC" for s in info["segments"]),
                     [s["algorithm_type"] for s in info["segments"]])
        checks.check("algorithm identification kept",
                     all(s["identification_name"] == manifest["algorithm"]["name"]
                         and s["identification_version"] == manifest["algorithm"]["version"] for s in info["segments"]))
        checks.check("segments, labels and codes kept",
                     [(s["label"], s["property_type"]) for s in info["segments"]]
                     == [(s["label"], s["property_type"]) for s in ai_info["segments"]])
        checks.check("reviewer is the content creator", info["content_creator"] == REVIEWER, info["content_creator"])
        src = {s["sop_instance"]: s["purpose"] for s in info["source_images"]}
        checks.check("references the AI SEG it derives from (Source Image Sequence, DCM 121322)",
                     src.get(manifest["seg"]["sop_instance_uid"]) == "121322", src)
        checks.check("referenced series = LGE series",
                     info["referenced_series"] == [manifest["lge_series_instance_uid"]], info["referenced_series"])
        errors = dciodvfy_errors(stored)
        checks.check("dciodvfy: no Error lines", errors in ([], None), errors)

        # ---- exactly the edit: AI masks + the brush stroke (closed under nesting)
        expected = ai_masks.copy()
        k = sources.index(browser["edit"]["sop"])
        for seg_no, changes in browser["edit"]["changed"].items():
            plane = expected[k, ..., int(seg_no) - 1].reshape(-1)
            for idx, val in changes:
                plane[idx] = val
            expected[k, ..., int(seg_no) - 1] = plane.reshape(shape[1:])
        for inner, outer in NESTING:
            expected[..., outer - 1] |= expected[..., inner - 1]
        n_added = int(len(browser["edit"]["segment3Added"]))
        diff = int((masks != expected).sum())
        checks.check("stored SEG = AI SEG + brush edit", diff == 0, {"differing_voxels": diff})
        gained = int(masks[..., 2].sum()) - int(ai_masks[..., 2].sum())
        checks.check("infarct gained the painted pixels", gained == n_added and n_added > 0,
                     {"gained": gained, "painted": n_added})
        checks.check("AI SEG masks = node labels", int((ai_masks != expected_masks(labels)).sum()) == 0)

        # ---- the decision reached the node
        posts = [r for r in stub.requests if r["method"] == "POST"]
        body = posts[-1]["body"] if posts else {}
        checks.check("accept reached the node API", bool(posts) and posts[-1]["path"] == f"/api/jobs/{job['id']}/review",
                     posts)
        checks.check("decision/comment/reviewer/SEG sent",
                     body.get("decision") == "accepted" and body.get("comment") == COMMENT
                     and body.get("reviewer") == REVIEWER and body.get("seg_sop_instance_uid") == saved["sopInstanceUID"],
                     body)
        checks.check("panel shows ACCEPTED", browser.get("statusAfterAccept") == "ACCEPTED", browser.get("statusAfterAccept"))
        return 0 if checks.ok else 1
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        log.exception("e2e failed")
        checks.check("e2e ran without exceptions", False, repr(exc))
        return 1
    finally:
        result["ok"] = checks.ok
        result["total_s"] = round(time.monotonic() - t0, 1)
        for proc in (viewer, stub, orthanc):
            if proc is not None:
                proc.stop()
        for f in ("serve.log", "orthanc/orthanc.log"):
            if (work / f).exists():
                shutil.copy(work / f, artifacts / Path(f).name)
        (artifacts / "e2e-result.json").write_text(json.dumps(result, indent=1, default=str))
        if keep:
            log.info("work folder kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        log.info("%s in %.1f s (%d checks) - %s", "PASSED" if checks.ok else "FAILED", result["total_s"],
                 len(checks.items), artifacts / "e2e-result.json")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, default=Path(os.environ.get("LGE_E2E_ARTIFACTS", REPO / "test-artifacts" / "ohif")))
    p.add_argument("--kind", choices=["auto", "myops", "synthetic"], default="auto",
                   help="study: MyoPS real geometry (default when the shared data exists) or the phantom")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    p.add_argument("--browser-timeout", type=int, default=240, help="seconds for the browser part")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
    return run(args.artifacts, args.kind, args.keep, args.browser_timeout)


if __name__ == "__main__":
    raise SystemExit(main())
