// Parse the LGE node's TID 1500 Measurement Report into the numbers the review panel shows.
//
// The parser is semantic, not positional: it walks every Measurement Group (DCM 125007) and
// recognises what a group is about from its coded content, in this order:
//   1. a NUM "number of transmural segments" (99LGENODE LGE0004, or unit {segments});
//   2. a Finding Site (SCT 363698007) from CID 3717 (AHA 17-segment model) -> per-segment values
//      "% of segment myocardium enhanced" (99LGENODE LGE0002) and "mean transmural extent"
//      (99LGENODE LGE0003); by meaning text when another writer uses other codes;
//   3. a structure group (TID 1411, one per SEG segment): the Finding (DCM 121071) code
//      LV (SCT 87878005) = LV cavity, LV myocardium (SCT 49848007), myocardial infarction
//      (SCT 22298006), obstruction (SCT 26036001) = MVO; else the tracking identifier text.
//   Values: Volume (SCT 118565006) or any NUM in ml; Mass (SCT 118538004) or any NUM in g;
//   % of LV myocardial volume (99LGENODE LGE0001) or any NUM in %.
// The model's self-assessment (node v0.3+, models.segment.Quality) is read wherever it sits in
// the content tree, by code, else by meaning text: the quality score (99LGENODE LGE0005, NUM,
// unitless), the infarct-% spread across ensemble members (LGE0007, NUM in %) and the
// qualitative evaluation "needs careful review" (LGE0006) answered SCT Yes / No. These items are
// kept out of the structures' unit fallbacks (a spread in % is not an infarct %).
// Codes are those of node/encode/codes.py. Input: naturalized dataset or DICOM JSON.
import { code, first, isCode, items, naturalize, personName, dateTimeKey } from './dicom.js';

export const AHA_SEGMENTS = [
  // [number, SCT code, short name, level]
  [1, '264850008', 'basal anterior', 'basal'],
  [2, '396482007', 'basal anteroseptal', 'basal'],
  [3, '396646008', 'basal inferoseptal', 'basal'],
  [4, '264846001', 'basal inferior', 'basal'],
  [5, '396652009', 'basal inferolateral', 'basal'],
  [6, '396654005', 'basal anterolateral', 'basal'],
  [7, '264848000', 'mid anterior', 'mid'],
  [8, '396647004', 'mid anteroseptal', 'mid'],
  [9, '396649001', 'mid inferoseptal', 'mid'],
  [10, '264847005', 'mid inferior', 'mid'],
  [11, '396655006', 'mid inferolateral', 'mid'],
  [12, '396656007', 'mid anterolateral', 'mid'],
  [13, '264844003', 'apical anterior', 'apical'],
  [14, '264845002', 'apical septal', 'apical'],
  [15, '264849008', 'apical inferior', 'apical'],
  [16, '264853005', 'apical lateral', 'apical'],
  [17, '128564006', 'apex', 'apex'],
];
const AHA_BY_CODE = new Map(AHA_SEGMENTS.map(([n, c]) => [c, n]));

