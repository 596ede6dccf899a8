// Which SEG to open: the latest version of the AI segmentation of an LGE series.
import { dateTimeKey } from './dicom.js';
import { segVersionOf } from './segVersion.js';

/**
 * Pick the latest SEG among candidates (OHIF SEG display sets or plain objects with
 * SeriesDescription, SeriesNumber, SeriesDate/Time, optional instance.ContentDate/Time and
 * referencedSeriesInstanceUID). Order: highest version ("... vN"), then newest content
 * date/time, then newest series date/time, then highest Series Number.
 * `referencedSeriesInstanceUID` restricts to SEGs of one image series.
 */
export function pickLatestSeg(candidates, { referencedSeriesInstanceUID } = {}) {
  const list = (candidates ?? []).filter(
    c => c && (c.Modality === undefined || c.Modality === 'SEG') &&
      (!referencedSeriesInstanceUID || c.referencedSeriesInstanceUID === referencedSeriesInstanceUID)
  );
  const key = c => [
    segVersionOf(c.SeriesDescription),
    dateTimeKey(c.instance?.ContentDate ?? c.ContentDate, c.instance?.ContentTime ?? c.ContentTime),
    dateTimeKey(c.SeriesDate, c.SeriesTime ?? c.instance?.SeriesTime),
    Number(c.SeriesNumber) || 0,
  ];
  const cmp = (a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      if (ka[i] < kb[i]) return -1;
      if (ka[i] > kb[i]) return 1;
    }
    return 0;
  };
  return list.reduce((best, c) => (best === null || cmp(c, best) > 0 ? c : best), null);
}

/**
 * The SR that goes with a SEG: the one whose measurements reference that SEG instance, else
 * the newest report (by content date/time) — e.g. while the node has not yet re-measured an
 * edited SEG. `reports` are parsed reports (srParse.parseLgeReport).
 */
export function pickReportForSeg(reports, segSopInstanceUID) {
  const matching = reports.filter(r => r.referencedSeg?.sopInstanceUID === segSopInstanceUID);
  const pool = matching.length ? matching : reports;
  const newest = pool.reduce((a, b) => (a === null || b.contentDateTime > a.contentDateTime ? b : a), null);
  return { report: newest, matchesSeg: matching.length > 0 };
}
