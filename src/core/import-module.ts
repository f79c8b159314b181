import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { invalidOption } from './errors.ts';

/**
 * How troupe loads an app's actor modules, in the main thread and in every worker thread,
 * whatever they are written in: `.js`/`.mjs`/`.cjs` load with `import()`; `.ts`/`.mts`/`.cts`
 * load through tsx, resolved from troupe's own location (an app needs no loader flags and no
 * tsx of its own).
 *
 * Troupe running from its TypeScript sources (tests, a clone before `npm run build`) already
 * runs under a TypeScript loader: vitest's, or tsx registered by `bin/troupe.js` and passed to
 * workers by the supervisor. Built troupe (`dist/`) registers tsx's CommonJS hook itself, on the
 * first `.ts` module only.
 */
const TS_MODULE = /\.[cm]?ts$/;
const fromSource = import.meta.url.endsWith('.ts');

/**
 * A module specifier as the caller meant it: `./app.ts` and other relative paths are relative to
 * `base` (default: the current directory), not to troupe's own files; absolute paths become
 * file URLs; package names resolve from `base` (the app's `node_modules`). Idempotent.
 *
 * @example
 *   resolveModuleSpecifier('./app.ts', '/srv/app')   // 'file:///srv/app/app.ts'
 */
export function resolveModuleSpecifier(specifier: string, base: string = process.cwd()): string {
  if (typeof specifier !== 'string' || specifier.length === 0)
    throw invalidOption('options.modules', 'must hold module paths, file URLs or package names', specifier);
  if (specifier.startsWith('file:') || specifier.startsWith('data:')) return specifier;
  if (isAbsolute(specifier)) return pathToFileURL(specifier).href;
  if (specifier.startsWith('./') || specifier.startsWith('../') || specifier === '.' || specifier === '..')
    return pathToFileURL(resolve(base, specifier)).href;
  try {
    // A package the app depends on: resolve it where the app would.
    return pathToFileURL(createRequire(join(resolve(base), 'noop.js')).resolve(specifier)).href;
  } catch {
    return specifier; // left to import(): its error names the package
  }
}

let tsx: Promise<void> | undefined;

/**
 * `import()` for app modules in any thread. TypeScript modules load through `require` with tsx's
 * CommonJS hook, in every thread alike: on Node 20 tsx's ESM hooks do not reach worker threads,
 * and through them a `.ts` file in a CommonJS package (`npm init -y`) fails with
 * ERR_REQUIRE_CYCLE_MODULE. The hook compiles ESM syntax to CommonJS, and `require('troupe')`
 * inside the module loads troupe's ESM build (Node ≥ 20.19 loads ES modules with `require`).
 * The cost: no top-level `await` in a TypeScript actor module (a `.js`/`.mjs` one may use it).
 */
export async function importModule(specifier: string): Promise<Record<string, unknown>> {
  const url = resolveModuleSpecifier(specifier);
  const path = url.startsWith('file:') ? fileURLToPath(url) : url;
  if (TS_MODULE.test(path) && (!isMainThread || !fromSource)) {
    if (!fromSource) await (tsx ??= import('tsx/cjs/api').then((m) => void m.register()));
    return createRequire(import.meta.url)(path) as Record<string, unknown>;
  }
  return (await import(url)) as Record<string, unknown>;
}

/**
 * The URL of a sibling module of `base` (an `import.meta.url`) with base's own extension: `.ts`
 * when troupe runs from its sources, `.js` once built.
 *
 * @example
 *   siblingModule(import.meta.url, './worker-host')   // …/supervisor/worker-host.ts or .js
 */
export function siblingModule(base: string, relative: string): URL {
  const ext = /\.[cm]?[jt]s$/.exec(new URL(base).pathname)?.[0] ?? '.js';
  return new URL(relative + ext, base);
}

/**
 * Loader flags for worker threads when troupe runs from its sources: tsx, resolved from
 * troupe's own location (not the current directory, where an app may have none).
 */
export function sourceLoaderExecArgv(): string[] {
  if (!fromSource) return [];
  return ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href];
}
