/**
 * An app's page at GET / and the views it follows its cluster by (src/node/app-pages.ts), on an
 * in-process node; the `gateways` option and `--gateways` flag refused by name when malformed;
 * the `visitor` kind's name rules.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { troupeBin } from '../../src/cli/node-process.ts';
import { checkGateways, loadAppPage } from '../../src/node/app-pages.ts';
import { TroupeNode } from '../../src/node/troupe-node.ts';

const pageApp = fileURLToPath(new URL('./page-app.ts', import.meta.url));
const demoApp = fileURLToPath(new URL('../../src/demo/app.ts', import.meta.url));
const chatApp = fileURLToPath(new URL('../../src/demo/chat.ts', import.meta.url));

describe('a node with an app page', () => {
  let node: TroupeNode;
  beforeAll(async () => {
    node = await TroupeNode.start({
      modules: [pageApp, chatApp],
      actors: 'in-process',
      http: { port: 0, sessionSecrets: ['s'.repeat(32)] },
      gateways: ['http://10.0.0.1:8080', 'https://chat.example.com/'],
      metrics: false,
    });
  });
  afterAll(() => node.stop());

  it('serves the first module’s page at GET /, and the status page still at /status', async () => {
    const root = await fetch(`${node.url}/?room=x`);
    expect(root.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await root.text()).toContain('an app page');
    expect(await (await fetch(`${node.url}/status`)).text()).not.toContain('an app page');
  });

  it('GET /cluster/gateways lists the gateways given, to any origin', async () => {
    const r = await fetch(`${node.url}/cluster/gateways`);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(await r.json()).toEqual({ gateways: ['http://10.0.0.1:8080', 'https://chat.example.com'] });
  });

  it('GET /cluster/where names the node serving a key (a lone node: itself), to any origin', async () => {
    const r = await fetch(`${node.url}/cluster/where?kind=room&key=lobby`);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(await r.json()).toMatchObject({ kind: 'room', key: 'lobby', node: node.id });
  });

  it.each([
    { query: 'kind=room', status: 400, code: 'ERR_INVALID_INPUT', message: 'GET /cluster/where needs ?kind=<kind>&key=<key>' },
    { query: 'kind=nope&key=k', status: 400, code: 'ERR_UNKNOWN_KIND', message: "unknown actor kind 'nope'" },
    { query: 'kind=room&key=', status: 400, code: 'ERR_INVALID_KEY', message: 'actor key must be a string of 1..' },
  ])('GET /cluster/where?$query is refused with $code', async ({ query, status, code, message }) => {
    const r = await fetch(`${node.url}/cluster/where?${query}`);
    expect(r.status).toBe(status);
    const body = (await r.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message).toContain(message);
  });

  it('the visitor kind keeps a trimmed name and refuses one with nothing visible or a control character', async () => {
    const first = await fetch(`${node.url}/sessions/visitor/name`, { method: 'POST', body: JSON.stringify({ name: '  ada ' }) });
    expect(await first.json()).toEqual({ name: 'ada' });
    const cookie = first.headers.get('set-cookie')!.split(';')[0]!;
    expect(await (await fetch(`${node.url}/sessions/visitor/get`, { headers: { cookie } })).json()).toEqual({ name: 'ada' });
    for (const name of ['   ', 'a\u0007b', 'x'.repeat(33)]) {
      const r = await fetch(`${node.url}/sessions/visitor/name`, { method: 'POST', headers: { cookie }, body: JSON.stringify({ name }) });
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/^name must/);
    }
  });
});

describe('refused by name', () => {
  it.each([
    { gateways: 'http://a:1', message: 'options.gateways must be an array of http(s) URLs (got "http://a:1")' },
    { gateways: ['ftp://a:1'], message: 'options.gateways must hold http(s) URLs of gateways with no path, e.g. http://10.0.0.1:8080 (got "ftp://a:1")' },
    { gateways: ['http://a:1/app'], message: 'options.gateways must hold http(s) URLs of gateways with no path, e.g. http://10.0.0.1:8080 (got "http://a:1/app")' },
    { gateways: ['not a url'], message: 'options.gateways must hold http(s) URLs of gateways with no path, e.g. http://10.0.0.1:8080 (got "not a url")' },
  ])('options.gateways $gateways', ({ gateways, message }) => {
    expect(() => checkGateways(gateways)).toThrow(message);
  });

  it('a module whose page export is not { html } (rather than silently serving the status page)', async () => {
    const bad = 'data:text/javascript,export const page = { body: "x" };';
    await expect(loadAppPage([bad])).rejects.toThrow("options.modules export 'page' must be { html: string }");
  });

  it('a module without a page leaves GET / to the status page', async () => {
    expect(await loadAppPage([demoApp])).toBeUndefined();
  });

  it('--gateways with a path: a usage error naming the flag, exit 2', () => {
    const r = spawnSync(process.execPath, [troupeBin, 'start', '--app', demoApp, '--gateways', 'http://a:1/x'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(
      'troupe start: --gateways must hold http(s) URLs of gateways with no path, e.g. http://10.0.0.1:8080 (got "http://a:1/x") (see troupe start --help)',
    );
  });
});
