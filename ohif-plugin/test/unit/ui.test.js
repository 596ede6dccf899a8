// Bullseye geometry, SEG/SR selection, the node review client, host React discovery, the
// panel's view and the mode derivation.
import { describe, expect, it, vi } from 'vitest';
import React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { bullseyeSegments, transmuralityColor } from '../../src/lib/bullseye.js';
import { pickLatestSeg, pickReportForSeg } from '../../src/lib/segSelect.js';
import { reviewClient } from '../../src/lib/reviewApi.js';
import { fromChunkRuntime, getHostReact, _resetHostReactCache } from '../../src/extension/hostReact.js';
import { makePanelView } from '../../src/extension/panel.js';
import { parseLgeReport } from '../../src/lib/srParse.js';
import { deriveModeInstance } from '../../src/mode/index.js';
import { PANEL_ID, HP_ID, MODE_ID } from '../../src/extension/ids.js';
import { loadFixtures } from './fixtures.js';

describe('AHA bullseye', () => {
  const segs = bullseyeSegments(100, 100, 90);
  const centroid = n => segs.find(s => s.number === n);
  it('has 17 segments in the standard orientation', () => {
    expect(segs.map(s => s.number).sort((a, b) => a - b)).toEqual([...Array(17).keys()].map(i => i + 1));
    // anterior at the top, inferior at the bottom, septum left, lateral right (SVG y down)
    expect(centroid(1).labelY).toBeLessThan(100);
    expect(centroid(4).labelY).toBeGreaterThan(100);
    expect(centroid(2).labelX).toBeLessThan(100);
    expect(centroid(3).labelX).toBeLessThan(100);
    expect(centroid(5).labelX).toBeGreaterThan(100);
    expect(centroid(6).labelX).toBeGreaterThan(100);
    expect(centroid(14).labelX).toBeLessThan(100); // apical septal
    expect(centroid(16).labelX).toBeGreaterThan(100); // apical lateral
    expect([centroid(17).labelX, centroid(17).labelY]).toEqual([100, 100]);
    // rings: basal outside mid outside apical
    const r = n => Math.hypot(centroid(n).labelX - 100, centroid(n).labelY - 100);
    expect(r(1)).toBeGreaterThan(r(7));
    expect(r(7)).toBeGreaterThan(r(13));
  });
  it('bins transmurality', () => {
    expect(transmuralityColor(null)).not.toBe(transmuralityColor(0));
    expect(transmuralityColor(10)).not.toBe(transmuralityColor(60));
    expect(transmuralityColor(50)).toBe(transmuralityColor(26));
    expect(transmuralityColor(51)).not.toBe(transmuralityColor(50));
  });
});

describe('choosing the SEG and SR', () => {
  const seg = (desc, num, date, time, extra = {}) => ({ Modality: 'SEG', SeriesDescription: desc, SeriesNumber: num, SeriesDate: date, SeriesTime: time, ...extra });
  it('prefers the highest version, then the newest', () => {
    const ai = seg('LGE AI segmentation', 1201, '20240101', '100000', { referencedSeriesInstanceUID: 'A' });
    const v2 = seg('LGE AI segmentation v2', 1211, '20240102', '100000', { referencedSeriesInstanceUID: 'A' });
    const v3old = seg('LGE AI segmentation v3', 1221, '20230101', '100000', { referencedSeriesInstanceUID: 'A' });
    const other = seg('LGE AI segmentation v9', 1301, '20240101', '100000', { referencedSeriesInstanceUID: 'B' });
    expect(pickLatestSeg([ai, v2, v3old])).toBe(v3old);
    expect(pickLatestSeg([ai, v2])).toBe(v2);
    expect(pickLatestSeg([ai, v2, other], { referencedSeriesInstanceUID: 'A' })).toBe(v2);
    const later = seg('LGE AI segmentation', 1201, '20240101', '110000');
    expect(pickLatestSeg([ai, later])).toBe(later);
    expect(pickLatestSeg([])).toBeNull();
  });
  it('takes the report of the displayed SEG, else the newest', () => {
    const r1 = { referencedSeg: { sopInstanceUID: 'S1' }, contentDateTime: '20240101100000.000000' };
    const r2 = { referencedSeg: { sopInstanceUID: 'S2' }, contentDateTime: '20240102100000.000000' };
    expect(pickReportForSeg([r1, r2], 'S1')).toEqual({ report: r1, matchesSeg: true });
    expect(pickReportForSeg([r1, r2], 'S3')).toEqual({ report: r2, matchesSeg: false });
  });
});

describe('node review API client', () => {
  const jobs = [{ id: 3, series_uid: 'A', review: null }, { id: 7, series_uid: 'A', review: { decision: 'accepted' } }];
  it('lists jobs of a series newest first and posts a decision', async () => {
    const fetchFn = vi.fn(async (url, init) => {
      if (!init?.method) return new Response(JSON.stringify(jobs), { status: 200 });
      return new Response(JSON.stringify({ id: 1, job_id: 7, ...JSON.parse(init.body) }), { status: 201 });
    });
    const api = reviewClient({ nodeUrl: '/lgenode/', fetchFn });
    const list = await api.jobsForSeries({ studyInstanceUID: 'S', seriesInstanceUID: 'A' });
    expect(list.map(j => j.id)).toEqual([7, 3]);
    expect(fetchFn.mock.calls[0][0]).toBe('/lgenode/api/jobs?study_uid=S&series_uid=A');
    const review = await api.submitReview(7, { decision: 'rejected', comment: ' wrong slice ', reviewer: 'Doe^Jane', segSopInstanceUID: '1.2' });
    const [url, init] = fetchFn.mock.calls[1];
    expect(url).toBe('/lgenode/api/jobs/7/review');
    expect(init.method).toBe('POST');
    expect(JSON.parse(init.body)).toEqual({ decision: 'rejected', comment: 'wrong slice', reviewer: 'Doe^Jane', seg_series_uid: null, seg_sop_instance_uid: '1.2' });
    expect(review.decision).toBe('rejected');
  });
  it('rejects unknown decisions and reports HTTP errors with the detail', async () => {
    const fetchFn = vi.fn(async () => new Response(JSON.stringify({ detail: 'no job 9' }), { status: 404 }));
    const api = reviewClient({ nodeUrl: 'http://node', fetchFn });
    await expect(api.submitReview(9, { decision: 'maybe' })).rejects.toThrow(/decision/);
    await expect(api.submitReview(9, { decision: 'accepted' })).rejects.toThrow(/404 - no job 9/);
    expect(() => reviewClient({ nodeUrl: '' })).toThrow(/nodeUrl/);
  });
});

