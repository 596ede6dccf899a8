// Build a reviewer-edited version of the AI segmentation as a new BINARY DICOM SEG.
//
// Why not OHIF's own export: OHIF 3.13's SEG writer sets every segment's algorithm type to
// MANUAL, names the algorithm "OHIF Brush", replaces the segment codes by "Tissue" and drops
// the algorithm identification (OHIF issue #4021), and by default writes a LABELMAP SEG.
// Here the AI SEG's own metadata is the template, so everything the node wrote (segment codes,
// labels, colours, algorithm identification, frame geometry, per-frame source references,
// dimension organization) is kept, and only what the review changes is changed:
//
// - a new series: new Series/SOP Instance UIDs, Series Number and a description ending in "vN";
// - segments: SegmentAlgorithmType SEMIAUTOMATIC (an algorithm's output corrected by a person),
//   SegmentAlgorithmName and the Segmentation Algorithm Identification Sequence retained;
// - the reviewer as ContentCreatorName (Segmentation Series / Image modules);
// - the frames: one per (segment, source image) as in the AI SEG (the node keeps empty frames),
//   pixel data from the edited labels, bit-packed (BINARY, 1 bit);
// - provenance of the edit (General Reference Module, PS3.3 C.12.4, part of the Segmentation
//   IOD): the SEG it derives from is appended to the top-level Source Image Sequence with
//   Purpose of Reference (DCM 121322, "Source image for image processing operation"), the
//   Derivation Code Sequence says (DCM 113076, "Segmentation") and the Derivation Description
//   says in words which SEG was edited by whom; the review tool is appended to the Contributing
//   Equipment Sequence with purpose (DCM 109103, "Modifying Equipment").
// - the Referenced Series Sequence (Common Instance Reference) keeps only the source image
//   series: OHIF 3.13 links a SEG to the first display set that matches *any* item of that
//   sequence, so listing the AI SEG's series there could overlay the new SEG on the AI SEG
//   instead of on the LGE images. The AI SEG is still referenced (Source Image Sequence above).
import dcmjs from 'dcmjs';
import { clone, code, dicomDateTime, first, items, naturalize, newUid, personName } from './dicom.js';

export const BINARY_SEG_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.66.4';
export const LABELMAP_SEG_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.66.7';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
export const PLUGIN_NAME = 'lgenode OHIF review plugin';
export const PLUGIN_VERSION = '0.1.0';
// Version-specific implementation identity of the writer (PS3.10 file meta); 2.25 root.
export const IMPLEMENTATION_CLASS_UID = '2.25.170553454190476307512219574585413419361';

const CODE = (CodeValue, CodingSchemeDesignator, CodeMeaning) => ({
  CodeValue, CodingSchemeDesignator, CodeMeaning,
});
export const PURPOSE_SOURCE_FOR_PROCESSING = CODE('121322', 'DCM', 'Source image for image processing operation');
export const DERIVATION_SEGMENTATION = CODE('113076', 'DCM', 'Segmentation');
export const PURPOSE_MODIFYING_EQUIPMENT = CODE('109103', 'DCM', 'Modifying Equipment');

/** Version of a SEG from its Series Description ("... v3" -> 3); the AI SEG is version 1. */
export function segVersionOf(seriesDescription) {
  const m = /\bv(\d+)\s*$/i.exec(String(seriesDescription ?? '').trim());
  return m ? Number(m[1]) : 1;
}

/** "<base description> vN", at most 64 characters (LO), keeping the version suffix. */
export function versionedDescription(seriesDescription, version) {
  const base = String(seriesDescription ?? '').trim().replace(/\s*\bv\d+\s*$/i, '') || 'Segmentation';
  const suffix = ` v${version}`;
  return base.slice(0, 64 - suffix.length) + suffix;
}

/**
 * Series Number of version `version` of a SEG whose version 1 has number `baseNumber`:
 * base + 10*(version-1) (the node numbers its SEG/SR/PDF source*100 + 1/2/3, so steps of 10 stay
 * clear of them), moved up past any number in `taken`.
 */
export function versionSeriesNumber(baseNumber, version, taken = []) {
  const base = Number.isFinite(Number(baseNumber)) && Number(baseNumber) > 0 ? Number(baseNumber) : 9901;
  const used = new Set(taken.map(Number));
  let n = base + 10 * (version - 1);
  while (used.has(n)) n += 1;
  return n;
}