const DCM = 'DCM';
const SCT = 'SCT';
const LOCAL = '99LGENODE';
const C = {
  measurementGroup: ['125007', DCM],
  trackingId: ['112039', DCM],
  trackingUid: ['112040', DCM],
  finding: ['121071', DCM],
  findingSite: ['363698007', SCT],
  referencedSegment: ['121191', DCM],
  sourceSeriesForSeg: ['121232', DCM],
  algorithmName: ['111001', DCM],
  algorithmVersion: ['111003', DCM],
  algorithmParameters: ['111002', DCM],
  deviceObserverName: ['121013', DCM],
  deviceObserverManufacturer: ['121014', DCM],
  deviceObserverModel: ['121015', DCM],
  volume: ['118565006', SCT],
  mass: ['118538004', SCT],
  percentOfMyocardium: ['LGE0001', LOCAL],
  percentEnhanced: ['LGE0002', LOCAL],
  meanTransmurality: ['LGE0003', LOCAL],
  nTransmural: ['LGE0004', LOCAL],
  qualityScore: ['LGE0005', LOCAL],
  needsCarefulReview: ['LGE0006', LOCAL],
  infarctPercentSpread: ['LGE0007', LOCAL],
  yes: ['373066001', SCT],
  no: ['373067005', SCT],
};
// The quality items: coded concept, else this meaning text (another writer's codes).
const QUALITY_ITEMS = {
  score: { concept: C.qualityScore, valueType: 'NUM', meaning: /quality score|model confidence/i },
  infarctPercentSpread: { concept: C.infarctPercentSpread, valueType: 'NUM', meaning: /spread.*ensemble|ensemble.*spread/i },
  needsReview: { concept: C.needsCarefulReview, valueType: 'CODE', meaning: /needs? (careful )?review/i },
};
const STRUCTURE_BY_FINDING = new Map([
  ['87878005', 'lvCavity'],
  ['49848007', 'myocardium'],
  ['22298006', 'infarct'],
  ['26036001', 'mvo'],
]);
const STRUCTURE_BY_TEXT = [
  [/cavity|blood pool/i, 'lvCavity'],
  [/microvascular|no-?reflow|\bmvo\b|obstruction/i, 'mvo'],
  [/infarct|scar|enhanc/i, 'infarct'],
  [/myocard/i, 'myocardium'],
];

const conceptIs = (item, [value, scheme]) => isCode(code(item.ConceptNameCodeSequence), value, scheme);

/** Which quality item (key of QUALITY_ITEMS) a content item is, or null. */
function qualityKey(item) {
  const name = code(item.ConceptNameCodeSequence);
  if (!name) return null;
  for (const [key, q] of Object.entries(QUALITY_ITEMS)) {
    if (item.ValueType === q.valueType && isCode(name, ...q.concept)) return key;
  }
  for (const [key, q] of Object.entries(QUALITY_ITEMS)) {
    if (item.ValueType === q.valueType && q.meaning.test(name.meaning)) return key;
  }
  return null;
}

function unitOf(num) {
  const mv = first(items(num.MeasuredValueSequence));
  const u = mv && code(mv.MeasurementUnitsCodeSequence);
  return u ? u.value : null;
}

function numericValue(num) {
  const mv = first(items(num.MeasuredValueSequence));
  if (!mv) return null;
  const v = Number(first(mv.NumericValue));
  return Number.isFinite(v) ? v : null;
}

const isUnit = (u, ...names) => !!u && names.some(n => u.toLowerCase() === n.toLowerCase());

function textOf(group, concept) {
  const it = items(group.ContentSequence).find(
    c => c.ValueType === 'TEXT' && conceptIs(c, concept)
  );
  return it ? String(it.TextValue ?? '') : null;
}

function algorithmOf(item) {
  const name = textOf(item, C.algorithmName);
  if (!name) return null;
  const params = items(item.ContentSequence)
    .filter(c => c.ValueType === 'TEXT' && conceptIs(c, C.algorithmParameters))
    .map(c => String(c.TextValue ?? ''));
  return { name, version: textOf(item, C.algorithmVersion) ?? '', parameters: params };
}

/** Every Measurement Group container in the content tree (depth-first). */
function measurementGroups(node, out = []) {
  for (const it of items(node.ContentSequence)) {
    if (it.ValueType === 'CONTAINER' && conceptIs(it, C.measurementGroup)) out.push(it);
    else if (it.ValueType === 'CONTAINER') measurementGroups(it, out);
  }
  return out;
}

function readGroup(group) {
  const content = items(group.ContentSequence);
  const g = {
    trackingId: textOf(group, C.trackingId),
    finding: null,
    findingSites: [],
    referencedSegment: null,
    sourceSeriesInstanceUID: null,
    nums: [],
    algorithm: algorithmOf(group),
  };
  for (const it of content) {
    if (it.ValueType === 'CODE' && conceptIs(it, C.finding)) g.finding = code(it.ConceptCodeSequence);
    else if (it.ValueType === 'CODE' && conceptIs(it, C.findingSite)) {
      g.findingSites.push(code(it.ConceptCodeSequence));
    } else if (it.ValueType === 'IMAGE' && conceptIs(it, C.referencedSegment)) {
      const ref = first(items(it.ReferencedSOPSequence));
      if (ref) {
        g.referencedSegment = {
          sopClassUID: String(ref.ReferencedSOPClassUID ?? ''),
          sopInstanceUID: String(ref.ReferencedSOPInstanceUID ?? ''),
          segmentNumber: Number(first(ref.ReferencedSegmentNumber)),
        };
      }
    } else if (it.ValueType === 'UIDREF' && conceptIs(it, C.sourceSeriesForSeg)) {
      g.sourceSeriesInstanceUID = String(it.UID ?? '');
    } else if (it.ValueType === 'NUM' && !qualityKey(it)) {
      g.nums.push({
        concept: code(it.ConceptNameCodeSequence),
        value: numericValue(it),
        unit: unitOf(it),
        algorithm: algorithmOf(it),
      });
    }
  }
  return g;
}

