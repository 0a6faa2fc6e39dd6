/**
 * The leak scan of a written snapshot: every kept text column of every data
 * file, and the schema, read back and checked against the originals the
 * capture saw (leak-scan.ts), with the allowances of masking.allow applied.
 * A leak fails the capture naming each column, what kind of value it held
 * and how many fields, never a value.
 */
import { createReadStream } from "node:fs";
import { join } from "node:path";
import { createGunzip } from "node:zlib";
import { AirlockError } from "../errors.ts";
import { copyLineBatches } from "../pg/copy-lines.ts";
import { copyValue } from "../pg/copy-text.ts";
import type { AllowanceCheck, ManifestAllowance } from "./allowances.ts";
import { type LeakKind, type LeakScanner, UNSCANNED_TYPES, allowableKind } from "./leak-scan.ts";
import type { ManifestTable } from "./store.ts";
import { pluralGrouped } from "../format/plural.ts";

/** Where the scan found originals: fields per kind. */
export interface LeakFinding {
  readonly column: string;
  readonly fields: number;
  readonly kinds: readonly LeakKind[];
}

const KIND_TEXT: Readonly<Record<LeakKind, string>> = {
  word: "words (a name, a city…)",
  date: "dates",
  email: "emails",
  number: "numbers (phone, card or id digits)",
  iban: "IBANs",
  value: "values",
};

/** Counts findings per column. */
export class LeakTally {
  private readonly byColumn = new Map<string, { fields: number; kinds: Set<LeakKind> }>();

  /** Records one field of `column` holding an original of this kind. */
  add(column: string, kind: LeakKind): void {
    let e = this.byColumn.get(column);
    if (e === undefined) this.byColumn.set(column, (e = { fields: 0, kinds: new Set() }));
    e.fields++;
    e.kinds.add(kind);
  }

  get size(): number {
    return this.byColumn.size;
  }

  /** The findings, in the order the columns were met. */
  findings(): LeakFinding[] {
    return [...this.byColumn.entries()].map(([column, e]) => ({ column, fields: e.fields, kinds: [...e.kinds].sort() }));
  }
}

/** Indexes of the columns the scan reads: kept ones whose type can spell text (a masked column holds only the masker's output). */
export function scannedColumns(columns: ReadonlyArray<{ readonly type: string }>, kept: (i: number) => boolean): number[] {
  return columns.flatMap((c, i) => (kept(i) && !UNSCANNED_TYPES.test(c.type) ? [i] : []));
}

/** The capture's failure: every column with originals in it, counts and kinds only. */
export function leakError(findings: readonly LeakFinding[]): AirlockError {
  const lines = findings.map(
    (f) => `  - ${f.column}: ${pluralGrouped(f.fields, "field")} equal to or holding original ${f.kinds.map((k) => KIND_TEXT[k]).join(", ")} of masked columns`,
  );
  const first = findings[0]?.column ?? "the snapshot";
  const allowable = findings.every((f) => f.kinds.every(allowableKind));
  const where = findings.length === 1 ? first : `${findings.length} columns`;
  return new AirlockError(
    "AIRLOCK_LEAK_DETECTED",
    `the leak scan found an original value of a masked column in ${where}; the snapshot was deleted:\n${lines.join("\n")}`,
    {
      hint: allowable
        ? `if these are common words equal by chance (a region named like a city), run \`airlock snapshot --init-rules\`: it lists each with the choice to mask the column or allow its values with a reason (masking.allow); otherwise mask ${first} as well`
        : `mask ${first} as well (a rule in masking.rules), or find how production copied a real value there; \`airlock snapshot --init-rules\` suggests a rule`,
      details: { column: first, columns: findings },
    },
  );
}

/** A token of the schema that looks like a proper noun ("Yonkers"), unlike SQL keywords and identifiers. */
const PROPER_NOUN = /^\p{Lu}\p{Ll}/u;

/**
 * Reads each data file back and fails listing every kept column that holds
 * an original of a masked column (unless allowed). The schema is scanned as
 * words: there a name or city counts only when written like one
 * ("Yonkers", not the identifier yonkers or the keyword YONKERS).
 */
export async function scanSnapshotForLeaks(
  dir: string,
  tables: readonly ManifestTable[],
  schemaText: string,
  leaks: LeakScanner,
  allow: AllowanceCheck,
): Promise<{ allowed: ManifestAllowance[] }> {
  const tally = new LeakTally();
  for (const word of schemaText.split(/\s+/)) {
    const m = leaks.find(word);
    if (m !== undefined && !(allowableKind(m.kind) && !(m.kind === "word" && PROPER_NOUN.test(word)))) tally.add("the schema (schema.sql)", m.kind);
  }
  for (const t of tables) {
    const scanned = scannedColumns(t.columns, (i) => t.columns[i]!.rule === "keep");
    if (scanned.length === 0) continue;
    const names = scanned.map((i) => `${t.schema}.${t.name}.${t.columns[i]!.name}`);
    const stream = createReadStream(join(dir, t.file)).pipe(createGunzip());
    for await (const lines of copyLineBatches(stream)) {
      for (const line of lines) {
        const fields = line.split("\t");
        for (let k = 0; k < scanned.length; k++) {
          const value = copyValue(fields[scanned[k]!]!);
          const m = leaks.find(value);
          if (m === undefined) continue;
          if (allowableKind(m.kind) && allow.covers(names[k]!) && allow.allows(names[k]!, value!)) continue;
          tally.add(names[k]!, m.kind);
        }
      }
    }
  }
  if (tally.size > 0) throw leakError(tally.findings());
  return { allowed: allow.usage() };
}
