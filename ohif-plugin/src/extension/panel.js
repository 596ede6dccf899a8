// The "Cardiac LGE review" side panel. Written against an injected React (the host's, see
// hostReact.js) with createElement calls, so the bundle carries no React of its own.
import { bullseyeSegments, transmuralityColor, TRANSMURALITY_LEGEND, ORIENTATION_LABELS } from '../lib/bullseye.js';
import { toPersonName } from '../lib/dicom.js';

const C = {
  text: '#d9e2ef',
  dim: '#8fa3bf',
  accent: '#5acce6',
  ok: '#3fbf7f',
  bad: '#e05d5d',
  warn: '#e8b04a',
  line: '#2b3a55',
  field: '#0b1226',
  review: '#c05000', // the PDF report's "NEEDS CAREFUL REVIEW" banner (node/encode/report.py); white on it: 4.8:1
};

export function fmt(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? '—' : Number(value).toFixed(digits);
}

/** "Doe^Jane" -> "Jane Doe" (how a name reads on screen). */
export function readableName(pn) {
  const [family = '', given = ''] = String(pn ?? '').split('^');
  return [given, family].filter(Boolean).join(' ').trim();
}

/** The status badge: the node's reachability first (a stale "NOT REVIEWED" would mislead). */
export function statusOf(review, nodeErrorKind) {
  if (nodeErrorKind === 'unreachable') return { label: 'NODE UNREACHABLE', color: C.bad };
  if (nodeErrorKind === 'unauthorised') return { label: 'NOT AUTHORISED', color: C.bad };
  if (nodeErrorKind === 'nojob') return { label: 'NO NODE JOB', color: C.dim };
  if (nodeErrorKind === 'error') return { label: 'NODE ERROR', color: C.bad };
  if (!review) return { label: 'NOT REVIEWED', color: C.warn };
  if (review.decision === 'accepted') return { label: 'ACCEPTED', color: C.ok };
  if (review.decision === 'rejected') return { label: 'REJECTED', color: C.bad };
  return { label: String(review.decision).toUpperCase(), color: C.dim };
}

/**
 * What the panel says about the model's self-assessment (`report.quality`, srParse.js):
 * flagged -> {flagged: true, text} for the banner; not flagged (or no flag) with a score ->
 * {flagged: false, text: "Model confidence: 0.93"}; nothing to say -> null.
 */
export function qualityMessage(quality) {
  if (!quality) return null;
  const has = v => v !== undefined && v !== null && !Number.isNaN(v);
  if (quality.needsReview === true) {
    const details = [
      has(quality.score) ? `quality ${fmt(quality.score, 2)}` : null,
      has(quality.infarctPercentSpread)
        ? `infarct % spread ±${fmt(quality.infarctPercentSpread, 1)} points between ensemble members` : null,
    ].filter(Boolean);
    return { flagged: true,
      text: `Needs careful review — the model is unsure about this series${details.length ? ` (${details.join(', ')})` : ''}` };
  }
  if (!has(quality.score)) return null;
  return { flagged: false, text: `Model confidence: ${fmt(quality.score, 2)}` };
}

/** What the node line says for an error kind. */
function nodeLine(kind, text) {
  if (kind === 'unreachable') return `Node unreachable: ${text}`;
  if (kind === 'unauthorised') return `Not authorised by the node (log in again or check lgeReview.apiToken): ${text}`;
  return `Node: ${text}`;
}

const NOT_COVERED_FILL = 'url(#lge-not-covered)';

