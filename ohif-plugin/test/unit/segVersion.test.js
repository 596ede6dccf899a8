import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  buildSegVersion, nestingFromSegments, packBits, unpackBits, segVersionOf, versionedDescription,
  versionSeriesNumber, segProvenance, frameSource, frameSegmentNumber,
  BINARY_SEG_SOP_CLASS_UID, EXPLICIT_VR_LITTLE_ENDIAN,
} from '../../src/lib/segVersion.js';
import { naturalize, items, first, toPersonName, newUid } from '../../src/lib/dicom.js';
import { writePart10, readPart10 } from '../../src/lib/part10.js';
import { loadFixtures, maskGetter, inspectSeg, outDir, SEGMENT_LABELS } from './fixtures.js';

const fx = loadFixtures();
const m = fx.manifest;
const [nSlices, rows, cols] = m.shape;
const REVIEWER = 'Doe^Jane';
const NOW = new Date(2024, 4, 17, 14, 30, 5, 250);

/** The reviewer's edit: paint a 5x5 block of infarct (label 3) into myocardium of slice `k`. */
function editedLabels(k = 1) {
  const labels = fx.labels.slice();
  const base = k * rows * cols;
  let painted = 0;
  for (let i = 0; i < rows * cols; i++) {
    const r = Math.floor(i / cols);
    const c = i % cols;
    if (labels[base + i] === 2 && painted < 25 && r >= rows / 2 - 2 && c < cols / 2) {
      labels[base + i] = 3;
      painted += 1;
    }
  }
  return { labels, painted };
}

function aiFrames() {
  const ai = readPart10(fx.segPart10);
  const px = new Uint8Array(ai.PixelData[0] ?? ai.PixelData);
  return unpackBits(px, Number(ai.NumberOfFrames), rows * cols);
}

describe('bit packing', () => {
  it('round-trips frames whose size is not a multiple of 8 and pads to even length', () => {
    const frames = [Uint8Array.from([1, 0, 1]), Uint8Array.from([0, 1, 1])];
    const packed = packBits(frames, 3);
    expect(packed.length % 2).toBe(0);
    expect(packed[0]).toBe(0b110101); // bit i of the stream = pixel i (LSB first, no frame padding)
    expect(unpackBits(packed, 2, 3)).toEqual(frames);
  });
  it('unpacks the node SEG to the node labels', () => {
    const frames = aiFrames();
    const ai = naturalize(fx.segJson);
    const getMask = maskGetter(fx.labels, m);
    const shared = first(items(ai.SharedFunctionalGroupsSequence));
    items(ai.PerFrameFunctionalGroupsSequence).forEach((pf, i) => {
      const ref = frameSource(pf, shared);
      expect(Array.from(frames[i])).toEqual(Array.from(getMask(frameSegmentNumber(pf, shared), ref.sopInstanceUID)));
    });
  });
});

describe('version naming', () => {
  it('numbers versions from the description', () => {
    expect(segVersionOf('LGE AI segmentation (research use only)')).toBe(1);
    expect(segVersionOf('LGE AI segmentation (research use only) v2')).toBe(2);
    expect(versionedDescription('LGE AI segmentation (research use only) v2', 3)).toBe('LGE AI segmentation (research use only) v3');
    const long = 'x'.repeat(80);
    expect(versionedDescription(long, 12)).toHaveLength(64);
    expect(versionedDescription(long, 12).endsWith(' v12')).toBe(true);
  });
  it('keeps series numbers clear of the node SR/PDF and of taken numbers', () => {
    expect(versionSeriesNumber(1201, 2)).toBe(1211);
    expect(versionSeriesNumber(1201, 3, [1221])).toBe(1222);
  });
  it('formats reviewer names as DICOM PN', () => {
    expect(toPersonName('Jane Doe')).toBe('Doe^Jane');
    expect(toPersonName(' Doe^Jane ')).toBe('Doe^Jane');
    expect(toPersonName('Doe, Jane')).toBe('Doe^Jane');
    expect(toPersonName('')).toBe('');
  });
  it('makes valid 2.25 UIDs', () => {
    const uid = newUid();
    expect(uid).toMatch(/^2\.25\.[1-9]\d*$/);
    expect(uid.length).toBeLessThanOrEqual(64);
    expect(newUid()).not.toBe(uid);
  });
});