/** Per-frame source image reference of frame `f` (SOP Instance UID + frame number or null). */
export function frameSource(perFrame, shared) {
  const fromGroup = g => first(items(first(items(g?.DerivationImageSequence))?.SourceImageSequence));
  const src = fromGroup(perFrame) ?? fromGroup(shared);
  if (!src) return null;
  const frame = first(src.ReferencedFrameNumber);
  return {
    sopClassUID: String(src.ReferencedSOPClassUID ?? ''),
    sopInstanceUID: String(src.ReferencedSOPInstanceUID ?? ''),
    frameNumber: frame === undefined || frame === null || frame === '' ? null : Number(frame),
  };
}

/** Segment number a frame belongs to. */
export function frameSegmentNumber(perFrame, shared) {
  const sid = first(items(perFrame?.SegmentIdentificationSequence)) ??
    first(items(shared?.SegmentIdentificationSequence));
  return Number(first(sid?.ReferencedSegmentNumber));
}

/** Pack 0/1 frames (each rows*cols) into one BINARY SEG pixel data buffer (PS3.5 8.1.1). */
export function packBits(frames, pixelsPerFrame) {
  const totalBits = frames.length * pixelsPerFrame;
  const nBytes = Math.ceil(totalBits / 8);
  const out = new Uint8Array(nBytes + (nBytes % 2)); // even length (PS3.5 7.1.1)
  let bit = 0;
  for (const frame of frames) {
    if (frame && frame.length !== pixelsPerFrame) {
      throw new Error(`frame has ${frame.length} pixels, expected ${pixelsPerFrame}`);
    }
    for (let i = 0; i < pixelsPerFrame; i++, bit++) {
      if (frame && frame[i]) out[bit >> 3] |= 1 << (bit & 7);
    }
  }
  return out;
}

/** Inverse of packBits: the frames as Uint8Arrays of 0/1. */
export function unpackBits(buffer, nFrames, pixelsPerFrame) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const frames = [];
  let bit = 0;
  for (let f = 0; f < nFrames; f++) {
    const fr = new Uint8Array(pixelsPerFrame);
    for (let i = 0; i < pixelsPerFrame; i++, bit++) fr[i] = (bytes[bit >> 3] >> (bit & 7)) & 1;
    frames.push(fr);
  }
  return frames;
}

function countOn(frame) {
  let n = 0;
  if (frame) for (let i = 0; i < frame.length; i++) if (frame[i]) n++;
  return n;
}

// Segments that are parts of other segments, by Segmented Property Type (node/encode/codes.py):
// microvascular obstruction (SCT 26036001 "Obstruction") is infarcted tissue, and myocardial
// infarction (SCT 22298006) is part of the LV myocardium (SCT 49848007).
export const NESTED_PROPERTY_TYPES = [
  ['26036001', '22298006'],
  ['22298006', '49848007'],
];

/**
 * [inner, outer] segment-number pairs of a SEG whose segments nest (from their property types),
 * e.g. [[4, 3], [3, 2]] for the node's SEG. Empty when no pair applies.
 */
export function nestingFromSegments(segmentSequence) {
  const byType = new Map();
  for (const seg of items(segmentSequence)) {
    const t = code(seg.SegmentedPropertyTypeCodeSequence);
    if (t) byType.set(t.value, Number(seg.SegmentNumber));
  }
  return NESTED_PROPERTY_TYPES
    .filter(([inner, outer]) => byType.has(inner) && byType.has(outer))
    .map(([inner, outer]) => [byType.get(inner), byType.get(outer)]);
}

/** Segment numbers contained (directly or not) in `outer` under `nesting`. */
function innerSegments(outer, nesting) {
  const out = new Set();
  const stack = [outer];
  while (stack.length) {
    const o = stack.pop();
    for (const [inner, container] of nesting) {
      if (container === o && !out.has(inner) && inner !== outer) {
        out.add(inner);
        stack.push(inner);
      }
    }
  }
  return [...out];
}

