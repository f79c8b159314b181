/**
 * troupe as a user gets it: the packed tarball installed into fresh apps — TypeScript ESM with an
 * ordinary NodeNext tsconfig (must type-check clean), plain ESM JavaScript, and a CommonJS app
 * from `npm init -y` — each starting a node from code and with the CLI and asking an actor.
 *
 * Offline and fast: the tarball is unpacked into the apps' `node_modules/troupe`, and its
 * dependencies are the project's own installed packages, linked in beside it (what `npm install`
 * would fetch, without a registry).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../..', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'troupe-pkg-'));
const modules = join(root, 'node_modules');
const children = new Set<ChildProcess>();

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

beforeAll(async () => {
  // `npm pack` runs `prepare`, which builds dist/ from the current sources.
  const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', root], { cwd: repo });
  const tarball = join(root, stdout.trim().split('\n').pop()!);
  mkdirSync(join(modules, 'troupe'), { recursive: true });
  await run('tar', ['xzf', tarball, '-C', join(modules, 'troupe'), '--strip-components=1']);
  linkDependencies(join(repo, 'node_modules'), modules);
  mkdirSync(join(modules, '.bin'));
  symlinkSync('../troupe/bin/troupe.js', join(modules, '.bin', 'troupe'));
  chmodSync(join(modules, 'troupe', 'bin', 'troupe.js'), 0o755);
  writeApps();
}, 120_000);

/** Every installed package of the project, linked into `to` (as a flat `npm install` lays them out). */
function linkDependencies(from: string, to: string): void {
  for (const name of readdirSync(from)) {
    if (name === '.bin' || name === 'troupe' || name.startsWith('.')) continue;
    if (name.startsWith('@')) {
      mkdirSync(join(to, name), { recursive: true });
      for (const scoped of readdirSync(join(from, name))) symlinkSync(join(from, name, scoped), join(to, name, scoped));
    } else symlinkSync(join(from, name), join(to, name));
  }
}

const counterTs = `import { defineActor, optionalInt } from 'troupe';

export const counter = defineActor({
  kind: 'counter',
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }, e: { by: number }) => ({ n: s.n + e.by }),
  commands: {
    incr: {
      input: (raw) => ({ by: optionalInt(raw, 'by', 1) }),
      handle: (ctx, { by }) => {
        ctx.emit({ by });
        return { n: ctx.state.n };
      },
    },
    get: { readOnly: true, handle: (ctx) => ({ n: ctx.state.n }) },
  },
});
`;

const counterJs = (importLine: string, exportWord: string) => `${importLine}
${exportWord} defineActor({
  kind: 'counter',
  initial: () => ({ n: 0 }),
  apply: (s, e) => ({ n: s.n + e.by }),
  commands: { incr: { handle: (ctx, input) => { ctx.emit({ by: (input && input.by) || 1 }); return { n: ctx.state.n }; } } },
});
`;

const roomMjs = `import { defineActor } from 'troupe';
export const room = defineActor({
  kind: 'room',
  initial: () => ({ visits: 0 }),
  apply: (s) => ({ visits: s.visits + 1 }),
  commands: { visit: { handle: (ctx) => { ctx.emit({}); return ctx.state; } } },
});
`;

function write(path: string, text: string): void {
  mkdirSync(join(root, path, '..'), { recursive: true });
  writeFileSync(join(root, path), text);
}

