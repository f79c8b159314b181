import { Agent, request } from 'node:http';

/** An error of one HTTP call: the troupe error code, the socket's (ECONNREFUSED, ECONNRESET…), or ETIMEDOUT. */
export class CallError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One node's gateway as a client of the demo `counter` sees it: a keep-alive connection pool to
 * its URL. Used by the real-process replication tests and bench/failover.ts; `destroy()` closes
 * the pool's sockets.
 */
export class CounterGateway {
  private readonly agent: Agent;

  constructor(
    readonly url: string,
    private readonly o: { maxSockets: number; timeoutMs: number },
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: o.maxSockets });
  }

  /** POST /actors/counter/:key/:command; resolves with the reply's `n`, rejects with a CallError. `askTimeoutMs` sets x-timeout-ms. */
  call(key: string, command: 'incr' | 'get', askTimeoutMs?: number): Promise<number> {
    return postActor(this.agent, `${this.url}/actors/counter/${key}/${command}`, command === 'incr' ? '{"by":1}' : '', this.o.timeoutMs, askTimeoutMs, (json) =>
      typeof json.n === 'number' ? json.n : undefined,
    );
  }

  destroy(): void {
    this.agent.destroy();
  }
}

/**
 * POST `body` to an actor route over `agent`; resolves with `pick(reply)` for a 200 whose reply it
 * recognises, and rejects with a CallError otherwise: the troupe error code, `HTTP_<status>`, the
 * socket's code, or ETIMEDOUT after `timeoutMs`. `askTimeoutMs` sets x-timeout-ms.
 */
export function postActor<T>(
  agent: Agent,
  url: string,
  body: string,
  timeoutMs: number,
  askTimeoutMs: number | undefined,
  pick: (reply: Record<string, unknown>) => T | undefined,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      agent,
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        ...(askTimeoutMs !== undefined && { 'x-timeout-ms': String(askTimeoutMs) }),
      },
    });
    req.setTimeout(timeoutMs, () => req.destroy(new CallError('ETIMEDOUT', `no answer within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => reject(e instanceof CallError ? e : new CallError(e.code ?? 'ECONNERROR', e.message)));
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('error', (e: NodeJS.ErrnoException) => reject(new CallError(e.code ?? 'ECONNERROR', e.message)));
      res.on('end', () => {
        try {
          const json = JSON.parse(text) as Record<string, unknown> & { error?: { code: string; message: string } };
          const value = res.statusCode === 200 ? pick(json) : undefined;
          if (value !== undefined) return resolve(value);
          reject(new CallError(json.error?.code ?? `HTTP_${res.statusCode}`, json.error?.message ?? text));
        } catch {
          reject(new CallError(`HTTP_${res.statusCode}`, text));
        }
      });
    });
    req.end(body);
  });
}
