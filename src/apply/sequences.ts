/**
 * Sequences, whatever their shape. A promoted row may draw its values from
 * a serial's owned sequence, an identity column's, or any sequence a column
 * default calls `nextval(...)` on, in any schema, OWNED BY or not, shared by
 * several tables. `pg_get_serial_sequence` only sees the first two, so the
 * feeds are read from the catalog itself: a column default's dependency on a
 * sequence (pg_depend from pg_attrdef), and OWNED BY / identity links.
 *
 * A promotion moves each such sequence past the values it inserted (and
 * `--rekey` draws fresh keys from it); rollback moves it back only when
 * nothing else advanced it meanwhile, and never below a value in use.
 *
 * `setval` and `nextval` are not transactional: a dry run, a refused or a
 * failed promotion would leave production's sequences moved, and a rollback
 * that failed after moving one back would leave it behind the rows it kept.
 * So the first time a transaction touches a sequence it owns, it runs a
 * no-op `ALTER SEQUENCE … INCREMENT BY <same>`: that gives the sequence a new
 * relfilenode in this transaction, so every later change to it commits or
 * rolls back with the transaction, and takes a lock that makes other
 * sessions' `nextval` wait until then (bounded by the promotion's
 * `lock_timeout`), so the values recorded before and after are exact. A
 * sequence the connected role does not own is still advanced (plain
 * `setval`, as before), but a rollback leaves it where it is and says so.
 *
 * What each promotion did to each sequence is saved in
 * `airlock.promotion_sequences`, in the promotion's own transaction; the
 * rollback records there what it did with each.
 */
import type pg from "pg";
import type { Diff } from "../diff/types.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { qualified } from "../pg/table-names.ts";
import { type SequenceFeed, feedsOfSequence, feedsOfTables } from "./sequence-feeds.ts";
import { type SequenceState, beyond, ledgerOf, lockSequence, nextOf, readState, sameState, sequenceInfo, touch } from "./sequence-ledger.ts";

/** What a rollback did with one sequence. */
export type SequenceOutcome =
  /** Back where it was before the promotion. */
  | "restored"
  /** Moved back, but only as far as the largest value now in use in a column it feeds. */
  | "restored-to-in-use"
  /** Left: something advanced it after the promotion (production used it). */
  | "left-advanced"
  /** Left: values the promotion's range holds are in use by rows that stay. */
  | "left-in-use"
  /** Left: the connected role does not own it, so it cannot be moved back transactionally. */
  | "left-not-owner"
  /** It no longer exists (the promotion created it and the rollback dropped it, or it was dropped since). */
  | "gone";

/** One sequence a rollback considered. */
export interface SequenceRollback {
  readonly sequence: string;
  readonly outcome: SequenceOutcome;
  readonly before: SequenceState;
  readonly after: SequenceState;
  /** Where it is now (null when gone). */
  readonly now: SequenceState | null;
}

const TABLE_DDL = `CREATE TABLE IF NOT EXISTS airlock.promotion_sequences (
  promotion_id text NOT NULL REFERENCES airlock.promotions, seq_schema text NOT NULL, seq_name text NOT NULL,
  before_value bigint NOT NULL, before_called boolean NOT NULL, after_value bigint NOT NULL, after_called boolean NOT NULL,
  outcome text, outcome_value bigint, outcome_called boolean, outcome_at timestamptz,
  PRIMARY KEY (promotion_id, seq_schema, seq_name))`;

// ---------------------------------------------------------------------------------------------------------------
// Promotion: advancing past inserted values, and drawing fresh keys.

/**
 * The integer a sequence would have had to hand out for this value not to be handed out again: the value
 * itself, rounded towards the sequence's direction's past (3.5 → 3 ascending, → 4 descending); null for a
 * value that is not a number.
 */
function integerPart(value: string, increment: bigint): bigint | null {
  const m = /^\s*([+-]?)(\d+)(?:\.(\d*))?\s*$/.exec(value);
  if (m === null) return null;
  const whole = BigInt(`${m[1]}${m[2]}`);
  const fraction = (m[3] ?? "").replace(/0+$/, "") !== "";
  if (!fraction) return whole;
  const negative = m[1] === "-";
  // BigInt() truncates towards zero; step to the floor (ascending) or ceiling (descending).
  if (increment > 0n) return negative ? whole - 1n : whole;
  return negative ? whole : whole + 1n;
}