/**
 * Build the naturalized dataset of a new SEG version.
 *
 * @param {object} p
 * @param {object} p.sourceSeg   the SEG being edited (naturalized or DICOM JSON; pixel data not needed)
 * @param {(segmentNumber:number, sopInstanceUID:string, frameNumber:number|null) => ArrayLike<number>|null} p.getMask
 *        the edited mask of one segment on one source image (rows*cols, non-zero = inside;
 *        all zeros = empty). null/undefined means "no edited data for that image" and aborts
 *        the save: writing an empty frame there would silently delete the segmentation.
 * @param {string} p.reviewer    reviewer's name as a DICOM PN ("Family^Given")
 * @param {Date}   [p.now]
 * @param {{seriesInstanceUID?:string, sopInstanceUID?:string}} [p.uids]
 * @param {number} [p.version]   default: version of sourceSeg + 1
 * @param {number[]} [p.takenSeriesNumbers] series numbers already used in the study
 * @param {number} [p.baseSeriesNumber] series number of version 1 (default: derived from sourceSeg)
 * @param {string} [p.comment]   free text added to the Derivation Description
 * @param {Array<[number, number]>} [p.nesting] [inner, outer] pairs: a voxel of `inner` is also
 *        written into `outer` (default: nestingFromSegments). The node's segments nest, but
 *        OHIF's brush clears the other segments under the stroke, so painting infarct into the
 *        wall would otherwise take it out of the myocardium.
 * @returns {{dataset: object, version: number, frames: number, changedPixels: number|null}}
 */
