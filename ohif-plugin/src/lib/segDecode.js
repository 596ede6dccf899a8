// The plugin's own DICOM SEG reader: SEG pixel data -> one label image per source image.
//
// Why the plugin decodes the SEG itself: a BINARY SEG packs its frames bit after bit with no
// padding between frames (PS3.5 8.1.1; CP 1132), so when Rows x Columns is not a multiple of 8,
// frame k starts in the middle of a byte (at bit k*Rows*Columns). OHIF 3.13 loads SEG frames
// one by one (WADO-RS /frames/N, or its Part 10 prefetch split into per-frame buffers), which
// assumes byte-aligned frames and garbles every frame after the first at such sizes (the
// stripes of issue 12). Here the whole PixelData is unpacked as one bit stream (unpackBits).
//
// What the viewer gets is ONE labelmap layer per source image: a stack viewport shows only
// one layer anyway, and the node's segments nest (MVO within infarct within myocardium), so a
// voxel's innermost segment says everything: label = innermost segment, and segment s is
// "label is s or a segment nested in s". toLabelImages() checks that this holds for every
// voxel (a SEG whose segments overlap without nesting is refused, never shown wrongly).
import { first, items, naturalize } from './dicom.js';
import {
  BINARY_SEG_SOP_CLASS_UID, frameSegmentNumber, frameSource, nestingFromSegments, unpackBits,
} from './segVersion.js';

/** Pixel data bytes of a naturalized dataset (dcmjs gives [ArrayBuffer] or an ArrayBuffer). */
export function pixelDataBytes(ds) {
  const pd = Array.isArray(ds.PixelData) ? ds.PixelData[0] : ds.PixelData;
  if (!pd) throw new Error('the SEG has no pixel data');
  if (pd instanceof Uint8Array) return pd;
  if (ArrayBuffer.isView(pd)) return new Uint8Array(pd.buffer, pd.byteOffset, pd.byteLength);
  return new Uint8Array(pd);
}

/**
 * Decode a BINARY (or 8-bit FRACTIONAL) Segmentation: its frames as 0/1 arrays, with the
 * segment and source image each frame belongs to.
 * @returns {{rows:number, cols:number, frames:Uint8Array[], frameInfo:{segmentNumber:number,
 *   sopInstanceUID:string, frameNumber:number|null}[], segments:object[], nesting:number[][]}}
 */
export function decodeSeg(input) {
  const ds = naturalize(input);
  const rows = Number(ds.Rows);
  const cols = Number(ds.Columns);
  const nFrames = Number(ds.NumberOfFrames ?? 1);
  if (!(rows > 0 && cols > 0 && nFrames > 0)) throw new Error('the SEG has no Rows/Columns/NumberOfFrames');
  const type = String(ds.SegmentationType ?? '');
  const bytes = pixelDataBytes(ds);
  const px = rows * cols;
  let frames;
  if (type === 'BINARY') {
    if (Number(ds.BitsAllocated) !== 1) throw new Error(`BINARY SEG with BitsAllocated ${ds.BitsAllocated}`);
    // Compressed pixel data would be shorter than the bit stream; refuse rather than misread.
    if (bytes.length * 8 < nFrames * px) {
      throw new Error(`SEG pixel data has ${bytes.length} bytes, ${Math.ceil((nFrames * px) / 8)} needed ` +
        '(compressed transfer syntaxes are not read by the plugin)');
    }
    frames = unpackBits(bytes, nFrames, px);
  } else if (type === 'FRACTIONAL') {
    if (Number(ds.BitsAllocated) !== 8 || bytes.length < nFrames * px) {
      throw new Error('FRACTIONAL SEG must be uncompressed 8-bit');
    }
    const half = Number(ds.MaximumFractionalValue ?? 255) / 2;
    frames = [];
    for (let f = 0; f < nFrames; f++) {
      const fr = new Uint8Array(px);
      for (let i = 0; i < px; i++) fr[i] = bytes[f * px + i] > half ? 1 : 0;
      frames.push(fr);
    }
  } else {
    throw new Error(`SegmentationType ${type || '(none)'} is not supported (BINARY or FRACTIONAL)`);
  }
  const perFrame = items(ds.PerFrameFunctionalGroupsSequence);
  const shared = first(items(ds.SharedFunctionalGroupsSequence)) ?? {};
  if (perFrame.length !== nFrames) {
    throw new Error(`the SEG has ${nFrames} frames but ${perFrame.length} per-frame functional groups`);
  }
  const frameInfo = perFrame.map((pf, i) => {
    const ref = frameSource(pf, shared);
    const segmentNumber = frameSegmentNumber(pf, shared);
    if (!ref?.sopInstanceUID || !Number.isFinite(segmentNumber)) {
      throw new Error(`SEG frame ${i + 1} names no source image (Derivation Image Sequence) or no segment`);
    }
    return { segmentNumber, sopInstanceUID: ref.sopInstanceUID, frameNumber: ref.frameNumber };
  });
  return {
    rows, cols, frames, frameInfo,
    sopClassUID: String(ds.SOPClassUID ?? BINARY_SEG_SOP_CLASS_UID),
    segments: items(ds.SegmentSequence),
    nesting: nestingFromSegments(ds.SegmentSequence),
  };
}

