// Build the extension and the mode as standalone ES modules (dist/), the form OHIF 3.13 loads
// at runtime with a native import() of the URLs listed in window.config.extensions / modes.
// React is not bundled (the panel uses the host's instance, src/extension/hostReact.js).
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'dist');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));

export const BUNDLES = {
  'extension-lge-review.js': 'src/extension/index.js',
  'mode-lge-review.js': 'src/mode/index.js',
};

export async function buildPlugin({ minify = true } = {}) {
  mkdirSync(outdir, { recursive: true });
  const entryPoints = Object.fromEntries(
    Object.entries(BUNDLES).map(([out, src]) => [out.replace(/\.js$/, ''), path.join(root, src)])
  );
  const result = await build({
    entryPoints,
    outdir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2020'],
    minify,
    sourcemap: true,
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
    banner: { js: `/* ${pkg.name} ${pkg.version} - Cardiac LGE review for OHIF v3 (Apache-2.0) */` },
    // React must come from the host; fail the build if anything pulls in its own copy.
    plugins: [{
      name: 'no-react',
      setup(b) {
        b.onResolve({ filter: /^react(-dom)?(\/.*)?$/ }, args => ({
          errors: [{ text: `"${args.path}" must not be bundled (use the host React via hostReact.js)` }],
        }));
      },
    }],
  });
  // Subresource-integrity hashes for deployments that pin them (OHIF 3.14 descriptors).
  const manifest = { name: pkg.name, version: pkg.version, files: {} };
  for (const file of Object.keys(BUNDLES)) {
    const bytes = readFileSync(path.join(outdir, file));
    manifest.files[file] = {
      bytes: bytes.length,
      integrity: `sha384-${createHash('sha384').update(bytes).digest('base64')}`,
    };
  }
  writeFileSync(path.join(outdir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return { result, manifest };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { manifest } = await buildPlugin({ minify: !process.argv.includes('--no-minify') });
  for (const [f, m] of Object.entries(manifest.files)) console.log(`dist/${f}  ${(m.bytes / 1024).toFixed(0)} kB  ${m.integrity}`);
}
