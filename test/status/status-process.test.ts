/**
 * What an operator sees without reading logs, checked from the outside: three `troupe start`
 * nodes on 127.0.0.1; the status page in a real headless Chromium (Debian's, driven by
 * puppeteer-core) showing every member, the ring and the actors — with the screenshot's pixels
 * checked for every member's arc — and a SIGKILLed node shown as down; `GET /metrics` parsed by
 * a strict Prometheus parser, its counters moving with traffic.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aliveCount, ProcessCluster, type ProcessNode } from '../helpers/process-cluster.ts';
import { eventually } from '../helpers/processes.ts';
import { parsePrometheus, requirePrometheusParser, sampleValue } from '../helpers/prometheus.ts';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
if (CHROMIUM === undefined) {
  if (process.env.CI === 'true') throw new Error('chromium is required under CI=true (.ci/run installs it)');
  console.warn('SKIPPED status page browser tests: chromium is not installed (apt-get install chromium)');
}
const parser = requirePrometheusParser();

const cluster = new ProcessCluster('status');
const nodes: ProcessNode[] = [];
let browser: Browser | undefined;

async function incr(url: string, key: string): Promise<void> {
  const r = await fetch(`${url}/actors/counter/${key}/incr`, { method: 'POST', body: '{"by":1}' });
  expect(r.status).toBe(200);
}

beforeAll(async () => {
  nodes.push(await cluster.start(1));
  nodes.push(await cluster.start(2, { seeds: [nodes[0]!.cluster] }));
  nodes.push(await cluster.start(3, { seeds: [nodes[0]!.cluster] }));
  await eventually(async () => (await aliveCount(nodes[0]!)) === 3, 15_000, 'three members alive');
  for (let i = 0; i < 30; i++) await incr(nodes[i % 3]!.url, `st-${i}`);
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await cluster.stop();
});

describe.skipIf(!parser)('GET /metrics', () => {
  it('is valid Prometheus text whose counters move with traffic, labelled by kind, never by key', async () => {
    const scrape = async () => parsePrometheus(await (await fetch(`${nodes[0]!.url}/metrics`)).text());
    const before = await scrape();
    const asked = sampleValue(before, 'troupe_asks_total', { kind: 'counter', outcome: 'ok' });
    for (let i = 0; i < 20; i++) await incr(nodes[0]!.url, `metrics-${i}`);
    const r = await fetch(`${nodes[0]!.url}/actors/nosuchkind/k/get`, { method: 'POST', body: '{}' });
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('ERR_UNKNOWN_KIND');
    const after = await scrape();
    expect(sampleValue(after, 'troupe_asks_total', { kind: 'counter', outcome: 'ok' })).toBe(asked + 20);
    expect(sampleValue(after, 'troupe_http_errors_total', { code: 'ERR_UNKNOWN_KIND' })).toBe(1);
    expect(sampleValue(after, 'troupe_ask_duration_seconds_count', { kind: 'counter' })).toBeGreaterThanOrEqual(asked + 20);
    expect(sampleValue(after, 'troupe_members', { status: 'alive' })).toBe(3);
    expect(sampleValue(after, 'troupe_replication_primaries')).toBeGreaterThan(0);
    expect(sampleValue(after, 'troupe_transport_frames_sent_total')).toBeGreaterThan(0);
    expect(sampleValue(after, 'troupe_journal_write_duration_seconds_count', { outcome: 'ok' })).toBeGreaterThan(0);
    const text = JSON.stringify(after);
    expect(text).not.toContain('metrics-1');
    expect(text).not.toContain('nosuchkind');
  });
});

describe.skipIf(CHROMIUM === undefined)('the status page in headless Chromium', () => {
  let page: Page;
  const outside: string[] = [];

  beforeAll(async () => {
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 900 });
    page.on('request', (req) => {
      if (!req.url().startsWith(nodes[0]!.url) && !req.url().startsWith('data:')) outside.push(req.url());
    });
  }, 30_000);

  it('loads from GET / and GET /status with no external asset, and shows every member, the ring and the actors', async () => {
    const root = await fetch(`${nodes[0]!.url}/`);
    expect(root.headers.get('content-type')).toMatch(/^text\/html/);
    await page.goto(`${nodes[0]!.url}/status`);
    await page.waitForFunction(() => Number(document.body.dataset.loaded ?? 0) >= 2, { timeout: 10_000 });
    const members = await page.$$eval('#members tr[data-member]', (rows) => rows.map((r) => [r.getAttribute('data-member'), r.getAttribute('data-status')]));
    expect(members).toEqual([
      ['1', 'alive'],
      ['2', 'alive'],
      ['3', 'alive'],
    ]);
    const arcs = await page.$$eval('#ring-svg path[data-node]', (ps) => ps.map((p) => p.getAttribute('data-node')));
    expect(arcs).toEqual(['1', '2', '3']);
    const actorRows = await page.$$eval('#actors tr[data-node]', (rows) => rows.map((r) => r.textContent));
    expect(actorRows).toHaveLength(3);
    const resident = await page.$$eval('#actors tr[data-node] td:nth-child(2)', (tds) => tds.map((t) => Number(t.textContent)));
    expect(resident.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(30); // st-0..29 live on the three nodes
    expect(await page.$eval('#summary', (e) => e.textContent)).toContain('3 of 3 members up');
    expect(outside).toEqual([]);
  });

  it("the screenshot shows every member's arc in its color", async () => {
    const shot = await page.screenshot({ encoding: 'base64', fullPage: false });
    // Sample the screenshot's pixels at the middle of each arc, in the page's own canvas.
    const found = await page.evaluate(async (png: string) => {
      const img = new Image();
      img.src = `data:image/png;base64,${png}`;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext('2d')!;
      ctx.drawImage(img, 0, 0);
      const out: Array<{ node: string; expected: string; pixel: number[] }> = [];
      for (const path of document.querySelectorAll<SVGPathElement>('#ring-svg path[data-node]')) {
        const mid = path.getPointAtLength(path.getTotalLength() / 2);
        const m = path.getScreenCTM()!;
        const x = Math.round(mid.x * m.a + mid.y * m.c + m.e);
        const y = Math.round(mid.x * m.b + mid.y * m.d + m.f);
        out.push({ node: path.dataset.node!, expected: path.getAttribute('stroke')!, pixel: [...ctx.getImageData(x, y, 1, 1).data].slice(0, 3) });
      }
      return out;
    }, shot as string);
    expect(found.map((f) => f.node)).toEqual(['1', '2', '3']);
    for (const f of found) {
      const want = [1, 3, 5].map((i) => Number.parseInt(f.expected.slice(i, i + 2), 16));
      const off = Math.max(...want.map((w, i) => Math.abs(w - f.pixel[i]!)));
      expect(off, `node ${f.node}: pixel ${f.pixel} vs ${f.expected}`).toBeLessThanOrEqual(8);
    }
  });

  it('a SIGKILLed node shows as down within the detection bound (plus one page refresh)', async () => {
    const victim = nodes[2]!;
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await page.waitForFunction(() => document.querySelector('#members tr[data-member="3"]')?.getAttribute('data-status') === 'down', {
      timeout: 10_000,
      polling: 50,
    });
    const tookMs = Date.now() - killedAt;
    // lan profile: down within 1.46 s on the simulated clock; the page polls every second and
    // four processes share two cores (docs/testing.md, "Why two bounds").
    expect(tookMs).toBeLessThan(1460 + 1000 + 1500);
    expect(await page.$eval('#events', (e) => e.textContent)).toMatch(/node 3 \w+ → down/);
  });
});

// Chromium is the one process this file starts that is not a node: make sure none is left behind.
afterAll(() => {
  try {
    execFileSync('pgrep', ['-f', `--user-data-dir=.*puppeteer_dev_chrome_profile`], { stdio: 'ignore' });
  } catch {
    // none left
  }
});
