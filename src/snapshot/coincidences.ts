/**
 * What `airlock snapshot --init-rules` shows up front: the leak scan's
 * verdict on the rules it is about to suggest, run against production
 * itself, so the rules it writes pass the scan on the same database.
 *
 * For a set of rules, every original of every masked column is fingerprinted
 * (as the capture does), then every kept text column is read and checked as
 * the scan will check the snapshot. Each kept column that holds originals is
 * a coincidence:
 * - only common words or dates (a region named like a city, a city named like
 *   a person): the choice between masking the column and allowing those values
 *   with a reason; the suggested block allows them, as keyed hashes (see
 *   allowances.ts), with a reason to review;
 * - an email, number, IBAN or other identifying value: a copy of personal data,
 *   so the column gets a masking rule.
 * Both passes read production inside the caller's read-only transaction.
 * Production values are held in memory only as fingerprints, except the
 * distinct allowable words of a coincidence, which are hashed and dropped.
 */
import type pg from "pg";
import { AirlockError } from "../errors.ts";
import { quoteIdent } from "../pg/connect.ts";
import { copyOutLines } from "../pg/copy-lines.ts";
import { copyValue } from "../pg/copy-text.ts";
import { ownRows } from "../pg/table-names.ts";
import { AllowanceHasher } from "./allowances.ts";
import type { CatalogTable } from "./catalog.ts";
import { normaliseText } from "./fingerprint.ts";
import { type LeakKind, LeakScanner, allowableKind } from "./leak-scan.ts";
import { ruleFitProblem } from "./mask.ts";
import type { PiiSuspicion } from "./pii.ts";
import { type PlannedTable, planMasking } from "./plan.ts";
import { ruleSource } from "./pii-render.ts";
import type { LeakAllowance, MaskRule } from "../config/masking-rules.ts";
import { scannedColumns } from "./scan-snapshot.ts";
import { plural } from "../format/plural.ts";

/** A kept column whose values equal originals of masked columns. */
export interface Coincidence {
  /** The kept column, "schema.table.column". */
  readonly column: string;
  /** The masked columns whose originals it equals. */
  readonly equals: readonly string[];
  readonly kinds: readonly LeakKind[];
  /** Fields that matched (not yet allowed). */
  readonly fields: number;
  /** Distinct matching values (not yet allowed). */
  readonly values: number;
  /** Only words and dates, few enough to list: the values may be allowed. */
  readonly allowable: boolean;
}

/** More distinct equal values than this in one column is not a coincidence of a few common words: mask it. */
export const MAX_ALLOWED_VALUES = 2_000;

interface Found {
  fields: number;
  kinds: Set<LeakKind>;
  equals: Set<string>;
  /** Normal forms of allowable matches (held only until hashed). */
  words: Set<string>;
  allowable: boolean;
}

function columnName(p: PlannedTable, i: number): string {
  const c = p.columns[i]!;
  return `${c.schema}.${c.table}.${c.column}`;
}

async function* columnValues(client: pg.ClientBase, p: PlannedTable, indexes: readonly number[]): AsyncGenerator<Array<string | null>> {
  const cols = indexes.map((i) => quoteIdent(p.columns[i]!.column)).join(", ");
  // As the capture reads it: the table's own rows (plain tables; partitions as their leaves).
  const sql = `COPY (SELECT ${cols} FROM ${ownRows(p.table.schema, p.table.name, false)}) TO STDOUT`;
  for await (const line of copyOutLines(client, sql)) yield line.split("\t").map(copyValue);
}

/**
 * Runs the leak scan on production for these rules: which kept columns hold
 * originals of masked ones, not counting values already allowed. Needs the
 * secret only to read existing allowances; returns the allowable values as
 * normal forms through `onAllowable` (for hashing), never in the result.
 */
