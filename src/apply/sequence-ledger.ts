/**
 * Reading and moving one sequence, and the ledger of what this transaction
 * did to each sequence it touched: where it was at the first touch and
 * where it is now. The first touch of a sequence the connected role owns
 * runs a no-op `ALTER SEQUENCE … INCREMENT BY <same>`, so every later
 * `setval`/`nextval` on it commits or rolls back with the transaction, and
 * other sessions' `nextval` waits until then (see sequences.ts).
 */
import type pg from "pg";
import { query } from "../pg/connect.ts";
import { qualified } from "../pg/table-names.ts";

/** A sequence's counter: the last value and whether it was handed out. */
export interface SequenceState {
  readonly value: bigint;
  readonly called: boolean;
}

/** What a sequence steps by, its bounds, and whether the connected role owns it. */
export interface SequenceInfo {
  readonly increment: bigint;
  readonly min: bigint;
  readonly max: bigint;
  readonly owned: boolean;
}

/** A sequence's step, bounds and whether the connected role owns it (can lock it); null when it does not exist. */
export async function sequenceInfo(c: pg.ClientBase, seq: string): Promise<SequenceInfo | null> {
  const r = await query<{ increment: string; min: string; max: string; owned: boolean }>(
    c,
    `SELECT q.seqincrement::text AS increment, q.seqmin::text AS min, q.seqmax::text AS max, pg_has_role(current_user, s.relowner, 'USAGE') AS owned
       FROM pg_class s JOIN pg_sequence q ON q.seqrelid = s.oid WHERE s.oid = to_regclass($1)`,
    [seq],
  );
  const row = r.rows[0];
  return row === undefined ? null : { increment: BigInt(row.increment), min: BigInt(row.min), max: BigInt(row.max), owned: row.owned };
}

/** Where a sequence is now. */
export async function readState(c: pg.ClientBase, seq: string): Promise<SequenceState> {
  const r = await query<{ v: string; called: boolean }>(c, `SELECT last_value::text AS v, is_called AS called FROM ${seq}`);
  return { value: BigInt(r.rows[0]!.v), called: r.rows[0]!.called };
}

/** Makes the sequence's changes in this transaction transactional, and holds off other sessions' nextval until it ends. */
export async function lockSequence(c: pg.ClientBase, seq: string, increment: bigint): Promise<void> {
  await query(c, `ALTER SEQUENCE ${seq} INCREMENT BY ${increment.toString()}`);
}

/** The value the next nextval would return. */
export function nextOf(s: SequenceState, increment: bigint): bigint {
  return s.called ? s.value + increment : s.value;
}

/** Whether two counters are the same. */
export function sameState(a: SequenceState, b: SequenceState): boolean {
  return a.value === b.value && a.called === b.called;
}

/** Is `a` strictly further along than `b` in the sequence's direction? */
export function beyond(a: bigint, b: bigint, increment: bigint): boolean {
  return increment > 0n ? a > b : a < b;
}

/** A sequence this transaction touched: where it was at the first touch, and where it is now. */
export interface Touched {
  readonly schema: string;
  readonly name: string;
  readonly info: SequenceInfo;
  readonly before: SequenceState;
  after: SequenceState;
}

// Keyed by connection (and checked against its current transaction), so rekey and apply, which run on the
// promotion's connection one after the other, share it without promote.ts threading it through.
const ledgers = new WeakMap<pg.ClientBase, { xid: string; touched: Map<string, Touched> }>();

/** This transaction's ledger on this connection (a new one in a new transaction). */
export async function ledgerOf(c: pg.ClientBase): Promise<Map<string, Touched>> {
  const xid = (await query<{ x: string }>(c, "SELECT pg_current_xact_id()::text AS x")).rows[0]!.x;
  const held = ledgers.get(c);
  if (held !== undefined && held.xid === xid) return held.touched;
  const touched = new Map<string, Touched>();
  ledgers.set(c, { xid, touched });
  return touched;
}

/** The ledger entry of a sequence, made (with the lock taken when we own it) at its first touch in this transaction. */
export async function touch(c: pg.ClientBase, ledger: Map<string, Touched>, schema: string, name: string): Promise<Touched | null> {
  const seq = qualified(schema, name);
  const held = ledger.get(seq);
  if (held !== undefined) return held;
  const info = await sequenceInfo(c, seq);
  if (info === null) return null;
  if (info.owned) await lockSequence(c, seq, info.increment);
  const before = await readState(c, seq);
  const entry: Touched = { schema, name, info, before, after: before };
  ledger.set(seq, entry);
  return entry;
}
