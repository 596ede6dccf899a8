// The browser half of the end-to-end test (driven by run_e2e.py): open the study the node
// processed in the "Cardiac LGE review" mode, read the panel, brush infarct pixels, save,
// accept; then wait until the node's re-measured SR of the saved edit is in the PACS, reload,
// read the panel again (now the edited version and its numbers) and reject.
// Usage: node test/e2e/browser.mjs <params.json>   (prints one JSON result line at the end)
//   params: {url, study, artifacts, reviewer, comment, rejectComment, reviewedSrDescription,
//            timeoutMs, remeasureTimeoutMs}
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const params = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { url, study, artifacts, reviewer, comment, rejectComment, reviewedSrDescription } = params;
const timeout = params.timeoutMs ?? 90000;
mkdirSync(artifacts, { recursive: true });

const CHROMIUM_ARGS = [
  '--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
];

const result = { steps: [], console: [], screenshots: [], labelDumps: {}, extra: [] };
const t0 = Date.now();
const step = name => {
  result.steps.push({ name, t: (Date.now() - t0) / 1000 });
  console.error(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)} s] ${name}`);
};

const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'lge-e2e-chromium-'));
const ctx = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1440, height: 1000 },
  args: CHROMIUM_ARGS,
});
const page = ctx.pages()[0] ?? (await ctx.newPage());
page.setDefaultTimeout(timeout);
page.on('console', m => {
  if (['error', 'warning'].includes(m.type())) result.console.push(`[${m.type()}] ${m.text().slice(0, 300)}`);
});
page.on('pageerror', e => result.console.push(`[pageerror] ${e.message.slice(0, 300)}`));

async function shot(name) {
  const file = path.join(artifacts, `${name}.png`);
  await page.screenshot({ path: file });
  result.screenshots.push(file);
}

// In-page helpers: segment masks of the slice shown in the viewport (through the plugin's own
// labelmap reader, imported from the already-loaded module URL) and canvas geometry.
async function sliceState() {
  return page.evaluate(async () => {
    const { _debug } = await import('/plugins/lgenode/extension-lge-review.js');
    const s = window.services;
    const vpId = s.viewportGridService.getActiveViewportId();
    const rep = s.segmentationService.getSegmentationRepresentations(vpId)[0];
    const { viewport } = window.cornerstone.getEnabledElementByViewportId(vpId);
    const imageId = viewport.getCurrentImageId();
    const sop = window.cornerstone.metaData.get('instance', imageId).SOPInstanceUID;
    const getMask = _debug.labelmapMaskGetter(rep.segmentationId);
    const masks = {};
    for (const n of [1, 2, 3, 4]) masks[n] = Array.from(getMask(n, sop, null) ?? []);
    return { segmentationId: rep.segmentationId, sop, imageId, masks };
  });
}

// The labelmap the viewer holds, per source image (SOP Instance UID -> base64 of rows*cols
// uint8 labels), read from cornerstone's cache through the plugin's own accessor.
async function viewerLabels() {
  return page.evaluate(async () => {
    const { _debug } = await import('/plugins/lgenode/extension-lge-review.js');
    const st = _debug.store.get();
    const labels = _debug.currentLabels(st.seg.segmentationId);
    const b64 = arr => {
      let s = '';
      for (let i = 0; i < arr.length; i += 8192) s += String.fromCharCode.apply(null, arr.subarray(i, i + 8192));
      return btoa(s);
    };
    const out = {};
    for (const [key, arr] of labels) out[key.split('|')[0]] = b64(arr);
    return { segSopInstanceUID: st.seg.SOPInstanceUID, labels: out };
  });
}

function dumpLabels(tag, dump) {
  // kept outside the artefacts: derived from research data that must not be published
  const dir = path.join(params.workDir, 'viewer-labels', tag);
  mkdirSync(dir, { recursive: true });
  for (const [sop, b64] of Object.entries(dump.labels)) writeFileSync(path.join(dir, `${sop}.u8`), Buffer.from(b64, 'base64'));
  writeFileSync(path.join(dir, 'seg.json'), JSON.stringify({ segSopInstanceUID: dump.segSopInstanceUID, n: Object.keys(dump.labels).length }));
  result.labelDumps[tag] = { dir, segSopInstanceUID: dump.segSopInstanceUID, images: Object.keys(dump.labels).length };
}

const saveDisabled = () => page.locator('[data-testid="lge-save"]').isDisabled();

// Save with no edit, through the command the button runs (the button itself is disabled).
async function noEditSave() {
  return page.evaluate(async reviewerName => {
    const { _debug } = await import('/plugins/lgenode/extension-lge-review.js');
    const returned = await window.commandsManager.runCommand('lgeReviewSaveSeg', { reviewer: reviewerName });
    const st = _debug.store.get();
    return { returned: returned ?? null, message: st.message?.text ?? null, guard: st.lastGuard && { ok: st.lastGuard.ok, changedPixels: st.lastGuard.changedPixels } };
  }, reviewer);
}

// Wait until the panel shows a SEG (version `version` when given) with its report's numbers and
// the segmentation is on the viewport; return what the panel shows and the store's choice.
async function readPanel(version = null) {
  await page.waitForFunction(v => {
    const t = document.querySelector('[data-testid="lge-lv-cavity"]')?.textContent ?? '';
    const info = document.querySelector('[data-testid="lge-seg-info"]')?.textContent ?? '';
    const node = document.querySelector('[data-testid="lge-node"]')?.textContent ?? '';
    return /\d/.test(t) && /Node job #/.test(node) && (v === null || info.includes(` v${v}`));
  }, version);
  await page.waitForFunction(() => {
    const s = window.services;
    const vpId = s?.viewportGridService.getActiveViewportId();
    return vpId && (s.segmentationService.getSegmentationRepresentations(vpId) ?? []).length > 0;
  });
  // ...and the plugin has written its decode of that SEG into the labelmap
  await page.evaluate(async () => { window.__lgeReview = await import('/plugins/lgenode/extension-lge-review.js'); });
  await page.waitForFunction(() => {
    const { store, loadedSegs } = window.__lgeReview._debug;
    const st = store.get();
    const entry = st.seg && loadedSegs.get(st.seg.segmentationId);
    return !!entry && !entry.busy && !st.busy;
  });
  await page.waitForTimeout(1500); // let the overlay render
  return page.evaluate(async () => {
    const text = id => document.querySelector(`[data-testid="${id}"]`)?.innerText ?? null;
    const bull = [...document.querySelectorAll('[data-testid="lge-bullseye"] path[data-segment]')].map(p => ({
      segment: Number(p.getAttribute('data-segment')),
      transmurality: p.getAttribute('data-transmurality'),
      fill: p.getAttribute('fill'),
    }));
    const st = (await import('/plugins/lgenode/extension-lge-review.js'))._debug.store.get();
    // the model's doubt: the banner (text, accessible name, colour, place) or the discreet line
    const bannerEl = document.querySelector('[data-testid="lge-quality-banner"]');
    const numbersEl = document.querySelector('[data-testid="lge-numbers"]');
    const qualityBanner = bannerEl ? {
      text: bannerEl.textContent, aria: bannerEl.getAttribute('aria-label'), role: bannerEl.getAttribute('role'),
      background: getComputedStyle(bannerEl).backgroundColor,
      aboveNumbers: !!numbersEl && !!(bannerEl.compareDocumentPosition(numbersEl) & Node.DOCUMENT_POSITION_FOLLOWING),
    } : null;
    return {
      qualityBanner,
      qualityLine: text('lge-quality'),
      lvCavity: text('lge-lv-cavity'), myocardium: text('lge-myocardium'), infarct: text('lge-infarct'),
      mvo: text('lge-mvo'), transmural: text('lge-transmural'), algorithm: text('lge-algorithm'),
      segInfo: text('lge-seg-info'), status: text('lge-status'), node: text('lge-node'),
      rowsText: document.querySelector('[data-testid="lge-panel"] table')?.innerText ?? null,
      bullseye: bull,
      segSopInstanceUID: st.seg?.SOPInstanceUID ?? null,
      reportSopInstanceUID: st.report?.sopInstanceUID ?? null,
      reportMatchesSeg: st.reportMatchesSeg,
      jobId: st.job?.id ?? null,
    };
  });
}

// QIDO through the viewer's own proxy: the SR series of the study with this description.
async function findSeries(description) {
  const res = await fetch(`${url}/dicom-web/studies/${study}/series?Modality=SR`, { headers: { Accept: 'application/dicom+json' } });
  if (!res.ok) return null;
  const list = res.status === 204 ? [] : await res.json();
  return list.find(s => s['0008103E']?.Value?.[0] === description) ?? null;
}

const count = arr => arr.reduce((a, v) => a + (v ? 1 : 0), 0);

// The full review flow (run_e2e.py).
async function reviewFlow() {
  for (const extra of params.extraStudies ?? []) {
    step(`open ${extra.name}: the viewer's labelmap vs the SEG`);
    await openStudy(extra.study);
    const panel = await readPanel();
    await shot(`01-${extra.name}-opened`);
    dumpLabels(extra.name, await viewerLabels());
    const entry = { name: extra.name, panel, saveDisabledBeforeEdit: await saveDisabled() };
    entry.noEditSave = await noEditSave();
    await shot(`01-${extra.name}-no-edit-save-refused`);
    result.extra.push(entry);
  }

  step('open study in the mode');
  await openStudy(study);

  step('wait for the SR numbers and the AI SEG');
  result.panel = await readPanel();
  await shot('01-opened-panel-and-ai-seg');
  if (result.panel.qualityBanner) {
    await page.locator('[data-testid="lge-panel"]').screenshot({ path: path.join(artifacts, '01c-needs-careful-review-banner.png') });
    result.screenshots.push(path.join(artifacts, '01c-needs-careful-review-banner.png'));
  }
  dumpLabels('opened', await viewerLabels());
  await page.locator('[data-testid="lge-reviewer"]').fill(params.reviewerTyped ?? reviewer);
  result.saveDisabledBeforeEdit = await saveDisabled();
  result.noEditSave = await noEditSave();
  await shot('01b-no-edit-save-refused');

  step('brush infarct into myocardium');
  // choose the slice with the most normal (non-infarct) myocardium
  const before = await sliceState();
  result.before = { sop: before.sop, counts: Object.fromEntries(Object.entries(before.masks).map(([k, v]) => [k, count(v)])) };
  await page.locator('[data-cy="Brush-btn"]').click({ timeout: 60000 });
  await page.waitForTimeout(500);
  await page.evaluate(() => {
    // a small brush so the edit stays inside the wall (radius in mm)
    try {
      window.commandsManager.runCommand('setBrushSize', { value: 3, toolNames: ['CircularBrush'] });
    } catch { /* keep the default size */ }
  });
  const target = await page.evaluate(async ({ masks }) => {
    const s = window.services;
    const vpId = s.viewportGridService.getActiveViewportId();
    const { viewport } = window.cornerstone.getEnabledElementByViewportId(vpId);
    const imageId = viewport.getCurrentImageId();
    const plane = window.cornerstone.metaData.get('imagePlaneModule', imageId);
    const { rows, columns } = plane;
    // Where to paint: the pixel whose 9x9 neighbourhood holds the most myocardium that is not
    // infarct yet (so the stroke adds infarct), then the fewest infarct pixels, then nearest the
    // centre. Summed-area tables keep this linear whatever the segmentation looks like (the
    // node's model may be untrained in CI).
    const sat = pred => {
      const t = new Float64Array((rows + 1) * (columns + 1));
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < columns; c++) {
          const i = r * columns + c;
          t[(r + 1) * (columns + 1) + c + 1] = (pred(i) ? 1 : 0) + t[r * (columns + 1) + c + 1]
            + t[(r + 1) * (columns + 1) + c] - t[r * (columns + 1) + c];
        }
      }
      return (r0, c0, r1, c1) => t[r1 * (columns + 1) + c1] - t[r0 * (columns + 1) + c1]
        - t[r1 * (columns + 1) + c0] + t[r0 * (columns + 1) + c0];
    };
    const normal = sat(i => masks[2][i] && !masks[3][i]);
    const infarct = sat(i => masks[3][i]);
    const h = 4;
    let best = null;
    for (let r = h + 2; r < rows - h - 2; r++) {
      for (let c = h + 2; c < columns - h - 2; c++) {
        if (masks[3][r * columns + c]) continue;
        const n = normal(r - h, c - h, r + h + 1, c + h + 1);
        const inf = infarct(r - h, c - h, r + h + 1, c + h + 1);
        const d = (r - rows / 2) ** 2 + (c - columns / 2) ** 2;
        const key = [n, -inf, -d];
        if (!best || key[0] > best.key[0] || (key[0] === best.key[0] && (key[1] > best.key[1] || (key[1] === best.key[1] && key[2] > best.key[2])))) {
          best = { r, c, key };
        }
      }
    }
    if (!best) return null;
    const ipp = plane.imagePositionPatient;
    const rc = plane.rowCosines; // along a row: increasing column
    const cc = plane.columnCosines;
    const world = [0, 1, 2].map(k => ipp[k] + best.c * plane.columnPixelSpacing * rc[k] + best.r * plane.rowPixelSpacing * cc[k]);
    const [x, y] = viewport.worldToCanvas(world);
    const rect = viewport.element.querySelector('canvas').getBoundingClientRect();
    return { row: best.r, col: best.c, normalMyocardiumAround: best.key[0], pageX: rect.left + x, pageY: rect.top + y };
  }, { masks: before.masks });
  if (!target) throw new Error('no pixel to paint on the displayed slice');
  result.target = target;
  await page.mouse.move(target.pageX, target.pageY);
  await page.mouse.down();
  await page.mouse.move(target.pageX + 2, target.pageY + 1, { steps: 4 });
  await page.mouse.up();
  await page.waitForTimeout(800);
  const after = await sliceState();
  if (after.sop !== before.sop) throw new Error('the displayed slice changed while painting');
  const changed = {};
  for (const n of [1, 2, 3, 4]) {
    changed[n] = [];
    after.masks[n].forEach((v, i) => { if (v !== before.masks[n][i]) changed[n].push([i, v]); });
  }
  result.edit = {
    sop: after.sop,
    changed,
    segment3Added: changed[3].filter(([, v]) => v === 1).map(([i]) => i),
  };
  if (!result.edit.segment3Added.length) throw new Error('the brush stroke changed no infarct pixel');
  result.saveDisabledAfterEdit = await saveDisabled();
  await shot('02-after-brush-edit');

  step('save as a new SEG version');
  await page.locator('[data-testid="lge-comment"]').fill(comment);
  await page.locator('[data-testid="lge-save"]').click();
  await page.waitForFunction(() => /Saved|failed|refused|not done/.test(document.querySelector('[data-testid="lge-message"]')?.textContent ?? ''));
  result.saveMessage = await page.locator('[data-testid="lge-message"]').innerText();
  result.lastSaved = await page.evaluate(async () => (await import('/plugins/lgenode/extension-lge-review.js'))._debug.store.get().lastSaved);
  if (!result.lastSaved) throw new Error(`save failed: ${result.saveMessage}`);
  // right after Save: v2 on screen, its numbers pending, v1's numbers gone
  result.afterSave = await page.evaluate(() => ({
    pending: document.querySelector('[data-testid="lge-numbers-pending"]')?.innerText ?? null,
    numbersShown: !!document.querySelector('[data-testid="lge-numbers"]'),
    segInfo: document.querySelector('[data-testid="lge-seg-info"]')?.innerText ?? null,
    saveDisabled: document.querySelector('[data-testid="lge-save"]')?.disabled ?? null,
  }));
  await shot('03-saved-v2-numbers-pending');

  step('accept with comment');
  await page.locator('[data-testid="lge-accept"]').click();
  await page.waitForFunction(() => /ACCEPTED/.test(document.querySelector('[data-testid="lge-status"]')?.textContent ?? ''));
  result.statusAfterAccept = await page.locator('[data-testid="lge-status"]').innerText();
  result.nodeLine = await page.locator('[data-testid="lge-node"]').innerText();
  await shot('04-accepted');
  await page.locator('[data-testid="lge-panel"]').screenshot({ path: path.join(artifacts, 'panel.png') });
  result.screenshots.push(path.join(artifacts, 'panel.png'));

  step('the panel replaces "being computed" by v2\'s numbers when the node\'s SR arrives (no reload)');
  await page.waitForFunction(v => document.querySelector('[data-testid="lge-numbers"]')?.getAttribute('data-version') === String(v),
    result.lastSaved.version, { timeout: params.remeasureTimeoutMs ?? 90000 });
  result.panelAfterSave = await readPanel(result.lastSaved.version);
  await shot('04b-v2-numbers-arrived');
  const reviewedSr = await findSeries(reviewedSrDescription);
  if (!reviewedSr) throw new Error(`no SR "${reviewedSrDescription}" in the PACS`);
  result.reviewedSrSeriesUID = reviewedSr['0020000E']?.Value?.[0] ?? null;

  step('reload: the edited version with the node\'s new numbers');
  await page.reload();
  await page.locator('[data-testid="lge-panel"]').waitFor();
  if (await banner.isVisible().catch(() => false)) await banner.click();
  result.panelAfter = await readPanel(result.lastSaved.version);
  await shot('05-reloaded-edited-version-remeasured');
  dumpLabels('reloaded', await viewerLabels());

  step('reject with comment');
  await page.locator('[data-testid="lge-reviewer"]').fill(params.reviewerTyped ?? reviewer);
  await page.locator('[data-testid="lge-comment"]').fill(rejectComment);
  await page.locator('[data-testid="lge-reject"]').click();
  await page.waitForFunction(() => /REJECTED/.test(document.querySelector('[data-testid="lge-status"]')?.textContent ?? ''));
  result.statusAfterReject = await page.locator('[data-testid="lge-status"]').innerText();
  result.nodeLineAfterReject = await page.locator('[data-testid="lge-node"]').innerText();
  await shot('06-rejected');
  result.ok = true;
}