function writeApps(): void {
  // TypeScript, ESM, an ordinary NodeNext tsconfig: the user's own code imports with `.js`.
  write('ts-esm/package.json', JSON.stringify({ name: 'ts-esm', private: true, type: 'module' }));
  write(
    'ts-esm/tsconfig.json',
    JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] },
    }),
  );
  write('ts-esm/counter.ts', counterTs);
  write(
    'ts-esm/main.ts',
    `import { TroupeNode } from 'troupe';
import { counter } from './counter.js';

const node = await TroupeNode.start({ modules: ['./counter.ts'], workers: 1, http: { port: 0 } });
const reply: unknown = await node.ref(counter, 'k1').ask({ command: 'incr', input: { by: 2 } });
console.log('REPLY ' + JSON.stringify(reply));
await node.stop();
`,
  );
  // Plain ESM JavaScript.
  write('js-esm/package.json', JSON.stringify({ name: 'js-esm', private: true, type: 'module' }));
  write('js-esm/counter.mjs', counterJs(`import { defineActor } from 'troupe';`, 'export const counter ='));
  write(
    'js-esm/main.mjs',
    `import { TroupeNode } from 'troupe';
const node = await TroupeNode.start({ modules: ['./counter.mjs'], workers: 1, http: { port: 0 } });
console.log('REPLY ' + JSON.stringify(await node.ask('counter', 'k1', { command: 'incr', input: { by: 3 } })));
await node.stop();
`,
  );
  // CommonJS, as `npm init -y` makes it, with actor modules in .cjs, .ts and .mjs.
  write('cjs/package.json', JSON.stringify({ name: 'cjs', version: '1.0.0', main: 'index.js', license: 'ISC', type: 'commonjs' }));
  write('cjs/counter.cjs', counterJs(`const { defineActor } = require('troupe');`, 'exports.counter ='));
  write('cjs/cart.ts', counterTs.replaceAll("'counter'", "'cart'").replace('export const counter', 'export const cart'));
  write('cjs/room.mjs', roomMjs);
  write(
    'cjs/index.js',
    `const { TroupeNode } = require('troupe');
(async () => {
  const node = await TroupeNode.start({ modules: ['./counter.cjs', './cart.ts', './room.mjs'], workers: 1, http: { port: 0 } });
  const replies = [
    await node.ask('counter', 'k1', { command: 'incr', input: { by: 4 } }),
    await node.ask('cart', 'c1', { command: 'incr', input: { by: 5 } }),
    await node.ask('room', 'r1', { command: 'visit' }),
  ];
  console.log('REPLY ' + JSON.stringify(replies));
  await node.stop();
})().catch((e) => { console.error(e); process.exit(1); });
`,
  );
}

/** Runs a script of an app to completion; returns what it printed after `REPLY `. */
async function replyOf(app: string, args: string[]): Promise<unknown> {
  const { stdout } = await run(process.execPath, args, { cwd: join(root, app), env: { ...process.env, TROUPE_LOG_LEVEL: 'warn' }, timeout: 60_000 });
  const line = stdout.split('\n').find((l) => l.startsWith('REPLY '));
  if (line === undefined) throw new Error(`${app}: no reply in ${JSON.stringify(stdout)}`);
  return JSON.parse(line.slice(6));
}

/** `troupe start` as installed (or another bin), (`node_modules/.bin/troupe`), asked one command over HTTP, then stopped. */
async function cliAsk(
  cwd: string,
  appModule: string,
  path: string,
  body: unknown,
  bin = join(modules, '.bin', 'troupe'),
): Promise<{ status: number; body: unknown }> {
  const child = spawn(bin, ['start', '--app', appModule, '--http', '0', '--workers', '1'], {
    cwd,
    env: { ...process.env, TROUPE_LOG_LEVEL: 'info', TROUPE_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cwd}: no 'node started' line within 30 s; stderr: ${stderr}`)), 30_000);
    void exited.then((code) => reject(new Error(`${cwd}: troupe exited (${code}) before it served; stderr: ${stderr}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const rec = line.startsWith('{') ? (JSON.parse(line) as { msg?: string; http?: string }) : {};
      if (rec.msg === 'node started' && rec.http) {
        clearTimeout(timer);
        resolve(rec.http);
      }
    });
  });
  try {
    const res = await fetch(url + path, { method: 'POST', body: JSON.stringify(body) });
    return { status: res.status, body: await res.json() };
  } finally {
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
}