async function scanProduction(
  client: pg.ClientBase,
  tables: readonly CatalogTable[],
  rules: Readonly<Record<string, MaskRule>>,
  allowed: (column: string, normalised: string) => boolean,
): Promise<Map<string, Found>> {
  const { plans } = planMasking(tables, rules);
  const all = new LeakScanner();
  // One scanner per masked column, only to name which column a kept value equals.
  const bySource = new Map<string, LeakScanner>();
  for (const p of plans) {
    // As the capture: date shifts keep values that look like any other date, so they are not scanned.
    const masked = p.masked.filter((i) => p.rules[i]!.kind !== "dateShift");
    if (masked.length === 0) continue;
    const scanners = masked.map((i) => {
      const s = new LeakScanner();
      bySource.set(columnName(p, i), s);
      return s;
    });
    for await (const row of columnValues(client, p, masked)) {
      row.forEach((v, k) => {
        all.addOriginal(v);
        scanners[k]!.addOriginal(v);
      });
    }
  }
  const found = new Map<string, Found>();
  if (all.originalsCount === 0) return found;
  for (const p of plans) {
    const scanned = scannedColumns(p.columns, (i) => p.rules[i]!.kind === "keep");
    if (scanned.length === 0) continue;
    const names = scanned.map((i) => columnName(p, i));
    for await (const row of columnValues(client, p, scanned)) {
      row.forEach((value, k) => {
        const m = all.find(value);
        if (m === undefined || value === null) return;
        const column = names[k]!;
        const allowable = allowableKind(m.kind);
        const key = allowable ? normaliseText(value) : undefined;
        if (key !== undefined && allowed(column, key)) return;
        let f = found.get(column);
        if (f === undefined) found.set(column, (f = { fields: 0, kinds: new Set(), equals: new Set(), words: new Set(), allowable: true }));
        f.fields++;
        f.kinds.add(m.kind);
        if (key !== undefined && f.allowable) {
          f.words.add(key);
          if (f.words.size > MAX_ALLOWED_VALUES) f.allowable = false;
        } else f.allowable = false;
        // Naming the masked columns costs a lookup per source: the first matches are enough to name them.
        if (f.fields <= 200) for (const [source, s] of bySource) if (s.find(value) !== undefined) f.equals.add(source);
      });
    }
  }
  return found;
}

/** The rule suggested for a kept column that holds copies of identifying originals: replace its text, else null it. */
function maskingRuleFor(p: PlannedTable, i: number): MaskRule | undefined {
  const column = p.columns[i]!;
  const text: MaskRule = { kind: "faker", generator: "text" };
  if (ruleFitProblem(text, column) === undefined) return text;
  const none: MaskRule = { kind: "null" };
  return ruleFitProblem(none, column) === undefined ? none : undefined;
}

/** What `--init-rules` proposes beyond the PII suggestions. */
export interface ProposedAllowances {
  /** Kept columns that hold identifying originals: each gets a masking rule (added to the suggestions). */
  readonly masked: readonly PiiSuspicion[];
  /** Kept columns that hold identifying originals but no rule fits (left to a person). */
  readonly unresolved: readonly Coincidence[];
  /** Coincidences of common words: allowed by `allow` below, or masked with `alternative`. */
  readonly coincidences: ReadonlyArray<Coincidence & { readonly alternative: MaskRule }>;
  /** masking.allow entries to write: the existing ones for those columns merged with the new values. */
  readonly allow: Readonly<Record<string, LeakAllowance>>;
}

/**
 * Runs the leak scan against production for the rules `--init-rules` is
 * about to suggest, masks kept columns that hold copies of identifying
 * originals (and scans again, since those become originals in turn), and
 * proposes an allowance for each column whose equalities are common words.
 */
export async function proposeAllowances(
  client: pg.ClientBase,
  tables: readonly CatalogTable[],
  rules: Readonly<Record<string, MaskRule>>,
  allow: Readonly<Record<string, LeakAllowance>>,
  secret: string | undefined,
): Promise<ProposedAllowances> {
  const hasher = secret === undefined || secret.length < 16 ? undefined : new AllowanceHasher(secret);
  const existing = new Map(Object.entries(allow).map(([c, a]) => [c, new Set(a.values)]));
  const decided = new Map<string, boolean>();
  const isAllowed = (column: string, key: string): boolean => {
    const hashes = existing.get(column);
    if (hashes === undefined || hasher === undefined) return false;
    const id = `${column}\u0000${key}`;
    let yes = decided.get(id);
    if (yes === undefined) {
      yes = hashes.has(hasher.hash(key));
      if (decided.size < 100_000) decided.set(id, yes);
    }
    return yes;
  };
  const { plans } = planMasking(tables, rules);
  const byName = new Map<string, { p: PlannedTable; i: number }>();
  for (const p of plans) p.columns.forEach((_, i) => byName.set(columnName(p, i), { p, i }));

  const proposed: Record<string, MaskRule> = { ...rules };
  const masked: PiiSuspicion[] = [];
  const unresolved: Coincidence[] = [];
  let found = new Map<string, Found>();
  // A column masked here adds originals; three rounds settle any real schema (each round masks at least one column).
  for (let round = 0; round < 4; round++) {
    found = await scanProduction(client, tables, proposed, isAllowed);
    let added = false;
    for (const [column, f] of found) {
      if (f.allowable || unresolved.some((u) => u.column === column)) continue;
      const at = byName.get(column);
      const rule = at === undefined ? undefined : maskingRuleFor(at.p, at.i);
      const summary = `${plural(f.fields, "value")} equal to or holding original ${[...f.kinds].sort().join("/")} of ${[...f.equals].sort().join(", ") || "masked columns"}`;
      if (rule === undefined || at === undefined) {
        unresolved.push(coincidence(column, f));
        continue;
      }
      proposed[column] = rule;
      const c = at.p.columns[at.i]!;
      masked.push({
        column: { schema: c.schema, table: c.table, column: c.column, type: c.type },
        reasons: [`the leak scan finds ${summary}: a copy of personal data`],
        suggested: rule,
      });
      added = true;
    }
    if (!added) break;
  }

  const coincidences: Array<Coincidence & { alternative: MaskRule }> = [];
  const out: Record<string, LeakAllowance> = {};
  for (const [column, f] of [...found].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!f.allowable) continue;
    if (hasher === undefined) {
      throw new AirlockError(
        "AIRLOCK_SECRET_WEAK",
        `${column} holds ${plural(f.words.size, "common word")} equal to original values of ${[...f.equals].sort().join(", ") || "masked columns"}; allowing them needs AIRLOCK_SECRET (at least 16 characters), which keys their hashes`,
        {
          hint: "set AIRLOCK_SECRET in .env (the one captures will use) and run `airlock snapshot --init-rules` again",
        },
      );
    }
    const hashes = new Set(allow[column]?.values ?? []);
    for (const w of f.words) hashes.add(hasher.hash(w));
    const equals = [...f.equals].sort();
    out[column] = {
      reason: allow[column]?.reason ?? `common words that equal values of ${equals.join(", ") || "masked columns"} by chance, not personal data`,
      values: [...hashes].sort(),
    };
    coincidences.push({ ...coincidence(column, f), alternative: alternativeRule(equals, proposed, byName.get(column)) });
  }
  return { masked, unresolved, coincidences, allow: out };
}

