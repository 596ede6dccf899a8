// Everything that touches OHIF / cornerstone objects at runtime (kept thin: the logic lives in
// ../lib and is unit-tested there).
import { naturalize } from '../lib/dicom.js';
import { parseLgeReport } from '../lib/srParse.js';
import { pickLatestSeg, pickReportForSeg } from '../lib/segSelect.js';

export const SEG_SOP_CLASSES = ['1.2.840.10008.5.1.4.1.1.66.4', '1.2.840.10008.5.1.4.1.1.66.7'];

export function dataSourceOf(extensionManager) {
  const ds = extensionManager.getActiveDataSource?.()?.[0];
  if (!ds) throw new Error('no active data source');
  return ds;
}

/** OHIF's own Authorization header (OIDC login), as the viewer sends it to DICOMweb. */
export function dicomWebAuthHeaders(servicesManager) {
  const h = servicesManager.services.userAuthenticationService?.getAuthorizationHeader?.();
  return h?.Authorization ? { Authorization: h.Authorization } : {};
}

/**
 * Authorization for the node API (auth contract): OHIF's userAuthenticationService header when
 * it gives one (OIDC deployments), else `Bearer <lgeReview.apiToken>` from app-config when set.
 */
export function nodeAuthHeaders(servicesManager, apiToken) {
  const fromOhif = dicomWebAuthHeaders(servicesManager);
  if (fromOhif.Authorization) return fromOhif;
  return apiToken ? { Authorization: `Bearer ${apiToken}` } : {};
}

/** DICOMweb roots of the active data source (dicomweb data sources only). */
export function dicomWebRoots(extensionManager) {
  const cfg = dataSourceOf(extensionManager).getConfig?.() ?? {};
  const wadoRoot = cfg.wadoRoot;
  const qidoRoot = cfg.qidoRoot ?? wadoRoot;
  if (!wadoRoot) throw new Error('the active data source is not DICOMweb (no wadoRoot)');
  return { wadoRoot: wadoRoot.replace(/\/+$/, ''), qidoRoot: qidoRoot.replace(/\/+$/, '') };
}

async function getJson(url, servicesManager) {
  const res = await fetch(url, { headers: { Accept: 'application/dicom+json', ...dicomWebAuthHeaders(servicesManager) } });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res.status === 204 ? [] : res.json();
}

/** WADO-RS metadata (DICOM JSON) of one instance. */
export async function instanceMetadata({ extensionManager, servicesManager }, study, series, sop) {
  const { wadoRoot } = dicomWebRoots(extensionManager);
  const list = await getJson(`${wadoRoot}/studies/${study}/series/${series}/instances/${sop}/metadata`, servicesManager);
  return Array.isArray(list) ? list[0] : list;
}

/** All SR instances of a study (QIDO), parsed as LGE reports when they are TID 1500. */
export async function studyReports(ctx, studyInstanceUID) {
  const { qidoRoot, wadoRoot } = dicomWebRoots(ctx.extensionManager);
  const series = await getJson(`${qidoRoot}/studies/${studyInstanceUID}/series?Modality=SR`, ctx.servicesManager);
  const reports = [];
  for (const s of series) {
    const seriesUid = naturalize(s).SeriesInstanceUID;
    const meta = await getJson(`${wadoRoot}/studies/${studyInstanceUID}/series/${seriesUid}/metadata`, ctx.servicesManager);
    for (const inst of meta) {
      try {
        reports.push(parseLgeReport(inst));
      } catch {
        // not a TID 1500 measurement report (e.g. an OHIF measurement SR of another kind)
      }
    }
  }
  return reports;
}

export function activeStudyUID(servicesManager) {
  const { displaySetService, viewportGridService } = servicesManager.services;
  const state = viewportGridService.getState();
  const vp = state.viewports.get(state.activeViewportId);
  const uid = vp?.displaySetInstanceUIDs?.[0];
  const ds = uid && displaySetService.getDisplaySetByUID(uid);
  if (ds?.StudyInstanceUID) return ds.StudyInstanceUID;
  return displaySetService.getActiveDisplaySets().find(d => d.StudyInstanceUID)?.StudyInstanceUID ?? null;
}