describe('host React discovery', () => {
  // A stand-in for a webpack/rspack chunk runtime that knows a React module.
  function fakeHost() {
    const modules = {
      11: function (module) { module.exports = { notReact: true }; },
      42: function (module, exports) { exports.useState = 1; exports.createElement = 1; exports.version = '18'; },
    };
    const req = id => (id === '42' ? React : modules[id]);
    req.m = modules;
    const queue = [];
    queue.push = chunk => { const [, , runtime] = chunk; runtime?.(req); return 0; };
    return { rspackChunk: queue };
  }
  it('finds React in the host chunk runtime by its exports', () => {
    expect(fromChunkRuntime(fakeHost(), 'rspackChunk')).toBe(React);
    expect(fromChunkRuntime({ rspackChunk: [] }, 'rspackChunk')).toBeNull(); // no runtime yet
  });
  it('prefers the OHIF 3.14 window singleton and explains a failure', () => {
    _resetHostReactCache();
    expect(getHostReact({ react: { default: React } })).toBe(React);
    _resetHostReactCache();
    expect(() => getHostReact({})).toThrow(/host React/);
    _resetHostReactCache();
  });
});

describe('panel view', () => {
  const fx = loadFixtures();
  const report = parseLgeReport(fx.srJson);
  const View = makePanelView(React);
  const model = {
    seg: { SeriesDescription: 'LGE AI segmentation (research use only)', SeriesNumber: 1201, version: 1, provenance: { contentCreator: '', segments: [{ algorithmType: 'AUTOMATIC' }] } },
    report, reportMatchesSeg: true, job: { id: 4 }, review: { decision: 'rejected', reviewer: 'Doe^Jane', comment: 'apex missed' },
    busy: null, message: null, lastSaved: null,
  };
  const html = renderToStaticMarkup(React.createElement(View, { model, form: { reviewer: 'Doe^Jane', comment: '' }, onForm() {}, onAccept() {}, onReject() {}, onSave() {}, onReload() {} }));
  it('shows the SR numbers, the status and the algorithm', () => {
    expect(html).toContain(`${report.summary.lvCavityMl.toFixed(1)}`);
    expect(html).toContain(`${report.summary.infarctPercent.toFixed(1)}`);
    expect(html).toContain(`${report.summary.massG.toFixed(1)}`);
    expect(html).toContain('REJECTED');
    expect(html).toContain(`${fx.manifest.algorithm.name} ${fx.manifest.algorithm.version}`);
    expect(html).toContain('Save edited SEG as v2');
    expect(html).toContain('apex missed');
  });
  it('draws a 17-segment bullseye coloured by transmurality', () => {
    const paths = html.match(/data-segment="\d+"/g) ?? [];
    expect(paths).toHaveLength(17);
    const s3 = report.aha[2];
    if (s3.covered) expect(html).toContain(`data-transmurality="${s3.meanTransmurality}"`);
  });
});

describe('mode', () => {
  const base = {
    id: '@ohif/mode-segmentation', routeName: 'segmentation', extensions: { '@ohif/extension-cornerstone': '^3.0.0' },
    routes: [{ path: 'template', layoutTemplate() { return this.layoutInstance; }, layoutInstance: { id: 'layout', props: { leftPanels: ['thumbs'], rightPanels: ['@ohif/extension-cornerstone.panelModule.panelSegmentationWithToolsLabelMap', 'contour'] } } }],
    onModeEnter: vi.fn(), onModeExit: vi.fn(),
  };
  it('reuses the segmentation mode with the review panel above the labelmap tools', () => {
    const unsub = vi.fn();
    const autoLoad = vi.fn(() => unsub);
    const m = deriveModeInstance(base, { autoLoad, extensionUrl: 'http://x/plugins/lgenode/extension-lge-review.js' });
    expect(m.id).toBe(MODE_ID);
    expect(m.routeName).toBe('lge-review');
    expect(m.hangingProtocol).toBe(HP_ID);
    expect(m.routes[0].layoutInstance.props.rightPanels).toEqual([[PANEL_ID, '@ohif/extension-cornerstone.panelModule.panelSegmentationWithToolsLabelMap']]);
    expect(m.routes[0].layoutTemplate()).toBe(m.routes[0].layoutInstance);
    expect(Object.keys(m.extensions)).toContain('http://x/plugins/lgenode/extension-lge-review.js');
    expect(m.isValidMode({ modalities: 'MR\\SEG\\SR' }).valid).toBe(true);
    expect(m.isValidMode({ modalities: 'CT' }).valid).toBe(false);
    m.onModeEnter({ servicesManager: {} });
    expect(base.onModeEnter).toHaveBeenCalled();
    expect(autoLoad).toHaveBeenCalled();
    m.onModeExit({});
    expect(unsub).toHaveBeenCalled();
    expect(base.onModeExit).toHaveBeenCalled();
  });
});
