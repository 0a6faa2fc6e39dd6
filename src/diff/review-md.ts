/**
 * review.md: the diff as a pull-request comment. Hazards come first because
 * they are what a reviewer must accept by name, each with the full definition
 * it concerns (function body, policy, setting, grants); then the counts, the
 * typed schema changes with their SQL and a sample of changed rows. Every value
 * is agent-written, so it is shown in a code span or a fenced block longer than
 * any backtick run inside it (never interpreted as Markdown or HTML).
 */
import { sortHazards } from "./hazards.ts";
import type { Diff, Hazard, HazardSeverity, RowValues, SchemaChangeRecord, TableChanges } from "./types.ts";
import { plural } from "../format/plural.ts";

const SEVERITY_ICON: Record<HazardSeverity, string> = { danger: "🔴", warn: "🟠", info: "🔵" };
const MAX_VALUE_CHARS = 80;

/** Row changes of one table, counted by kind. */
export function tableCounts(table: TableChanges): { inserts: number; updates: number; deletes: number } {
  const counts = { inserts: 0, updates: 0, deletes: 0 };
  for (const c of table.changes) counts[`${c.kind}s`]++;
  return counts;
}

/**
 * Shows characters that would make a value read as something it is not
 * (bidi overrides, zero-width characters, control characters) as ⟨U+XXXX⟩.
 */
export function revealInvisible(text: string, mark: (codePoint: string) => string = (cp) => `⟨${cp}⟩`): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/gu, (ch) =>
    mark(`U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`),
  );
}

/** Text cut to `max` characters (code points, so no surrogate pair is split), ending in … when cut. */
export function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join("")}…`;
}

/** Renders a diff as Markdown for a pull-request comment; at most `maxRowsPerTable` rows of each kind per table. */
export function renderReviewMarkdown(diff: Diff, id: string, options: { maxRowsPerTable?: number } = {}): string {
  const maxRows = options.maxRowsPerTable ?? 20;
  const s = diff.summary;
  const out: string[] = [
    `## Airlock promotion diff ${code(id.slice(0, 12))}`,
    "",
    `Session ${code(diff.session)} · snapshot ${code(diff.snapshot)} · created ${code(diff.createdAt)}  `,
    `Diff id: ${code(id)}`,
    "",
    ...verificationLines(diff),
    "",
    ...hazardLines(diff.hazards),
    "",
    "### Summary",
    "",
    `${plural(s.inserts, "insert")} · ${plural(s.updates, "update")} · ${plural(s.deletes, "delete")} · ${plural(s.ddl, "DDL statement")}`,
    "",
  ];
  if (diff.tables.length > 0) {
    out.push("| Table | Rows before | Inserts | Updates | Deletes |", "|---|--:|--:|--:|--:|");
    for (const t of diff.tables) {
      const c = tableCounts(t);
      out.push(`| ${cell(`${t.schema}.${t.name}`)} | ${t.rowsBefore} | ${c.inserts} | ${c.updates} | ${c.deletes} |`);
    }
    out.push("");
  }
  if (diff.schemaChanges.length > 0) {
    out.push(`### Schema changes (${diff.schemaChanges.length})`, "");
    for (const c of diff.schemaChanges) out.push(...schemaChangeLines(c));
  }
  if (diff.tables.some((t) => t.changes.length > 0)) {
    out.push("### Changed rows", "");
    for (const t of diff.tables) if (t.changes.length > 0) out.push(...tableLines(t, maxRows));
  }
  return `${out.join("\n").trimEnd()}\n`;
}

function verificationLines(diff: Diff): string[] {
  const v = diff.verification;
  if (v.verified) return ["**✅ Verified** — replaying the diff on a fresh clone of base reproduced work exactly."];
  const lines = ["**❌ Not verified** — replaying the diff on a fresh clone of base did not reproduce work; it cannot be approved.", ""];
  if (v.error !== undefined) lines.push(`- Replay failed: ${text(truncate(v.error, 300))}`);
  for (const m of v.mismatches) {
    const keys = m.keys.map((k) => code(truncate(k, MAX_VALUE_CHARS))).join(", ");
    lines.push(`- Rows differ in ${code(m.table)}${keys ? `, e.g. keys ${keys}` : ""}`);
  }
  for (const d of v.schemaDifference) lines.push(`- Schema differs: ${code(truncate(d, 200))}`);
  return lines;
}

function hazardLines(hazards: readonly Hazard[]): string[] {
  if (hazards.length === 0) return ["### Hazards", "", "None."];
  const sorted = sortHazards(hazards);
  const lines = [`### Hazards (${hazards.length})`, "", "| Severity | Code | Object | Message |", "|---|---|---|---|"];
  for (const h of sorted) {
    lines.push(`| ${SEVERITY_ICON[h.severity]} ${h.severity} | ${cell(h.code)} | ${cell(h.object)} | ${text(truncate(h.message, 300))} |`);
  }
  const groups = definitionGroups(sorted);
  if (groups.length > 0) lines.push("", "#### Definitions to read");
  for (const g of groups) {
    const h = g[0]!;
    lines.push(
      "",
      `**${SEVERITY_ICON[h.severity]} ${g.map((x) => code(x.code)).join(" · ")} on ${code(h.object)}**`,
      "",
      ...fenced("sql", block(h.definition!)),
    );
  }
  return lines;
}

/**
 * The hazards with a definition, in review order (danger first), grouped so
 * that hazards of one severity and object with the same definition (FUNCTION,
 * SECURITY_DEFINER of one function) show that definition once, naming them all.
 */
