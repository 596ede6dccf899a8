// The plugin's own SEG reader at matrix sizes whose frames do not start on a byte boundary, and
// the Save guard. Ground truth: the label volume the node's encoder was given, and highdicom's
// (pydicom's) decode of the same SEG file.
import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readPart10, writePart10 } from '../../src/lib/part10.js';
import {
  decodeSeg, diffFrames, firstMultipartPart, guardSave, innerSegmentsOf, maskFromLabels, outerSegments,
  sourceKey, toLabelImages,
} from '../../src/lib/segDecode.js';
import { buildSegVersion, packBits, unpackBits } from '../../src/lib/segVersion.js';
import { inspectSeg, loadFixtures, outDir, pluginDir } from './fixtures.js';

const SETS = ['odd-63x61', 'unaligned-482x478', 'synthetic'];
const NOW = new Date(2024, 4, 17, 14, 30, 5, 250);

/** OHIF 3.13's per-frame reading: each frame starts on a byte boundary (wrong when rows*cols % 8). */
function byteAlignedFrames(bytes, nFrames, px) {
  const stride = Math.ceil(px / 8);
  return Array.from({ length: nFrames }, (_, f) => unpackBits(bytes.subarray(f * stride, (f + 1) * stride), 1, px)[0]);
}

for (const name of SETS) {
  describe(`own SEG decode, ${name}`, () => {
    const fx = loadFixtures(path.join(pluginDir, '.fixtures', name));
    const m = fx.manifest;
    const [n, rows, cols] = m.shape;
    const px = rows * cols;
    const ds = readPart10(fx.segPart10);
    const decoded = decodeSeg(ds);
    const sources = m.lge_sop_instance_uids;
    const pydicom = inspectSeg(path.join(fx.dir, 'seg_ai.dcm'), sources); // (n, rows, cols, segments)
    const nSeg = pydicom.info.segments.length;

    it('equals highdicom/pydicom on every frame, pixel for pixel', () => {
      expect(decoded.rows * decoded.cols).toBe(px);
      decoded.frameInfo.forEach((fi, i) => {
        const k = sources.indexOf(fi.sopInstanceUID);
        expect(k).toBeGreaterThanOrEqual(0);
        const frame = decoded.frames[i];
        let diff = 0;
        for (let p = 0; p < px; p++) if (frame[p] !== pydicom.masks[(k * px + p) * nSeg + fi.segmentNumber - 1]) diff++;
        expect(diff, `frame ${i + 1}`).toBe(0);
      });
    });

    it('gives one label image per source image equal to the node\'s labels', () => {
      const labels = toLabelImages(decoded);
      expect(labels.size).toBe(n);
      sources.forEach((sop, k) => {
        const l = labels.get(sourceKey(sop, null));
        expect(Buffer.from(l).equals(Buffer.from(fx.labels.subarray(k * px, (k + 1) * px)))).toBe(true);
      });
    });

    if (px % 8) {
      it('is exactly what byte-aligned per-frame reading gets wrong (the test can fail)', () => {
        const bytes = new Uint8Array(ds.PixelData[0] ?? ds.PixelData);
        const aligned = byteAlignedFrames(bytes, decoded.frames.length, px);
        const { changedPixels } = diffFrames(decoded.frames, aligned);
        expect(changedPixels).toBeGreaterThan(0);
      });
    }

    it('round-trips through Save: no edit = identical frames (refused), one edit = exactly that edit', () => {
      const labels = toLabelImages(decoded);
      const getMask = (segNo, sop, frame) => maskFromLabels(labels.get(sourceKey(sop, frame)), segNo, decoded.nesting);
      const same = buildSegVersion({ sourceSeg: fx.segJson, getMask, reviewer: 'Doe^Jane', now: NOW });
      const noEdit = guardSave({ loadedFrames: decoded.frames, newFrames: same.frameBits, frameInfo: decoded.frameInfo, touched: new Set() });
      expect(noEdit.ok).toBe(false);
      expect(noEdit.reason).toMatch(/nothing to save/);
      expect(noEdit.changedPixels).toBe(0);

      // paint infarct (3) on 6 myocardium pixels of slice 1
      const sop = sources[1];
      const key = sourceKey(sop, null);
      const edited = new Map(labels);
      const l = labels.get(key).slice();
      const painted = [];
      for (let p = 0; p < px && painted.length < 6; p++) if (l[p] === 2) { l[p] = 3; painted.push(p); }
      edited.set(key, l);
      const getEdited = (segNo, s, f) => maskFromLabels(edited.get(sourceKey(s, f)), segNo, decoded.nesting);
      const built = buildSegVersion({ sourceSeg: fx.segJson, getMask: getEdited, reviewer: 'Doe^Jane', now: NOW });
      const g = guardSave({ loadedFrames: decoded.frames, newFrames: built.frameBits, frameInfo: decoded.frameInfo, touched: new Set([key]) });
      expect(g.ok).toBe(true);
      expect(g.changedPixels).toBe(6); // infarct gains 6; myocardium keeps them (nesting)
      // the same change on an image nobody edited is refused
      const refused = guardSave({ loadedFrames: decoded.frames, newFrames: built.frameBits, frameInfo: decoded.frameInfo, touched: new Set([sourceKey(sources[0], null)]) });
      expect(refused.ok).toBe(false);
      expect(refused.reason).toMatch(/refused: 1 frame\(s\) on 1 image\(s\) you did not edit/);

      // what highdicom reads from the written file = the loaded SEG + exactly the painted pixels
      mkdirSync(outDir, { recursive: true });
      const file = path.join(outDir, `${name}-edit.dcm`);
      writeFileSync(file, Buffer.from(writePart10(built.dataset)));
      const back = inspectSeg(file, sources);
      let diff = 0;
      const k = 1;
      for (let i = 0; i < back.masks.length; i++) {
        const seg = (i % nSeg) + 1;
        const p = Math.floor(i / nSeg) % px;
        const slice = Math.floor(i / (nSeg * px));
        const expected = slice === k && seg === 3 && painted.includes(p) ? 1 : pydicom.masks[i];
        if (back.masks[i] !== expected) diff++;
      }
      expect(diff).toBe(0);
    });
  });
}