const banner = page.locator('[data-cy="confirm-and-hide-button"]');
async function openStudy(uid) {
  await page.goto(`${url}/lge-review?StudyInstanceUIDs=${uid}`);
  await page.locator('[data-testid="lge-panel"]').waitFor();
  if (await banner.isVisible().catch(() => false)) await banner.click();
}

try {
  step('study list (the mode button)');
  await page.goto(`${url}/`);
  const row = page.locator(`text=${params.studyListHint ?? 'LGE'}`).first();
  await row.waitFor({ timeout: 30000 }).catch(() => {});
  await row.click({ timeout: 5000 }).catch(() => {}); // select the study: its modes appear
  await page.waitForTimeout(1500);
  result.modeButton = await page.locator('text=/LGE review/').first().evaluate(el => ({
    text: el.innerText, clipped: el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1,
  })).catch(e => ({ error: String(e).slice(0, 200) }));
  await shot('00-study-list');

  if (params.dumpOnly) {
    // compare_all_cases.py: open each study, keep the viewer's labelmap, nothing else
    for (const extra of params.extraStudies ?? []) {
      step(`open ${extra.name}`);
      await openStudy(extra.study);
      result.extra.push({ name: extra.name, panel: await readPanel() });
      await shot(`case-${extra.name}`);
      dumpLabels(extra.name, await viewerLabels());
    }
    result.ok = true;
  } else {
    await reviewFlow();
  }

} catch (e) {
  result.ok = false;
  result.error = String(e?.stack ?? e);
  await shot('99-failure').catch(() => {});
} finally {
  result.elapsed_s = (Date.now() - t0) / 1000;
  await ctx.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  writeFileSync(path.join(artifacts, 'browser-result.json'), JSON.stringify(result, null, 1));
  process.stdout.write(`${JSON.stringify({ ok: result.ok, file: path.join(artifacts, 'browser-result.json') })}\n`);
  process.exit(result.ok ? 0 : 1);
}
