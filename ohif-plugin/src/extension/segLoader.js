// Open a SEG in the viewer from the plugin's own decode (../lib/segDecode.js), not OHIF's.
//
// The SEG instance is fetched whole (WADO-RS), decoded bit-contiguously, turned into one
// label image per source image, and written into a labelmap segmentation that OHIF creates on
// the LGE display set (segmentationService.createLabelmapForDisplaySet): the viewer then holds
// exactly what the SEG says, at any matrix size. Segment labels and colours come from the SEG.
// The loaded state is kept per segmentation so that Save can prove it changes only what the
// reader edited (see commands.js).
import { readPart10 } from '../lib/part10.js';
import { labToRgb } from '../lib/segVersion.js';
import { decodeSeg, firstMultipartPart, sourceKey, toLabelImages } from '../lib/segDecode.js';
import { dataSourceOf, dicomWebRoots, dicomWebAuthHeaders } from './ohifData.js';

/** segmentationId -> {decoded, pristine: Map(key->labels), touched:Set(key), imageIds, keys, ...} */
export const loadedSegs = new Map();

export const segmentationIdOf = sopInstanceUID => `lge-review:${sopInstanceUID}`;

/** The SEG instance as a naturalized dataset with its pixel data (WADO-RS, whole instance). */
export async function fetchSegDataset({ extensionManager, servicesManager }, study, series, sop) {
  const { wadoRoot } = dicomWebRoots(extensionManager);
  const url = `${wadoRoot}/studies/${study}/series/${series}/instances/${sop}`;
  const res = await fetch(url, {
    headers: { Accept: 'multipart/related; type="application/dicom"', ...dicomWebAuthHeaders(servicesManager) },
  });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const body = new Uint8Array(await res.arrayBuffer());
  const part = firstMultipartPart(body, res.headers.get('content-type') ?? '');
  return readPart10(part.slice().buffer);
}

function sourceKeyOfImageId(imageId, cs) {
  const inst = cs.metaData.get('instance', imageId);
  const sop = inst?.SOPInstanceUID ?? /\/instances\/([0-9.]+)/.exec(imageId ?? '')?.[1];
  if (!sop) return null;
  const multi = Number(inst?.NumberOfFrames ?? 1) > 1;
  const frame = multi ? Number(/\/frames\/(\d+)/.exec(imageId)?.[1] ?? /[?&]frame=(\d+)/.exec(imageId)?.[1] ?? 1) : null;
  return sourceKey(sop, frame);
}

/** RGBA (0..255) of a segment's Recommended Display CIELab value, or null. */
export function segmentRgba(segment) {
  const rgb = labToRgb(segment?.RecommendedDisplayCIELabValue);
  return rgb ? [...rgb, 255] : null;
}

/** The labelmap images the viewer holds for `segmentationId`: Map(sourceKey -> {image, imageId}). */
export function viewerLabelImages(segmentationId, cs = globalThis.cornerstone, cst = globalThis.cornerstoneTools) {
  const seg = cst?.segmentation?.state?.getSegmentation?.(segmentationId);
  const lm = seg?.representationData?.Labelmap;
  if (!lm) throw new Error(`segmentation ${segmentationId} has no labelmap`);
  const storages = lm.labelmaps ? Object.values(lm.labelmaps) : [lm];
  if (storages.length !== 1) throw new Error(`segmentation ${segmentationId} has ${storages.length} labelmap layers, 1 expected`);
  const storage = storages[0];
  const out = new Map();
  const refs = storage.referencedImageIds ?? lm.referencedImageIds ?? [];
  (storage.imageIds ?? lm.imageIds ?? []).forEach((imageId, idx) => {
    const image = cs.cache.getImage(imageId);
    if (!image) throw new Error(`labelmap image ${imageId} is not in the cache`);
    const key = sourceKeyOfImageId(image.referencedImageId ?? refs[idx], cs);
    if (key) out.set(key, { image, imageId });
  });
  return out;
}

/** Pixel array of a cached labelmap image (its voxel manager's scalar data when it has one). */
function scalarsOf(image) {
  return image.voxelManager?.getScalarData?.() ?? image.getPixelData();
}

/** Current label values per source image (copies). */
export function currentLabels(segmentationId, cs, cst) {
  const out = new Map();
  for (const [key, { image }] of viewerLabelImages(segmentationId, cs, cst)) out.set(key, Uint8Array.from(scalarsOf(image)));
  return out;
}

/**
 * Show the SEG `segDs` (an OHIF SEG display set) on viewport `viewportId` from the plugin's
 * own decode. Returns the segmentation id.
 */
