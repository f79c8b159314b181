/**
 * Actor kinds for the session lifecycle tests (docs/sessions-lifecycle.md): `note` deletes and
 * sets reminders from its commands; `visit` expires after 10 s idle (ttlMs).
 */
import { defineActor, inputObject, invalidInput, optionalInt } from '../../src/actors/define-actor.ts';
import { isTroupeError } from '../../src/core/errors.ts';

interface NoteState {
  n: number;
  fired: number;
}

export const note = defineActor({
  kind: 'note',
  initial: (): NoteState => ({ n: 0, fired: 0 }),
  apply: (s: NoteState, e: { by?: number; fired?: true }): NoteState =>
    e.fired ? { ...s, fired: s.fired + 1 } : { ...s, n: s.n + (e.by ?? 0) },
  commands: {
    incr: {
      input: (raw) => ({ by: optionalInt(raw, 'by', 1) }),
      handle: (ctx, { by }) => {
        ctx.emit({ by });
        return ctx.state;
      },
    },
    get: { readOnly: true, handle: (ctx) => ctx.state },
    /** Emits, deletes, then emits again: the fresh session starts with what follows the delete. */
    del: {
      input: (raw) => ({ after: optionalInt(raw, 'after', 0) }),
      handle: (ctx, { after }) => {
        ctx.emit({ by: 1000 });
        ctx.delete();
        if (after !== 0) ctx.emit({ by: after });
        return ctx.state;
      },
    },
    /** Deletes, then throws: nothing of the message may stand. */
    delBoom: {
      handle: (ctx) => {
        ctx.delete();
        throw new Error('after delete');
      },
    },
    remind: {
      input: (raw) => {
        const o = inputObject(raw);
        return { name: o.name as string, delayMs: o.delayMs as number, command: (o.command as string) ?? 'fired', emit: o.emit === true };
      },
      handle: (ctx, { name, delayMs, command, emit }) => {
        if (emit) ctx.emit({ by: 1 });
        ctx.remind(name, delayMs, { command, input: { from: name } });
        return 'ok';
      },
    },
    /** ctx.remind's error code for bad arguments (caught: the handler answers it). */
    badRemind: {
      handle: (ctx, which: string) => {
        const cases: Record<string, () => void> = {
          emptyName: () => ctx.remind('', 10, { command: 'fired' }),
          longName: () => ctx.remind('x'.repeat(65), 10, { command: 'fired' }),
          reservedName: () => ctx.remind('$ttl', 10, { command: 'fired' }),
          negativeDelay: () => ctx.remind('a', -1, { command: 'fired' }),
          fractionalDelay: () => ctx.remind('a', 1.5, { command: 'fired' }),
          hugeDelay: () => ctx.remind('a', 10 * 366 * 24 * 3_600_000, { command: 'fired' }),
          unknownCommand: () => ctx.remind('a', 10, { command: 'nope' }),
          badInput: () => ctx.remind('a', 10, { command: 'fired', input: { f: () => 1 } }),
          withId: () => ctx.remind('a', 10, { command: 'fired', id: 'x' } as never),
          cancelBadName: () => ctx.cancelReminder(''),
        };
        try {
          cases[which]!();
          return 'accepted';
        } catch (e) {
          return isTroupeError(e) ? { code: e.code, message: e.message } : String(e);
        }
      },
    },
    /** Sets a reminder, then refuses the message: the actor stays, and the reminder must not. */
    remindRefused: {
      handle: (ctx) => {
        ctx.remind('refused', 1_000, { command: 'fired' });
        throw invalidInput('refused after remind');
      },
    },
    cancel: {
      handle: (ctx, name: string) => {
        ctx.cancelReminder(name);
        return 'ok';
      },
    },
    fired: {
      handle: (ctx) => {
        ctx.emit({ fired: true });
        return ctx.state;
      },
    },
    /** A read-only command may not delete or remind. */
    peekDelete: {
      readOnly: true,
      handle: (ctx) => {
        try {
          ctx.delete();
          return 'accepted';
        } catch (e) {
          return isTroupeError(e) ? e.code : String(e);
        }
      },
    },
  },
});

export const visit = defineActor({
  kind: 'visit',
  ttlMs: 10_000,
  initial: () => ({ n: 0 }),
  apply: (s: { n: number }, _e: 'hit') => ({ n: s.n + 1 }),
  commands: {
    hit: {
      handle: (ctx) => {
        ctx.emit('hit');
        return ctx.state;
      },
    },
    get: { readOnly: true, handle: (ctx) => ctx.state },
  },
});
