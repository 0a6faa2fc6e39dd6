/**
 * review.md and review.html of an incident-like diff, and of a diff where an
 * agent created a SECURITY DEFINER function that runs any SQL
 * (test/helpers/review-diffs.ts). Hazards must lead, each with the full
 * definition a reviewer must read, and agent-written values (definitions
 * included) must never act as markup. test/review-browser.test.ts renders
 * the page in a real browser.
 */
import { describe, expect, it } from "vitest";
import { escapeHtml, renderReviewHtml } from "../src/diff/review-html.ts";
import { renderReviewMarkdown } from "../src/diff/review-md.ts";
import type { Diff, SchemaChangeRecord } from "../src/diff/types.ts";
import { HOSTILE_COMMENT, ID, RUN_SQL_BODY, functionDiff, incidentDiff } from "./helpers/review-diffs.ts";

describe("review.md", () => {
  const md = renderReviewMarkdown(incidentDiff(), ID);

  it("names the diff and says it is verified", () => {
    expect(md).toContain("`3f1c9a7be20d`");
    expect(md).toContain("`fix-gallery-2`");
    expect(md).toContain("`snap-20250601`");
    expect(md).toContain("✅ Verified");
    expect(renderReviewMarkdown(incidentDiff(false), ID)).toMatch(/❌ Not verified[\s\S]*Rows differ in `public\.guests`, e\.g\. keys `\(7\)`/);
  });

  it("puts hazards first, danger before warn before info", () => {
    const at = (s: string) => md.indexOf(s);
    expect(at("### Hazards (4)")).toBeGreaterThan(-1);
    expect(at("### Hazards")).toBeLessThan(at("### Summary"));
    expect(at("### Summary")).toBeLessThan(at("### Schema changes"));
    expect(at("BULK_DELETE")).toBeLessThan(at("LARGE_INSERT"));
    expect(at("MASKED_VALUE")).toBeLessThan(at("LARGE_INSERT"));
    expect(at("LARGE_INSERT")).toBeLessThan(at("NEW_INDEX"));
  });

  it("counts per table and shows the DDL as SQL", () => {
    expect(md).toContain("282 inserts · 1 update · 290 deletes · 1 DDL statement");
    expect(md).toContain("| `public.gallery_images` | 300 | 282 | 0 | 290 |");
    expect(md).toContain("| `public.guests` | 40 | 0 | 1 | 0 |");
    expect(md).toContain(
      "**create** `index public.gallery_images_guest_id_idx`\n\nAfter the data changes:\n\n```sql\nCREATE INDEX gallery_images_guest_id_idx ON public.gallery_images USING btree (guest_id);\n```",
    );
  });

  it("lists each typed schema change: action, object, what changed, what forced a recreate, its SQL", () => {
    const fmd = renderReviewMarkdown(functionDiff(), ID);
    expect(fmd).toContain("### Schema changes (3)");
    expect(fmd).toContain("**recreate** `view public.v` — forced by `column public.guests.email`");
    const altered: Diff = {
      ...incidentDiff(),
      schemaChanges: [
        { id: "view public.w", kind: "view", action: "alter", changed: ["definition", "acl"], sql: ["ALTER VIEW public.w OWNER TO app"], afterData: [] },
      ],
    };
    expect(renderReviewMarkdown(altered, ID)).toContain(
      "**alter** `view public.w` — changed: `definition`, `acl`\n\n```sql\nALTER VIEW public.w OWNER TO app;\n```",
    );
    // The schema changes come in the order they run, after the counts.
    expect(fmd).toContain("**create** `function public.run_sql(q text)`\n\n"); // nothing changed or forced to name
    expect(fmd.indexOf("**create** `function public.run_sql(q text)`")).toBeLessThan(fmd.indexOf("**create** `index public.gallery_images_guest_id_idx`"));
    expect(fmd.indexOf("### Summary")).toBeLessThan(fmd.indexOf("### Schema changes"));
  });

  it("a danger hazard is shown first, with its full definition in a fence its text cannot close", () => {
    const fmd = renderReviewMarkdown(functionDiff(), ID);
    const at = (s: string) => fmd.indexOf(s);
    // Danger hazards lead, before the counts table, the schema changes and every table section.
    expect(at("| 🔴 danger | `FUNCTION` | `function public.run_sql(q text)` |")).toBeGreaterThan(-1);
    expect(at("| 🔴 danger | `FUNCTION` |")).toBeLessThan(at("| 🟠 warn |"));
    const firstTable = Math.min(at("### Summary"), at("### Schema changes"), at("### Changed rows"), at("#### `public."));
    expect(at("#### Definitions to read")).toBeGreaterThan(-1);
    expect(at("EXECUTE q;")).toBeGreaterThan(-1);
    expect(at("EXECUTE q;")).toBeLessThan(firstTable);
    // FUNCTION and SECURITY_DEFINER of one function share one copy of the body; it is in full, verbatim.
    expect(fmd).toContain("**🔴 `FUNCTION` · `SECURITY_DEFINER` on `function public.run_sql(q text)`**\n\n`````sql\n" + RUN_SQL_BODY + "\n`````\n");
    expect(fmd.split(RUN_SQL_BODY).length - 1).toBe(1);
    expect(fmd).toContain(
      "**🔴 `GRANT_PUBLIC` on `function public.run_sql(q text)`**\n\n```sql\nGRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC;\n```",
    );
    // The hostile view comment has a triple backtick run: its fence is four long, and no line inside closes it.
    expect(fmd).toContain("**🔴 `VIEW` on `view public.v`**\n\n````sql\n" + HOSTILE_COMMENT + "\n````\n");
    for (const m of fmd.matchAll(/^(`{3,})sql\n([\s\S]*?)\n\1$/gm)) {
      for (const line of m[2]!.split("\n")) expect(/^ {0,3}`{3,}\s*$/.test(line) && line.trim().length >= m[1]!.length).toBe(false);
      for (const run of m[2]!.match(/`+/g) ?? []) expect(run.length).toBeLessThan(m[1]!.length);
    }
  });

  it("samples rows with a note of how many more, updates as old → new", () => {
    expect(md).toContain("… and 270 more");
    expect(md).toContain("… and 262 more");
    expect(md).toContain("  - `email`: `ada.guest@example.com` → `user7@masked.invalid`");
    expect(md).toContain("  - `note`: *NULL* → `<script>alert(1)</script>`");
    expect(renderReviewMarkdown(incidentDiff(), ID, { maxRowsPerTable: 3 })).toContain("… and 287 more");
  });

  it("keeps values from breaking tables: pipes escaped, newlines folded, long values cut", () => {
    expect(md).toContain("| `left \\| right↵second line` |");
    expect(md).toContain(`\`${"x".repeat(79)}…\``);
    expect(md).not.toContain("x".repeat(81));
    expect(md).toContain("1 value looks like masking output \\| \\<b\\>check\\</b\\>");
    // Every table row still has the columns of its header.
    for (const line of md.split("\n").filter((l) => l.startsWith("| ") && l.includes("img.example/"))) {
      expect(line.replace(/\\\|/g, "").split("|").length).toBe(6);
    }
  });
});

describe("review.html", () => {
  const html = renderReviewHtml(incidentDiff(), ID);

  it("escapes every agent-written value", () => {
    expect(escapeHtml(`&<>"'`)).toBe("&amp;&lt;&gt;&quot;&#39;");
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).toContain("masking output | &lt;b&gt;check&lt;/b&gt;");
    expect(html).toContain('<meta charset="utf-8">');
    expect(html).toMatch(/<title>Airlock diff 3f1c9a7be20d · session fix-gallery-2<\/title>/);
    expect(html).not.toMatch(/\b(src|href)=|url\(|@import/); // nothing fetched: works offline
  });

  it("shows verification, hazards, counts, rows and DDL", () => {
    expect(html).toContain("✓ Verified");
    for (const code of ["BULK_DELETE", "LARGE_INSERT", "MASKED_VALUE", "NEW_INDEX"]) expect(html).toContain(code);
    expect(html.indexOf("BULK_DELETE")).toBeLessThan(html.indexOf("LARGE_INSERT"));
    expect(html.indexOf("Hazards (4)")).toBeLessThan(html.indexOf("Summary"));
    for (const total of ["282 inserts", "1 update", "290 deletes", "1 DDL statement"]) expect(html).toContain(total);
    expect(html).toContain("<td>300</td><td>282</td><td>0</td><td>290</td>");
    expect(html).toContain('<td class="chg"><del>ada.guest@example.com</del><ins>user7@masked.invalid</ins></td>');
    expect(html).toContain('<del><span class="null">NULL</span></del>');
    expect(html).toContain('<span class="empty">empty</span>');
    expect(html).toContain("… and 90 more");
    expect(html).toContain('<pre class="ddl">CREATE INDEX gallery_images_guest_id_idx ON public.gallery_images USING btree (guest_id);</pre>');
    expect(renderReviewHtml(incidentDiff(false), ID)).toContain("✗ Not verified");
  });

  it("lists each typed schema change: action, object, what changed, what forced a recreate, its SQL", () => {
    const fhtml = renderReviewHtml(functionDiff(), ID);
    expect(fhtml).toContain("<h2>Schema changes (3)</h2>");
    expect(fhtml).toContain(
      '<span class="action act-recreate">recreate</span> <code>view public.v</code> <span class="forced">forced by <code>column public.guests.email</code></span>',
    );
    const altered: Diff = {
      ...incidentDiff(),
      schemaChanges: [
        { id: "view public.w", kind: "view", action: "alter", changed: ["definition", "acl"], sql: ["ALTER VIEW public.w OWNER TO app"], afterData: [] },
      ],
    };
    expect(renderReviewHtml(altered, ID)).toContain(
      '<code>view public.w</code> <span class="changed">changed: <code>definition</code>, <code>acl</code></span></p><pre class="ddl">ALTER VIEW public.w OWNER TO app;</pre>',
    );
    expect(fhtml.indexOf("<h2>Summary</h2>")).toBeLessThan(fhtml.indexOf("<h2>Schema changes"));
  });

  it("a danger hazard is shown first, with its full definition escaped, never as live HTML", () => {
    const fhtml = renderReviewHtml(functionDiff(), ID);
    const at = (s: string) => fhtml.indexOf(s);
    expect(fhtml).not.toMatch(/<script|<img|<\/pre><script/i);
    const firstTable = Math.min(at("<h2>Summary</h2>"), at("<h2>Schema changes"), at("<h2>Changed rows</h2>"), at('<table class="counts">'));
    expect(at("<code>SECURITY_DEFINER</code>")).toBeGreaterThan(-1);
    expect(at("<code>SECURITY_DEFINER</code>")).toBeLessThan(at("<code>LARGE_INSERT</code>"));
    expect(at("EXECUTE q;")).toBeGreaterThan(-1);
    expect(at("EXECUTE q;")).toBeLessThan(firstTable);
    const escapedBody = RUN_SQL_BODY.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/'/g, "&#39;");
    // The body in full and escaped, once, under the codes of both hazards it belongs to.
    expect(fhtml).toContain(
      `<span class="pill">danger</span> <code class="code">FUNCTION</code> · <code class="code">SECURITY_DEFINER</code> on <code>function public.run_sql(q text)</code></p><pre class="definition"><code>${escapedBody}</code></pre>`,
    );
    expect(fhtml.split(escapedBody).length - 1).toBe(1);
    expect(fhtml).toContain(
      '<code class="code">GRANT_PUBLIC</code> on <code>function public.run_sql(q text)</code></p><pre class="definition"><code>GRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC;</code></pre>',
    );
    expect(fhtml).toContain("&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;``` &lt;img src=x onerror=alert(2)&gt;");
  });

  it("shows direction-changing and invisible characters instead of obeying them", () => {
    const diff = incidentDiff();
    const comment: SchemaChangeRecord = {
      id: "table public.guests",
      kind: "table",
      action: "alter",
      changed: ["comment"],
      sql: ["COMMENT ON TABLE public.guests IS 'ok\u202Egnp.exe'"],
      afterData: [],
    };
    const tricked: Diff = {
      ...diff,
      schemaChanges: [comment],
      hazards: [
        { code: "FUNCTION", severity: "danger", object: "function public.f\u202Egnp()", message: "creates it", definition: "SELECT 'ok\u202Egnp.exe'" },
      ],
    };
    expect(renderReviewHtml(tricked, ID)).toContain(`ok<span class="ctl">U+202E</span>gnp.exe`);
    expect(renderReviewMarkdown(tricked, ID)).toContain("ok⟨U+202E⟩gnp.exe");
    // Nowhere in either page, definitions and object names included, is the character itself.
    expect(renderReviewHtml(tricked, ID)).not.toContain("\u202E");
    expect(renderReviewMarkdown(tricked, ID)).not.toContain("\u202E");
  });
});
