/**
 * review.html: the diff as one self-contained page for a reviewer (inline CSS,
 * no script, no external resource, so it opens offline and from an archive).
 * Hazards come first, each definition a reviewer must read (function body,
 * policy, setting, grants) shown in full right under it; then the counts, the
 * typed schema changes with their SQL, and the changed rows.
 * Every value is agent-written and goes through escapeHtml; a Content Security
 * Policy forbidding scripts and fetches backs that up.
 */
import type { Diff, Hazard, RowChange, RowValues, SchemaChangeRecord, TableChanges } from "./types.ts";
import { sortHazards } from "./hazards.ts";
import { plural } from "../format/plural.ts";
import { columnsOf, definitionGroups, revealInvisible, statements, tableCounts, truncate } from "./review-md.ts";

// Long enough to review a real value, short enough that one huge value cannot swamp the page.
const MAX_VALUE_CHARS = 1000;

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text escaped for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch] ?? ch);
}

/** Renders a diff as a self-contained HTML page; at most `maxRowsPerTable` rows of each kind per table. */
export function renderReviewHtml(diff: Diff, id: string, options: { maxRowsPerTable?: number } = {}): string {
  const maxRows = options.maxRowsPerTable ?? 200;
  const short = id.slice(0, 12);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Airlock diff ${escapeHtml(short)} · session ${escapeHtml(diff.session)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>Airlock promotion diff <code>${escapeHtml(short)}</code></h1>
<dl class="meta">
<dt>Diff id</dt><dd><code>${escapeHtml(id)}</code></dd>
<dt>Session</dt><dd><code>${escapeHtml(diff.session)}</code></dd>
<dt>Snapshot</dt><dd><code>${escapeHtml(diff.snapshot)}</code></dd>
<dt>Created</dt><dd>${escapeHtml(diff.createdAt)}</dd>
</dl>
</header>
${verificationBanner(diff)}
${hazardSection(diff.hazards)}
${summarySection(diff)}
${schemaSection(diff.schemaChanges)}
${
  diff.tables.some((t) => t.changes.length > 0)
    ? `<section><h2>Changed rows</h2>\n${diff.tables
        .filter((t) => t.changes.length > 0)
        .map((t) => tableSection(t, maxRows))
        .join("\n")}</section>`
    : ""
}
</body>
</html>
`;
}

function verificationBanner(diff: Diff): string {
  const v = diff.verification;
  if (v.verified) return `<div class="banner ok"><strong>✓ Verified</strong> — replaying the diff on a fresh clone of base reproduced work exactly.</div>`;
  const items = [
    ...(v.error !== undefined ? [`<li>Replay failed: ${valueText(v.error)}</li>`] : []),
    ...v.mismatches.map(
      (m) =>
        `<li>Rows differ in <code>${escapeHtml(m.table)}</code>${m.keys.length > 0 ? `, e.g. keys ${m.keys.map((k) => `<code>${valueText(k)}</code>`).join(", ")}` : ""}</li>`,
    ),
    ...v.schemaDifference.map((d) => `<li>Schema differs: <code>${valueText(d)}</code></li>`),
  ];
  return `<div class="banner bad"><strong>✗ Not verified</strong> — replaying the diff on a fresh clone of base did not reproduce work; it cannot be approved.${items.length > 0 ? `<ul>${items.join("")}</ul>` : ""}</div>`;
}

/**
 * Every hazard, danger first; then each definition a reviewer must read
 * (function body, policy, setting, grants) in full, escaped in a pre block,
 * under the codes and object of the hazards it belongs to.
 */
function hazardSection(hazards: readonly Hazard[]): string {
  if (hazards.length === 0) return `<section id="hazards"><h2>Hazards</h2><p class="none">None.</p></section>`;
  const sorted = sortHazards(hazards);
  const rows = sorted.map(
    (h) =>
      `<tr class="sev-${escapeHtml(h.severity)}"><td><span class="pill">${escapeHtml(h.severity)}</span></td><td><code>${escapeHtml(h.code)}</code></td><td><code>${valueText(h.object)}</code></td><td>${valueText(h.message)}</td></tr>`,
  );
  const definitions = definitionGroups(sorted).map((g) => {
    const h = g[0]!;
    return `<div class="definition sev-${escapeHtml(h.severity)}"><p><span class="pill">${escapeHtml(h.severity)}</span> ${g.map((x) => `<code class="code">${escapeHtml(x.code)}</code>`).join(" · ")} on <code>${valueText(h.object)}</code></p><pre class="definition"><code>${valueText(h.definition!)}</code></pre></div>`;
  });
  return `<section id="hazards"><h2>Hazards (${hazards.length})</h2>
<table class="hazards"><thead><tr><th>Severity</th><th>Code</th><th>Object</th><th>Message</th></tr></thead>
<tbody>${rows.join("\n")}</tbody></table>${definitions.length > 0 ? `\n<h3>Definitions to read</h3>\n${definitions.join("\n")}` : ""}</section>`;
}

/** The typed schema changes in the order they run: action, object, what changed, what forced a recreate, and the SQL. */
function schemaSection(changes: readonly SchemaChangeRecord[]): string {
  if (changes.length === 0) return "";
  const items = changes.map((c) => {
    const changed = c.changed.length > 0 ? ` <span class="changed">changed: ${c.changed.map((k) => `<code>${valueText(k)}</code>`).join(", ")}</span>` : "";
    const forced = c.forcedBy !== undefined ? ` <span class="forced">forced by <code>${valueText(c.forcedBy)}</code></span>` : "";
    const sql = [
      ...(c.sql.length > 0 ? [`<pre class="ddl">${valueText(statements(c.sql))}</pre>`] : []),
      ...(c.afterData.length > 0 ? [`<p class="phase">After the data changes:</p><pre class="ddl">${valueText(statements(c.afterData))}</pre>`] : []),
    ];
    return `<li class="change"><p><span class="action act-${escapeHtml(c.action)}">${escapeHtml(c.action)}</span> <code>${valueText(c.id)}</code>${changed}${forced}</p>${sql.join("")}</li>`;
  });
  return `<section id="schema"><h2>Schema changes (${changes.length})</h2>
<ol class="changes">${items.join("\n")}</ol></section>`;
}

function summarySection(diff: Diff): string {
  const s = diff.summary;
  const totals = [
    ["ins", plural(s.inserts, "insert")],
    ["upd", plural(s.updates, "update")],
    ["del", plural(s.deletes, "delete")],
    ["ddl", plural(s.ddl, "DDL statement")],
  ].map(([cls, label]) => `<li class="${cls}">${escapeHtml(label ?? "")}</li>`);
  const rows = diff.tables.map((t) => {
    const c = tableCounts(t);
    return `<tr><td><code>${escapeHtml(`${t.schema}.${t.name}`)}</code></td><td>${num(t.rowsBefore)}</td><td>${c.inserts}</td><td>${c.updates}</td><td>${c.deletes}</td></tr>`;
  });
  return `<section><h2>Summary</h2>
<ul class="totals">${totals.join("")}</ul>
${rows.length > 0 ? `<table class="counts"><thead><tr><th>Table</th><th>Rows before</th><th>Inserts</th><th>Updates</th><th>Deletes</th></tr></thead><tbody>${rows.join("")}</tbody></table>` : ""}
</section>`;
}

function tableSection(t: TableChanges, maxRows: number): string {
  const of = <K extends RowChange["kind"]>(kind: K) => t.changes.filter((c): c is Extract<RowChange, { kind: K }> => c.kind === kind);
  const updates = of("update");
  const inserts = of("insert").map((c) => c.row);
  const deletes = of("delete").map((c) => c.old);
  const parts = [`<h3><code>${escapeHtml(`${t.schema}.${t.name}`)}</code></h3>`];
  if (updates.length > 0) parts.push(updateTable(updates, maxRows));
  if (inserts.length > 0) parts.push(rowTable("Inserts", "ins", "+", columnsOf(t, inserts), inserts, maxRows));
  if (deletes.length > 0) parts.push(rowTable("Deletes", "del", "−", columnsOf(t, deletes), deletes, maxRows));
  return `<div class="table-changes">${parts.join("\n")}</div>`;
}

/** Key columns, then one column per changed column: old struck through above new. */
function updateTable(updates: ReadonlyArray<Extract<RowChange, { kind: "update" }>>, maxRows: number): string {
  const shown = updates.slice(0, maxRows);
  const keyCols = [...new Set(shown.flatMap((u) => Object.keys(u.key)))];
  const changedCols = [...new Set(shown.flatMap((u) => Object.keys(u.new)))];
  const head = [...keyCols.map((k) => `<th class="key">${escapeHtml(k)}</th>`), ...changedCols.map((c) => `<th>${escapeHtml(c)}</th>`)];
  const rows = shown.map((u) => {
    const keys = keyCols.map((k) => `<td${classAttr("key", u.key[k])}>${cellValue(u.key[k])}</td>`);
    const cells = changedCols.map((c) =>
      c in u.new
        ? `<td${classAttr("chg", u.old[c], u.new[c])}><del>${cellValue(u.old[c])}</del><ins>${cellValue(u.new[c])}</ins></td>`
        : `<td class="same" title="unchanged"></td>`,
    );
    return `<tr>${keys.join("")}${cells.join("")}</tr>`;
  });
  return `<h4>Updates (${updates.length})</h4>
<div class="scroll"><table class="rows"><thead><tr>${head.join("")}</tr></thead><tbody>${rows.join("\n")}</tbody></table></div>${moreNote(updates.length, maxRows)}`;
}

function rowTable(title: string, cls: string, sign: string, cols: readonly string[], rows: readonly RowValues[], maxRows: number): string {
  const body = rows
    .slice(0, maxRows)
    .map((r) => `<tr class="${cls}"><td class="sign">${sign}</td>${cols.map((c) => `<td${classAttr("", r[c])}>${cellValue(r[c])}</td>`).join("")}</tr>`);
  return `<h4>${title} (${rows.length})</h4>
<div class="scroll"><table class="rows"><thead><tr><th class="sign"></th>${cols.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr></thead><tbody>${body.join("\n")}</tbody></table></div>${moreNote(rows.length, maxRows)}`;
}

/** A number from the diff file, escaped all the same: the file is data, not code. */
function num(n: number): string {
  return escapeHtml(String(n));
}

function moreNote(total: number, shown: number): string {
  return total > shown ? `<p class="more">… and ${total - shown} more (all of them are in diff.json and promote.sql)</p>` : "";
}

/**
 * Cell classes, plus `long` for a value with a long unbroken run: only such a
 * cell may break anywhere, so short ids and URLs keep their width and are not split.
 */
function classAttr(base: string, ...values: ReadonlyArray<string | null | undefined>): string {
  const cls = values.some((v) => v != null && /\S{41}/.test(v)) ? `${base} long`.trim() : base;
  return cls ? ` class="${cls}"` : "";
}

/** A value for a cell: NULL and the empty string marked so neither passes for the other or for text. */
function cellValue(v: string | null | undefined): string {
  if (v === null || v === undefined) return `<span class="null">NULL</span>`;
  if (v === "") return `<span class="empty">empty</span>`;
  const chars = Array.from(v).length;
  const cut = chars > MAX_VALUE_CHARS ? ` <span class="cut">(${chars} characters)</span>` : "";
  return `${valueText(truncate(v, MAX_VALUE_CHARS))}${cut}`;
}

/** Untrusted text escaped, with invisible and direction-changing characters shown. */
function valueText(text: string): string {
  return revealInvisible(escapeHtml(text.replace(/\r\n?/g, "\n")), (cp) => `<span class="ctl">${cp}</span>`);
}

const CSS = `
:root{color-scheme:light;--red:#b42318;--red-bg:#fef3f2;--amber:#b54708;--amber-bg:#fffaeb;--blue:#175cd3;--blue-bg:#eff8ff;--green:#067647;--green-bg:#ecfdf3;--line:#d0d5dd;--muted:#667085}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1200px;padding:24px;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#101828;background:#fff}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}h4{font-size:13px;margin:12px 0 4px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
code,pre,table.rows td{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0;color:var(--muted)}.meta dd{margin:0;color:#101828;overflow-wrap:anywhere}
.banner{margin:20px 0;padding:12px 16px;border-radius:8px;border:1px solid}.banner strong{font-size:16px}.banner ul{margin:8px 0 0}
.banner.ok{color:var(--green);background:var(--green-bg);border-color:var(--green)}.banner.bad{color:var(--red);background:var(--red-bg);border-color:var(--red)}
table{border-collapse:collapse;width:100%}th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}th{background:#f2f4f7;font-weight:600}
td{white-space:pre-wrap;overflow-wrap:break-word}td.long{overflow-wrap:anywhere;min-width:24ch}
.hazards tr.sev-danger td{background:var(--red-bg)}.hazards tr.sev-warn td{background:var(--amber-bg)}.hazards tr.sev-info td{background:var(--blue-bg)}
.pill{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.sev-danger .pill{background:var(--red)}.sev-warn .pill{background:var(--amber)}.sev-info .pill{background:var(--blue)}
.sev-danger td:nth-child(2) code{color:var(--red)}.sev-warn td:nth-child(2) code{color:var(--amber)}.sev-info td:nth-child(2) code{color:var(--blue)}
.totals{display:flex;gap:12px;padding:0;margin:0 0 12px;list-style:none}.totals li{padding:6px 14px;border-radius:8px;border:1px solid var(--line);font-weight:600}
.totals .ins{color:var(--green)}.totals .upd{color:var(--amber)}.totals .del{color:var(--red)}
.counts{width:auto}.counts td:not(:first-child),.counts th:not(:first-child){text-align:right}
pre.ddl,pre.definition{background:#f9fafb;border:1px solid var(--line);border-radius:6px;padding:12px;white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0 8px}
div.definition{margin:12px 0}div.definition p{margin:0 0 4px}div.sev-danger pre{border-color:var(--red)}div.sev-warn pre{border-color:var(--amber)}pre.definition code{font-size:inherit}
div.sev-danger code.code{color:var(--red)}div.sev-warn code.code{color:var(--amber)}div.sev-info code.code{color:var(--blue)}
.changes{padding-left:1.5em}.changes li{margin:10px 0}.changes p{margin:0 0 4px}.changed,.forced,.phase{color:var(--muted)}.phase{margin:4px 0 0;font-size:12px}
.action{display:inline-block;padding:0 6px;border-radius:4px;font-weight:600;font-size:12px;border:1px solid}.act-create{color:var(--green)}.act-drop{color:var(--red)}.act-alter{color:var(--amber)}.act-recreate{color:var(--blue)}
.scroll{overflow-x:auto}.rows{width:auto;min-width:50%}
th.key,td.key{background:#f2f4f7;font-weight:600}td.same{background:#fcfcfd}
td.chg del{display:block;color:var(--red);background:var(--red-bg);text-decoration:line-through}td.chg ins{display:block;color:var(--green);background:var(--green-bg);text-decoration:none}
tr.ins td{background:var(--green-bg)}tr.del td{background:var(--red-bg)}td.sign,th.sign{width:1.5em;text-align:center;font-weight:700}tr.ins td.sign{color:var(--green)}tr.del td.sign{color:var(--red)}
.null,.empty{font-style:italic;color:var(--muted);font-family:system-ui,sans-serif}.cut{color:var(--muted);font-family:system-ui,sans-serif}
.ctl{font-size:10px;padding:0 2px;border:1px solid var(--amber);border-radius:3px;color:var(--amber);background:var(--amber-bg)}
.more{color:var(--muted);font-style:italic;margin:4px 0}.none{color:var(--muted)}
`;