export function buildSegVersion({
  sourceSeg,
  getMask,
  reviewer,
  now = new Date(),
  uids = {},
  version,
  takenSeriesNumbers = [],
  baseSeriesNumber,
  comment,
  previousFrames,
  nesting,
}) {
  const src = clone(naturalize(sourceSeg));
  if (![BINARY_SEG_SOP_CLASS_UID, LABELMAP_SEG_SOP_CLASS_UID].includes(src.SOPClassUID)) {
    throw new Error(`not a Segmentation (SOP Class ${src.SOPClassUID})`);
  }
  // Identity of the SEG being edited, before `src` is turned into the new dataset.
  const orig = {
    sopClassUID: String(src.SOPClassUID),
    sopInstanceUID: String(src.SOPInstanceUID),
    seriesNumber: src.SeriesNumber,
    seriesDescription: String(src.SeriesDescription ?? ''),
  };
  if (!reviewer || !String(reviewer).trim()) throw new Error('a reviewer name is required');
  const rows = Number(src.Rows);
  const cols = Number(src.Columns);
  const perFrameIn = items(src.PerFrameFunctionalGroupsSequence);
  const shared = first(items(src.SharedFunctionalGroupsSequence)) ?? {};
  if (!perFrameIn.length) throw new Error('the source SEG has no per-frame functional groups');
  const srcVersion = segVersionOf(src.SeriesDescription);
  const newVersion = version ?? srcVersion + 1;
  const baseNumber = baseSeriesNumber ?? Number(src.SeriesNumber) - 10 * (srcVersion - 1);
  const { date, time } = dicomDateTime(now);

  // Masks as edited, closed under the nesting of the segments (outer |= inner).
  const pairs = nesting ?? nestingFromSegments(src.SegmentSequence);
  const maskOf = (segNo, sop, frame) => {
    const own = getMask(segNo, sop, frame);
    const inner = innerSegments(segNo, pairs);
    if (!inner.length) return own;
    const out = new Uint8Array(rows * cols);
    if (!own) return own;
    for (const m of [own, ...inner.map(n => getMask(n, sop, frame))]) {
      if (!m) continue;
      if (m.length !== rows * cols) {
        throw new Error(`mask on ${sop} has ${m.length} pixels, expected ${rows * cols}`);
      }
      for (let k = 0; k < out.length; k++) if (m[k]) out[k] = 1;
    }
    return out;
  };

  // Frames: the source SEG's, in its order; pixels from the edited masks.
  const perFrameOut = [];
  const framesOut = [];
  let changed = previousFrames ? 0 : null;
  perFrameIn.forEach((pf, i) => {
    const segNo = frameSegmentNumber(pf, shared);
    const ref = frameSource(pf, shared);
    if (!ref || !Number.isFinite(segNo)) {
      throw new Error(`frame ${i + 1} has no source image or segment reference`);
    }
    const mask = maskOf(segNo, ref.sopInstanceUID, ref.frameNumber);
    if (!mask) {
      throw new Error(`no edited labelmap for source image ${ref.sopInstanceUID}${ref.frameNumber ? ` frame ${ref.frameNumber}` : ''} (segment ${segNo}); nothing was saved`);
    }
    const bits = new Uint8Array(rows * cols);
    if (mask) {
      if (mask.length !== rows * cols) {
        throw new Error(`mask of segment ${segNo} on ${ref.sopInstanceUID} has ${mask.length} pixels, expected ${rows * cols}`);
      }
      for (let k = 0; k < bits.length; k++) bits[k] = mask[k] ? 1 : 0;
    }
    if (previousFrames) {
      const prev = previousFrames[i];
      for (let k = 0; k < bits.length; k++) if ((prev?.[k] ? 1 : 0) !== bits[k]) changed++;
    }
    perFrameOut.push(pf);
    framesOut.push(bits);
  });

  const ds = src;
  delete ds._meta;
  delete ds.PixelData;
  delete ds.FloatPixelData;
  delete ds.DoubleFloatPixelData;

  // SOP Common / series identity
  ds.SOPClassUID = BINARY_SEG_SOP_CLASS_UID;
  ds.SOPInstanceUID = uids.sopInstanceUID ?? newUid();
  ds.SeriesInstanceUID = uids.seriesInstanceUID ?? newUid();
  ds.SeriesNumber = versionSeriesNumber(baseNumber, newVersion, takenSeriesNumbers);
  ds.SeriesDescription = versionedDescription(orig.seriesDescription, newVersion);
  ds.InstanceNumber = 1;
  ds.SeriesDate = date;
  ds.SeriesTime = time;
  ds.ContentDate = date;
  ds.ContentTime = time;
  ds.InstanceCreationDate = date;
  ds.InstanceCreationTime = time;
  ds.ContentCreatorName = [{ Alphabetic: String(reviewer).trim() }];
  ds.ContentLabel = `SEG_V${newVersion}`.slice(0, 16);
  ds.ContentDescription = `Reviewed segmentation v${newVersion}`.slice(0, 64);

  // General / Enhanced General Equipment: this instance was written by the review plugin.
  const priorEquipment = {
    manufacturer: String(src.Manufacturer ?? ''),
    model: String(src.ManufacturerModelName ?? ''),
    serial: String(first(src.DeviceSerialNumber) ?? ''),
    software: items(src.SoftwareVersions).map(String),
  };
  ds.Manufacturer = 'lgenode project';
  ds.ManufacturerModelName = PLUGIN_NAME;
  ds.SoftwareVersions = [PLUGIN_VERSION];
  ds.DeviceSerialNumber = priorEquipment.serial || '0';
  ds.ContributingEquipmentSequence = [
    ...items(src.ContributingEquipmentSequence),
    {
      Manufacturer: priorEquipment.manufacturer || 'unknown',
      ManufacturerModelName: priorEquipment.model || undefined,
      SoftwareVersions: priorEquipment.software.length ? priorEquipment.software : undefined,
      ContributionDescription: `Algorithm that produced the segmentation this version was edited from`,
      PurposeOfReferenceCodeSequence: [CODE('109102', 'DCM', 'Processing Equipment')],
    },
    {
      Manufacturer: 'lgenode project',
      ManufacturerModelName: PLUGIN_NAME,
      SoftwareVersions: [PLUGIN_VERSION],
      ContributionDateTime: `${date}${time.split('.')[0]}`,
      ContributionDescription: `Manual correction in OHIF by ${String(reviewer).trim()}`.slice(0, 1024),
      PurposeOfReferenceCodeSequence: [PURPOSE_MODIFYING_EQUIPMENT],
    },
  ].map(dropUndefined);

  // Segments: semi-automatic (AI output corrected by a person), algorithm kept.
  ds.SegmentSequence = items(src.SegmentSequence).map(seg => {
    const s = { ...seg };
    s.SegmentAlgorithmType = 'SEMIAUTOMATIC';
    const algo = first(items(s.SegmentationAlgorithmIdentificationSequence));
    if (!s.SegmentAlgorithmName) s.SegmentAlgorithmName = algo?.AlgorithmName ?? 'unknown algorithm';
    return s;
  });

  // Provenance: which SEG this version derives from.
  const sourceRef = {
    ReferencedSOPClassUID: orig.sopClassUID,
    ReferencedSOPInstanceUID: orig.sopInstanceUID,
    PurposeOfReferenceCodeSequence: [PURPOSE_SOURCE_FOR_PROCESSING],
  };
  // Source images of the SEG stay; earlier SEG versions are not repeated (the chain is followed
  // one step at a time: each version names the one it was edited from).
  const isSeg = it => [BINARY_SEG_SOP_CLASS_UID, LABELMAP_SEG_SOP_CLASS_UID].includes(String(it.ReferencedSOPClassUID));
  ds.SourceImageSequence = [...items(src.SourceImageSequence).filter(it => !isSeg(it)), sourceRef];
  ds.DerivationCodeSequence = [DERIVATION_SEGMENTATION];
  ds.DerivationDescription = [
    `Version ${newVersion}: ${String(reviewer).trim()} edited SEG ${orig.sopInstanceUID}`,
    `(series ${orig.seriesNumber ?? '?'} "${orig.seriesDescription}")`,
    comment ? `- ${comment}` : '',
  ].filter(Boolean).join(' ').slice(0, 1024);

  // Image pixel / segmentation image: BINARY, 1 bit, uncompressed.
  ds.SegmentationType = 'BINARY';
  delete ds.SegmentationFractionalType;
  delete ds.MaximumFractionalValue;
  ds.SamplesPerPixel = 1;
  ds.PhotometricInterpretation = 'MONOCHROME2';
  ds.BitsAllocated = 1;
  ds.BitsStored = 1;
  ds.HighBit = 0;
  ds.PixelRepresentation = 0;
  ds.LossyImageCompression = '00';
  ds.NumberOfFrames = framesOut.length;
  ds.PerFrameFunctionalGroupsSequence = perFrameOut;
  ds.PixelData = [packBits(framesOut, rows * cols).buffer];
  ds._vrMap = { ...(ds._vrMap ?? {}), PixelData: 'OB' };
  // File meta (naturalized; part10.js encodes it).
  ds._meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: BINARY_SEG_SOP_CLASS_UID,
    MediaStorageSOPInstanceUID: ds.SOPInstanceUID,
    TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: 'LGENODE_OHIF_01',
  };
  return {
    dataset: ds,
    version: newVersion,
    frames: framesOut.length,
    frameBits: framesOut, // the written frames, 0/1 per pixel (same order as the source SEG's)
    changedPixels: changed,
    onPixels: framesOut.reduce((n, f) => n + countOn(f), 0),
  };
}

