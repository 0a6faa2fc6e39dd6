/**
 * PII detection: before a capture, every production column is classified by
 * its name and, for text-like columns, by a small sample of its values. A
 * suspected-PII column without a masking rule stops the capture, so a new
 * `contact` column full of emails cannot slip into a snapshot unmasked.
 *
 * Sampled values are unmasked production data: they are looked at here and
 * dropped. Reasons, errors and results carry counts and percentages only.
 */
import type pg from "pg";
import { query, quoteIdent } from "../pg/connect.ts";
import { ownRows } from "../pg/table-names.ts";
import { type Finding, typeClass } from "./pii-column-type.ts";
import { classifyByName } from "./pii-names.ts";
import { classifyByValues } from "./pii-values.ts";
import type { MaskRule } from "../config/masking-rules.ts";

/** A production column as the catalog describes it; the type decides which rules can fit. */
export interface PiiColumn {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  /** The type as format_type prints it, e.g. "text", "character varying(80)", "date". */
  readonly type: string;
}

/** A column that looks like PII, why (counts only, never values), and a rule that would mask it. */
export interface PiiSuspicion {
  readonly column: PiiColumn;
  /** E.g. "name looks like an email column", "62% of 200 sampled values are email addresses". */
  readonly reasons: readonly string[];
  readonly suggested: MaskRule;
}

/**
 * Which evidence picks the rule: values say what a column holds, so they win,
 * except that a generic "text" loses to any specific name, and a name that
 * asks for null, hash, dateShift or a constant (secrets, ids, birth dates, inet)
 * is stricter than any fake (an SSN's values look like phone numbers).
 */
function combine(byName: Finding | undefined, byValues: Finding | undefined): MaskRule | undefined {
  if (byValues === undefined) return byName?.suggested;
  if (byName === undefined) return byValues.suggested;
  if (byName.suggested.kind !== "faker") return byName.suggested;
  if (byValues.suggested.kind === "faker" && byValues.suggested.generator === "text") return byName.suggested;
  return byValues.suggested;
}

function compareColumns(a: PiiColumn, b: PiiColumn): number {
  const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return cmp(a.schema, b.schema) || cmp(a.table, b.table) || cmp(a.column, b.column);
}

/** Longest prefix of a value that is sampled: enough for every pattern, and a 10 MB document is not fetched 200 times. */
const SAMPLE_CHARS = 1000;

/** Samples each candidate column (text-like columns for value checks; every column for names) through the given client (already inside a read-only transaction; do not begin/commit) and returns the suspicions, sorted by schema.table.column. */
export async function detectPii(client: pg.ClientBase, columns: readonly PiiColumn[], options?: { sampleSize?: number }): Promise<PiiSuspicion[]> {
  const sampleSize = options?.sampleSize ?? 200;
  const out: PiiSuspicion[] = [];
  for (const column of [...columns].sort(compareColumns)) {
    const byName = classifyByName(column.table, column.column, column.type);
    let byValues: Finding | undefined;
    if (typeClass(column.type) === "text") {
      const col = quoteIdent(column.column);
      // No ORDER BY and a LIMIT: the scan stops after the first rows it meets, cheap on any table size.
      // The table's own rows (captured tables are plain, partitions as their leaves): a child's are sampled as its own.
      const sql = `SELECT left(${col}::text, ${SAMPLE_CHARS}) AS v FROM ${ownRows(column.schema, column.table, false)} WHERE ${col} IS NOT NULL LIMIT $1`;
      const result = await query<{ v: string }>(client, sql, [sampleSize]);
      byValues = classifyByValues(
        result.rows.map((r) => r.v),
        column.type,
      );
    }
    const suggested = combine(byName, byValues);
    if (suggested === undefined) continue;
    const reasons = [byName?.reason, byValues?.reason].filter((r): r is string => r !== undefined);
    out.push({ column, reasons, suggested });
  }
  return out;
}
