// Geometry and colours of the AHA 17-segment bullseye (Cerqueira et al., Circulation 2002),
// drawn as plain SVG paths so the panel needs no chart library.
//
// Standard orientation: anterior at the top, septum on the left, lateral on the right, inferior
// at the bottom; rings from outside in: basal (1-6), mid (7-12), apical (13-16), apex (17).
// Basal/mid sectors are 60 degrees with segment 1/7 centred at the top and numbering running
// counter-clockwise (anterior -> anteroseptal -> inferoseptal -> inferior -> inferolateral ->
// anterolateral); apical sectors are 90 degrees (anterior, septal, inferior, lateral).

const RINGS = [
  // [first segment, count, outer radius fraction, inner radius fraction]
  [1, 6, 1.0, 0.75],
  [7, 6, 0.75, 0.5],
  [13, 4, 0.5, 0.25],
];

// Angle (degrees, counter-clockwise from the +x axis, y up) of the centre of the first segment.
const TOP = 90;

function point(cx, cy, r, deg) {
  const a = (deg * Math.PI) / 180;
  return [cx + r * Math.cos(a), cy - r * Math.sin(a)]; // SVG y grows downwards
}

const fmt = v => Number(v.toFixed(3));

function annulusSector(cx, cy, rOut, rIn, a0, a1) {
  const [x0, y0] = point(cx, cy, rOut, a0);
  const [x1, y1] = point(cx, cy, rOut, a1);
  const [x2, y2] = point(cx, cy, rIn, a1);
  const [x3, y3] = point(cx, cy, rIn, a0);
  const large = a1 - a0 > 180 ? 1 : 0;
  // outer arc counter-clockwise in math terms = sweep-flag 0 in SVG (y down)
  return [
    `M${fmt(x0)},${fmt(y0)}`,
    `A${fmt(rOut)},${fmt(rOut)} 0 ${large} 0 ${fmt(x1)},${fmt(y1)}`,
    `L${fmt(x2)},${fmt(y2)}`,
    `A${fmt(rIn)},${fmt(rIn)} 0 ${large} 1 ${fmt(x3)},${fmt(y3)}`,
    'Z',
  ].join(' ');
}

/** The 17 segments: {number, path, labelX, labelY, centreAngle} for a bullseye of radius r. */
export function bullseyeSegments(cx, cy, r) {
  const out = [];
  for (const [firstSeg, count, fo, fi] of RINGS) {
    const width = 360 / count;
    for (let i = 0; i < count; i++) {
      const centre = TOP + i * width;
      const a0 = centre - width / 2;
      const a1 = centre + width / 2;
      const [lx, ly] = point(cx, cy, (r * (fo + fi)) / 2, centre);
      out.push({
        number: firstSeg + i,
        path: annulusSector(cx, cy, r * fo, r * fi, a0, a1),
        labelX: fmt(lx),
        labelY: fmt(ly),
        centreAngle: ((centre % 360) + 360) % 360,
      });
    }
  }
  const rc = r * 0.25;
  out.push({
    number: 17,
    path: `M${fmt(cx - rc)},${fmt(cy)} A${fmt(rc)},${fmt(rc)} 0 1 0 ${fmt(cx + rc)},${fmt(cy)} A${fmt(rc)},${fmt(rc)} 0 1 0 ${fmt(cx - rc)},${fmt(cy)} Z`,
    labelX: fmt(cx),
    labelY: fmt(cy),
    centreAngle: null,
  });
  return out;
}

/**
 * Fill colour for a transmurality (%): the usual clinical bins 0, 1-25, 26-50, 51-75, 76-100
 * (viability falls steeply above 50 %); grey when the segment was not covered by the slices.
 */
export function transmuralityColor(percent) {
  if (percent === null || percent === undefined || Number.isNaN(percent)) return '#3a3f4b';
  if (percent <= 0.5) return '#f4f1de'; // 0 %: near white, never the grey of "not covered"
  if (percent <= 25) return '#f6c89f';
  if (percent <= 50) return '#f08a5d';
  if (percent <= 75) return '#d3423e';
  return '#8b1e1e';
}

/** Wall names around the bullseye (unit direction, SVG y down): standard AHA orientation. */
export const ORIENTATION_LABELS = [
  { label: 'Anterior', dx: 0, dy: -1 },
  { label: 'Inferior', dx: 0, dy: 1 },
  { label: 'Septal', dx: -1, dy: 0 },
  { label: 'Lateral', dx: 1, dy: 0 },
];

export const TRANSMURALITY_LEGEND = [
  ['not covered', null],
  ['0 %', 0],
  ['1-25 %', 10],
  ['26-50 %', 40],
  ['51-75 %', 60],
  ['76-100 %', 90],
];
