// Commands of the Cardiac LGE review extension: load the latest AI SEG, refresh the panel
// model, save the edited segmentation as a new SEG version, record the review decision.
import { naturalize } from '../lib/dicom.js';
import { buildSegVersion, segProvenance, segVersionOf } from '../lib/segVersion.js';
import { writePart10 } from '../lib/part10.js';
import { reviewClient } from '../lib/reviewApi.js';
import { initialState } from './store.js';
import {
  activeStudyUID, dataSourceOf, instanceMetadata, labelmapMaskGetter, latestSegDisplaySet,
  pickReportForSeg, studyReports, takenSeriesNumbers,
} from './ohifData.js';

function waitFor(predicate, timeoutMs, what) {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      let v;
      try {
        v = predicate();
      } catch {
        v = null;
      }
      if (v) return resolve(v);
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 200);
    };
    tick();
  });
}

export function reviewConfig(appConfig) {
  const cfg = appConfig?.lgeReview ?? {};
  return { nodeUrl: cfg.nodeUrl ?? '/lgenode', autoLoadSeg: cfg.autoLoadSeg !== false };
}

export function createActions({ servicesManager, commandsManager, extensionManager, appConfig, store }) {
  const ctx = { servicesManager, extensionManager };
  const cfg = reviewConfig(appConfig);
  const notify = (type, text) => {
    store.set({ message: { type, text } });
    servicesManager.services.uiNotificationService?.show?.({
      title: 'Cardiac LGE review', message: text, type: type === 'error' ? 'error' : type === 'success' ? 'success' : 'info',
    });
  };
  // Edits saved in this session: the next save derives from the version just written.
  const savedSources = new Map(); // segmentationId -> naturalized dataset of the last saved version

  const actions = {
    /** Forget the previous study's state (called when the mode is entered). */
    lgeReviewReset: () => {
      savedSources.clear();
      store.set({ ...initialState });
    },

    /**
     * Open the latest SEG version for editing, the way a user does it: show the SEG in the
     * viewport (OHIF loads it over its image series), then hydrate it (editable labelmap on the
     * image series) without the "open this segmentation?" prompt, and make the infarct segment
     * active (the one a reviewer usually corrects).
     */
    lgeReviewLoadLatestSeg: async ({ viewportId, timeoutMs = 60000 } = {}) => {
      const segDs = latestSegDisplaySet(servicesManager);
      if (!segDs) return null;
      const { viewportGridService, segmentationService, uiViewportDialogService } = servicesManager.services;
      const vpId = viewportId ?? viewportGridService.getActiveViewportId();
      const id = segDs.displaySetInstanceUID;
      const hasRepresentation = () =>
        (segmentationService.getSegmentationRepresentations(vpId) ?? []).some(r => r.segmentationId === id);
      if (!hasRepresentation()) {
        if (!segmentationService.getSegmentation(id)) {
          commandsManager.runCommand('setDisplaySetsForViewports', {
            viewportsToUpdate: [{ viewportId: vpId, displaySetInstanceUIDs: [id] }],
          });
          await waitFor(() => segmentationService.getSegmentation(id), timeoutMs, 'the SEG to load');
        }
        uiViewportDialogService?.hide?.();
        await commandsManager.runCommand('hydrateSecondaryDisplaySet', { displaySet: segDs, viewportId: vpId });
        await waitFor(hasRepresentation, timeoutMs, 'the SEG to be opened for editing');
        uiViewportDialogService?.hide?.();
      }
      const segmentation = segmentationService.getSegmentation(id);
      const infarct = Object.values(segmentation?.segments ?? {}).find(sg => /infarct/i.test(sg?.label ?? ''));
      if (infarct) segmentationService.setActiveSegment(id, infarct.segmentIndex);
      await actions.lgeReviewRefresh({ segDisplaySet: segDs });
      return id;
    },

    /** Re-read SEG provenance, the matching SR and the node's review status. */
    lgeReviewRefresh: async ({ segDisplaySet } = {}) => {
      store.set({ busy: 'loading' });
      try {
        const studyInstanceUID = activeStudyUID(servicesManager);
        const segDs = segDisplaySet ?? latestSegDisplaySet(servicesManager);
        let seg = null;
        if (segDs) {
          const meta = await instanceMetadata(ctx, segDs.StudyInstanceUID, segDs.SeriesInstanceUID, segDs.SOPInstanceUID);
          seg = {
            displaySetInstanceUID: segDs.displaySetInstanceUID,
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
        let report = null;
        let reportMatchesSeg = false;
        if (studyInstanceUID) {
          const reports = await studyReports(ctx, studyInstanceUID);
          ({ report, matchesSeg: reportMatchesSeg } = pickReportForSeg(reports, seg?.SOPInstanceUID));
        }
        store.set({ studyInstanceUID, seg, report, reportMatchesSeg });
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
        const jobs = await reviewClient({ nodeUrl: cfg.nodeUrl }).jobsForSeries({
          studyInstanceUID, seriesInstanceUID: series,
        });
        const job = jobs[0] ?? null;
        store.set({ job, review: job?.review ?? null, nodeError: job ? null : 'the node has no job for this series' });
      } catch (e) {
        store.set({ job: null, review: null, nodeError: e.message });
      }
    },

    /** Save the current labelmap as a new BINARY SEG version (STOW-RS to the active data source). */
    lgeReviewSaveSeg: async ({ reviewer, comment } = {}) => {
      const { seg } = store.get();
      if (!seg) throw new Error('no AI segmentation is loaded');
      store.set({ busy: 'saving', message: null });
      try {
        const segmentationId = seg.displaySetInstanceUID;
        const source = savedSources.get(segmentationId) ?? seg.metadata;
        const getMask = labelmapMaskGetter(segmentationId);
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
        const bytes = writePart10(built.dataset);
        await dataSourceOf(extensionManager).store.dicom(bytes);
        const { dataset } = built;
        savedSources.set(segmentationId, naturalize(dataset));
        const lastSaved = {
          seriesInstanceUID: dataset.SeriesInstanceUID,
          sopInstanceUID: dataset.SOPInstanceUID,
          seriesNumber: dataset.SeriesNumber,
          seriesDescription: dataset.SeriesDescription,
          version: built.version,
          frames: built.frames,
        };
        store.set({ lastSaved });
        notify('success', `Saved "${dataset.SeriesDescription}" (series ${dataset.SeriesNumber}, ${built.frames} frames).`);
        return lastSaved;
      } catch (e) {
        notify('error', `Save failed: ${e.message}`);
        throw e;
      } finally {
        store.set({ busy: null });
      }
    },

    /** Record accept/reject at the node. */
    lgeReviewSubmitDecision: async ({ decision, comment, reviewer } = {}) => {
      const { job, seg, lastSaved } = store.get();
      if (!job) throw new Error('no node job is known for this series');
      store.set({ busy: 'reviewing', message: null });
      try {
        const review = await reviewClient({ nodeUrl: cfg.nodeUrl }).submitReview(job.id, {
          decision,
          comment,
          reviewer,
          segSeriesInstanceUID: lastSaved?.seriesInstanceUID ?? seg?.SeriesInstanceUID,
          segSopInstanceUID: lastSaved?.sopInstanceUID ?? seg?.SOPInstanceUID,
        });
        store.set({ review });
        notify('success', `Review recorded: ${decision}.`);
        return review;
      } catch (e) {
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