/** Pure view of the panel (no hooks): everything it shows comes from `model` and `form`. */
export function makePanelView(React) {
  const h = React.createElement;

  function Row({ label, value, unit, extra, testId }) {
    return h('tr', { style: { borderBottom: `1px solid ${C.line}` } },
      h('td', { style: { padding: '3px 4px', color: C.dim } }, label),
      h('td', { style: { padding: '3px 4px', textAlign: 'right', fontVariantNumeric: 'tabular-nums' }, 'data-testid': testId },
        value, unit ? h('span', { style: { color: C.dim } }, ` ${unit}`) : null),
      h('td', { style: { padding: '3px 4px', textAlign: 'right', color: C.dim } }, extra ?? ''));
  }

  function Swatch({ fill, border = '#10162f' }) {
    return h('svg', { width: 12, height: 12, style: { flex: 'none' } },
      h('rect', { x: 0.5, y: 0.5, width: 11, height: 11, fill, stroke: border }));
  }

  // AHA 17-segment bullseye: segment number and transmurality in each sector, the four walls
  // named around it, "not covered" hatched (no slice reached it) so it never reads as 0 %.
  function Bullseye({ aha, size = 300 }) {
    const margin = 34;
    const r = size / 2 - margin;
    const c = size / 2;
    const segs = bullseyeSegments(c, c, r);
    const byNumber = new Map((aha ?? []).map(s => [s.number, s]));
    const hatch = h('pattern', { id: 'lge-not-covered', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      h('rect', { width: 6, height: 6, fill: '#3a3f4b' }),
      h('line', { x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#8a93a6', strokeWidth: 2 }));
    const fillOf = a => (a?.covered ? transmuralityColor(a.meanTransmurality ?? 0) : NOT_COVERED_FILL);
    return h('div', { 'data-testid': 'lge-bullseye-box', style: { display: 'flex', flexDirection: 'column', alignItems: 'center', gap: 4 } },
      h('svg', { width: size, height: size, viewBox: `0 0 ${size} ${size}`, 'data-testid': 'lge-bullseye', role: 'img',
        'aria-label': 'AHA 17-segment transmurality bullseye' },
        h('defs', null, hatch),
        segs.map(s => {
          const a = byNumber.get(s.number);
          const tm = a?.covered ? a.meanTransmurality : null;
          const dark = tm !== null && tm > 50;
          const ink = a?.covered ? (dark ? '#fff' : '#1b1b1b') : '#e6e9ef';
          return h('g', { key: s.number },
            h('path', { d: s.path, fill: fillOf(a), stroke: '#10162f', strokeWidth: 1.2,
              'data-segment': s.number, 'data-transmurality': tm ?? '', 'data-covered': a?.covered ? 'yes' : 'no' },
              h('title', null, `AHA ${s.number} ${a?.name ?? ''}: ${a?.covered ? `${fmt(tm, 0)} % transmural, ${fmt(a.percentEnhanced, 0)} % enhanced` : 'not covered by the slices'}`)),
            h('text', { x: s.labelX, y: s.labelY - 2, textAnchor: 'middle', fontSize: 9, fontWeight: 700, fill: ink,
              style: { pointerEvents: 'none' } }, s.number),
            h('text', { x: s.labelX, y: s.labelY + 9, textAnchor: 'middle', fontSize: 10, fill: ink,
              'data-testid': `lge-aha-${s.number}`, style: { pointerEvents: 'none' } },
              a?.covered ? `${Math.round(tm ?? 0)}%` : 'n/c'));
        }),
        ORIENTATION_LABELS.map(o => h('text', {
          key: o.label, x: c + o.dx * (r + 16), y: c + o.dy * (r + 16) + 4, textAnchor: 'middle', fontSize: 11,
          fill: C.text, transform: o.dx ? `rotate(${o.dx * 90} ${c + o.dx * (r + 16)} ${c + o.dy * (r + 16)})` : undefined,
        }, o.label))),
      h('div', { 'data-testid': 'lge-legend', style: { display: 'flex', flexWrap: 'wrap', gap: '2px 10px', fontSize: 11, color: C.text, justifyContent: 'center' } },
        h('span', { style: { color: C.dim } }, 'Mean transmurality:'),
        TRANSMURALITY_LEGEND.map(([label, v]) => h('span', { key: label, style: { display: 'inline-flex', gap: 4, alignItems: 'center' } },
          h(Swatch, { fill: v === null ? NOT_COVERED_FILL : transmuralityColor(v) }),
          v === null ? 'n/c = not covered by the slices' : label))));
  }

  function SegmentLegend({ segments }) {
    const list = (segments ?? []).filter(s => s.rgb);
    if (!list.length) return null;
    return h('div', { 'data-testid': 'lge-overlay-legend', style: { display: 'flex', flexWrap: 'wrap', gap: '2px 10px', fontSize: 11, color: C.text } },
      list.map(s => h('span', { key: s.number, style: { display: 'inline-flex', gap: 4, alignItems: 'center' } },
        h(Swatch, { fill: `rgb(${s.rgb.join(',')})` }), s.label)));
  }

  // The model's doubt about this series: an orange banner above the numbers when it flags the
  // result, a discreet line when it does not, nothing when the SR does not say (re-measured
  // reviewed SEGs and older reports carry no quality items).
  function QualityNotice({ quality }) {
    const q = qualityMessage(quality);
    if (!q) return null;
    if (!q.flagged) {
      return h('div', { 'data-testid': 'lge-quality', style: { fontSize: 11, color: C.dim },
        title: 'The model\'s own quality score (0-1) for this series; below the model\'s threshold it asks for careful review.' }, q.text);
    }
    const [head, ...rest] = q.text.split(' — ');
    return h('div', { 'data-testid': 'lge-quality-banner', role: 'note', 'aria-label': q.text,
      style: { background: C.review, color: '#fff', borderRadius: 4, padding: '6px 8px', fontSize: 12, lineHeight: 1.35,
        display: 'flex', gap: 6, alignItems: 'flex-start' } },
      h('span', { 'aria-hidden': 'true', style: { fontSize: 14, lineHeight: 1 } }, '\u26a0'),
      h('span', null, h('strong', { style: { textTransform: 'uppercase', letterSpacing: 0.3 } }, head),
        rest.length ? ` — ${rest.join(' — ')}` : ''));
  }

  const button = (color, disabled) => ({
    flex: 1, padding: '6px 8px', borderRadius: 4, border: `1px solid ${color}`, background: disabled ? 'transparent' : color,
    color: disabled ? C.dim : '#08101f', fontWeight: 600, cursor: disabled ? 'default' : 'pointer', opacity: disabled ? 0.5 : 1,
  });

  return function PanelView({ model, form, onForm, onAccept, onReject, onSave, onReload }) {
    const { seg, report, review, job, nodeError, nodeErrorKind, busy, message, lastSaved, reportMatchesSeg, reportPending, dirty } = model;
    // Only the numbers of the version on screen are shown.
    const shown = report && reportMatchesSeg ? report : null;
    const s = shown?.summary ?? {};
    const status = statusOf(review, nodeErrorKind);
    const algo = report?.algorithm ?? (seg?.provenance?.segments?.[0]
      ? { name: seg.provenance.segments[0].algorithmName, version: seg.provenance.segments[0].algorithmVersion } : null);
    const hasName = !!form.reviewer.trim();
    const canReview = !!job && !busy && hasName;
    const canSave = !!seg && !busy && !!dirty && hasName;
    const covered = (shown?.aha ?? []).filter(a => a.covered).length;
    const transmural = (shown?.aha ?? []).filter(a => a.covered && (a.meanTransmurality ?? 0) > 50).length;
    const nTransmural = s.nTransmuralSegments ?? (shown ? transmural : null);
    const saveHint = !seg ? null : !dirty ? 'Save is available after you edit the segmentation.' : !hasName ? 'Type your name to save.' : null;
    const creator = seg?.provenance?.contentCreator;
    return h('div', { 'data-testid': 'lge-panel', style: { color: C.text, fontSize: 13, padding: '8px 10px', display: 'flex', flexDirection: 'column', gap: 6 } },
      h('div', { style: { display: 'flex', justifyContent: 'space-between', alignItems: 'center', gap: 6 } },
        h('div', { style: { fontSize: 15, fontWeight: 600, color: C.accent } }, 'Cardiac LGE review'),
        h('span', { 'data-testid': 'lge-status', style: { fontSize: 11, fontWeight: 700, padding: '2px 6px', borderRadius: 3, border: `1px solid ${status.color}`, color: status.color, whiteSpace: 'nowrap' } }, status.label)),
      h('div', { style: { fontSize: 12, color: C.dim }, 'data-testid': 'lge-seg-info' },
        seg ? `${String(seg.SeriesDescription || 'SEG').replace(/\s+v\d+\s*$/i, '')} · series ${seg.SeriesNumber} · v${seg.version}` +
          (creator ? ` · edited by ${readableName(creator)}` : ` · ${seg.provenance?.segments?.[0]?.algorithmType ?? ''}`)
          : busy === 'loading' ? 'Loading…' : model.loadError ? `Could not open the segmentation: ${model.loadError}` : 'No AI segmentation in this study.'),
      seg ? h(SegmentLegend, { segments: seg.provenance?.segments }) : null,
      lastSaved ? h('div', { 'data-testid': 'lge-last-saved', style: { fontSize: 12, color: C.ok } },
        `Saved v${lastSaved.version} as series ${lastSaved.seriesNumber} (stored in the PACS)`) : null,
      seg && reportPending && !shown ? h('div', { 'data-testid': 'lge-numbers-pending', style: { fontSize: 12, color: C.warn, padding: '4px 0' } },
        `Measurements of v${seg.version} are being computed by the node… (numbers of other versions are not shown)`) : null,
      shown ? h(QualityNotice, { quality: shown.quality }) : null,
      shown ? h('table', { style: { width: '100%', borderCollapse: 'collapse', fontSize: 13 }, 'data-testid': 'lge-numbers', 'data-version': seg?.version ?? '' },
        h('tbody', null,
          h(Row, { label: 'LV cavity', value: fmt(s.lvCavityMl), unit: 'mL', testId: 'lge-lv-cavity' }),
          h(Row, { label: 'Myocardium', value: fmt(s.myocardiumMl), unit: 'mL', extra: `${fmt(s.massG)} g`, testId: 'lge-myocardium' }),
          h(Row, { label: 'Infarct', value: fmt(s.infarctMl), unit: 'mL', extra: `${fmt(s.infarctPercent)} %`, testId: 'lge-infarct' }),
          h(Row, { label: 'MVO', value: fmt(s.mvoMl, 2), unit: 'mL', extra: `${fmt(s.mvoPercent)} %`, testId: 'lge-mvo' }),
          h(Row, { label: 'Segments > 50 % transmural', value: nTransmural ?? '—', unit: `/ ${covered} covered`, testId: 'lge-transmural' }))) : null,
      shown ? h(Bullseye, { aha: shown.aha }) : null,
      algo ? h('div', { style: { fontSize: 11, color: C.dim }, 'data-testid': 'lge-algorithm' },
        `Algorithm: ${algo.name} ${algo.version} · research use only`) : null,
      h('div', { style: { borderTop: `1px solid ${C.line}`, paddingTop: 8, display: 'flex', flexDirection: 'column', gap: 6 } },
        h('label', { style: { fontSize: 12, color: C.dim } }, 'Reviewer name',
          h('input', { 'data-testid': 'lge-reviewer', value: form.reviewer, placeholder: 'e.g. Jane Doe',
            onChange: e => onForm({ reviewer: e.target.value }),
            style: { width: '100%', marginTop: 2, padding: '4px 6px', background: C.field, color: C.text, border: `1px solid ${C.line}`, borderRadius: 3 } })),
        h('label', { style: { fontSize: 12, color: C.dim } }, 'Comment (optional)',
          h('textarea', { 'data-testid': 'lge-comment', value: form.comment, rows: 1, onChange: e => onForm({ comment: e.target.value }),
            style: { width: '100%', marginTop: 2, padding: '4px 6px', background: C.field, color: C.text, border: `1px solid ${C.line}`, borderRadius: 3, resize: 'vertical' } })),
        h('div', { style: { display: 'flex', gap: 6 } },
          h('button', { 'data-testid': 'lge-accept', disabled: !canReview, onClick: onAccept, style: button(C.ok, !canReview) }, `Accept v${seg?.version ?? 1}`),
          h('button', { 'data-testid': 'lge-reject', disabled: !canReview, onClick: onReject, style: button(C.bad, !canReview) }, `Reject v${seg?.version ?? 1}`)),
        h('button', { 'data-testid': 'lge-save', disabled: !canSave, onClick: onSave, style: button(C.accent, !canSave) },
          busy === 'saving' ? 'Saving…' : `Save edited SEG as v${(seg?.version ?? 1) + 1}`),
        saveHint ? h('div', { 'data-testid': 'lge-save-hint', style: { fontSize: 11, color: C.dim } }, saveHint) : null),
      message ? h('div', { 'data-testid': 'lge-message', role: 'status', style: { fontSize: 12, color: message.type === 'error' ? C.bad : message.type === 'success' ? C.ok : C.dim } }, message.text) : null,
      h('div', { style: { display: 'flex', justifyContent: 'space-between', alignItems: 'baseline', gap: 6 } },
        h('div', { style: { fontSize: 11, color: nodeErrorKind && nodeErrorKind !== 'nojob' ? C.bad : C.dim }, 'data-testid': 'lge-node' },
          job ? `Node job #${job.id}${review ? ` · ${review.decision} by ${readableName(review.reviewer) || 'unknown'}${review.created_at ? ` at ${String(review.created_at).replace('T', ' ').slice(0, 16)}` : ''}${review.comment ? ` · "${review.comment}"` : ''}` : ' · no decision yet'}`
            : nodeError ? nodeLine(nodeErrorKind, nodeError) : ''),
        h('button', { onClick: onReload, disabled: !!busy, style: { fontSize: 11, color: C.accent, background: 'none', border: 'none', cursor: 'pointer' } }, 'Reload')));
  };
}

/** The stateful panel: subscribes to the store, keeps the form, calls the actions. */
export function makePanel(React, { store, actions, servicesManager }) {
  const { useEffect, useState, useCallback } = React;
  const PanelView = makePanelView(React);
  const initialReviewer = () => {
    try {
      const saved = globalThis.localStorage?.getItem('lgeReview.reviewer');
      if (saved) return saved;
    } catch {
      // storage unavailable (privacy mode): start empty
    }
    const user = servicesManager.services.userAuthenticationService?.getUser?.();
    return user?.profile?.name ?? '';
  };

  return function LgeReviewPanel() {
    const [model, setModel] = useState(store.get());
    const [form, setForm] = useState(() => ({ reviewer: initialReviewer(), comment: '' }));
    useEffect(() => store.subscribe(setModel), []);
    useEffect(() => {
      if (!store.get().seg && !store.get().busy) actions.lgeReviewRefresh().catch(() => {});
    }, []);
    const onForm = useCallback(patch => {
      setForm(f => ({ ...f, ...patch }));
      if (patch.reviewer !== undefined) {
        try {
          globalThis.localStorage?.setItem('lgeReview.reviewer', patch.reviewer);
        } catch {
          // not persisted; harmless
        }
      }
    }, []);
    const reviewer = toPersonName(form.reviewer);
    const decide = decision => () =>
      actions.lgeReviewSubmitDecision({ decision, comment: form.comment, reviewer }).catch(() => {});
    return React.createElement(PanelView, {
      model,
      form,
      onForm,
      onAccept: decide('accepted'),
      onReject: decide('rejected'),
      onSave: () => actions.lgeReviewSaveSeg({ reviewer, comment: form.comment }).catch(() => {}),
      onReload: () => actions.lgeReviewRefresh().catch(() => {}),
    });
  };
}
