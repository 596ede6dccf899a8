import { describe, expect, it } from 'vitest';
import { parseLgeReport, AHA_SEGMENTS } from '../../src/lib/srParse.js';
import { naturalize, clone, items } from '../../src/lib/dicom.js';
import { readPart10 } from '../../src/lib/part10.js';
import { loadFixtures } from './fixtures.js';

const fx = loadFixtures();
const exp = fx.manifest.expected;

function expectClose(actual, expected, what) {
  expect(actual, what).not.toBeNull();
  expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).toBeLessThan(1e-6 * Math.max(1, Math.abs(expected)));
}

describe.each([
  ['DICOM JSON (WADO-RS metadata)', () => fx.srJson],
  ['Part 10 read with dcmjs', () => readPart10(fx.srPart10)],
])('parseLgeReport on the node SR as %s', (_name, get) => {
  const r = parseLgeReport(get());

  it('reads the volumetric numbers the node computed', () => {
    expectClose(r.summary.lvCavityMl, exp.lv_cavity_ml, 'LV cavity mL');
    expectClose(r.summary.myocardiumMl, exp.myocardium_ml, 'myocardium mL');
    expectClose(r.summary.massG, exp.myocardial_mass_g, 'mass g');
    expectClose(r.summary.infarctMl, exp.infarct_ml, 'infarct mL');
    expectClose(r.summary.infarctPercent, exp.infarct_percent_of_myocardium, 'infarct %');
    expectClose(r.summary.mvoMl, exp.mvo_ml, 'MVO mL');
    expectClose(r.summary.mvoPercent, exp.mvo_percent_of_myocardium, 'MVO %');
    expect(r.warnings).toEqual([]);
  });

  it('reads all 17 AHA segments with transmurality', () => {
    expect(r.aha).toHaveLength(17);
    for (const seg of r.aha) {
      const e = exp.aha[String(seg.number)];
      if (e.percent_enhanced === null) {
        expect(seg.covered, `segment ${seg.number}`).toBe(false);
        continue;
      }
      expect(seg.covered).toBe(true);
      expectClose(seg.percentEnhanced, e.percent_enhanced, `AHA ${seg.number} % enhanced`);
      if (e.mean_transmurality === null) expect(seg.meanTransmurality).toBeNull();
      else expectClose(seg.meanTransmurality, e.mean_transmurality, `AHA ${seg.number} transmurality`);
    }
    expect(r.summary.nTransmuralSegments).toBe(exp.n_transmural_segments);
  });

  it('identifies the algorithm, the SEG and the source series', () => {
    expect(r.algorithm.name).toBe(fx.manifest.algorithm.name);
    expect(r.algorithm.version).toBe(fx.manifest.algorithm.version);
    expect(r.referencedSeg.sopInstanceUID).toBe(fx.manifest.seg.sop_instance_uid);
    expect(r.sourceSeriesInstanceUID).toBe(fx.manifest.lge_series_instance_uid);
    expect(r.structures.infarct.segmentNumber).toBe(3);
    expect(r.sopInstanceUID).toBe(fx.manifest.sr.sop_instance_uid);
  });
});

describe('parseLgeReport robustness', () => {
  const base = () => clone(naturalize(fx.srJson));
  const groups = ds => items(items(ds.ContentSequence).find(c => c.ValueType === 'CONTAINER').ContentSequence);

  it('derives infarct % from the volumes when the SR has no percentage', () => {
    const ds = base();
    for (const g of groups(ds)) {
      g.ContentSequence = items(g.ContentSequence).filter(
        c => !(c.ValueType === 'NUM' && items(c.ConceptNameCodeSequence)[0].CodeValue === 'LGE0001')
      );
    }
    const r = parseLgeReport(ds);
    expectClose(r.summary.infarctPercent, (100 * exp.infarct_ml) / exp.myocardium_ml, 'derived infarct %');
  });

  it('reports missing structures as null, not 0, and counts transmural segments itself', () => {
    const ds = base();
    const container = items(ds.ContentSequence).find(c => c.ValueType === 'CONTAINER');
    container.ContentSequence = groups(ds).filter(g => {
      const tid = items(g.ContentSequence).find(c => c.ValueType === 'TEXT');
      return !/Microvascular|summary/.test(tid.TextValue);
    });
    const r = parseLgeReport(ds);
    expect(r.summary.mvoMl).toBeNull();
    expect(r.summary.mvoPercent).toBeNull();
    const counted = Object.values(exp.aha).filter(a => (a.mean_transmurality ?? 0) > 50).length;
    expect(r.summary.nTransmuralSegments).toBe(counted);
  });

  it('rejects a dataset that is not a TID 1500 report', () => {
    expect(() => parseLgeReport(fx.segJson)).toThrow(/TID 1500/);
  });

  it('maps every AHA code once', () => {
    expect(new Set(AHA_SEGMENTS.map(s => s[1])).size).toBe(17);
  });
});
