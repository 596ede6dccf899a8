// OHIF v3 mode "Cardiac LGE review" (runtime-loaded ES module).
//
// Built on the viewer's bundled segmentation mode: its factory gives the mode instance with the
// labelmap segmentation panel (brush, eraser, threshold tools, undo/redo), tool groups, toolbar
// and lifecycle; this mode changes the route name, the hanging protocol (the LGE series), puts the
// review panel on top of the segmentation tools in the right side bar, and on entering loads the
// latest AI SEG version into the viewport.
import { HP_ID, MODE_ID, PANEL_ID, VERSION } from '../extension/ids.js';

const SEGMENTATION_MODE = '@ohif/mode-segmentation';
// OHIF's mode route import()s every key of `mode.extensions` (the viewer's loader resolves
// bundled names itself and hands anything else to a native import()), so our extension is
// named by its URL: the file next to this module. A URL already imported through
// window.config.extensions resolves to the same module instance.
export const DEFAULT_EXTENSION_URL = new URL('./extension-lge-review.js', import.meta.url).href;

/** Waits (via OHIF service events) until the latest SEG and a viewport exist, then loads it. */
function autoLoadLatestSeg({ servicesManager, commandsManager }) {
  const { displaySetService, viewportGridService, cornerstoneViewportService } = servicesManager.services;
  let done = false;
  let running = false;
  const unsubs = [];
  const attempt = async () => {
    if (done || running) return;
    const { activeViewportId } = viewportGridService.getState();
    if (!activeViewportId || !cornerstoneViewportService?.getCornerstoneViewport?.(activeViewportId)) return;
    const hasSeg = displaySetService.getActiveDisplaySets().some(ds => ds.Modality === 'SEG' && ds.referencedDisplaySetInstanceUID);
    if (!hasSeg) return;
    running = true;
    try {
      const loaded = await commandsManager.runCommand('lgeReviewLoadLatestSeg', { viewportId: activeViewportId });
      if (loaded) {
        done = true;
        unsubs.forEach(u => u());
      }
    } catch (e) {
      console.warn('Cardiac LGE review: loading the latest SEG failed', e);
    } finally {
      running = false;
    }
  };
  const on = (service, event) => {
    if (service && event) unsubs.push(service.subscribe(event, () => setTimeout(attempt, 0)).unsubscribe);
  };
  on(displaySetService, displaySetService.EVENTS.DISPLAY_SETS_ADDED);
  on(displaySetService, displaySetService.EVENTS.DISPLAY_SETS_CHANGED);
  on(viewportGridService, viewportGridService.EVENTS.GRID_STATE_CHANGED);
  on(cornerstoneViewportService, cornerstoneViewportService?.EVENTS?.VIEWPORT_DATA_CHANGED);
  setTimeout(attempt, 0);
  return () => {
    done = true;
    unsubs.forEach(u => u());
  };
}

function isValidMode({ modalities }) {
  const list = String(modalities ?? '').split('\\');
  return list.includes('MR')
    ? { valid: true, description: 'Cardiac LGE review of an MR study' }
    : { valid: false, description: 'Cardiac LGE review needs an MR study' };
}

/** Derive this mode's instance from the segmentation mode's instance (pure, unit-tested). */
export function deriveModeInstance(base, { autoLoad = autoLoadLatestSeg, extensionUrl = DEFAULT_EXTENSION_URL } = {}) {
  const baseRoute = base.routes[0];
  const baseLayout = baseRoute.layoutInstance;
  const rightPanels = baseLayout.props.rightPanels ?? [];
  const labelmapPanel = rightPanels.find(p => /LabelMap/i.test(String(p))) ?? rightPanels[0];
  const layoutInstance = {
    ...baseLayout,
    props: {
      ...baseLayout.props,
      // One tab: the review panel stacked above OHIF's labelmap segmentation panel (tools).
      rightPanels: [[PANEL_ID, labelmapPanel].filter(Boolean)],
      rightPanelClosed: false,
      rightPanelInitialExpandedWidth: 360,
    },
  };
  return {
    ...base,
    id: MODE_ID,
    routeName: 'lge-review',
    // OHIF 3.13's study list gives a mode button ~12 characters before it cuts the label off
    displayName: 'LGE review',
    hide: false,
    isValidMode,
    extensions: { ...base.extensions, [extensionUrl]: `^${VERSION}` },
    hangingProtocol: HP_ID,
    routes: [{ ...baseRoute, path: 'lge-review', layoutInstance }],
    onModeEnter(ctx) {
      base.onModeEnter?.call(this, ctx);
      ctx.commandsManager?.runCommand?.('lgeReviewReset');
      this._lgeUnsubscribe = autoLoad(ctx);
    },
    onModeExit(ctx) {
      this._lgeUnsubscribe?.();
      base.onModeExit?.call(this, ctx);
    },
  };
}

const mode = {
  id: MODE_ID,
  version: VERSION,
  async modeFactory({ modeConfiguration, loadModules }) {
    const [segmentationMode] = await loadModules([SEGMENTATION_MODE]);
    const base = segmentationMode.modeFactory.call(segmentationMode, { modeConfiguration: {}, loadModules });
    const instance = deriveModeInstance(base, { extensionUrl: modeConfiguration?.extensionUrl ?? DEFAULT_EXTENSION_URL });
    const { extensionUrl, ...overrides } = modeConfiguration ?? {};
    // A site may adjust the instance from app-config (modesConfiguration[MODE_ID]).
    return { ...instance, ...overrides };
  },
  extensionDependencies: { [DEFAULT_EXTENSION_URL]: `^${VERSION}` },
};

export default mode;