export function segDisplaySets(servicesManager) {
  return servicesManager.services.displaySetService
    .getActiveDisplaySets()
    .filter(ds => ds.Modality === 'SEG' && SEG_SOP_CLASSES.includes(ds.SOPClassUID ?? ds.instance?.SOPClassUID));
}

/** The latest SEG version display set (optionally of one image series). */
export function latestSegDisplaySet(servicesManager, referencedSeriesInstanceUID) {
  return pickLatestSeg(segDisplaySets(servicesManager), { referencedSeriesInstanceUID });
}

export { pickReportForSeg };

/** Series Numbers used in the study (to keep a new version's number free). */
export function takenSeriesNumbers(servicesManager) {
  return servicesManager.services.displaySetService
    .getActiveDisplaySets()
    .map(ds => Number(ds.SeriesNumber))
    .filter(Number.isFinite);
}

// ---------------------------------------------------------------- edited label data

function sopOfImageId(imageId, cs) {
  const inst = cs?.metaData?.get?.('instance', imageId);
  if (inst?.SOPInstanceUID) {
    return { sop: String(inst.SOPInstanceUID), frame: inst.NumberOfFrames > 1 ? frameOfImageId(imageId) : null };
  }
  const m = /\/instances\/([0-9.]+)(?:\/frames\/(\d+))?/.exec(imageId ?? '');
  return m ? { sop: m[1], frame: null } : null;
}

function frameOfImageId(imageId) {
  const m = /\/frames\/(\d+)/.exec(imageId ?? '') ?? /[?&]frame=(\d+)/.exec(imageId ?? '');
  return m ? Number(m[1]) : null;
}

/**
 * getMask(segmentNumber, sopInstanceUID, frameNumber) over OHIF's current labelmap of
 * `segmentationId`. cornerstone3D 4 (OHIF 3.13) stores a labelmap as storages
 * (`Labelmap.labelmaps`), each a stack of images per source image - several per source image
 * when segments overlap (ours nest) - whose pixel values map to segment indices through
 * `labelToSegmentIndex`; older versions have one image per source image with pixel value =
 * segment index. A voxel belongs to segment s when any image of its source image says so.
 */
export function labelmapMaskGetter(segmentationId, cs = globalThis.cornerstone, cst = globalThis.cornerstoneTools) {
  const seg = cst?.segmentation?.state?.getSegmentation?.(segmentationId);
  const lm = seg?.representationData?.Labelmap;
  if (!lm) throw new Error(`segmentation ${segmentationId} has no labelmap`);
  const storages = lm.labelmaps ? Object.values(lm.labelmaps) : [lm];
  const bySource = new Map(); // "sop|frame" -> [{pixels, toSegment}]
  for (const storage of storages) {
    const toSegment = storage.labelToSegmentIndex ?? null;
    (storage.imageIds ?? []).forEach((imageId, idx) => {
      const image = cs.cache.getImage(imageId);
      if (!image) return;
      const refs = storage.referencedImageIds ?? [];
      const refId = image.referencedImageId ?? refs[idx % Math.max(refs.length, 1)];
      const ref = sopOfImageId(refId, cs);
      if (!ref) return;
      const key = `${ref.sop}|${ref.frame ?? ''}`;
      if (!bySource.has(key)) bySource.set(key, []);
      bySource.get(key).push({ pixels: image.getPixelData(), toSegment });
    });
  }
  return (segmentNumber, sop, frame) => {
    const layers = bySource.get(`${sop}|${frame ?? ''}`) ?? bySource.get(`${sop}|`);
    if (!layers) return null;
    const out = new Uint8Array(layers[0].pixels.length);
    for (const { pixels, toSegment } of layers) {
      // label values of this storage that mean `segmentNumber`
      const values = toSegment
        ? Object.entries(toSegment).filter(([, s]) => Number(s) === segmentNumber).map(([v]) => Number(v))
        : [segmentNumber];
      if (!values.length) continue;
      for (let i = 0; i < pixels.length; i++) if (pixels[i] && values.includes(pixels[i])) out[i] = 1;
    }
    return out;
  };
}
