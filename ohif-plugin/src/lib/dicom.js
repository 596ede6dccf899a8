// Small helpers over "naturalized" DICOM datasets (keyword-keyed objects, as dcmjs and OHIF's
// metadata store produce them). DICOM JSON (PS3.18 F.2, what WADO-RS /metadata returns) is
// converted with dcmjs, so every parser in this plugin works on one form only.
import dcmjs from 'dcmjs';

const { DicomMetaDictionary } = dcmjs.data;

/** True for a DICOM JSON object: keys are 8 hex digits and values carry a `vr`. */
export function isDicomJson(ds) {
  if (!ds || typeof ds !== 'object' || Array.isArray(ds)) return false;
  const keys = Object.keys(ds);
  return keys.length > 0 && keys.every(k => /^[0-9A-Fa-f]{8}$/.test(k));
}

/** Naturalized copy of `ds` (DICOM JSON or already naturalized). */
export function naturalize(ds) {
  if (isDicomJson(ds)) return DicomMetaDictionary.naturalizeDataset(atToNumbers(ds));
  return ds;
}

// DICOM JSON writes AT values as "GGGGEEEE" strings; dcmjs encodes AT from numbers.
function atToNumbers(json) {
  const out = {};
  for (const [tag, el] of Object.entries(json)) {
    if (!el || typeof el !== 'object') {
      out[tag] = el;
    } else if (el.vr === 'AT' && Array.isArray(el.Value)) {
      out[tag] = { ...el, Value: el.Value.map(v => (typeof v === 'string' ? parseInt(v, 16) : v)) };
    } else if (el.vr === 'SQ' && Array.isArray(el.Value)) {
      out[tag] = { ...el, Value: el.Value.map(atToNumbers) };
    } else {
      out[tag] = el;
    }
  }
  return out;
}

/** A sequence (or a single item, as OHIF sometimes stores one-item sequences) as an array. */
export function items(value) {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

/** First value of a possibly multi-valued attribute. */
export function first(value) {
  return Array.isArray(value) ? value[0] : value;
}

/** {value, scheme, meaning} of a code sequence item or of the first item of a code sequence. */
export function code(seqOrItem) {
  const it = first(seqOrItem);
  if (!it) return null;
  const value = it.CodeValue ?? it.LongCodeValue ?? it.URNCodeValue;
  if (value === undefined) return null;
  return {
    value: String(value),
    scheme: String(it.CodingSchemeDesignator ?? ''),
    meaning: String(it.CodeMeaning ?? ''),
  };
}

/** True when `c` (from `code()`) is the coded concept (value, scheme). */
export function isCode(c, value, scheme) {
  return !!c && c.value === value && (!scheme || c.scheme === scheme || sameScheme(c.scheme, scheme));
}

// SNOMED CT appears as SCT (current) or SRT (retired SNOMED-RT style designator).
function sameScheme(a, b) {
  const norm = s => (s === 'SRT' || s === 'SNM3' ? 'SCT' : s);
  return norm(a) === norm(b);
}

/** A PN value (string or {Alphabetic}) as its string form. */
export function personName(value) {
  const v = first(value);
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  return String(v.Alphabetic ?? '');
}

/** "Jane Doe" -> "Doe^Jane"; "Doe^Jane" unchanged; trims and limits to 64 chars per group. */
export function toPersonName(text) {
  const t = String(text ?? '').trim().replace(/\s+/g, ' ');
  if (!t) return '';
  if (t.includes('^') || t.includes(',')) {
    const parts = t.includes('^') ? t.split('^') : t.split(',').map(s => s.trim()).slice(0, 2);
    return parts.map(p => p.trim()).join('^').slice(0, 64);
  }
  const words = t.split(' ');
  if (words.length === 1) return words[0].slice(0, 64);
  const family = words[words.length - 1];
  const given = words.slice(0, -1).join(' ');
  return `${family}^${given}`.slice(0, 64);
}

/** DICOM DA + TM -> sortable string "YYYYMMDDHHMMSS.ffffff" ('' when absent). */
export function dateTimeKey(date, time) {
  const d = String(first(date) ?? '').trim();
  if (!d) return '';
  const t = String(first(time) ?? '').trim().replace(/:/g, '');
  const [whole, frac = ''] = t.split('.');
  return `${d}${whole.padEnd(6, '0')}.${frac.padEnd(6, '0')}`;
}

/** DICOM DA/TM strings of a JS Date (local time, as DICOM dates usually are). */
export function dicomDateTime(date) {
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return {
    date: `${date.getFullYear()}${p(date.getMonth() + 1)}${p(date.getDate())}`,
    time: `${p(date.getHours())}${p(date.getMinutes())}${p(date.getSeconds())}.${p(date.getMilliseconds(), 3)}`,
  };
}

/**
 * A new UID under the UUID-derived root 2.25 (PS3.5 B.2): no registered root needed.
 * `randomUUID` is injectable for tests.
 */
export function newUid(randomUUID = () => globalThis.crypto.randomUUID()) {
  const hex = randomUUID().replace(/-/g, '');
  return `2.25.${BigInt(`0x${hex}`).toString(10)}`;
}

/** Deep copy of a naturalized dataset (plain data + ArrayBuffers/typed arrays). */
export function clone(ds) {
  return structuredClone(stripProxies(ds));
}

// dcmjs naturalized sequences may be Proxies or carry non-cloneable accessors; rebuild as
// plain arrays/objects so structuredClone works and serialization is predictable.
function stripProxies(value) {
  if (Array.isArray(value)) return value.map(stripProxies);
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return value;
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = stripProxies(v);
    return out;
  }
  return value;
}
