/**
 * Read-your-writes tokens, the pure parts (src/replication/token.ts): the verdict a serving
 * primary gives a token (I7), the header syntax with its named errors, merging a session's set,
 * and the remote protocol carrying a token while the older frame shapes still decode. Then the
 * gateway on a stub sender: the `troupe-token` header in (parsed, 400 when malformed) and out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorRegistry } from '../../src/actors/registry.ts';
import { parseRemote, R_ASK, R_REPLY } from '../../src/cluster/remote-protocol.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { HttpGateway, type Sender } from '../../src/gateway/http-gateway.ts';
import type { EpochHistory } from '../../src/replication/epoch.ts';
import {
  formatTokens,
  fromWireToken,
  judgeToken,
  mergeTokens,
  parseTokens,
  type Token,
  type TokenVerdict,
} from '../../src/replication/token.ts';
import { counter } from '../fixtures/actors.ts';

const e = (term: number, node: number) => ({ term, node });
const set = (node: number) => ({ members: [node], w: 1 });
/** A log: epoch (1,n1) wrote 1..40, (3,n2) wrote 41..99, (5,n3) from 100 on; it ends at 120. */
const history: EpochHistory = [
  { epoch: e(1, 1), startSeq: 1, sets: [set(1)] },
  { epoch: e(3, 2), startSeq: 41, sets: [set(2)] },
  { epoch: e(5, 3), startSeq: 100, sets: [set(3)] },
];
const tok = (term: number, node: number, seq: number, p = 7): Token => ({ p, epoch: e(term, node), seq });

describe('judgeToken: what the primary of epoch (5,n3) makes of a token', () => {
  const cases: Array<[string, Token, TokenVerdict]> = [
    ['its own epoch, written: wait for apply', tok(5, 3, 110), { type: 'wait', seq: 110 }],
    ['its own epoch, beyond its log: wait (bounded; it never comes)', tok(5, 3, 500), { type: 'wait', seq: 500 }],
    ['a later term: this node is stale', tok(6, 1, 1), { type: 'newer' }],
    ['the same term, a higher node id: later too', tok(5, 4, 1), { type: 'newer' }],
    ['an earlier epoch this log holds through seq', tok(3, 2, 99), { type: 'wait', seq: 99 }],
    ['an earlier epoch that ended before seq: lost', tok(3, 2, 100), { type: 'lost', end: 99 }],
    ['the first epoch, held', tok(1, 1, 40), { type: 'wait', seq: 40 }],
    ['the first epoch, past its end: lost', tok(1, 1, 41), { type: 'lost', end: 40 }],
    ['an earlier epoch that never wrote here: lost', tok(4, 1, 1), { type: 'lost', end: -1 }],
  ];
  it.each(cases)('%s', (_name, token, verdict) => {
    expect(judgeToken(token, e(5, 3), history, 120)).toEqual(verdict);
  });
});

describe('parseTokens: the header syntax', () => {
  it('reads a set, one entry per partition, the later position winning a duplicate', () => {
    const s = parseTokens(' 7:3.2:99 , 12:1.1:4,7:5.3:101,7:5.3:100', 1024);
    expect([...s.keys()]).toEqual([7, 12]);
    expect(s.get(7)).toEqual(tok(5, 3, 101));
    expect(formatTokens(s)).toBe('7:5.3:101,12:1.1:4');
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['empty', '', /malformed/],
    ['garbage', 'nope', /malformed/],
    ['an object key', '__proto__:1.1:1', /malformed/],
    ['a negative seq', '7:1.1:-1', /malformed/],
    ['seq zero', '7:1.1:0', /seq outside/],
    ['term zero', '7:0.1:5', /term outside/],
    ['a partition past the count', '1024:1.1:5', /partition 1024, but there are 1024/],
    ['a node id past 1023', '7:1.1024:5', /node id above 1023/],
    ['a seq past 2^53', '7:1.1:9007199254740993', /seq outside/],
    ['a trailing comma', '7:1.1:5,', /malformed/],
    ['not a string', 42, /must be a string/],
    ['too many entries', Array.from({ length: 257 }, (_, i) => `${i}:1.1:1`).join(','), /at most 256 tokens/],
  ];
  it.each(bad)('refuses %s with ERR_INVALID_OPTION naming the header', (_name, raw, why) => {
    let err: unknown;
    try {
      parseTokens(raw, 1024);
    } catch (x) {
      err = x;
    }
    expect(err).toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringMatching(/^header troupe-token /) });
    expect((err as Error).message).toMatch(why);
  });

  it('merges a reply token into a session set: per partition, the later position', () => {
    const s = parseTokens('7:3.2:99,12:1.1:4', 1024);
    expect(formatTokens(mergeTokens(s, tok(5, 3, 1)))).toBe('7:5.3:1,12:1.1:4');
    expect(formatTokens(mergeTokens(s, tok(3, 2, 50)))).toBe('7:3.2:99,12:1.1:4');
    expect(formatTokens(mergeTokens(s, tok(1, 1, 1, 900)))).toBe('7:3.2:99,12:1.1:4,900:1.1:1');
  });
});

