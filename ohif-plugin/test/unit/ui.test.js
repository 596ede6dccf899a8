// Bullseye geometry, SEG/SR selection, the node review client, host React discovery, the
// panel's view and the mode derivation.
import { describe, expect, it, vi } from 'vitest';
import React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { bullseyeSegments, transmuralityColor } from '../../src/lib/bullseye.js';
import { pickLatestSeg, pickReportForSeg } from '../../src/lib/segSelect.js';
import { errorKind, reviewClient } from '../../src/lib/reviewApi.js';
import { nodeAuthHeaders } from '../../src/extension/ohifData.js';
import { shownFigures } from '../../src/extension/commands.js';
import { fromChunkRuntime, getHostReact, _resetHostReactCache } from '../../src/extension/hostReact.js';
import { makePanelView, qualityMessage } from '../../src/extension/panel.js';
import { parseLgeReport } from '../../src/lib/srParse.js';
import { deriveModeInstance } from '../../src/mode/index.js';
import { PANEL_ID, HP_ID, MODE_ID } from '../../src/extension/ids.js';
import path from 'node:path';
import { loadFixtures, pluginDir } from './fixtures.js';

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
    expect(m.displayName.length).toBeLessThanOrEqual(12); // the study list's mode button cuts longer labels
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

describe('node API: authorisation and errors', () => {
  const services = header => ({ services: { userAuthenticationService: { getAuthorizationHeader: () => header } } });
  it('sends OHIF\'s Authorization header, else Bearer lgeReview.apiToken, else nothing', () => {
    expect(nodeAuthHeaders(services({ Authorization: 'Bearer jwt' }), 'key')).toEqual({ Authorization: 'Bearer jwt' });
    expect(nodeAuthHeaders(services(undefined), 'key')).toEqual({ Authorization: 'Bearer key' });
    expect(nodeAuthHeaders({ services: {} }, null)).toEqual({});
  });
  it('passes the headers on every call', async () => {
    const fetchFn = vi.fn(async () => new Response('[]', { status: 200 }));
    await reviewClient({ nodeUrl: '/lgenode', fetchFn, headers: { Authorization: 'Bearer key' } }).jobsForSeries({ seriesInstanceUID: 'A' });
    expect(fetchFn.mock.calls[0][1].headers.Authorization).toBe('Bearer key');
  });
  it('tells "not authorised" from "unreachable"', async () => {
    for (const [status, kind] of [[401, 'unauthorised'], [403, 'unauthorised'], [429, 'unauthorised'], [502, 'unreachable'], [504, 'unreachable'], [500, 'error']]) {
      const fetchFn = vi.fn(async () => new Response('{"detail":"x"}', { status }));
      const err = await reviewClient({ nodeUrl: '/n', fetchFn }).jobsForSeries({}).catch(e => e);
      expect(errorKind(err), String(status)).toBe(kind);
    }
    const down = vi.fn(async () => { throw new TypeError('Failed to fetch'); });
    const err = await reviewClient({ nodeUrl: '/n', fetchFn: down }).jobsForSeries({}).catch(e => e);
    expect(errorKind(err)).toBe('unreachable');
    expect(err.message).toMatch(/did not answer/);
  });
});