// Each case starts node processes and the first runs tsc: generous on a busy two-core machine.
describe('the packed tarball in fresh apps', { timeout: 90_000 }, () => {
  it('ships built JavaScript with types, and no TypeScript sources', async () => {
    const files = readdirSync(join(modules, 'troupe'), { recursive: true }) as string[];
    expect(files).toContain(join('dist', 'index.js'));
    expect(files).toContain(join('dist', 'index.d.ts'));
    expect(files).toContain(join('dist', 'supervisor', 'worker-host.js'));
    expect(files.filter((f) => /\.[cm]?ts$/.test(f) && !f.endsWith('.d.ts'))).toEqual([]);
    expect(files.some((f) => f.startsWith('test') || f.startsWith('bench') || f.startsWith('src'))).toBe(false);
  });

  it('TypeScript ESM: type-checks clean under NodeNext, runs from code and from the CLI', async () => {
    await run(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'ts-esm')], { timeout: 60_000 });
    // The user's own TypeScript runs with their loader; troupe loads counter.ts itself.
    expect(await replyOf('ts-esm', ['--import', 'tsx', 'main.ts'])).toEqual({ n: 2 });
    expect(await cliAsk(join(root, 'ts-esm'), './counter.ts', '/actors/counter/k1/incr', { by: 7 })).toEqual({ status: 200, body: { n: 7 } });
  });

  it('plain ESM JavaScript: runs from code and from the CLI', async () => {
    expect(await replyOf('js-esm', ['main.mjs'])).toEqual({ n: 3 });
    expect(await cliAsk(join(root, 'js-esm'), './counter.mjs', '/actors/counter/k1/incr', { by: 1 })).toEqual({ status: 200, body: { n: 1 } });
  });

  it('CommonJS from npm init -y: require("troupe") with .cjs, .ts and .mjs actor modules, and the CLI', async () => {
    expect(await replyOf('cjs', ['index.js'])).toEqual([{ n: 4 }, { n: 5 }, { visits: 1 }]);
    expect(await cliAsk(join(root, 'cjs'), './cart.ts', '/actors/cart/c9/incr', { by: 6 })).toEqual({ status: 200, body: { n: 6 } });
  });

  it('a symlinked install (npm link) runs from code with a .ts actor module', async () => {
    const linked = mkdtempSync(join(tmpdir(), 'troupe-linked-'));
    try {
      mkdirSync(join(linked, 'node_modules'));
      symlinkSync(repo, join(linked, 'node_modules', 'troupe'));
      writeFileSync(join(linked, 'package.json'), JSON.stringify({ name: 'linked', private: true, type: 'module' }));
      writeFileSync(join(linked, 'room.ts'), roomMjs.replace('(s)', '(s: { visits: number })'));
      writeFileSync(
        join(linked, 'main.mjs'),
        `import { TroupeNode } from 'troupe';
const node = await TroupeNode.start({ modules: ['./room.ts'], workers: 1, http: false });
console.log('REPLY ' + JSON.stringify(await node.ask('room', 'x', { command: 'visit' })));
await node.stop();
`,
      );
      const { stdout } = await run(process.execPath, ['main.mjs'], { cwd: linked, env: { ...process.env, TROUPE_LOG_LEVEL: 'warn' }, timeout: 60_000 });
      expect(stdout).toContain('REPLY {"visits":1}');
    } finally {
      rmSync(linked, { recursive: true, force: true });
    }
  });

  it('the repository bin runs from a directory with no node_modules, loading a .ts module there', async () => {
    // No tsx and no troupe where the app is: both must resolve from troupe's own location.
    const elsewhere = mkdtempSync(join(tmpdir(), 'troupe-elsewhere-'));
    try {
      const room = roomMjs.replace("from 'troupe'", `from '${join(repo, 'dist', 'index.js')}'`).replace('(s)', '(s: { visits: number })');
      writeFileSync(join(elsewhere, 'room.ts'), room);
      const reply = await cliAsk(elsewhere, './room.ts', '/actors/room/r1/visit', {}, join(repo, 'bin', 'troupe.js'));
      expect(reply).toEqual({ status: 200, body: { visits: 1 } });
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});
