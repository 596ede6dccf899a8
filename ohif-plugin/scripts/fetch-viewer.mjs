// Fetch the prebuilt OHIF viewer (@ohif/app's dist/) with `npm pack`, check the tarball
// against the integrity hash pinned in package.json ("ohifViewer"), and unpack it into the
// git-ignored .ohif/viewer/. (`npm install @ohif/app` cannot work: its dependency tree does
// not resolve on the registry; the package's dist/ is complete on its own.)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { ohifViewer } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const cacheDir = path.join(root, '.ohif');
export const viewerDir = path.join(cacheDir, 'viewer');
const stamp = path.join(viewerDir, '.lgenode-integrity');

function sri(bytes, algo = 'sha512') {
  return `${algo}-${createHash(algo).update(bytes).digest('base64')}`;
}

export function fetchViewer({ force = false } = {}) {
  if (!force && existsSync(stamp) && readFileSync(stamp, 'utf8') === ohifViewer.integrity) return viewerDir;
  mkdirSync(cacheDir, { recursive: true });
  const spec = `${ohifViewer.package}@${ohifViewer.version}`;
  const tgzName = `${ohifViewer.package.replace('@', '').replace('/', '-')}-${ohifViewer.version}.tgz`;
  const tgz = path.join(cacheDir, tgzName);
  if (!existsSync(tgz) || sri(readFileSync(tgz)) !== ohifViewer.integrity) {
    console.log(`npm pack ${spec} ...`);
    execFileSync('npm', ['pack', spec, '--pack-destination', cacheDir, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const actual = sri(readFileSync(tgz));
  if (actual !== ohifViewer.integrity) {
    rmSync(tgz, { force: true });
    throw new Error(`integrity mismatch for ${spec}: got ${actual}, pinned ${ohifViewer.integrity}`);
  }
  const tmp = path.join(cacheDir, 'unpack');
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', tmp]);
  rmSync(viewerDir, { recursive: true, force: true });
  renameSync(path.join(tmp, 'package', 'dist'), viewerDir);
  rmSync(tmp, { recursive: true, force: true });
  writeFileSync(stamp, ohifViewer.integrity);
  console.log(`OHIF ${ohifViewer.version} viewer in ${path.relative(root, viewerDir)} (${readdirSync(viewerDir).length} entries, integrity ok)`);
  return viewerDir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  fetchViewer({ force: process.argv.includes('--force') });
}