describe('the remote protocol carries a token; frames without one keep the older shape', () => {
  it('decodes asks and replies with and without a token, and refuses a malformed one', () => {
    const ask = [R_ASK, 1, 'counter', 'k', 'get', null, null, 100, 0];
    expect(parseRemote(ask)).toEqual(ask);
    expect(parseRemote([...ask, [7, 5, 3, 110]])).toEqual([...ask, [7, 5, 3, 110]]);
    expect(parseRemote([...ask, [7, 5, 3]])).toBeUndefined();
    expect(parseRemote([...ask, [7, 5, 3, -1]])).toBeUndefined();
    expect(parseRemote([...ask, null])).toBeUndefined();
    expect(parseRemote([R_REPLY, 1, true, { n: 1 }])).toEqual([R_REPLY, 1, true, { n: 1 }]);
    expect(parseRemote([R_REPLY, 1, true, { n: 1 }, [7, 5, 3, 110]])).toEqual([R_REPLY, 1, true, { n: 1 }, [7, 5, 3, 110]]);
    expect(parseRemote([R_REPLY, 1, true, { n: 1 }, 'x'])).toBeUndefined();
    expect(fromWireToken([7, 5, 3, 110], 1024)).toEqual(tok(5, 3, 110));
    expect(fromWireToken([1024, 5, 3, 110], 1024)).toBeUndefined();
    expect(fromWireToken([7, 0, 3, 110], 1024)).toBeUndefined();
  });
});

describe('the gateway: troupe-token in and out (stub sender)', () => {
  const calls: Array<{ tokens: ReadonlyMap<number, Token> | undefined }> = [];
  /** Replies `{ n: 1 }` with a token for partition 7 in epoch (9,1). */
  const sender: Sender = {
    askRaw: (_kind, _key, _command, _input, _msgId, _timeoutMs, rw) => {
      calls.push({ tokens: rw?.tokens });
      rw?.onToken?.(tok(9, 1, 3));
      // `get` of key `bigint` replies a value JSON cannot carry: the 500 must not carry a token.
      return Promise.resolve(_key === 'bigint' ? { n: 1n } : { n: 1 });
    },
  };
  let gateway: HttpGateway;
  let base: string;
  beforeAll(async () => {
    gateway = new HttpGateway(new ActorRegistry([counter]), sender, silentLogger, { port: 0 });
    const a = await gateway.listen();
    base = `http://127.0.0.1:${a.port}`;
  });
  afterAll(() => gateway?.close());

  const post = (headers: Record<string, string> = {}) => fetch(`${base}/actors/counter/k1/get`, { method: 'POST', headers });

  it('hands the parsed set to the sender and answers with the reply token merged into it', async () => {
    const res = await post({ 'troupe-token': '12:1.1:4, 7:3.2:99' });
    expect(res.status).toBe(200);
    expect(res.headers.get('troupe-token')).toBe('12:1.1:4,7:9.1:3');
    expect(calls.at(-1)!.tokens).toEqual(
      new Map([
        [12, tok(1, 1, 4, 12)],
        [7, tok(3, 2, 99)],
      ]),
    );
    const fresh = await post();
    expect(fresh.headers.get('troupe-token')).toBe('7:9.1:3');
    expect(calls.at(-1)!.tokens).toBeUndefined();
  });

  it('a reply that cannot be sent (500) carries no token', async () => {
    const res = await fetch(`${base}/actors/counter/bigint/get`, { method: 'POST' });
    expect(res.status).toBe(500);
    expect(res.headers.get('troupe-token')).toBeNull();
  });

  it('refuses a malformed header with 400 ERR_INVALID_OPTION naming it, before asking anyone', async () => {
    const before = calls.length;
    for (const bad of ['nope', '__proto__:1.1:1', 'constructor', '7:1.1:1,,']) {
      const res = await post({ 'troupe-token': bad });
      expect(res.status, bad).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('ERR_INVALID_OPTION');
      expect(body.error.message).toMatch(/^header troupe-token /);
      expect(res.headers.get('troupe-token')).toBeNull();
    }
    expect(calls.length).toBe(before);
  });
});