describe('nesting and guards', () => {
  const nesting = [[4, 3], [3, 2]];
  it('follows the nesting chain both ways', () => {
    expect(outerSegments(4, nesting)).toEqual([3, 2]);
    expect(innerSegmentsOf(2, nesting).sort()).toEqual([3, 4]);
    expect(Array.from(maskFromLabels(Uint8Array.from([0, 1, 2, 3, 4]), 2, nesting))).toEqual([0, 0, 1, 1, 1]);
  });
  it('refuses a SEG whose segments overlap without nesting (one labelmap cannot hold it)', () => {
    const frames = [Uint8Array.from([1, 1, 0]), Uint8Array.from([0, 1, 1])];
    const frameInfo = [{ segmentNumber: 1, sopInstanceUID: '1.2', frameNumber: null }, { segmentNumber: 2, sopInstanceUID: '1.2', frameNumber: null }];
    expect(() => toLabelImages({ rows: 1, cols: 3, frames, frameInfo, nesting: [] })).toThrow(/overlaps segment .* without nesting/);
    expect(() => toLabelImages({ rows: 1, cols: 3, frames, frameInfo, nesting: [[2, 1]] })).toThrow(/without nesting/); // 2 leaves 1 at pixel 2
    const nested = [Uint8Array.from([1, 1, 0]), Uint8Array.from([0, 1, 0])];
    expect(Array.from(toLabelImages({ rows: 1, cols: 3, frames: nested, frameInfo, nesting: [[2, 1]] }).get('1.2|'))).toEqual([1, 2, 0]);
  });
  it('decodes frames that start mid-byte', () => {
    const frames = [Uint8Array.from([1, 0, 1]), Uint8Array.from([0, 1, 1]), Uint8Array.from([1, 1, 0])];
    const packed = packBits(frames, 3);
    expect(unpackBits(packed, 3, 3)).toEqual(frames);
  });
  it('reads a WADO-RS multipart answer and a bare Part 10 file', () => {
    const part10 = new Uint8Array(140);
    part10.set([0x44, 0x49, 0x43, 0x4d], 128);
    expect(firstMultipartPart(part10)).toBe(part10);
    const enc = new TextEncoder();
    const body = Uint8Array.from([1, 2, 13, 10, 45, 45, 3]); // contains "\r\n--" but not the boundary
    const mp = new Uint8Array([...enc.encode('--abc\r\nContent-Type: application/dicom\r\n\r\n'), ...body, ...enc.encode('\r\n--abc--\r\n')]);
    expect(Array.from(firstMultipartPart(mp, 'multipart/related; type="application/dicom"; boundary=abc'))).toEqual(Array.from(body));
    expect(Array.from(firstMultipartPart(mp))).toEqual(Array.from(body));
  });
});