export async function openSegFromOwnDecode({ servicesManager, extensionManager }, segDs, viewportId, { label } = {}) {
  const cs = globalThis.cornerstone;
  const cst = globalThis.cornerstoneTools;
  const { displaySetService, segmentationService } = servicesManager.services;
  const dataset = await fetchSegDataset({ servicesManager, extensionManager }, segDs.StudyInstanceUID,
    segDs.SeriesInstanceUID, segDs.SOPInstanceUID);
  const decoded = decodeSeg(dataset);
  const labels = toLabelImages(decoded);

  const refSeries = segDs.referencedSeriesInstanceUID;
  const lgeDs = (segDs.referencedDisplaySetInstanceUID && displaySetService.getDisplaySetByUID(segDs.referencedDisplaySetInstanceUID))
    ?? displaySetService.getActiveDisplaySets().find(d => d.SeriesInstanceUID === refSeries && d.Modality !== 'SEG');
  if (!lgeDs) throw new Error(`the image series ${refSeries} the SEG refers to is not in this study`);
  if (!lgeDs.imageIds?.length) {
    const ids = dataSourceOf(extensionManager).getImageIdsForDisplaySet?.(lgeDs);
    if (ids?.length) lgeDs.imageIds = ids;
  }

  const segmentationId = segmentationIdOf(segDs.SOPInstanceUID);
  if (segmentationService.getSegmentation(segmentationId)) segmentationService.remove(segmentationId);
  loadedSegs.delete(segmentationId);
  const segments = {};
  for (const s of decoded.segments) {
    const n = Number(s.SegmentNumber);
    segments[n] = { segmentIndex: n, label: String(s.SegmentLabel ?? `Segment ${n}`), active: false, locked: false };
  }
  const loading = { segmentationId, busy: true };
  loadedSegs.set(segmentationId, loading);
  await segmentationService.createLabelmapForDisplaySet(lgeDs, {
    segmentationId, label: label ?? segDs.SeriesDescription ?? 'SEG', segments,
  });

  // Write the decoded labels into the viewer's labelmap images.
  const images = viewerLabelImages(segmentationId, cs, cst);
  const missing = [...labels.keys()].filter(k => !images.has(k));
  if (missing.length) {
    segmentationService.remove(segmentationId);
    loadedSegs.delete(segmentationId);
    throw new Error(`${missing.length} SEG frame source image(s) are not in the LGE series shown (e.g. ${missing[0].split('|')[0]})`);
  }
  const px = decoded.rows * decoded.cols;
  for (const [key, { image }] of images) {
    const scalars = scalarsOf(image);
    if (scalars.length !== px) {
      throw new Error(`labelmap image of ${key.split('|')[0]} has ${scalars.length} pixels, the SEG frames ${px}`);
    }
    const l = labels.get(key);
    if (l) scalars.set(l);
    else scalars.fill(0);
    image.voxelManager?.setScalarData?.(scalars);
  }
  cst.segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(segmentationId);

  await segmentationService.addSegmentationRepresentation(viewportId, { segmentationId });
  for (const s of decoded.segments) {
    const rgba = segmentRgba(s);
    if (rgba) segmentationService.setSegmentColor(viewportId, segmentationId, Number(s.SegmentNumber), rgba);
  }
  const keys = [...images.keys()];
  loadedSegs.set(segmentationId, {
    segmentationId,
    busy: false,
    dataset,
    decoded,
    // The labels as loaded, per source image: the baseline an edit is measured against.
    pristine: currentLabels(segmentationId, cs, cst),
    touched: new Set(),
    keys,
    imageIds: lgeDs.imageIds,
    sopInstanceUID: segDs.SOPInstanceUID,
  });
  return segmentationId;
}

/**
 * Follow edits: every SEGMENTATION_DATA_MODIFIED of a loaded segmentation marks the slice
 * shown in the viewport (and any slices the event names) as touched and calls onEdit.
 */
export function watchEdits(servicesManager, onEdit) {
  const cs = globalThis.cornerstone;
  const cst = globalThis.cornerstoneTools;
  const eventName = cst?.Enums?.Events?.SEGMENTATION_DATA_MODIFIED;
  if (!cs?.eventTarget || !eventName) return () => {};
  const handler = evt => {
    const { segmentationId, modifiedSlicesToUse } = evt.detail ?? {};
    const entry = loadedSegs.get(segmentationId);
    if (!entry || entry.busy) return;
    const { viewportGridService } = servicesManager.services;
    try {
      const vpId = viewportGridService.getActiveViewportId();
      const { viewport } = cs.getEnabledElementByViewportId(vpId) ?? {};
      const imageId = viewport?.getCurrentImageId?.();
      const key = imageId && sourceKeyOfImageId(imageId, cs);
      if (key) entry.touched.add(key);
      for (const i of modifiedSlicesToUse ?? []) {
        const id = entry.imageIds?.[i];
        const k = id && sourceKeyOfImageId(id, cs);
        if (k) entry.touched.add(k);
      }
    } catch {
      // no viewport: the edit is still noticed (Save compares against the loaded labels)
    }
    onEdit(segmentationId, entry);
  };
  cs.eventTarget.addEventListener(eventName, handler);
  return () => cs.eventTarget.removeEventListener(eventName, handler);
}
