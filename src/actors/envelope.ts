/** Where the reply to an ask goes: a worker's port back to the main thread, or a local table. */
export interface ReplyChannel {
  /** `value` is the reply when ok, an ErrorRecord when not. */
  reply(askId: number, ok: boolean, value: unknown): void;
}

export type SystemOp = 'passivate' | 'restart';

/** A message inside a node, as queued in a mailbox. */
export interface Envelope {
  command: string;
  input: unknown;
  msgId: string | undefined;
  /** 0 for a tell. */
  askId: number;
  channel: ReplyChannel | undefined;
  system?: SystemOp;
  /** The input's size as `deliver` measured it (src/mailbox/message-size.ts): what it counts against the mailbox's byte cap. */
  bytes?: number;
  /** A durable reminder's fire (src/actors/system-records.ts): delivered only while that reminder is still pending with this due. */
  reminder?: { name: string; due: number };
}
