// Client of the node's review API (see ../../API.md). `fetch` is injectable for tests.

export const DECISIONS = ['accepted', 'rejected'];

function joinUrl(base, path) {
  return `${String(base ?? '').replace(/\/+$/, '')}${path}`;
}

/**
 * What kind of failure `err` (from this client) is, for the panel: 'unauthorised' (401/403, and
 * 429: the node locked this address out after invalid credentials — the message says until when),
 * 'unreachable' (no answer, or the proxy in front of the node has none: 502/503/504), 'error'.
 */
export function errorKind(err) {
  if (!err) return null;
  if ([401, 403, 429].includes(err.status)) return 'unauthorised';
  if (err.kind === 'unreachable' || [502, 503, 504].includes(err.status)) return 'unreachable';
  return 'error';
}

// fetch that turns "no answer at all" (network error, refused connection) into an Error of kind
// 'unreachable' naming what was being done.
async function call(fetchFn, url, init, what) {
  try {
    return await fetchFn(url, init);
  } catch (e) {
    const err = new Error(`${what}: the node did not answer (${e?.message ?? e})`);
    err.kind = 'unreachable';
    throw err;
  }
}

async function asJson(res, what) {
  if (!res.ok) {
    let detail = '';
    try {
      const body = await res.json();
      detail = typeof body?.detail === 'string' ? body.detail : JSON.stringify(body?.detail ?? body);
    } catch {
      detail = res.statusText;
    }
    const err = new Error(`${what}: HTTP ${res.status}${detail ? ` - ${detail}` : ''}`);
    err.status = res.status;
    err.kind = errorKind(err);
    throw err;
  }
  return res.json();
}

export function reviewClient({ nodeUrl, fetchFn = globalThis.fetch?.bind(globalThis), headers = {} }) {
  if (!nodeUrl) throw new Error('nodeUrl is not configured (appConfig.lgeReview.nodeUrl)');
  return {
    /** Jobs of one series (newest first), each with its latest review or null. */
    async jobsForSeries({ studyInstanceUID, seriesInstanceUID }) {
      const q = new URLSearchParams();
      if (studyInstanceUID) q.set('study_uid', studyInstanceUID);
      if (seriesInstanceUID) q.set('series_uid', seriesInstanceUID);
      const res = await call(fetchFn, joinUrl(nodeUrl, `/api/jobs?${q}`),
        { headers: { Accept: 'application/json', ...headers } }, 'listing jobs');
      const jobs = await asJson(res, 'listing jobs');
      return [...jobs].sort((a, b) => Number(b.id) - Number(a.id));
    },
    /** Record a decision; returns the stored review. */
    async submitReview(jobId, { decision, comment, reviewer, segSeriesInstanceUID, segSopInstanceUID, shown }) {
      if (!DECISIONS.includes(decision)) throw new Error(`decision must be one of ${DECISIONS.join(', ')}`);
      const body = {
        decision,
        comment: comment?.trim() || null,
        reviewer: reviewer?.trim() || null,
        seg_series_uid: segSeriesInstanceUID ?? null,
        seg_sop_instance_uid: segSopInstanceUID ?? null,
      };
      // What the reader saw (version, report, figures): sent for the record; a node that does
      // not know the field ignores it (pydantic's default).
      if (shown) body.shown = shown;
      const res = await call(fetchFn, joinUrl(nodeUrl, `/api/jobs/${encodeURIComponent(jobId)}/review`), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...headers },
        body: JSON.stringify(body),
      }, 'recording the review');
      return asJson(res, 'recording the review');
    },
    /** Review history of a job, newest first. */
    async reviews(jobId) {
      const res = await call(fetchFn, joinUrl(nodeUrl, `/api/jobs/${encodeURIComponent(jobId)}/reviews`), {
        headers: { Accept: 'application/json', ...headers },
      }, 'reading reviews');
      return asJson(res, 'reading reviews');
    },
  };
}
