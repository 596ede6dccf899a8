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

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = process.argv[2] ?? path.join(pluginDir, '.fixtures/synthetic');
  makeFixtures(out, process.argv.slice(3));
  console.log(`fixtures: ${out}`);
}
