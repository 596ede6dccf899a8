export const EXTENSION_ID = '@lgenode/extension-lge-review';
export const MODE_ID = '@lgenode/mode-lge-review';
export const PANEL_NAME = 'lgeReview';
export const PANEL_ID = `${EXTENSION_ID}.panelModule.${PANEL_NAME}`;
export const HP_ID = '@lgenode/hp-lge-review';
export const VERSION = '0.1.0';