describe('panel view: review UX and version-true numbers', () => {
  const fx = loadFixtures();
  const report = parseLgeReport(fx.srJson);
  const View = makePanelView(React);
  const seg = { SeriesDescription: 'LGE AI segmentation (research use only)', SeriesNumber: 1201, version: 1,
    provenance: { contentCreator: '', segments: [{ number: 3, label: 'Myocardial infarction', rgb: [230, 50, 50] }, { number: 4, label: 'Microvascular obstruction', rgb: [40, 200, 90] }] } };
  const base = { seg, report, reportMatchesSeg: true, job: { id: 4 }, review: null, busy: null, message: null, lastSaved: null, dirty: false };
  const render = (patch = {}, form = { reviewer: 'Jane Doe', comment: '' }) => renderToStaticMarkup(React.createElement(View, {
    model: { ...base, ...patch }, form, onForm() {}, onAccept() {}, onReject() {}, onSave() {}, onReload() {} }));
  const saveButton = html => /<button[^>]*data-testid="lge-save"[^>]*>/.exec(html)[0];

  it('disables Save until the segmentation was edited', () => {
    expect(saveButton(render())).toContain('disabled');
    expect(render()).toContain('Save is available after you edit the segmentation.');
    expect(saveButton(render({ dirty: true }))).not.toContain('disabled');
    expect(saveButton(render({ dirty: true }, { reviewer: '', comment: '' }))).toContain('disabled');
  });
  it('never shows another version\'s numbers: pending after Save, then the new SR', () => {
    const saved = { ...seg, version: 2, SeriesDescription: `${seg.SeriesDescription} v2` };
    const pending = render({ seg: saved, report: null, reportMatchesSeg: false, reportPending: true });
    expect(pending).toContain('Measurements of v2 are being computed by the node');
    expect(pending).not.toContain('data-testid="lge-numbers"');
    expect(pending).not.toContain('data-testid="lge-bullseye"');
    // an SR of another version (v1) is not shown under v2
    const stale = render({ seg: saved, report, reportMatchesSeg: false, reportPending: true });
    expect(stale).not.toContain(report.summary.lvCavityMl.toFixed(1));
    const arrived = render({ seg: saved, report, reportMatchesSeg: true, reportPending: false });
    expect(arrived).toContain('data-version="2"');
    expect(arrived).toContain(report.summary.lvCavityMl.toFixed(1));
  });
  it('names the node\'s state in the badge instead of "NOT REVIEWED"', () => {
    expect(render({ job: null, nodeErrorKind: 'unreachable', nodeError: 'listing jobs: the node did not answer' })).toContain('NODE UNREACHABLE');
    const denied = render({ job: null, nodeErrorKind: 'unauthorised', nodeError: 'HTTP 401' });
    expect(denied).toContain('NOT AUTHORISED');
    expect(denied).not.toContain('NOT REVIEWED');
    expect(render()).toContain('NOT REVIEWED');
  });
  it('draws a readable bullseye: numbers, walls, "not covered" apart from 0 %, count over covered segments', () => {
    const aha = report.aha.map(a => (a.number >= 13 ? { ...a, covered: false, meanTransmurality: null } : { ...a, meanTransmurality: a.number === 1 ? 0 : 80 }));
    const html = render({ report: { ...report, aha, summary: { ...report.summary, nTransmuralSegments: 11 } } });
    for (const wall of ['Anterior', 'Inferior', 'Septal', 'Lateral']) expect(html).toContain(`>${wall}<`);
    expect(html).toMatch(/data-testid="lge-aha-1"[^>]*>0%</);
    expect(html).toMatch(/data-testid="lge-aha-13"[^>]*>n\/c</);
    expect((html.match(/data-covered="no"/g) ?? []).length).toBe(5);
    expect(/data-segment="13"[^>]*fill="url\(#lge-not-covered\)"|fill="url\(#lge-not-covered\)"[^>]*data-segment="13"/.test(html)).toBe(true);
    expect(html).toContain('/ 12 covered');
    expect(html).toContain('n/c = not covered by the slices');
    expect(/<svg[^>]*data-testid="lge-bullseye"[^>]*/.exec(html)[0]).toMatch(/width="300"/);
  });
  it('uses plain words: "Reviewer name", names as written, overlay colours', () => {
    const html = render({ review: { decision: 'accepted', reviewer: 'Doe^Jane' } });
    expect(html).toContain('Reviewer name');
    expect(html).not.toContain('Family^Given');
    expect(html).toContain('accepted by Jane Doe');
    expect(html).toContain('Microvascular obstruction');
    expect(html).toContain('rgb(40,200,90)');
  });
  it('records the figures on screen with a decision', () => {
    const f = shownFigures(report);
    expect(f.lv_cavity_ml).toBe(report.summary.lvCavityMl);
    expect(f.covered_segments).toBe(report.aha.filter(a => a.covered).length);
    expect(shownFigures(null)).toBeNull();
    // the model's doubt as shown goes on record with the decision (null when the SR has none)
    const flagged = shownFigures({ ...report, quality: { score: 0.71, needsReview: true } });
    expect(flagged.quality_score).toBe(0.71);
    expect(flagged.needs_review_shown).toBe(true);
    expect(shownFigures({ ...report, quality: undefined }).needs_review_shown).toBeNull();
  });
});

