"""Every MyoPS case through the node at its native matrix, opened in the viewer: labelmap = SEG?

For issue 12's "done when": the 15 MyoPS LGE volumes (12 of them with Rows x Columns not a
multiple of 8) are dicomized at their NATIVE in-plane size, stored in a PACS (Orthanc) that routes
them to the real node, which segments them and writes its BINARY SEGs back. The prebuilt OHIF
3.13.2 viewer with the plugin opens each study in the "Cardiac LGE review" mode (headless
Chromium); the labelmap the viewer then holds (cornerstone's cache) is compared with
highdicom/pydicom's decode of the node's SEG on every frame (``labelcheck.py``).

Usage (from the repository root, with the node's environment):

    PYTHONPATH=$PWD python ohif-plugin/test/e2e/compare_all_cases.py [--cases Case3001 Case3005]

Prints one line per case and writes ``<artefacts>/all-cases.json``; exit status 0 only when every
frame of every case is identical. Needs what ``run_e2e.py`` needs (exit 77 when something is
missing). Heavy (minutes): not part of the CI run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parents[1]
REPO = PLUGIN.parent
for p in (str(REPO), str(HERE), str(PLUGIN / "test" / "fixtures")):
    if p not in sys.path:
        sys.path.insert(0, p)

from dicomweb_client.api import DICOMwebClient  # noqa: E402

from harness import ViewerServer, free_port, start_node, start_pacs, wait_for  # noqa: E402
from labelcheck import compare, read_viewer_labels  # noqa: E402
from run_e2e import SKIPPED, instances_in, missing_prerequisites  # noqa: E402

log = logging.getLogger("all-cases")


def all_cases() -> list[str]:
    from pipeline.datasets.dicomize import myops_dir

    return sorted(p.name.split("_")[0] for p in myops_dir(None).glob("Case*_LGE.nii*"))


def run(cases: list[str], artifacts: Path, weights_arg: str | None, browser_timeout: int) -> int:
    missing, weights, _ = missing_prerequisites(weights_arg)
    if missing:
        log.warning("SKIPPED: missing %s", "; ".join(missing))
        return SKIPPED
    from pipeline.datasets.dicomize import dicomize_case

    artifacts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lge-ohif-all-"))
    pacs = node = viewer = None
    rows: list[dict] = []
    t0 = time.monotonic()
    try:
        node_port = free_port()
        pacs = start_pacs(work / "pacs", node_port)
        # MyoPS Case3011 has 2 LGE slices; the node's default selection (min_slices 3) would skip it
        node = start_node(work / "node", node_port, pacs, weights, work / "node.log",
                          overrides={"selection": {"min_slices": 2}})
        client = DICOMwebClient(pacs.dicomweb_url)
        studies = []
        for case in cases:
            d = dicomize_case(case, work / case, matrix=None, seed=7, with_cine=False)
            lge = [pydicom.dcmread(f) for f in d.lge_files]
            client.store_instances(lge)
            studies.append({"name": case, "study": str(lge[0].StudyInstanceUID), "series": str(lge[0].SeriesInstanceUID),
                            "sources": [str(x.SOPInstanceUID) for x in lge], "matrix": [int(lge[0].Rows), int(lge[0].Columns)]})
        for st in studies:
            def job(st: dict = st) -> dict | None:
                jobs = node.api(f"/api/jobs?study_uid={st['study']}&series_uid={st['series']}")
                if jobs and jobs[0]["state"] == "failed":
                    raise RuntimeError(f"{st['name']}: the node's job failed: {jobs[0]['reason']}")
                if not jobs:
                    row = {s["series_uid"]: s for s in node.api("/api/series")}.get(st["series"]) or {}
                    if row.get("state") == "ignored":
                        raise RuntimeError(f"{st['name']}: the node ignored the series: {row.get('reason')}")
                return jobs[0] if jobs and jobs[0]["state"] == "done" else None
            objects = {o["kind"]: o for o in wait_for(job, 600, f"the node's job of {st['name']}")["result"]["objects"]}
            st["seg"] = objects["seg"]
            wait_for(lambda st=st: st["seg"]["sop_instance_uid"] in instances_in(client, st["study"]), 60,
                     f"the SEG of {st['name']} in the PACS")
        log.info("node segmented %d cases in %.0f s", len(studies), time.monotonic() - t0)

        viewer = ViewerServer(PLUGIN, pacs.dicomweb_url, node.api_url, work).start()
        params = {"url": viewer.url, "study": studies[0]["study"], "artifacts": str(artifacts), "workDir": str(work),
                  "dumpOnly": True, "extraStudies": [{"name": s["name"], "study": s["study"]} for s in studies],
                  "reviewer": "", "timeoutMs": browser_timeout * 1000}
        (work / "params.json").write_text(json.dumps(params))
        proc = subprocess.run([shutil.which("node") or "node", str(HERE / "browser.mjs"), str(work / "params.json")],
                              cwd=PLUGIN, capture_output=True, text=True, timeout=browser_timeout * len(studies) + 120)
        sys.stderr.write(proc.stderr)
        browser = json.loads((artifacts / "browser-result.json").read_text())
        dumps = browser.get("labelDumps") or {}
        for st in studies:
            seg = client.retrieve_instance(st["study"], st["seg"]["series_uid"], st["seg"]["sop_instance_uid"])
            dump = dumps.get(st["name"])
            row = {"case": st["name"], "matrix": st["matrix"]}
            if not dump or dump["segSopInstanceUID"] != str(seg.SOPInstanceUID):
                row["error"] = "the viewer did not open this SEG"
            else:
                labels = read_viewer_labels(Path(dump["dir"]), st["sources"], int(seg.Rows), int(seg.Columns))
                row.update(compare(seg, labels, st["sources"]))
            rows.append(row)
            log.info("%s %dx%d %s: %s frames compared, %s differing frames, %s differing pixels%s", st["name"],
                     *st["matrix"], "byte-aligned" if row.get("byte_aligned_frames") else "NOT byte-aligned",
                     row.get("frames_compared"), row.get("differing_frames"), row.get("differing_pixels"),
                     f" ERROR {row['error']}" if "error" in row else "")
        if not browser.get("ok"):
            log.error("browser: %s", browser.get("error"))
    except KeyboardInterrupt:
        log.error("interrupted")
    finally:
        for proc in (viewer, node, pacs):
            if proc is not None:
                proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    ok = len(rows) == len(cases) and all("error" not in r and r["differing_pixels"] == 0 for r in rows)
    summary = {"ok": ok, "cases": rows, "elapsed_s": round(time.monotonic() - t0, 1),
               "frames_compared": sum(r.get("frames_compared", 0) for r in rows),
               "differing_pixels": sum(r.get("differing_pixels", 0) for r in rows)}
    (artifacts / "all-cases.json").write_text(json.dumps(summary, indent=1))
    log.info("%s: %d cases, %d frames compared, %d differing pixels (%.0f s)", "ALL IDENTICAL" if ok else "DIFFERENCES",
             len(rows), summary["frames_compared"], summary["differing_pixels"], summary["elapsed_s"])
    return 0 if ok else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # stop the PACS, node and viewer in run()'s finally


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", help="MyoPS cases (default: all in the data folder)")
    p.add_argument("--artifacts", type=Path, default=REPO / "test-artifacts" / "ohif-all-cases")
    p.add_argument("--weights", help="model weights folder (default: as run_e2e.py)")
    p.add_argument("--browser-timeout", type=int, default=120, help="seconds per study in the browser")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("highdicom", "dicomweb_client", "pynetdicom", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run(args.cases or all_cases(), args.artifacts, args.weights, args.browser_timeout)


if __name__ == "__main__":
    raise SystemExit(main())
