// The "Cardiac LGE review" side panel. Written against an injected React (the host's, see
// hostReact.js) with createElement calls, so the bundle carries no React of its own.
import { bullseyeSegments, transmuralityColor, TRANSMURALITY_LEGEND } from '../lib/bullseye.js';
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
};

export function fmt(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? '—' : Number(value).toFixed(digits);
}

function statusOf(review) {
  if (!review) return { label: 'NOT REVIEWED', color: C.warn };
  if (review.decision === 'accepted') return { label: 'ACCEPTED', color: C.ok };
  if (review.decision === 'rejected') return { label: 'REJECTED', color: C.bad };
  return { label: String(review.decision).toUpperCase(), color: C.dim };
}

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

  function Bullseye({ aha, size = 150 }) {
    const r = size / 2 - 4;
    const segs = bullseyeSegments(size / 2, size / 2, r);
    const byNumber = new Map((aha ?? []).map(s => [s.number, s]));
    return h('div', { style: { display: 'flex', gap: 10, alignItems: 'center' } },
      h('svg', { width: size, height: size, viewBox: `0 0 ${size} ${size}`, 'data-testid': 'lge-bullseye', role: 'img',
        'aria-label': 'AHA 17-segment transmurality bullseye' },
        segs.map(s => {
          const a = byNumber.get(s.number);
          const tm = a?.covered ? a.meanTransmurality : null;
          return h('g', { key: s.number },
            h('path', { d: s.path, fill: transmuralityColor(tm), stroke: '#10162f', strokeWidth: 1.2,
              'data-segment': s.number, 'data-transmurality': tm ?? '' },
              h('title', null, `AHA ${s.number} ${a?.name ?? ''}: ${a?.covered ? `${fmt(tm, 0)} % transmural, ${fmt(a.percentEnhanced, 0)} % enhanced` : 'not covered'}`)),
            h('text', { x: s.labelX, y: s.labelY + 3.5, textAnchor: 'middle', fontSize: 10,
              fill: tm !== null && tm > 50 ? '#fff' : '#1b1b1b', style: { pointerEvents: 'none' } },
              tm === null ? s.number : `${Math.round(tm)}`));
        })),
      h('div', { style: { fontSize: 11, color: C.dim, lineHeight: '16px' } },
        h('div', { style: { color: C.text, marginBottom: 2 } }, 'Transmurality'),
        TRANSMURALITY_LEGEND.map(([label, v]) => h('div', { key: label, style: { display: 'flex', gap: 5, alignItems: 'center' } },
          h('span', { style: { display: 'inline-block', width: 10, height: 10, background: transmuralityColor(v), border: '1px solid #10162f' } }),
          label))));
  }

  const button = (color, disabled) => ({
    flex: 1, padding: '6px 8px', borderRadius: 4, border: `1px solid ${color}`, background: disabled ? 'transparent' : color,
    color: disabled ? C.dim : '#08101f', fontWeight: 600, cursor: disabled ? 'default' : 'pointer', opacity: disabled ? 0.5 : 1,
  });

  return function PanelView({ model, form, onForm, onAccept, onReject, onSave, onReload }) {
    const { seg, report, review, job, nodeError, busy, message, lastSaved, reportMatchesSeg } = model;
    const s = report?.summary ?? {};
    const status = statusOf(review);
    const algo = report?.algorithm ?? (seg?.provenance?.segments?.[0]
      ? { name: seg.provenance.segments[0].algorithmName, version: seg.provenance.segments[0].algorithmVersion } : null);
    const canReview = !!job && !busy && !!form.reviewer.trim();
    const canSave = !!seg && !busy && !!form.reviewer.trim();
    return h('div', { 'data-testid': 'lge-panel', style: { color: C.text, fontSize: 13, padding: '8px 10px', display: 'flex', flexDirection: 'column', gap: 6 } },
      h('div', { style: { display: 'flex', justifyContent: 'space-between', alignItems: 'center' } },
        h('div', { style: { fontSize: 15, fontWeight: 600, color: C.accent } }, 'Cardiac LGE review'),
        h('span', { 'data-testid': 'lge-status', style: { fontSize: 11, fontWeight: 700, padding: '2px 6px', borderRadius: 3, border: `1px solid ${status.color}`, color: status.color } }, status.label)),
      h('div', { style: { fontSize: 12, color: C.dim }, 'data-testid': 'lge-seg-info' },
        seg ? `${seg.SeriesDescription || 'SEG'} · series ${seg.SeriesNumber} · v${seg.version}` +
          (seg.provenance?.contentCreator ? ` · edited by ${seg.provenance.contentCreator.replace('^', ', ')}` : ` · ${seg.provenance?.segments?.[0]?.algorithmType ?? ''}`)
          : busy === 'loading' ? 'Loading…' : 'No AI segmentation in this study.'),
      lastSaved ? h('div', { 'data-testid': 'lge-last-saved', style: { fontSize: 12, color: C.ok } },
        `Saved v${lastSaved.version} as series ${lastSaved.seriesNumber} (stored in the PACS)`) : null,
      report ? h('table', { style: { width: '100%', borderCollapse: 'collapse', fontSize: 13 } },
        h('tbody', null,
          h(Row, { label: 'LV cavity', value: fmt(s.lvCavityMl), unit: 'mL', testId: 'lge-lv-cavity' }),
          h(Row, { label: 'Myocardium', value: fmt(s.myocardiumMl), unit: 'mL', extra: `${fmt(s.massG)} g`, testId: 'lge-myocardium' }),
          h(Row, { label: 'Infarct', value: fmt(s.infarctMl), unit: 'mL', extra: `${fmt(s.infarctPercent)} %`, testId: 'lge-infarct' }),
          h(Row, { label: 'MVO', value: fmt(s.mvoMl, 2), unit: 'mL', extra: `${fmt(s.mvoPercent)} %`, testId: 'lge-mvo' }),
          h(Row, { label: 'Segments > 50 % transmural', value: s.nTransmuralSegments ?? '—', unit: '/ 17', testId: 'lge-transmural' }))) : null,
      report && !reportMatchesSeg && seg ? h('div', { style: { fontSize: 11, color: C.warn } },
        'These numbers are from the report of an earlier version; the node re-measures a saved edit.') : null,
      report ? h(Bullseye, { aha: report.aha }) : null,
      algo ? h('div', { style: { fontSize: 11, color: C.dim }, 'data-testid': 'lge-algorithm' },
        `Algorithm: ${algo.name} ${algo.version} · research use only`) : null,
      h('div', { style: { borderTop: `1px solid ${C.line}`, paddingTop: 8, display: 'flex', flexDirection: 'column', gap: 6 } },
        h('label', { style: { fontSize: 12, color: C.dim } }, 'Reviewer',
          h('input', { 'data-testid': 'lge-reviewer', value: form.reviewer, placeholder: 'Family^Given or "Given Family"',
            onChange: e => onForm({ reviewer: e.target.value }),
            style: { width: '100%', marginTop: 2, padding: '4px 6px', background: C.field, color: C.text, border: `1px solid ${C.line}`, borderRadius: 3 } })),
        h('label', { style: { fontSize: 12, color: C.dim } }, 'Comment (optional)',
          h('textarea', { 'data-testid': 'lge-comment', value: form.comment, rows: 1, onChange: e => onForm({ comment: e.target.value }),
            style: { width: '100%', marginTop: 2, padding: '4px 6px', background: C.field, color: C.text, border: `1px solid ${C.line}`, borderRadius: 3, resize: 'vertical' } })),
        h('div', { style: { display: 'flex', gap: 6 } },
          h('button', { 'data-testid': 'lge-accept', disabled: !canReview, onClick: onAccept, style: button(C.ok, !canReview) }, 'Accept'),
          h('button', { 'data-testid': 'lge-reject', disabled: !canReview, onClick: onReject, style: button(C.bad, !canReview) }, 'Reject')),
        h('button', { 'data-testid': 'lge-save', disabled: !canSave, onClick: onSave, style: button(C.accent, !canSave) },
          busy === 'saving' ? 'Saving…' : `Save edited SEG as v${(lastSaved?.version ?? seg?.version ?? 1) + 1}`)),
      message ? h('div', { 'data-testid': 'lge-message', style: { fontSize: 12, color: message.type === 'error' ? C.bad : message.type === 'success' ? C.ok : C.dim } }, message.text) : null,
      h('div', { style: { display: 'flex', justifyContent: 'space-between', alignItems: 'baseline', gap: 6 } },
        h('div', { style: { fontSize: 11, color: C.dim }, 'data-testid': 'lge-node' },
          job ? `Node job #${job.id}${review ? ` · ${review.decision} by ${review.reviewer ?? 'unknown'}${review.created_at ? ` at ${String(review.created_at).replace('T', ' ').slice(0, 16)}` : ''}${review.comment ? ` · "${review.comment}"` : ''}` : ' · no decision yet'}`
            : nodeError ? `Node: ${nodeError}` : ''),
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
