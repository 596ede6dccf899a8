// Generate the DICOM fixtures (LGE series, AI SEG, SR) with the node's own encoders
// (test/fixtures/make_fixtures.py) into the git-ignored .fixtures/ folder.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const pluginDir = path.resolve(here, '..');
const repo = path.resolve(pluginDir, '..');

export function findPython() {
  const candidates = [process.env.LGENODE_PYTHON, path.join(repo, '.venv/bin/python'), 'python3'];
  return candidates.find(c => c && (c === 'python3' || existsSync(c)));
}

export function makeFixtures(out, extra = []) {
  const python = findPython();
  const r = spawnSync(
    python,
    [path.join(pluginDir, 'test/fixtures/make_fixtures.py'), '--out', out, ...extra],
    { stdio: ['ignore', 'inherit', 'pipe'], env: { ...process.env, PYTHONPATH: repo }, encoding: 'utf8' }
  );
  if (r.status !== 0) {
    process.stderr.write(r.stderr ?? '');
    throw new Error(`make_fixtures.py failed (${python}, exit ${r.status})`);
  }
}

// The fixture sets the unit tests read: a 64 x 64 study (frames byte-aligned) and two whose
// frames are NOT byte-aligned (Rows x Columns not a multiple of 8): odd x odd, and the 482 x 478
// matrix of MyoPS Case3001 (the size that exposed OHIF's BINARY SEG reader, issue 12).
// Their SRs also cover the three states of the model's quality items (issue 11 item 7):
// flagged "needs careful review" (the default of make_fixtures.py), confident (flag No), and
// absent (an SR without them, as re-measured SRs and older nodes' reports are).
export const FIXTURE_SETS = {
  synthetic: ['--size', '64'],
  'odd-63x61': ['--size', '63', '--cols', '61', '--quality', '0.9312,5,0.84,0.8'],
  'unaligned-482x478': ['--size', '482', '--cols', '478', '--quality', 'none'],
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2]) {
    makeFixtures(process.argv[2], process.argv.slice(3));
    console.log(`fixtures: ${process.argv[2]}`);
  } else {
    for (const [name, args] of Object.entries(FIXTURE_SETS)) {
      makeFixtures(path.join(pluginDir, '.fixtures', name), args);
      console.log(`fixtures: .fixtures/${name}`);
    }
  }
}