function findNum(g, concept, unitNames, meaningRe) {
  const [value, scheme] = concept;
  return (
    g.nums.find(n => isCode(n.concept, value, scheme)) ??
    (meaningRe ? g.nums.find(n => n.concept && meaningRe.test(n.concept.meaning)) : undefined) ??
    (unitNames ? g.nums.find(n => isUnit(n.unit, ...unitNames)) : undefined) ??
    null
  );
}

function ahaNumber(g) {
  for (const site of g.findingSites) {
    if (site && AHA_BY_CODE.has(site.value)) return AHA_BY_CODE.get(site.value);
  }
  const m = /\bAHA\s+segment\s+(\d{1,2})\b/i.exec(g.trackingId ?? '');
  const n = m ? Number(m[1]) : NaN;
  return n >= 1 && n <= 17 ? n : null;
}

function structureKey(g) {
  if (g.finding && STRUCTURE_BY_FINDING.has(g.finding.value) && g.referencedSegment) {
    return STRUCTURE_BY_FINDING.get(g.finding.value);
  }
  const text = `${g.trackingId ?? ''} ${g.finding?.meaning ?? ''}`;
  for (const [re, key] of STRUCTURE_BY_TEXT) if (re.test(text)) return key;
  return null;
}

/** Every content item of the tree (depth-first, document order). */
function* contentItems(node) {
  for (const it of items(node.ContentSequence)) {
    yield it;
    yield* contentItems(it);
  }
}

/** Yes -> true, No -> false (by SCT code, else by meaning); anything else -> undefined. */
function yesNo(answer) {
  if (!answer) return undefined;
  if (isCode(answer, ...C.yes)) return true;
  if (isCode(answer, ...C.no)) return false;
  if (/^\s*(yes|true)\s*$/i.test(answer.meaning)) return true;
  if (/^\s*(no|false)\s*$/i.test(answer.meaning)) return false;
  return undefined;
}

/**
 * The model's self-assessed quality, wherever the items sit in the report:
 * `{score, infarctPercentSpread, needsReview}` (each `undefined` when that item is absent;
 * `needsReview` is true / false), or `undefined` when the report carries none of them (reports of
 * nodes before v0.3, re-measured reports of a reviewed SEG). The first occurrence of each counts.
 */
function readQuality(ds, warnings) {
  const found = {};
  for (const it of contentItems(ds)) {
    const key = qualityKey(it);
    if (!key || key in found) continue;
    if (key === 'needsReview') {
      const answer = code(it.ConceptCodeSequence);
      found.needsReview = yesNo(answer);
      if (found.needsReview === undefined) {
        warnings.push(`"needs careful review" answered "${answer?.meaning ?? '?'}": not Yes or No`);
      }
    } else {
      const v = numericValue(it);
      found[key] = v ?? undefined;
    }
  }
  if (!Object.keys(found).length) return undefined;
  return { score: found.score, infarctPercentSpread: found.infarctPercentSpread, needsReview: found.needsReview };
}

/**
 * Parse the report. Returns the panel model; throws only when `ds` is not a TID 1500 SR.
 * Numbers the SR does not carry are `null` (never 0), so the panel can show "—"; the model's
 * quality (`quality`, see readQuality) is `undefined` when absent, so the panel shows nothing.
 */
