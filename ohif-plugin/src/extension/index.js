// OHIF v3 extension "Cardiac LGE review" (runtime-loaded ES module).
import { getHostReact } from './hostReact.js';
import { makePanel } from './panel.js';
import { getCommandsModule } from './commands.js';
import { createStore, initialState } from './store.js';
import { lgeReviewProtocol, LGE_ATTRIBUTE } from './hangingProtocol.js';
import { EXTENSION_ID, HP_ID, PANEL_NAME, VERSION } from './ids.js';
import { latestSegDisplaySet, labelmapMaskGetter } from './ohifData.js';
import { currentLabels, loadedSegs, viewerLabelImages } from './segLoader.js';

// One store per page: the panel and the commands share it.
const store = createStore(initialState);
let actions = null;
let services = null;

function LgeReviewPanelHost(props) {
  const React = getHostReact();
  LgeReviewPanelHost.impl ??= makePanel(React, { store, actions, servicesManager: services });
  return React.createElement(LgeReviewPanelHost.impl, props);
}

const extension = {
  id: EXTENSION_ID,
  version: VERSION,

  preRegistration({ servicesManager }) {
    services = servicesManager;
    const { hangingProtocolService } = servicesManager.services;
    hangingProtocolService.addCustomAttribute(
      LGE_ATTRIBUTE,
      'Series referenced by the latest AI segmentation',
      displaySet => latestSegDisplaySet(servicesManager)?.referencedSeriesInstanceUID === displaySet?.SeriesInstanceUID
    );
  },

  getCommandsModule(params) {
    const mod = getCommandsModule({ ...params, store });
    actions = mod.actions;
    return mod;
  },

  getPanelModule() {
    return [
      {
        name: PANEL_NAME,
        iconName: 'tab-segmentation',
        iconLabel: 'LGE review',
        label: 'LGE review',
        component: LgeReviewPanelHost,
      },
    ];
  },

  getHangingProtocolModule() {
    return [{ name: HP_ID, protocol: lgeReviewProtocol }];
  },
};

// For end-to-end tests and debugging (import() of this module URL gives the same instance).
export const _debug = { store, labelmapMaskGetter, currentLabels, loadedSegs, viewerLabelImages };
export default extension;