describe('buildSegVersion from the node AI SEG', () => {
  const { labels, painted } = editedLabels(1);
  const built = buildSegVersion({
    sourceSeg: fx.segJson,
    getMask: maskGetter(labels, m),
    reviewer: REVIEWER,
    now: NOW,
    comment: 'extended the inferoseptal infarct',
    previousFrames: aiFrames(),
  });
  const ds = built.dataset;
  const ai = naturalize(fx.segJson);

  it('is a new BINARY SEG series, version 2', () => {
    expect(ds.SOPClassUID).toBe(BINARY_SEG_SOP_CLASS_UID);
    expect(ds.SegmentationType).toBe('BINARY');
    expect(ds.BitsAllocated).toBe(1);
    expect(ds._meta.TransferSyntaxUID).toBe(EXPLICIT_VR_LITTLE_ENDIAN);
    expect(ds.SeriesInstanceUID).not.toBe(ai.SeriesInstanceUID);
    expect(ds.SOPInstanceUID).not.toBe(ai.SOPInstanceUID);
    expect(built.version).toBe(2);
    expect(ds.SeriesDescription).toBe(`${m.seg.series_description} v2`);
    expect(ds.SeriesNumber).toBe(m.seg.series_number + 10);
    expect(ds.NumberOfFrames).toBe(m.seg.number_of_frames);
    expect(ds.StudyInstanceUID).toBe(m.study_instance_uid);
    expect(ds.FrameOfReferenceUID).toBe(ai.FrameOfReferenceUID);
    expect(ds.ContentDate).toBe('20240517');
  });

  it('keeps the algorithm, marks it SEMIAUTOMATIC and names the reviewer', () => {
    const p = segProvenance(ds);
    expect(p.segments.map(s => s.label)).toEqual(Object.values(m.seg.segment_labels));
    for (const s of p.segments) {
      expect(s.algorithmType).toBe('SEMIAUTOMATIC');
      expect(s.algorithmName).toBe(m.algorithm.name);
      expect(s.algorithmVersion).toBe(m.algorithm.version);
    }
    expect(p.contentCreator).toBe(REVIEWER);
    expect(p.derivedFrom).toEqual([m.seg.sop_instance_uid]);
    // The source-image series stays the only Referenced Series (OHIF links SEGs by it).
    expect(items(ds.ReferencedSeriesSequence).map(s => s.SeriesInstanceUID)).toEqual([m.lge_series_instance_uid]);
    expect(ds.DerivationDescription).toContain(m.seg.sop_instance_uid);
    expect(ds.DerivationDescription).toContain('inferoseptal');
    const modifying = items(ds.ContributingEquipmentSequence).at(-1);
    expect(modifying.PurposeOfReferenceCodeSequence[0].CodeValue).toBe('109103');
  });

  it('carries exactly the edit in its pixels', () => {
    // painted label-3 pixels enter segment 3 (infarct); segment 2 (myocardium) already had them.
    expect(painted).toBe(25);
    expect(built.changedPixels).toBe(25);
    const frames = unpackBits(ds.PixelData[0], ds.NumberOfFrames, rows * cols);
    const getMask = maskGetter(labels, m);
    const shared = first(items(ds.SharedFunctionalGroupsSequence));
    items(ds.PerFrameFunctionalGroupsSequence).forEach((pf, i) => {
      const ref = frameSource(pf, shared);
      expect(Array.from(frames[i])).toEqual(Array.from(getMask(frameSegmentNumber(pf, shared), ref.sopInstanceUID)));
    });
  });

  it('encodes to Part 10 that highdicom reads back with the edit and provenance, dciodvfy-clean', () => {
    mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, 'seg_v2.dcm');
    writeFileSync(file, Buffer.from(writePart10(ds)));
    const { info, masks } = inspectSeg(file, m.lge_sop_instance_uids);
    expect(info.sop_class_uid).toBe(BINARY_SEG_SOP_CLASS_UID);
    expect(info.segmentation_type).toBe('BINARY');
    expect(info.transfer_syntax).toBe(EXPLICIT_VR_LITTLE_ENDIAN);
    expect(info.content_creator).toBe(REVIEWER);
    expect(info.segments.every(s => s.algorithm_type === 'SEMIAUTOMATIC' && s.identification_name === m.algorithm.name)).toBe(true);
    expect(info.source_images.find(s => s.sop_instance === m.seg.sop_instance_uid)?.purpose).toBe('121322');
    expect(info.derivation_code).toBe('113076');
    if (info.dciodvfy_errors !== null) expect(info.dciodvfy_errors).toEqual([]);
    // masks: (n_sources, rows, cols, 4) must equal the edited labels' structures
    const nSeg = 4;
    for (let k = 0; k < nSlices; k++) {
      for (let s = 1; s <= nSeg; s++) {
        let diff = 0;
        for (let i = 0; i < rows * cols; i++) {
          const want = SEGMENT_LABELS[s].includes(labels[k * rows * cols + i]) ? 1 : 0;
          if (masks[((k * rows * cols) + i) * nSeg + (s - 1)] !== want) diff++;
        }
        expect(diff, `slice ${k} segment ${s}`).toBe(0);
      }
    }
  });

  it('chains: a v3 made from v2 references v2 and still carries the algorithm', () => {
    const v3 = buildSegVersion({
      sourceSeg: readPart10(writePart10(ds)),
      getMask: maskGetter(labels, m),
      reviewer: 'Roe^Richard',
      now: NOW,
      takenSeriesNumbers: [m.seg.series_number, ds.SeriesNumber],
    });
    const p = segProvenance(v3.dataset);
    expect(v3.version).toBe(3);
    expect(v3.dataset.SeriesNumber).toBe(m.seg.series_number + 20);
    expect(v3.dataset.SeriesDescription).toBe(`${m.seg.series_description} v3`);
    expect(p.derivedFrom).toEqual([ds.SOPInstanceUID]);
    expect(p.contentCreator).toBe('Roe^Richard');
    expect(p.segments[0].algorithmName).toBe(m.algorithm.name);
  });

  it('keeps the segments nested when the brush took infarct out of the myocardium', () => {
    expect(nestingFromSegments(naturalize(fx.segJson).SegmentSequence)).toEqual([[4, 3], [3, 2]]);
    const base = maskGetter(labels, m);
    // OHIF's brush clears the other segments under a stroke: myocardium lacks the painted pixels
    const clearedMyo = (n, sop) => {
      const mask = base(n, sop);
      if (n !== 2 || !mask) return mask;
      const inf = base(3, sop);
      return mask.map((v, i) => (inf[i] ? 0 : v));
    };
    const v = buildSegVersion({ sourceSeg: fx.segJson, getMask: clearedMyo, reviewer: REVIEWER, now: NOW });
    const frames = unpackBits(v.dataset.PixelData[0], v.dataset.NumberOfFrames, rows * cols);
    const shared = first(items(v.dataset.SharedFunctionalGroupsSequence));
    items(v.dataset.PerFrameFunctionalGroupsSequence).forEach((pf, i) => {
      const n = frameSegmentNumber(pf, shared);
      const sop = frameSource(pf, shared).sopInstanceUID;
      expect(Array.from(frames[i]), `segment ${n}`).toEqual(Array.from(base(n, sop)));
    });
    // and no nesting when asked for none
    const flat = buildSegVersion({ sourceSeg: fx.segJson, getMask: clearedMyo, reviewer: REVIEWER, now: NOW, nesting: [] });
    const onFlat = flat.onPixels;
    expect(onFlat).toBeLessThan(v.onPixels);
  });

  it('refuses a non-SEG source, a missing reviewer and wrong-sized masks', () => {
    expect(() => buildSegVersion({ sourceSeg: fx.srJson, getMask: () => null, reviewer: REVIEWER })).toThrow(/not a Segmentation/);
    expect(() => buildSegVersion({ sourceSeg: fx.segJson, getMask: () => null, reviewer: ' ' })).toThrow(/reviewer/);
    expect(() => buildSegVersion({ sourceSeg: fx.segJson, getMask: () => new Uint8Array(3), reviewer: REVIEWER })).toThrow(/pixels/);
    // a source image without edited data must not become empty frames
    const partial = (n, sop) => (sop === m.lge_sop_instance_uids[0] ? null : new Uint8Array(rows * cols));
    expect(() => buildSegVersion({ sourceSeg: fx.segJson, getMask: partial, reviewer: REVIEWER })).toThrow(/no edited labelmap/);
  });
});
