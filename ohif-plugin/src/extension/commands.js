// Commands of the Cardiac LGE review extension: load the latest AI SEG, refresh the panel
// model, save the edited segmentation as a new SEG version, record the review decision.
import { naturalize } from '../lib/dicom.js';
import { buildSegVersion, segProvenance, segVersionOf } from '../lib/segVersion.js';
import { writePart10 } from '../lib/part10.js';
import { errorKind, reviewClient } from '../lib/reviewApi.js';
import { guardSave, maskFromLabels, sourceKey } from '../lib/segDecode.js';
import { initialState } from './store.js';
import {
  activeStudyUID, dataSourceOf, instanceMetadata, latestSegDisplaySet, nodeAuthHeaders,
  pickReportForSeg, studyReports, takenSeriesNumbers,
} from './ohifData.js';
import { currentLabels, loadedSegs, openSegFromOwnDecode, segmentationIdOf, watchEdits } from './segLoader.js';

export const DEFAULT_BRUSH_RADIUS_MM = 3; // the LV wall is ~10 mm: a 3 mm radius edits within it

export function reviewConfig(appConfig) {
  const cfg = appConfig?.lgeReview ?? {};
  return {
    nodeUrl: cfg.nodeUrl ?? '/lgenode',
    autoLoadSeg: cfg.autoLoadSeg !== false,
    apiToken: cfg.apiToken ?? null,
    brushRadiusMm: Number(cfg.brushRadiusMm ?? DEFAULT_BRUSH_RADIUS_MM),
    // after Save: look for the node's SR of the new version every pollSeconds, up to remeasureTimeoutSeconds
    pollSeconds: Number(cfg.pollSeconds ?? 5),
    remeasureTimeoutSeconds: Number(cfg.remeasureTimeoutSeconds ?? 900),
  };
}

/** The figures the panel shows for a report (what a decision records as "seen"). */
export function shownFigures(report) {
  if (!report) return null;
  const s = report.summary ?? {};
  return {
    lv_cavity_ml: s.lvCavityMl ?? null, myocardium_ml: s.myocardiumMl ?? null, mass_g: s.massG ?? null,
    infarct_ml: s.infarctMl ?? null, infarct_percent: s.infarctPercent ?? null, mvo_ml: s.mvoMl ?? null,
    mvo_percent: s.mvoPercent ?? null, transmural_segments: s.nTransmuralSegments ?? null,
    covered_segments: (report.aha ?? []).filter(a => a.covered).length,
    quality_score: report.quality?.score ?? null,
    needs_review_shown: report.quality?.needsReview ?? null,
  };
}

/** Set the brush/eraser/threshold radius (mm) of the labelmap tools and their toolbar sliders. */
function setDrawingRadius(servicesManager, commandsManager, mm, viewportId) {
  const groups = [
    ['brush-radius', ['CircularBrush', 'SphereBrush']],
    ['eraser-radius', ['CircularEraser', 'SphereEraser']],
    ['threshold-radius', ['ThresholdCircularBrush', 'ThresholdSphereBrush']],
  ];
  const { toolbarService } = servicesManager.services;
  for (const [optionId, toolNames] of groups) {
    try {
      commandsManager.runCommand('setBrushSize', { value: mm, toolNames });
    } catch {
      // tool not in this mode's tool group
    }
    for (const button of Object.values(toolbarService?.getButtons?.() ?? {})) {
      const option = button?.props?.options?.find?.(o => o.id === optionId);
      if (option) option.value = mm;
    }
  }
  // with the viewport: the tools' evaluators disable the brush when they see none
  if (viewportId) toolbarService?.refreshToolbarState?.({ viewportId });
}