/** The furthest value (in the sequence's direction) the diff writes into any column this sequence feeds. */
function furthestWritten(diff: Pick<Diff, "tables">, feeds: readonly SequenceFeed[], increment: bigint): bigint | null {
  let furthest: bigint | null = null;
  for (const f of feeds) {
    const t = diff.tables.find((x) => x.schema === f.schema && x.name === f.table);
    if (t === undefined) continue;
    for (const ch of t.changes) {
      const v = ch.kind === "insert" ? ch.row[f.column] : ch.kind === "update" ? ch.new[f.column] : undefined;
      if (v === null || v === undefined) continue;
      const n = integerPart(v, increment);
      if (n !== null && (furthest === null || beyond(n, furthest, increment))) furthest = n;
    }
  }
  return furthest;
}

function bySequence(feeds: readonly SequenceFeed[]): Map<string, SequenceFeed[]> {
  const out = new Map<string, SequenceFeed[]>();
  for (const f of feeds) {
    const k = qualified(f.seqSchema, f.seqName);
    out.set(k, [...(out.get(k) ?? []), f]);
  }
  return out;
}

/**
 * Moves every sequence that feeds a column the diff wrote past the values it wrote there (all columns it
 * feeds, across every table sharing it), so the next default insert does not draw a value now taken. Runs
 * inside the caller's transaction, after the rows are in.
 */
export async function advanceSequences(c: pg.ClientBase, diff: Pick<Diff, "tables">): Promise<void> {
  const written = diff.tables.filter((t) => t.changes.some((ch) => ch.kind === "insert" || ch.kind === "update"));
  const feeds = await feedsOfTables(c, written);
  if (feeds.length === 0) return;
  const ledger = await ledgerOf(c);
  for (const [seq, its] of bySequence(feeds)) {
    const info = await sequenceInfo(c, seq);
    if (info === null) continue;
    const furthest = furthestWritten(diff, its, info.increment);
    if (furthest === null) continue;
    // A value outside the sequence's bounds is one it never hands out; going to the bound makes it refuse
    // (exhausted) rather than hand out a value the diff wrote between where it was and its end.
    const target = furthest > info.max ? info.max : furthest < info.min ? info.min : furthest;
    // Already past it: nothing to move, nothing to lock (a sequence only moves on, unless someone sets it back).
    const held = ledger.get(seq);
    if (beyond(nextOf(held?.after ?? (await readState(c, seq)), info.increment), target, info.increment)) continue;
    const entry = held ?? (await touch(c, ledger, its[0]!.seqSchema, its[0]!.seqName));
    if (entry === null) continue;
    if (entry.info.owned) {
      // Locked: nothing else moves it until commit, so what was read is what it is.
      if (beyond(nextOf(entry.after, info.increment), target, info.increment)) continue;
      await query(c, "SELECT setval($1::regclass, $2::bigint, true)", [seq, target.toString()]);
      entry.after = { value: target, called: true };
      continue;
    }
    // Not ours to lock: compare and set in one statement, as close to atomic as setval allows.
    const r = await query<{ set: string | null }>(
      c,
      `SELECT CASE WHEN sign($3::numeric) * $2::numeric >= sign($3::numeric) * (CASE WHEN q.is_called THEN q.last_value + $3::numeric ELSE q.last_value END)
                   THEN setval($1::regclass, $2::bigint, true)::text END AS set
         FROM ${seq} q`,
      [seq, target.toString(), info.increment.toString()],
    );
    if (r.rows[0]?.set != null) entry.after = { value: target, called: true };
  }
}

/**
 * Draws `count` fresh values from the sequence that feeds a column (for `--rekey`), in the order handed
 * out, recording the sequence in this transaction's ledger.
 */
export async function drawValues(c: pg.ClientBase, feed: SequenceFeed, count: number): Promise<string[]> {
  if (count === 0) return [];
  const ledger = await ledgerOf(c);
  const entry = await touch(c, ledger, feed.seqSchema, feed.seqName);
  const seq = qualified(feed.seqSchema, feed.seqName);
  const r = await query<{ v: string }>(c, "SELECT v::text FROM (SELECT nextval($1::regclass) AS v FROM generate_series(1, $2::int)) x ORDER BY x.v", [
    seq,
    count,
  ]);
  const values = r.rows.map((x) => x.v);
  if (entry === null) return values;
  // Sorted ascending: the last handed out is the largest for an ascending sequence, the smallest otherwise.
  const descending = entry.info.increment < 0n;
  if (descending) values.reverse();
  entry.after = { value: BigInt(values[values.length - 1]!), called: true };
  return values;
}

/**
 * Saves, in the promotion's transaction, every sequence this transaction moved: where it was before the
 * promotion first touched it and where the promotion left it (what rollback compares with).
 */
