// A tiny observable store shared by the panel and the commands (no host libraries needed).
export function createStore(initial) {
  let state = initial;
  const listeners = new Set();
  return {
    get: () => state,
    set(patch) {
      state = { ...state, ...(typeof patch === 'function' ? patch(state) : patch) };
      listeners.forEach(l => l(state));
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export const initialState = {
  studyInstanceUID: null,
  seg: null, // {displaySetInstanceUID, SOPInstanceUID, SeriesInstanceUID, SeriesNumber, SeriesDescription, version, referencedSeriesInstanceUID, provenance}
  report: null, // parsed TID 1500 report (lib/srParse.js)
  reportMatchesSeg: false,
  job: null, // node job of the LGE series
  review: null, // latest review decision of that job
  reportPending: false, // the version on screen has no SR yet (the node is measuring it)
  nodeError: null,
  nodeErrorKind: null, // 'unreachable' | 'unauthorised' | 'nojob' | 'error'
  dirty: false, // the reader edited the labelmap since it was opened or saved
  loadError: null,
  lastGuard: null, // the last save check (segDecode.guardSave)
  lastSaved: null, // {seriesInstanceUID, sopInstanceUID, seriesNumber, seriesDescription, version, changedPixels}
  busy: null, // 'loading' | 'saving' | 'reviewing'
  message: null, // {type: 'info'|'error'|'success', text}
};
