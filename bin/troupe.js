#!/usr/bin/env node
// The `troupe` command. Installed from npm it runs the built JavaScript in dist/. In a clone
// before `npm run build` there is no dist/, and with TROUPE_SOURCE=1 (development, benchmarks
// comparing the two): it runs the TypeScript sources through tsx.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli/main.js', import.meta.url);
const sources = new URL('../src/cli/main.ts', import.meta.url); // a clone only: not in the package
let main;
if (existsSync(built) && !(process.env.TROUPE_SOURCE === '1' && existsSync(sources))) {
  ({ main } = await import(built.href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import(sources.href));
}
const code = await main(process.argv.slice(2));
// A node that has stopped has nothing left to do; an IPC channel to a launcher must not keep it.
process.exit(code);
