// The host viewer's React instance, for panels that use hooks.
//
// A runtime-loaded plugin must not bundle its own React: hooks read the dispatcher of the React
// copy that renders them, so a second copy breaks every hook ("Invalid hook call"). OHIF 3.14
// (runtime plugins) shares its singletons on `window`, keyed by package name (window['react']);
// OHIF 3.13 shares none. For 3.13 we ask the host's own module runtime: the prebuilt viewer is
// an rspack/webpack build whose chunk-loading global (globalThis.rspackChunk / webpackChunk*)
// runs a pushed chunk's runtime callback with the host's `__webpack_require__`; from its
// module table we pick the module that is React (it exports useState/createElement/version)
// and require it, which returns the already-initialised instance from the host's cache.
// Nothing of the host is modified; the probe chunk has no modules.

let cached = null;

function looksLikeReact(mod) {
  return !!mod && typeof mod.useState === 'function' && typeof mod.createElement === 'function' &&
    typeof mod.version === 'string' && typeof mod.Component === 'function';
}

function fromWindow(g) {
  for (const candidate of [g.react, g.React]) {
    if (looksLikeReact(candidate)) return candidate;
    if (looksLikeReact(candidate?.default)) return candidate.default;
  }
  return null;
}

const REACT_SOURCE = [/exports\.useState\s*=/, /exports\.createElement\s*=/, /exports\.version\s*=/];

/** React from a webpack-style chunk runtime published as `g[globalName]`, or null. */
export function fromChunkRuntime(g, globalName) {
  const queue = g[globalName];
  // The runtime replaces the array's push once it has started; a plain array has no runtime yet.
  if (!Array.isArray(queue) || queue.push === Array.prototype.push) return null;
  let req = null;
  queue.push([[`lgenode-host-react-probe-${Math.random().toString(36).slice(2)}`], {}, r => {
    req = r;
  }]);
  if (!req || !req.m) return null;
  for (const id of Object.keys(req.m)) {
    let src;
    try {
      src = Function.prototype.toString.call(req.m[id]);
    } catch {
      continue;
    }
    if (!REACT_SOURCE.every(re => re.test(src))) continue;
    const mod = req(id);
    if (looksLikeReact(mod)) return mod;
  }
  return null;
}

/** The host's React; throws with an explanation when it cannot be found. */
export function getHostReact(g = globalThis) {
  if (cached) return cached;
  let react = fromWindow(g);
  if (!react) {
    const names = Object.keys(g).filter(k => /^(rspack|webpack)Chunk/.test(k));
    for (const name of names) {
      react = fromChunkRuntime(g, name);
      if (react) break;
    }
  }
  if (!react) {
    throw new Error(
      'Cardiac LGE review: the host React instance was not found (neither window.react nor a ' +
      'webpack/rspack chunk runtime exposes it); the panel cannot be rendered.'
    );
  }
  cached = react;
  return react;
}

/** For tests. */
export function _resetHostReactCache() {
  cached = null;
}