export function definitionGroups(sorted: readonly Hazard[]): Hazard[][] {
  const groups = new Map<string, Hazard[]>();
  for (const h of sorted) {
    if (h.definition === undefined) continue;
    const key = JSON.stringify([h.severity, h.object, h.definition]);
    const g = groups.get(key);
    if (g === undefined) groups.set(key, [h]);
    else g.push(h);
  }
  return [...groups.values()];
}

/** One typed schema change: what it does to which object, then its SQL before and after the data. */
function schemaChangeLines(c: SchemaChangeRecord): string[] {
  const changed = c.changed.length > 0 ? ` — changed: ${c.changed.map((k) => code(k)).join(", ")}` : "";
  const forced = c.forcedBy !== undefined ? ` — forced by ${code(c.forcedBy)}` : "";
  const lines = [`**${c.action}** ${code(c.id)}${changed}${forced}`, ""];
  if (c.sql.length > 0) lines.push(...fenced("sql", block(statements(c.sql))), "");
  if (c.afterData.length > 0) lines.push("After the data changes:", "", ...fenced("sql", block(statements(c.afterData))), "");
  return lines;
}

/** Statements as one SQL text, each ended by a semicolon. */
export function statements(sql: readonly string[]): string {
  return sql.map((s) => (/;\s*$/.test(s) ? s.trimEnd() : `${s};`)).join("\n\n");
}

function tableLines(t: TableChanges, maxRows: number): string[] {
  const lines = [`#### ${code(`${t.schema}.${t.name}`)}`, ""];
  const updates = t.changes.flatMap((c) => (c.kind === "update" ? [c] : []));
  const inserts = t.changes.flatMap((c) => (c.kind === "insert" ? [c.row] : []));
  const deletes = t.changes.flatMap((c) => (c.kind === "delete" ? [c.old] : []));
  if (updates.length > 0) {
    lines.push(`**Updates (${updates.length})**`, "");
    for (const u of updates.slice(0, maxRows)) {
      lines.push(`- ${keyText(u.key)}`);
      for (const col of Object.keys(u.new)) lines.push(`  - ${code(col)}: ${value(u.old[col])} → ${value(u.new[col])}`);
    }
    lines.push(...moreNote(updates.length, maxRows), "");
  }
  for (const [title, rows] of [
    ["Inserts", inserts],
    ["Deletes", deletes],
  ] as const) {
    if (rows.length === 0) continue;
    const cols = columnsOf(t, rows);
    lines.push(`**${title} (${rows.length})**`, "", `| ${cols.map(cell).join(" | ")} |`, `|${cols.map(() => "---|").join("")}`);
    for (const r of rows.slice(0, maxRows)) lines.push(`| ${cols.map((c) => value(r[c], true)).join(" | ")} |`);
    lines.push(...moreNote(rows.length, maxRows), "");
  }
  return lines;
}

/** The table's columns in order, then any a row has that the table no longer does (dropped ones). */
export function columnsOf(t: TableChanges, rows: readonly RowValues[]): string[] {
  const cols = new Set(t.columns.map((c) => c.name));
  for (const r of rows) for (const k of Object.keys(r)) cols.add(k);
  return [...cols];
}

function moreNote(total: number, shown: number): string[] {
  return total > shown ? ["", `… and ${total - shown} more`] : [];
}

function keyText(key: RowValues): string {
  return Object.entries(key)
    .map(([k, v]) => `${code(k)} = ${value(v)}`)
    .join(", ");
}

/** A value as a code span; NULL and the empty string are told apart in italics. */
function value(v: string | null | undefined, inTable = false): string {
  if (v === null || v === undefined) return "*NULL*";
  if (v === "") return "*empty*";
  return code(truncate(v, MAX_VALUE_CHARS), inTable);
}

function cell(name: string): string {
  return code(name, true);
}

/**
 * A code span that holds any text literally: the fence is longer than any
 * backtick run inside, newlines become ↵ so a table row is not broken, and in a
 * table `|` is escaped (GFM splits cells before it parses code spans).
 */
function code(raw: string, inTable = false): string {
  let t = revealInvisible(raw.replace(/\r\n|\r|\n/g, "↵").replace(/\t/g, " "));
  if (inTable) t = t.replace(/\|/g, "\\|");
  const longestRun = Math.max(0, ...(t.match(/`+/g) ?? []).map((r) => r.length));
  const fence = "`".repeat(longestRun + 1);
  const pad = /^[` ]|[` ]$/.test(t) && t.trim() !== "" ? " " : "";
  return `${fence}${pad}${t}${pad}${fence}`;
}

/** Prose (hazard messages, errors) with everything Markdown or HTML could act on escaped. */
function text(raw: string): string {
  return revealInvisible(raw.replace(/\s*(\r\n|\r|\n)\s*/g, " ")).replace(/[\\`*_[\]<>|~&#!]/g, "\\$&");
}

/** Multi-line agent-written text for a fenced block: line ends normalized, invisible characters shown. */
function block(raw: string): string {
  return revealInvisible(raw.replace(/\r\n?/g, "\n"));
}

/** A fenced code block whose fence is longer than any backtick run in the body, so the body cannot close it. */
function fenced(lang: string, body: string): string[] {
  const longestRun = Math.max(2, ...(body.match(/`{3,}/g) ?? []).map((r) => r.length));
  const fence = "`".repeat(longestRun + 1);
  return [`${fence}${lang}`, body, fence];
}
