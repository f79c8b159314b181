#!/usr/bin/env node
// The `troupe` command. Installed from npm it runs the built JavaScript in dist/. In a clone
// before `npm run build` there is no dist/: it runs the TypeScript sources through tsx.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli/main.js', import.meta.url);
let main;
if (existsSync(built)) {
  ({ main } = await import(built.href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
const code = await main(process.argv.slice(2));
// A node that has stopped has nothing left to do; an IPC channel to a launcher must not keep it.
process.exit(code);