export function createActions({ servicesManager, commandsManager, extensionManager, appConfig, store }) {
  const ctx = { servicesManager, extensionManager };
  const cfg = reviewConfig(appConfig);
  // Messages go to the panel only: OHIF's toasts sit over the right panel's tools.
  const notify = (type, text) => store.set({ message: { type, text } });
  const node = () => reviewClient({ nodeUrl: cfg.nodeUrl, headers: nodeAuthHeaders(servicesManager, cfg.apiToken) });
  // Edits saved in this session: the next save derives from the version just written.
  const savedSources = new Map(); // segmentationId -> naturalized dataset of the last saved version
  let unwatch = null;
  let pollToken = 0;

  /** Poll the PACS until an SR that references `sop` is there, then show its numbers. */
  const awaitReportFor = async sop => {
    const token = ++pollToken;
    const deadline = Date.now() + cfg.remeasureTimeoutSeconds * 1000;
    store.set({ reportPending: true });
    while (token === pollToken && store.get().seg?.SOPInstanceUID === sop) {
      try {
        const reports = await studyReports(ctx, store.get().studyInstanceUID);
        const { report, matchesSeg } = pickReportForSeg(reports, sop);
        if (token !== pollToken || store.get().seg?.SOPInstanceUID !== sop) return;
        if (matchesSeg) {
          store.set({ report, reportMatchesSeg: true, reportPending: false });
          return;
        }
      } catch {
        // PACS briefly unavailable: keep trying until the deadline
      }
      if (Date.now() > deadline) {
        store.set({ reportPending: false });
        notify('info', `The node has not measured v${store.get().seg?.version} yet; press Reload later.`);
        return;
      }
      await new Promise(r => setTimeout(r, cfg.pollSeconds * 1000));
    }
  };

  const actions = {
    /** Forget the previous study's state (called when the mode is entered). */
    lgeReviewReset: () => {
      savedSources.clear();
      pollToken++;
      store.set({ ...initialState });
    },

    /**
     * Open the latest SEG version for editing: the plugin decodes the SEG itself and writes the
     * labels into a labelmap on the LGE series (segLoader.js; OHIF's own BINARY SEG reader
     * garbles frames that do not start on a byte boundary), makes the infarct segment active
     * (the one a reviewer usually corrects) and sets a brush radius that fits the wall.
     */
    lgeReviewLoadLatestSeg: async ({ viewportId } = {}) => {
      const segDs = latestSegDisplaySet(servicesManager);
      if (!segDs) return null;
      const { viewportGridService, segmentationService } = servicesManager.services;
      const vpId = viewportId ?? viewportGridService.getActiveViewportId();
      store.set({ busy: 'loading', loadError: null });
      let segmentationId;
      try {
        segmentationId = await openSegFromOwnDecode(ctx, segDs, vpId, {
          label: `${segDs.SeriesDescription || 'SEG'}`,
        });
      } catch (e) {
        store.set({ busy: null, loadError: e.message });
        notify('error', `Could not open the segmentation: ${e.message}`);
        throw e;
      }
      unwatch ??= watchEdits(servicesManager, id => {
        if (id === store.get().seg?.segmentationId) store.set({ dirty: true });
      });
      const segmentation = segmentationService.getSegmentation(segmentationId);
      const infarct = Object.values(segmentation?.segments ?? {}).find(sg => /infarct/i.test(sg?.label ?? ''));
      if (infarct) segmentationService.setActiveSegment(segmentationId, infarct.segmentIndex);
      setDrawingRadius(servicesManager, commandsManager, cfg.brushRadiusMm, vpId);
      store.set({ busy: null, dirty: false });
      await actions.lgeReviewRefresh({ segDisplaySet: segDs, segmentationId });
      return segmentationId;
    },

    /** Re-read SEG provenance, the SR of the version on screen and the node's review status. */
    lgeReviewRefresh: async ({ segDisplaySet, segmentationId } = {}) => {
      store.set({ busy: 'loading' });
      try {
        const studyInstanceUID = activeStudyUID(servicesManager);
        let seg = store.get().seg;
        // The version on screen: the one just saved, else the SEG display set that was opened.
        if (!seg || segDisplaySet) {
          const segDs = segDisplaySet ?? latestSegDisplaySet(servicesManager);
          seg = null;
          if (segDs) {
            const meta = await instanceMetadata(ctx, segDs.StudyInstanceUID, segDs.SeriesInstanceUID, segDs.SOPInstanceUID);
            seg = {
              displaySetInstanceUID: segDs.displaySetInstanceUID,
              segmentationId: segmentationId ?? segmentationIdOf(segDs.SOPInstanceUID),
              SOPInstanceUID: segDs.SOPInstanceUID,
              SeriesInstanceUID: segDs.SeriesInstanceUID,
              SeriesNumber: segDs.SeriesNumber,
              SeriesDescription: segDs.SeriesDescription,
              referencedSeriesInstanceUID: segDs.referencedSeriesInstanceUID,
              version: segVersionOf(segDs.SeriesDescription),
              provenance: segProvenance(meta),
              metadata: meta,
            };
          }
        }
        let report = null;
        let reportMatchesSeg = false;
        if (studyInstanceUID) {
          const reports = await studyReports(ctx, studyInstanceUID);
          ({ report, matchesSeg: reportMatchesSeg } = pickReportForSeg(reports, seg?.SOPInstanceUID));
        }
        // Never show another version's numbers under this one: without its own SR, wait for it.
        store.set({ studyInstanceUID, seg, report: reportMatchesSeg || !seg ? report : null, reportMatchesSeg,
          reportPending: !!seg && !reportMatchesSeg });
        if (seg && !reportMatchesSeg) awaitReportFor(seg.SOPInstanceUID);
        await actions.lgeReviewRefreshStatus();
      } catch (e) {
        notify('error', `Could not load the review data: ${e.message}`);
      } finally {
        store.set({ busy: null });
      }
    },

    /** The node's job and latest review for the LGE series. */
    lgeReviewRefreshStatus: async () => {
      const { seg, report, studyInstanceUID } = store.get();
      const series = seg?.referencedSeriesInstanceUID ?? report?.sourceSeriesInstanceUID;
      if (!series) return;
      try {
        const jobs = await node().jobsForSeries({ studyInstanceUID, seriesInstanceUID: series });
        const job = jobs[0] ?? null;
        store.set({ job, review: job?.review ?? null, nodeError: job ? null : 'the node has no job for this series',
          nodeErrorKind: job ? null : 'nojob' });
      } catch (e) {
        store.set({ job: null, review: null, nodeError: e.message, nodeErrorKind: errorKind(e) });
      }
    },

    /**
     * Save the labelmap as a new BINARY SEG version (STOW-RS to the active data source), but
     * only when it differs from the loaded SEG and only on images the reader edited.
     */
    lgeReviewSaveSeg: async ({ reviewer, comment } = {}) => {
      const { seg } = store.get();
      if (!seg) throw new Error('no AI segmentation is loaded');
      const segmentationId = seg.segmentationId;
      const loaded = loadedSegs.get(segmentationId);
      if (!loaded) throw new Error('the segmentation on screen was not opened by the review panel');
      store.set({ busy: 'saving', message: null });
      try {
        const labels = currentLabels(segmentationId);
        const { nesting } = loaded.decoded;
        const getMask = (segNo, sop, frame) => {
          const l = labels.get(sourceKey(sop, frame)) ?? labels.get(sourceKey(sop, null));
          return l ? maskFromLabels(l, segNo, nesting) : null;
        };
        const source = savedSources.get(segmentationId) ?? seg.metadata;
        const built = buildSegVersion({
          sourceSeg: source,
          getMask,
          reviewer,
          comment,
          takenSeriesNumbers: [
            ...takenSeriesNumbers(servicesManager),
            ...[...savedSources.values()].map(d => Number(d.SeriesNumber)),
          ],
        });
        // The guard: untouched images must be exactly the loaded SEG, and something must change.
        const guard = guardSave({ loadedFrames: loaded.decoded.frames, newFrames: built.frameBits,
          frameInfo: loaded.decoded.frameInfo, touched: loaded.touched });
        if (!guard.ok) {
          store.set({ lastGuard: guard });
          notify('error', guard.reason.startsWith('refused') ? `Save ${guard.reason}` : `Not saved: ${guard.reason}`);
          return null;
        }
        const bytes = writePart10(built.dataset);
        await dataSourceOf(extensionManager).store.dicom(bytes);
        const { dataset } = built;
        const natural = naturalize(dataset);
        savedSources.set(segmentationId, natural);
        // The saved version is the new baseline: a further edit is measured against it.
        loaded.decoded = { ...loaded.decoded, frames: built.frameBits };
        loaded.pristine = labels;
        loaded.touched = new Set();
        const lastSaved = {
          seriesInstanceUID: dataset.SeriesInstanceUID,
          sopInstanceUID: dataset.SOPInstanceUID,
          seriesNumber: dataset.SeriesNumber,
          seriesDescription: dataset.SeriesDescription,
          version: built.version,
          frames: built.frames,
          changedPixels: guard.changedPixels,
          changedFrames: guard.changedFrames.length,
        };
        // The version on screen is now the saved one: its numbers come when the node has
        // re-measured it; v1's numbers are not shown under it meanwhile.
        store.set({
          lastSaved, lastGuard: guard, dirty: false,
          seg: {
            ...seg,
            SOPInstanceUID: dataset.SOPInstanceUID,
            SeriesInstanceUID: dataset.SeriesInstanceUID,
            SeriesNumber: dataset.SeriesNumber,
            SeriesDescription: dataset.SeriesDescription,
            version: built.version,
            provenance: segProvenance(natural),
            metadata: natural,
          },
          report: null, reportMatchesSeg: false, reportPending: true,
        });
        notify('success', `Saved v${built.version} as series ${dataset.SeriesNumber} (${guard.changedPixels} pixels changed ` +
          `in ${guard.changedFrames.length} frames). The node is measuring it.`);
        awaitReportFor(dataset.SOPInstanceUID);
        return lastSaved;
      } catch (e) {
        notify('error', `Save failed: ${e.message}`);
        throw e;
      } finally {
        store.set({ busy: null });
      }
    },

    /** Record accept/reject at the node, with the version and the figures on screen. */
    lgeReviewSubmitDecision: async ({ decision, comment, reviewer } = {}) => {
      const { job, seg, report, reportMatchesSeg } = store.get();
      if (!job) throw new Error('no node job is known for this series');
      store.set({ busy: 'reviewing', message: null });
      try {
        const shownReport = reportMatchesSeg ? report : null;
        const review = await node().submitReview(job.id, {
          decision,
          comment,
          reviewer,
          segSeriesInstanceUID: seg?.SeriesInstanceUID,
          segSopInstanceUID: seg?.SOPInstanceUID,
          shown: {
            seg_version: seg?.version ?? null,
            sr_sop_instance_uid: shownReport?.sopInstanceUID ?? null,
            figures: shownFigures(shownReport),
          },
        });
        store.set({ review, nodeError: null, nodeErrorKind: null });
        notify('success', `Review recorded: ${decision} (v${seg?.version ?? '?'}${shownReport ? '' : ', numbers not yet available'}).`);
        return review;
      } catch (e) {
        store.set({ nodeErrorKind: errorKind(e) });
        notify('error', `Could not record the review: ${e.message}`);
        throw e;
      } finally {
        store.set({ busy: null });
      }
    },
  };
  return actions;
}

export function getCommandsModule(params) {
  const actions = createActions(params);
  return {
    actions,
    definitions: Object.fromEntries(Object.keys(actions).map(name => [name, { commandFn: actions[name] }])),
    defaultContext: 'DEFAULT',
  };
}
