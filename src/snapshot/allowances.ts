/**
 * Allowances for the leak scan (masking.allow): values of a kept column that
 * equal original values of a masked column by chance — a region named like a
 * city, a city named like a person — let through value by value, each with
 * the reason a person gave, and recorded in the snapshot's manifest.
 *
 * What is written where, and why. An allowed value is a production value of
 * a kept column, so it reaches the snapshot anyway; but it is also a real
 * value of a masked column (some guest's real city), and airlock.config.ts
 * is not private: it is committed, and agents in the sandbox can read the
 * project directory. Writing "Springfield" there would tell every reader that
 * a masked person's real value is Springfield. So an allowance holds keyed
 * hashes of the values' normal forms — HMAC with a key derived from
 * AIRLOCK_SECRET ("leak-allowance" in src/config/keys.ts), 64 bits, hex —
 * which say nothing without the secret and, unlike a plain hash, cannot be
 * tested against a list of city names. Terminal output, errors and the
 * manifest carry column names, counts and reasons only, never a value.
 * Rotating the secret invalidates the hashes: the next capture fails on
 * those columns and `airlock snapshot --init-rules` lists them again.
 */
import { MacKey } from "../config/keys.ts";
import type { Problem } from "../config/schema.ts";
import { normaliseText } from "./fingerprint.ts";
import type { PlannedTable } from "./plan.ts";
import type { LeakAllowance } from "../config/masking-rules.ts";

/** An allowance as the manifest records it: never a value, nor its hash. */
export interface ManifestAllowance {
  /** The kept column, "schema.table.column". */
  readonly column: string;
  readonly reason: string;
  /** How many values the allowance lists. */
  readonly values: number;
  /** How many of them this capture met, and in how many fields. */
  readonly valuesMatched: number;
  readonly fieldsMatched: number;
}

/** Keyed hashes of values for masking.allow. */
export class AllowanceHasher {
  private readonly key: MacKey;

  constructor(secret: string) {
    this.key = new MacKey(secret, "leak-allowance");
  }

  /** The keyed hash of a value's text normal form (whitespace collapsed, lower case): 16 hex digits. */
  hash(value: string): string {
    return this.key.mac(normaliseText(value)).slice(0, 16);
  }
}

/** Decisions remembered per column: an allowed region column repeats a few values a million times. */
const CACHE_PER_COLUMN = 10_000;

/** Applies the allowances during a leak scan and counts what they let through. */
export class AllowanceCheck {
  private readonly hasher: AllowanceHasher | undefined;
  private readonly byColumn = new Map<
    string,
    { allowance: LeakAllowance; hashes: Set<string>; cache: Map<string, string | null>; matched: Set<string>; fields: number }
  >();

  constructor(allow: Readonly<Record<string, LeakAllowance>>, secret: string | undefined) {
    this.hasher = secret === undefined ? undefined : new AllowanceHasher(secret);
    for (const [column, allowance] of Object.entries(allow)) {
      this.byColumn.set(column, { allowance, hashes: new Set(allowance.values), cache: new Map(), matched: new Set(), fields: 0 });
    }
  }

  /** Whether a column has an allowance at all (no hashing is done for the others). */
  covers(column: string): boolean {
    return this.byColumn.has(column);
  }

  /** True when the value (one that matched an original as a word or date) is allowed in this column; counts it. */
  allows(column: string, value: string): boolean {
    const entry = this.byColumn.get(column);
    if (entry === undefined || this.hasher === undefined) return false;
    const key = normaliseText(value);
    let hash = entry.cache.get(key);
    if (hash === undefined) {
      const h = this.hasher.hash(key);
      hash = entry.hashes.has(h) ? h : null;
      if (entry.cache.size < CACHE_PER_COLUMN) entry.cache.set(key, hash);
    }
    if (hash === null) return false;
    entry.fields++;
    entry.matched.add(hash);
    return true;
  }

  /** What each allowance let through, sorted by column, for the manifest. */
  usage(): ManifestAllowance[] {
    return [...this.byColumn.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([column, e]) => ({
        column,
        reason: e.allowance.reason,
        values: e.allowance.values.length,
        valuesMatched: e.matched.size,
        fieldsMatched: e.fields,
      }));
  }
}

/** Problems with masking.allow against the masking plan: an allowance names a kept column that exists. */
export function allowanceProblems(allow: Readonly<Record<string, LeakAllowance>>, plans: readonly PlannedTable[]): Problem[] {
  const rules = new Map<string, string>();
  for (const p of plans) p.columns.forEach((c, i) => rules.set(`${c.schema}.${c.table}.${c.column}`, p.rules[i]!.kind));
  const problems: Problem[] = [];
  for (const column of Object.keys(allow)) {
    const rule = rules.get(column);
    if (rule === undefined)
      problems.push({ path: `masking.allow.${column}`, message: "no such column in production (or a generated one, which is never copied)" });
    else if (rule !== "keep")
      problems.push({
        path: `masking.allow.${column}`,
        message: `the column is masked (${rule}): an allowance lets values of a kept column through the leak scan; remove it`,
      });
  }
  return problems;
}
