/**
 * Tests that start node processes run the `troupe` bin, which runs the build in dist/. Rebuild it
 * first when any source is newer, so a single test file run after an edit never checks old code.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function newest(dir: string, pattern: RegExp): number {
  let t = 0;
  for (const f of readdirSync(dir, { recursive: true }) as string[]) {
    if (pattern.test(f)) t = Math.max(t, statSync(join(dir, f)).mtimeMs);
  }
  return t;
}

export default function setup(): void {
  let built = 0;
  try {
    // Written by every build (see tsconfig.build.json), even one that emits no changed file.
    built = statSync(join(root, 'node_modules', '.cache', 'troupe', 'build.tsbuildinfo')).mtimeMs;
    statSync(join(root, 'dist', 'index.js'));
  } catch {
    built = 0; // never built here
  }
  if (newest(join(root, 'src'), /\.ts$/) <= built) return;
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'inherit',
  });
}