export function parseLgeReport(input) {
  const ds = naturalize(input);
  const title = code(ds.ConceptNameCodeSequence);
  if (!ds.ContentSequence || !title || title.value !== '126000') {
    throw new Error('not a TID 1500 Imaging Measurement Report');
  }
  const observer = {
    name: textOf(ds, C.deviceObserverName),
    manufacturer: textOf(ds, C.deviceObserverManufacturer),
    model: textOf(ds, C.deviceObserverModel),
  };
  const structures = { lvCavity: null, myocardium: null, infarct: null, mvo: null };
  const aha = AHA_SEGMENTS.map(([number, , name, level]) => ({
    number, name, level, covered: false, percentEnhanced: null, meanTransmurality: null,
  }));
  let nTransmuralSegments = null;
  let algorithm = null;
  let referencedSeg = null;
  let sourceSeriesInstanceUID = null;
  const warnings = [];

  for (const group of measurementGroups(ds)) {
    const g = readGroup(group);
    algorithm ??= g.algorithm ?? g.nums.find(n => n.algorithm)?.algorithm ?? null;
    const nt = findNum(g, C.nTransmural, ['{segments}'], /number of segments/i);
    if (nt) {
      nTransmuralSegments = nt.value;
      continue;
    }
    const ahaN = ahaNumber(g);
    if (ahaN !== null) {
      const seg = aha[ahaN - 1];
      const pe = findNum(g, C.percentEnhanced, null, /enhanc/i);
      const tm = findNum(g, C.meanTransmurality, null, /transmural/i);
      seg.covered = true;
      seg.percentEnhanced = pe?.value ?? null;
      seg.meanTransmurality = tm?.value ?? null;
      continue;
    }
    const key = structureKey(g);
    if (!key) {
      warnings.push(`unrecognised measurement group "${g.trackingId ?? '?'}"`);
      continue;
    }
    if (g.referencedSegment) {
      referencedSeg ??= { sopInstanceUID: g.referencedSegment.sopInstanceUID,
                          sopClassUID: g.referencedSegment.sopClassUID };
    }
    sourceSeriesInstanceUID ??= g.sourceSeriesInstanceUID;
    structures[key] = {
      label: g.trackingId,
      segmentNumber: g.referencedSegment?.segmentNumber ?? null,
      volumeMl: findNum(g, C.volume, ['ml', 'mL', 'cm3'])?.value ?? null,
      massG: findNum(g, C.mass, ['g'])?.value ?? null,
      percentOfMyocardium: findNum(g, C.percentOfMyocardium, ['%'])?.value ?? null,
    };
  }

  const vol = k => structures[k]?.volumeMl ?? null;
  const pct = k => {
    const reported = structures[k]?.percentOfMyocardium;
    if (reported !== null && reported !== undefined) return reported;
    const v = vol(k);
    const myo = vol('myocardium');
    return v !== null && myo ? (100 * v) / myo : null;
  };
  if (nTransmuralSegments === null && aha.some(s => s.meanTransmurality !== null)) {
    nTransmuralSegments = aha.filter(s => (s.meanTransmurality ?? 0) > 50).length;
  }
  const quality = readQuality(ds, warnings);
  return {
    sopInstanceUID: String(ds.SOPInstanceUID ?? ''),
    seriesInstanceUID: String(ds.SeriesInstanceUID ?? ''),
    studyInstanceUID: String(ds.StudyInstanceUID ?? ''),
    seriesDescription: String(ds.SeriesDescription ?? ''),
    contentDateTime: dateTimeKey(ds.ContentDate, ds.ContentTime),
    preliminary: String(ds.PreliminaryFlag ?? '') === 'PRELIMINARY',
    verification: String(ds.VerificationFlag ?? ''),
    author: personName(ds.VerifyingObserverSequence?.[0]?.VerifyingObserverName),
    algorithm,
    observer,
    referencedSeg,
    sourceSeriesInstanceUID,
    structures,
    summary: {
      lvCavityMl: vol('lvCavity'),
      myocardiumMl: vol('myocardium'),
      massG: structures.myocardium?.massG ?? null,
      infarctMl: vol('infarct'),
      infarctPercent: pct('infarct'),
      mvoMl: vol('mvo'),
      mvoPercent: pct('mvo'),
      nTransmuralSegments,
    },
    aha,
    quality,
    warnings,
  };
}