function dropUndefined(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out;
}

/** sRGB (0..255) of a DICOM CIELab colour (PS3.3 C.10.7.1.1), or null. */
export function labToRgb(lab) {
  const v = Array.isArray(lab) ? lab.map(Number) : null;
  if (!v || v.length !== 3 || v.some(x => !Number.isFinite(x))) return null;
  return dcmjs.data.Colors.dicomlab2RGB(v).map(x => Math.round(Math.min(1, Math.max(0, x)) * 255));
}

/**
 * Summary of a SEG's provenance (for the panel and for tests): algorithm(s), creator, type.
 */
export function segProvenance(input) {
  const ds = naturalize(input);
  const segments = items(ds.SegmentSequence).map(s => {
    const algo = first(items(s.SegmentationAlgorithmIdentificationSequence));
    return {
      number: Number(s.SegmentNumber),
      label: String(s.SegmentLabel ?? ''),
      algorithmType: String(s.SegmentAlgorithmType ?? ''),
      algorithmName: String(s.SegmentAlgorithmName ?? algo?.AlgorithmName ?? ''),
      algorithmVersion: String(algo?.AlgorithmVersion ?? ''),
      propertyType: code(s.SegmentedPropertyTypeCodeSequence),
      rgb: labToRgb(s.RecommendedDisplayCIELabValue),
    };
  });
  const derivedFrom = items(ds.SourceImageSequence)
    .filter(it => [BINARY_SEG_SOP_CLASS_UID, LABELMAP_SEG_SOP_CLASS_UID].includes(String(it.ReferencedSOPClassUID)))
    .map(it => String(it.ReferencedSOPInstanceUID));
  return {
    sopClassUID: String(ds.SOPClassUID ?? ''),
    seriesDescription: String(ds.SeriesDescription ?? ''),
    seriesNumber: Number(ds.SeriesNumber),
    version: segVersionOf(ds.SeriesDescription),
    contentCreator: personName(ds.ContentCreatorName),
    segments,
    derivedFrom,
  };
}