function coincidence(column: string, f: Found): Coincidence {
  return { column, equals: [...f.equals].sort(), kinds: [...f.kinds].sort(), fields: f.fields, values: f.words.size, allowable: f.allowable };
}

/** Masking instead of allowing: the generator of the masked column it equals (a region masked as cities), else hash. */
function alternativeRule(equals: readonly string[], rules: Readonly<Record<string, MaskRule>>, at: { p: PlannedTable; i: number } | undefined): MaskRule {
  for (const e of equals) {
    const r = rules[e];
    if (r?.kind === "faker" && r.generator !== "email") {
      const rule: MaskRule = { kind: "faker", generator: r.generator };
      if (at === undefined || ruleFitProblem(rule, at.p.columns[at.i]!) === undefined) return rule;
    }
  }
  return { kind: "hash" };
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/**
 * Renders the proposal as a TypeScript `allow` block for `masking` in
 * airlock.config.ts (after the `rules` block), each entry with the choice
 * spelled out: keep the allowance (its reason reviewed) or mask the column.
 * Column names, counts and keyed hashes only: never a value.
 */
export function allowBlock(proposal: ProposedAllowances): string {
  if (proposal.coincidences.length === 0 && proposal.unresolved.length === 0) return "";
  const lines = [
    "// The leak scan fails a capture when a kept column holds an original value of a masked column. These kept columns",
    "// do, by chance: allow each one's values with a reason (review it), or mask the column instead (the rule in its",
    "// comment) and delete its entry. Values are keyed hashes (HMAC keyed by AIRLOCK_SECRET), never the values.",
  ];
  for (const u of proposal.unresolved) {
    lines.push(
      `// ${u.column}: ${plural(u.fields, "field")} hold original ${u.kinds.join("/")} of ${u.equals.join(", ") || "masked columns"} and no generated rule fits its type: mask it with a custom rule, or remove the copies from production`,
    );
  }
  lines.push("allow: {");
  for (const c of proposal.coincidences) {
    const entry = proposal.allow[c.column];
    if (entry === undefined) continue;
    const expressible = c.column.split(".").every((part) => IDENT.test(part));
    const prefix = expressible ? "  " : "  // ";
    lines.push(
      `  // ${c.column}: ${plural(c.values, "value")} in ${plural(c.fields, "row")} equal values of ${c.equals.join(", ") || "masked columns"}; or mask it: ${JSON.stringify(c.column)}: ${ruleSource(c.alternative)},`,
    );
    if (!expressible) lines.push("  // (cannot be a key: the name needs quoting)");
    lines.push(`${prefix}${JSON.stringify(c.column)}: {`);
    lines.push(`${prefix}  reason: ${JSON.stringify(entry.reason)},`);
    lines.push(`${prefix}  values: [`);
    for (let i = 0; i < entry.values.length; i += 6)
      lines.push(
        `${prefix}    ${entry.values
          .slice(i, i + 6)
          .map((v) => JSON.stringify(v))
          .join(", ")},`,
      );
    lines.push(`${prefix}  ],`);
    lines.push(`${prefix}},`);
  }
  lines.push("},");
  return `${lines.join("\n")}\n`;
}
