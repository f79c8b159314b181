/**
 * An app's own web page at `GET /`, and the two views such a page needs to follow its cluster:
 *
 *   GET /                               the app's page when one of its modules exports
 *                                       `page = { html }`; else the status page (always at /status)
 *   GET /cluster/where?kind=&key=       the node serving that key's partition now (its primary)
 *   GET /cluster/gateways               the cluster's public gateway URLs (`gateways` node option,
 *                                       `--gateways`): where a page reconnects when its node dies
 *
 * Both views answer any origin (`access-control-allow-origin: *`): a page loaded from a node that
 * has since died reads them from whichever node its socket moved to. They hold nothing a client
 * could not learn from `/cluster/table` and the addresses it was given.
 *
 * @example
 *   // app.ts
 *   export const page = { html: '<!doctype html><title>chat</title>…' };
 *   // troupe start --app ./app.ts --gateways http://10.0.0.1:8080,http://10.0.0.2:8080
 *   // curl 'localhost:8080/cluster/where?kind=room&key=lobby'  → {"kind":"room","key":"lobby","partition":17,"node":2,"epoch":9}
 */
import { checkKey } from '../actors/actor-ref.ts';
import type { ActorRegistry } from '../actors/registry.ts';
import { invalidOption, troupeError } from '../core/errors.ts';
import { importModule } from '../core/import-module.ts';
import { RawResponse } from '../gateway/http-gateway.ts';
import { partitionOf } from '../replication/partition-table.ts';

/** What an app module exports as `page` to be served at `GET /` (self-contained HTML: no asset routes). */
export interface AppPage {
  readonly html: string;
}

/** What the page views read of the node: its kinds and its routing table (partition → serving node). */
export interface AppPageSource {
  registry: ActorRegistry;
  table: () => { epoch: number; partitions: number; primaries: readonly number[] };
  page: AppPage | undefined;
  gateways: readonly string[];
}

const HTML = 'text/html; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
const ANY_ORIGIN = { 'access-control-allow-origin': '*' };

/**
 * The `page` export of the first module that has one; undefined when none does. A `page` that
 * is not `{ html: string }` is refused, so a typo does not silently leave the status page at `/`.
 */
export async function loadAppPage(specifiers: readonly string[]): Promise<AppPage | undefined> {
  for (const spec of specifiers) {
    const mod = (await importModule(spec)) as Record<string, unknown>;
    if (!Object.hasOwn(mod, 'page')) continue;
    const page = mod.page as { html?: unknown } | null;
    if (page === null || typeof page !== 'object' || typeof page.html !== 'string' || page.html.length === 0)
      throw invalidOption('options.modules', `export 'page' must be { html: string } (module ${spec})`, page);
    return { html: page.html };
  }
  return undefined;
}

/** Checks `options.gateways`: absolute http(s) URLs with no path, returned without a trailing slash. */
export function checkGateways(gateways: unknown): readonly string[] {
  if (gateways === undefined) return [];
  if (!Array.isArray(gateways)) throw invalidOption('options.gateways', 'must be an array of http(s) URLs', gateways);
  return gateways.map((g: unknown) => {
    let url: URL | undefined;
    try {
      url = typeof g === 'string' ? new URL(g) : undefined;
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '')
      throw invalidOption('options.gateways', 'must hold http(s) URLs of gateways with no path, e.g. http://10.0.0.1:8080', g);
    return url.origin;
  });
}

/** The views above, to merge into the node's (they replace the status page at `/` when there is a page). */
export function appPageViews(s: AppPageSource): Record<string, (query: URLSearchParams) => unknown> {
  return {
    ...(s.page && { '/': () => new RawResponse(HTML, s.page!.html) }),
    '/cluster/where': (query) => new RawResponse(JSON_TYPE, JSON.stringify(whereIs(s, query)), ANY_ORIGIN),
    '/cluster/gateways': () => new RawResponse(JSON_TYPE, JSON.stringify({ gateways: s.gateways }), ANY_ORIGIN),
  };
}

/** Kind and key → the node serving the key's partition (null while it has none: a failover in progress). */
export function whereIs(s: Pick<AppPageSource, 'registry' | 'table'>, query: URLSearchParams): { kind: string; key: string; partition: number; node: number | null; epoch: number } {
  const kind = query.get('kind');
  const key = query.get('key');
  if (kind === null || key === null) throw troupeError('ERR_INVALID_INPUT', 'GET /cluster/where needs ?kind=<kind>&key=<key>');
  if (s.registry.get(kind) === undefined) throw troupeError('ERR_UNKNOWN_KIND', `unknown actor kind '${kind.slice(0, 64)}'`, { kind: kind.slice(0, 64) });
  const problem = checkKey(key);
  if (problem) throw troupeError('ERR_INVALID_KEY', problem);
  const { epoch, partitions, primaries } = s.table();
  const partition = partitionOf(key, partitions);
  const node = primaries[partition] ?? -1;
  return { kind, key, partition, node: node < 0 ? null : node, epoch };
}
