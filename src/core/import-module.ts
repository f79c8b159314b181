import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isAbsolute } from 'node:path';

/**
 * `import()` that also works for TypeScript sources inside worker threads on Node 20: there,
 * `--import tsx` installs tsx's require hook but not its ESM loader hooks, so a `.ts` module is
 * loaded through `require` (tsx compiles it to CommonJS). Built `.js` modules use `import()`.
 */
export async function importModule(specifier: string): Promise<Record<string, unknown>> {
  const isTs = /\.[cm]?ts$/.test(specifier);
  if (isTs && !isMainThread) {
    const path = specifier.startsWith('file:') ? fileURLToPath(specifier) : specifier;
    return createRequire(import.meta.url)(path) as Record<string, unknown>;
  }
  const url = isAbsolute(specifier) ? pathToFileURL(specifier).href : specifier;
  return (await import(url)) as Record<string, unknown>;
}