/** Segment numbers that contain `s` (directly or not) under `nesting` ([inner, outer] pairs). */
export function outerSegments(s, nesting) {
  const out = [];
  let cur = s;
  const seen = new Set([s]);
  for (;;) {
    const pair = nesting.find(([inner]) => inner === cur);
    if (!pair || seen.has(pair[1])) return out;
    out.push(pair[1]);
    seen.add(pair[1]);
    cur = pair[1];
  }
}

/** Segment numbers nested (directly or not) in `s`. */
export function innerSegmentsOf(s, nesting) {
  const out = new Set();
  const stack = [s];
  while (stack.length) {
    const o = stack.pop();
    for (const [inner, outer] of nesting) {
      if (outer === o && !out.has(inner) && inner !== s) {
        out.add(inner);
        stack.push(inner);
      }
    }
  }
  return [...out];
}

/** The key a source image/frame is known by. */
export const sourceKey = (sop, frame) => `${sop}|${frame ?? ''}`;

/**
 * One label image per source image (Uint8Array rows*cols; 0 = background, else the voxel's
 * innermost segment number). Throws when some voxel's segments are not one nesting chain.
 * @returns {Map<string, Uint8Array>} keyed by sourceKey(sop, frame)
 */
export function toLabelImages(decoded) {
  const { rows, cols, frames, frameInfo, nesting } = decoded;
  const px = rows * cols;
  const numbers = [...new Set(frameInfo.map(f => f.segmentNumber))].sort((a, b) => a - b);
  if (numbers.some(n => n < 1 || n > 255)) throw new Error('segment numbers must be 1..255 for a labelmap');
  // Depth (number of containing segments): outer segments are written first, inner ones over them.
  const depth = new Map(numbers.map(n => [n, outerSegments(n, nesting).length]));
  const chain = new Map(numbers.map(n => [n, new Set([n, ...outerSegments(n, nesting)])]));
  const bySource = new Map(); // key -> [{segmentNumber, frame}]
  frameInfo.forEach((fi, i) => {
    const key = sourceKey(fi.sopInstanceUID, fi.frameNumber);
    if (!bySource.has(key)) bySource.set(key, []);
    bySource.get(key).push({ segmentNumber: fi.segmentNumber, frame: frames[i] });
  });
  const out = new Map();
  for (const [key, layers] of bySource) {
    const segs = new Map();
    for (const { segmentNumber, frame } of layers) {
      if (segs.has(segmentNumber)) {
        // two frames of one segment on one source image: their union
        const acc = segs.get(segmentNumber);
        for (let i = 0; i < px; i++) acc[i] |= frame[i];
      } else {
        segs.set(segmentNumber, frame.slice());
      }
    }
    const order = [...segs.keys()].sort((a, b) => depth.get(a) - depth.get(b) || a - b);
    const label = new Uint8Array(px);
    for (const s of order) {
      const f = segs.get(s);
      for (let i = 0; i < px; i++) if (f[i]) label[i] = s;
    }
    // Exactness: every voxel's set of segments must be the chain of its label.
    for (const s of order) {
      const f = segs.get(s);
      for (let i = 0; i < px; i++) {
        const l = label[i];
        const inChain = l !== 0 && chain.get(l).has(s);
        if ((f[i] === 1) !== inChain) {
          const [sop] = key.split('|');
          throw new Error(`segment ${s} overlaps segment ${l || 'none'} without nesting at pixel ${i} of ` +
            `${sop}: one labelmap cannot hold this SEG exactly`);
        }
      }
    }
    out.set(key, label);
  }
  return out;
}