export async function saveSequenceChanges(c: pg.ClientBase, promotionId: string): Promise<number> {
  const moved = [...(await ledgerOf(c)).values()].filter((t) => !sameState(t.before, t.after));
  if (moved.length === 0) return 0;
  await query(c, TABLE_DDL);
  for (const t of moved) {
    await query(
      c,
      `INSERT INTO airlock.promotion_sequences (promotion_id, seq_schema, seq_name, before_value, before_called, after_value, after_called)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [promotionId, t.schema, t.name, t.before.value.toString(), t.before.called, t.after.value.toString(), t.after.called],
    );
  }
  return moved.length;
}

// ---------------------------------------------------------------------------------------------------------------
// Rollback.

/**
 * The furthest value (in the sequence's direction) any row now holds in a numeric column the sequence
 * feeds, in any table: a rollback never moves the sequence back over it.
 */
async function furthestInUse(c: pg.ClientBase, schema: string, name: string, increment: bigint): Promise<bigint | null> {
  let furthest: bigint | null = null;
  for (const f of await feedsOfSequence(c, schema, name)) {
    if (!f.numeric) continue;
    const agg = increment > 0n ? "max" : "min";
    const r = await query<{ v: string | null }>(c, `SELECT ${agg}(${quoteIdent(f.column)})::text AS v FROM ${qualified(f.schema, f.table)}`);
    const v = r.rows[0]?.v ?? null;
    const n = v === null ? null : integerPart(v, increment);
    if (n !== null && (furthest === null || beyond(n, furthest, increment))) furthest = n;
  }
  return furthest;
}

interface SavedRow {
  seq_schema: string;
  seq_name: string;
  before_value: string;
  before_called: boolean;
  after_value: string;
  after_called: boolean;
}

/** Decides and does what a rollback does with one sequence the promotion moved. */
async function rollBackSequence(c: pg.ClientBase, saved: SavedRow): Promise<SequenceRollback> {
  const seq = qualified(saved.seq_schema, saved.seq_name);
  const before = { value: BigInt(saved.before_value), called: saved.before_called };
  const after = { value: BigInt(saved.after_value), called: saved.after_called };
  const result = (outcome: SequenceOutcome, now: SequenceState | null): SequenceRollback => ({
    sequence: `${saved.seq_schema}.${saved.seq_name}`,
    outcome,
    before,
    after,
    now,
  });
  const info = await sequenceInfo(c, seq);
  if (info === null) return result("gone", null);
  const seen = await readState(c, seq);
  if (!info.owned) return result("left-not-owner", seen);
  // Advanced since: left, without waiting for a lock on it.
  if (!sameState(seen, after)) return result("left-advanced", seen);
  // Locked from here to the rollback's commit: no nextval can slip in between the check and the move, and the
  // move is undone with the rollback if anything after it fails.
  await lockSequence(c, seq, info.increment);
  const now = await readState(c, seq);
  if (!sameState(now, after)) return result("left-advanced", now);
  const inUse = await furthestInUse(c, saved.seq_schema, saved.seq_name, info.increment);
  // Never hand out a value a row holds: if one is at or past where `before` would continue, stop just after it.
  const target = inUse !== null && !beyond(nextOf(before, info.increment), inUse, info.increment) ? { value: inUse, called: true } : before;
  if (!beyond(nextOf(after, info.increment), nextOf(target, info.increment), info.increment)) return result("left-in-use", now);
  await query(c, "SELECT setval($1::regclass, $2::bigint, $3::boolean)", [seq, target.value.toString(), target.called]);
  return result(target === before ? "restored" : "restored-to-in-use", target);
}

/**
 * Moves back, inside the rollback's transaction and after its rows and schema are restored, every sequence
 * the promotion moved, when nothing else advanced it meanwhile and never below a value in use; records what
 * it did with each in airlock.promotion_sequences and returns it.
 */
export async function restoreSequences(c: pg.ClientBase, promotionId: string): Promise<SequenceRollback[]> {
  const exists = await query<{ r: string | null }>(c, "SELECT to_regclass('airlock.promotion_sequences')::text AS r");
  if (exists.rows[0]?.r === null) return [];
  const saved = await query<SavedRow>(
    c,
    `SELECT seq_schema, seq_name, before_value::text, before_called, after_value::text, after_called
       FROM airlock.promotion_sequences WHERE promotion_id = $1 AND outcome IS NULL ORDER BY seq_schema, seq_name FOR UPDATE`,
    [promotionId],
  );
  const out: SequenceRollback[] = [];
  for (const row of saved.rows) {
    const r = await rollBackSequence(c, row);
    await query(
      c,
      `UPDATE airlock.promotion_sequences SET outcome = $4, outcome_value = $5, outcome_called = $6, outcome_at = now()
        WHERE promotion_id = $1 AND seq_schema = $2 AND seq_name = $3`,
      [promotionId, row.seq_schema, row.seq_name, r.outcome, r.now?.value.toString() ?? null, r.now?.called ?? null],
    );
    out.push(r);
  }
  return out;
}
