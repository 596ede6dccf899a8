// Client of the node's review API (see ../../API.md). `fetch` is injectable for tests.

export const DECISIONS = ['accepted', 'rejected'];

function joinUrl(base, path) {
  return `${String(base ?? '').replace(/\/+$/, '')}${path}`;
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
      const res = await fetchFn(joinUrl(nodeUrl, `/api/jobs?${q}`), { headers: { Accept: 'application/json', ...headers } });
      const jobs = await asJson(res, 'listing jobs');
      return [...jobs].sort((a, b) => Number(b.id) - Number(a.id));
    },
    /** Record a decision; returns the stored review. */
    async submitReview(jobId, { decision, comment, reviewer, segSeriesInstanceUID, segSopInstanceUID }) {
      if (!DECISIONS.includes(decision)) throw new Error(`decision must be one of ${DECISIONS.join(', ')}`);
      const body = {
        decision,
        comment: comment?.trim() || null,
        reviewer: reviewer?.trim() || null,
        seg_series_uid: segSeriesInstanceUID ?? null,
        seg_sop_instance_uid: segSopInstanceUID ?? null,
      };
      const res = await fetchFn(joinUrl(nodeUrl, `/api/jobs/${encodeURIComponent(jobId)}/review`), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...headers },
        body: JSON.stringify(body),
      });
      return asJson(res, 'recording the review');
    },
    /** Review history of a job, newest first. */
    async reviews(jobId) {
      const res = await fetchFn(joinUrl(nodeUrl, `/api/jobs/${encodeURIComponent(jobId)}/reviews`), {
        headers: { Accept: 'application/json', ...headers },
      });
      return asJson(res, 'reading reviews');
    },
  };
}