describe('panel view: the model\'s doubt (quality score, "needs careful review")', () => {
  // SRs from the node's encoder: flagged (5 members), confident (flag No), without the items
  const reportOf = set => parseLgeReport(loadFixtures(path.join(pluginDir, '.fixtures', set)).srJson);
  const flagged = reportOf('synthetic');
  const confident = reportOf('odd-63x61');
  const without = reportOf('unaligned-482x478');
  const View = makePanelView(React);
  const seg = { SeriesDescription: 'LGE AI segmentation (research use only)', SeriesNumber: 1201, version: 1,
    provenance: { contentCreator: '', segments: [] } };
  const base = { seg, report: flagged, reportMatchesSeg: true, job: { id: 4 }, review: null, busy: null, message: null, lastSaved: null, dirty: false };
  const render = (patch = {}) => renderToStaticMarkup(React.createElement(View, {
    model: { ...base, ...patch }, form: { reviewer: 'Jane Doe', comment: '' }, onForm() {}, onAccept() {}, onReject() {}, onSave() {}, onReload() {} }));
  const bannerTag = html => /<div[^>]*data-testid="lge-quality-banner"[^>]*>/.exec(html)?.[0] ?? null;

  it('flagged: an orange banner above the numbers, with the score and the ensemble spread, labelled for screen readers', () => {
    const html = render();
    const tag = bannerTag(html);
    expect(tag).not.toBeNull();
    const q = flagged.quality;
    const text = `Needs careful review — the model is unsure about this series (quality ${q.score.toFixed(2)}, ` +
      `infarct % spread ±${q.infarctPercentSpread.toFixed(1)} points between ensemble members)`;
    expect(tag).toContain(`aria-label="${text}"`);
    expect(tag).toContain('role="note"');
    expect(tag).toMatch(/background:#c05000/);
    expect(html).toContain('quality 0.71');
    expect(html).toContain('±4.2 points');
    expect(html.indexOf('lge-quality-banner')).toBeLessThan(html.indexOf('data-testid="lge-numbers"'));
    expect(html).not.toContain('Model confidence:');
  });
  it('flagged by a single model: no spread in the text', () => {
    const single = { ...flagged, quality: { ...flagged.quality, infarctPercentSpread: undefined } };
    expect(qualityMessage(single.quality).text).toBe(`Needs careful review — the model is unsure about this series (quality ${flagged.quality.score.toFixed(2)})`);
    expect(render({ report: single })).not.toContain('spread');
  });
  it('not flagged: a discreet "Model confidence" line, no banner', () => {
    const html = render({ report: confident });
    expect(confident.quality.needsReview).toBe(false);
    expect(html).toContain(`Model confidence: ${confident.quality.score.toFixed(2)}`);
    expect(bannerTag(html)).toBeNull();
    expect(html).not.toMatch(/careful review —/i);
  });
  it('absent from the SR: nothing', () => {
    const html = render({ report: without });
    expect(without.quality).toBeUndefined();
    expect(html).not.toContain('lge-quality');
    expect(html).not.toContain('Model confidence');
  });
  it('follows the version on screen: v1\'s flag is never shown under v2', () => {
    const v2 = { ...seg, version: 2, SeriesDescription: `${seg.SeriesDescription} v2` };
    // v2 saved, its SR not there yet: the v1 report (flagged) is not v2's
    const pending = render({ seg: v2, report: flagged, reportMatchesSeg: false, reportPending: true });
    expect(pending).not.toContain('lge-quality');
    // v2's re-measured SR carries no quality items (a reviewed SEG has no model confidence)
    const remeasured = render({ seg: v2, report: without, reportMatchesSeg: true });
    expect(remeasured).toContain('data-version="2"');
    expect(remeasured).not.toContain('lge-quality');
  });
});