/** Mask (0/1) of segment `s` from a label image: s or any segment nested in s. */
export function maskFromLabels(label, s, nesting) {
  const values = new Set([s, ...innerSegmentsOf(s, nesting)]);
  const out = new Uint8Array(label.length);
  for (let i = 0; i < label.length; i++) if (label[i] && values.has(label[i])) out[i] = 1;
  return out;
}

/**
 * Compare the frames a save would write with the loaded SEG's frames.
 * @returns {{changedFrames:number[], changedPixels:number}} frame indices (0-based) that differ
 */
export function diffFrames(loadedFrames, newFrames) {
  const changedFrames = [];
  let changedPixels = 0;
  loadedFrames.forEach((a, i) => {
    const b = newFrames[i];
    let n = 0;
    for (let k = 0; k < a.length; k++) if ((a[k] ? 1 : 0) !== (b?.[k] ? 1 : 0)) n++;
    if (n) {
      changedFrames.push(i);
      changedPixels += n;
    }
  });
  return { changedFrames, changedPixels };
}

/**
 * Multipart/related body (a WADO-RS instance answer) -> the first part's bytes. Also accepts a
 * bare Part 10 file (starts with the 128-byte preamble + "DICM").
 */
export function firstMultipartPart(buffer, contentType = '') {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const isPart10 = bytes.length > 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
  if (isPart10) return bytes;
  const m = /boundary="?([^";]+)"?/i.exec(contentType);
  let boundary = m ? m[1] : null;
  const text = new TextDecoder('latin1').decode(bytes.subarray(0, Math.min(bytes.length, 4096)));
  if (!boundary) {
    const b = /^--([^\r\n]+)\r?\n/.exec(text);
    if (!b) throw new Error('the WADO-RS answer is neither multipart nor a DICOM file');
    boundary = b[1];
  }
  const start = text.indexOf(`--${boundary}`);
  const headerEnd = text.indexOf('\r\n\r\n', start);
  if (start < 0 || headerEnd < 0) throw new Error('malformed multipart answer');
  const bodyStart = headerEnd + 4;
  const delim = new TextEncoder().encode(`\r\n--${boundary}`);
  // the first part ends at the first delimiter after its headers (the body is binary)
  outer: for (let k = bodyStart; k <= bytes.length - delim.length; k++) {
    for (let j = 0; j < delim.length; j++) if (bytes[k + j] !== delim[j]) continue outer;
    return bytes.subarray(bodyStart, k);
  }
  throw new Error('multipart answer without a closing boundary');
}

/**
 * The rule a save must pass: the new SEG differs from the loaded one, and only on source images
 * the reader edited. `frameInfo` gives each frame's source image (decodeSeg), `touched` the
 * sourceKeys the reader edited. Returns {ok, reason, changedFrames, changedPixels, untouched}
 * where `untouched` lists the frames that changed on images nobody edited.
 */
export function guardSave({ loadedFrames, newFrames, frameInfo, touched }) {
  if (loadedFrames.length !== newFrames.length) {
    return { ok: false, reason: `the new SEG has ${newFrames.length} frames, the loaded one ${loadedFrames.length}`,
      changedFrames: [], changedPixels: 0, untouched: [] };
  }
  const { changedFrames, changedPixels } = diffFrames(loadedFrames, newFrames);
  const untouched = changedFrames.filter(i => !touched.has(sourceKey(frameInfo[i].sopInstanceUID, frameInfo[i].frameNumber)));
  if (!changedFrames.length) {
    return { ok: false, reason: 'nothing to save: the segmentation equals the loaded SEG', changedFrames, changedPixels, untouched };
  }
  if (untouched.length) {
    const images = new Set(untouched.map(i => frameInfo[i].sopInstanceUID));
    return {
      ok: false,
      reason: `refused: ${untouched.length} frame(s) on ${images.size} image(s) you did not edit differ from the loaded SEG ` +
        '(the labelmap on screen is not the SEG as stored); nothing was written',
      changedFrames, changedPixels, untouched,
    };
  }
  return { ok: true, reason: null, changedFrames, changedPixels, untouched };
}
