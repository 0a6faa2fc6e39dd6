/**
 * review.md and review.html of an incident-like diff: an agent bulk-deleted
 * gallery images, re-inserted 282 and wrote a masked email back into guests;
 * and of a diff where it created a SECURITY DEFINER function that runs any SQL.
 * Hazards must lead, each with the full definition a reviewer must read,
 * agent-written values (definitions included) must never act as markup, and
 * the page must render in a real browser (Debian's chromium, when installed).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { inflateSync } from "node:zlib";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { escapeHtml, renderReviewHtml } from "../src/diff/review-html.ts";
import { renderReviewMarkdown } from "../src/diff/review-md.ts";
import type { Diff, Hazard, RowChange, SchemaChangeRecord } from "../src/diff/types.ts";

const ID = "3f1c9a7be20d44c1a9e5b6f7081d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192";
const SCRIPT = "<script>alert(1)</script>";
const PIPED = "left | right\nsecond line";
const LONG = "x".repeat(120);

function incidentDiff(verified = true): Diff {
  const deletes: RowChange[] = Array.from({ length: 290 }, (_, i) => ({
    kind: "delete",
    key: { id: String(i + 1) },
    old: { id: String(i + 1), guest_id: String((i % 40) + 1), url: `https://img.example/${i + 1}.jpg`, caption: i === 0 ? PIPED : null },
  }));
  const inserts: RowChange[] = Array.from({ length: 282 }, (_, i) => ({
    kind: "insert",
    row: { id: String(1000 + i), guest_id: "7", url: `https://img.example/new/${i}.jpg`, caption: i === 0 ? SCRIPT : i === 1 ? LONG : i === 2 ? "" : `photo ${i}` },
  }));
  return {
    formatVersion: 2,
    session: "fix-gallery-2",
    snapshot: "snap-20250601",
    createdAt: "2025-06-01T12:00:00.000Z",
    schemaChanges: [
      {
        id: "index public.gallery_images_guest_id_idx",
        kind: "index",
        action: "create",
        changed: [],
        sql: [],
        afterData: ["CREATE INDEX gallery_images_guest_id_idx ON public.gallery_images USING btree (guest_id)"],
      },
    ],
    reverseSchema: { before: ["DROP INDEX public.gallery_images_guest_id_idx"], after: [] },
    tables: [
      {
        schema: "public",
        name: "gallery_images",
        columns: [
          { name: "id", type: "integer" },
          { name: "guest_id", type: "integer" },
          { name: "url", type: "text" },
          { name: "caption", type: "text" },
        ],
        key: ["id"],
        keyKind: "primary",
        rowsBefore: 300,
        changes: [...deletes, ...inserts],
      },
      {
        schema: "public",
        name: "guests",
        columns: [
          { name: "id", type: "integer" },
          { name: "email", type: "text" },
          { name: "note", type: "text" },
        ],
        key: ["id"],
        keyKind: "primary",
        rowsBefore: 40,
        changes: [{ kind: "update", key: { id: "7" }, old: { email: "ada.guest@example.com", note: null }, new: { email: "user7@masked.invalid", note: SCRIPT } }],
      },
    ],
    hazards: [
      { code: "LARGE_INSERT", severity: "warn", object: "public.gallery_images", message: "282 rows inserted", count: 282 },
      { code: "BULK_DELETE", severity: "danger", object: "public.gallery_images", message: "290 of 300 rows deleted (97%)", count: 290 },
      { code: "NEW_INDEX", severity: "info", object: "public.gallery_images_guest_id_idx", message: "index built on promote" },
      { code: "MASKED_VALUE", severity: "danger", object: "public.guests.email", message: "1 value looks like masking output | <b>check</b>", count: 1 },
    ],
    verification: verified
      ? { verified: true, mismatches: [], schemaDifference: [] }
      : { verified: false, mismatches: [{ table: "public.guests", keys: ["(7)"] }], schemaDifference: [], error: "replay stopped" },
    summary: { inserts: 282, updates: 1, deletes: 290, ddl: 1 },
  };
}

const RUN_SQL_BODY = [
  "CREATE OR REPLACE FUNCTION public.run_sql(q text)",
  " RETURNS void",
  " LANGUAGE plpgsql",
  " SECURITY DEFINER",
  "AS $function$",
  "BEGIN",
  "  -- looks harmless: ``` and ```` fences, </pre><script>alert(1)</script>",
  "  EXECUTE q;",
  "END",
  "$function$;",
  "GRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC;",
].join("\n");
const HOSTILE_COMMENT = "COMMENT ON VIEW public.v IS '</pre><script>alert(1)</script>``` <img src=x onerror=alert(2)>';";

/** The incident diff plus an agent-written SECURITY DEFINER function that runs any SQL, and a view whose comment is hostile. */
function functionDiff(): Diff {
  const diff = incidentDiff();
  const fn: SchemaChangeRecord = {
    id: "function public.run_sql(q text)",
    kind: "function",
    action: "create",
    changed: [],
    sql: [RUN_SQL_BODY.split("\nGRANT")[0]!.replace(/;$/, ""), "GRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC"],
    afterData: [],
  };
  const view: SchemaChangeRecord = {
    id: "view public.v",
    kind: "view",
    action: "recreate",
    changed: [],
    forcedBy: "column public.guests.email",
    sql: ["DROP VIEW public.v", "CREATE VIEW public.v AS SELECT id, email FROM public.guests", HOSTILE_COMMENT.replace(/;$/, "")],
    afterData: [],
  };
  const fnHazards: Hazard[] = [
    { code: "FUNCTION", severity: "danger", object: fn.id, message: "creates function public.run_sql(q text) (plpgsql): its code would run in production", definition: RUN_SQL_BODY },
    { code: "SECURITY_DEFINER", severity: "danger", object: fn.id, message: "public.run_sql(q text) is SECURITY DEFINER: it runs with the rights of its owner in production, whoever calls it", definition: RUN_SQL_BODY },
    { code: "GRANT_PUBLIC", severity: "danger", object: fn.id, message: "grants or revokes privileges on function public.run_sql(q text) for PUBLIC (every role): PUBLIC:X", definition: "GRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC;" },
    { code: "VIEW", severity: "danger", object: view.id, message: "changes view public.v", definition: HOSTILE_COMMENT },
  ];
  return {
    ...diff,
    schemaChanges: [fn, ...diff.schemaChanges, view],
    hazards: [...diff.hazards, ...fnHazards],
    summary: { ...diff.summary, ddl: 6 },
  };
}

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
    expect(md).toContain("**create** `index public.gallery_images_guest_id_idx`\n\nAfter the data changes:\n\n```sql\nCREATE INDEX gallery_images_guest_id_idx ON public.gallery_images USING btree (guest_id);\n```");
  });

  it("lists each typed schema change: action, object, what changed, what forced a recreate, its SQL", () => {
    const fmd = renderReviewMarkdown(functionDiff(), ID);
    expect(fmd).toContain("### Schema changes (3)");
    expect(fmd).toContain("**recreate** `view public.v` — forced by `column public.guests.email`");
    const altered: Diff = { ...incidentDiff(), schemaChanges: [{ id: "view public.w", kind: "view", action: "alter", changed: ["definition", "acl"], sql: ["ALTER VIEW public.w OWNER TO app"], afterData: [] }] };
    expect(renderReviewMarkdown(altered, ID)).toContain("**alter** `view public.w` — changed: `definition`, `acl`\n\n```sql\nALTER VIEW public.w OWNER TO app;\n```");
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
    expect(fmd).toContain("**🔴 `GRANT_PUBLIC` on `function public.run_sql(q text)`**\n\n```sql\nGRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC;\n```");
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
    expect(fhtml).toContain('<span class="action act-recreate">recreate</span> <code>view public.v</code> <span class="forced">forced by <code>column public.guests.email</code></span>');
    const altered: Diff = { ...incidentDiff(), schemaChanges: [{ id: "view public.w", kind: "view", action: "alter", changed: ["definition", "acl"], sql: ["ALTER VIEW public.w OWNER TO app"], afterData: [] }] };
    expect(renderReviewHtml(altered, ID)).toContain('<code>view public.w</code> <span class="changed">changed: <code>definition</code>, <code>acl</code></span></p><pre class="ddl">ALTER VIEW public.w OWNER TO app;</pre>');
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
    expect(fhtml).toContain('<code class="code">GRANT_PUBLIC</code> on <code>function public.run_sql(q text)</code></p><pre class="definition"><code>GRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC;</code></pre>');
    expect(fhtml).toContain("&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;``` &lt;img src=x onerror=alert(2)&gt;");
  });

  it("shows direction-changing and invisible characters instead of obeying them", () => {
    const diff = incidentDiff();
    const comment: SchemaChangeRecord = { id: "table public.guests", kind: "table", action: "alter", changed: ["comment"], sql: ["COMMENT ON TABLE public.guests IS 'ok\u202Egnp.exe'"], afterData: [] };
    const tricked: Diff = {
      ...diff,
      schemaChanges: [comment],
      hazards: [{ code: "FUNCTION", severity: "danger", object: "function public.f\u202Egnp()", message: "creates it", definition: "SELECT 'ok\u202Egnp.exe'" }],
    };
    expect(renderReviewHtml(tricked, ID)).toContain(`ok<span class="ctl">U+202E</span>gnp.exe`);
    expect(renderReviewMarkdown(tricked, ID)).toContain("ok⟨U+202E⟩gnp.exe");
    // Nowhere in either page, definitions and object names included, is the character itself.
    expect(renderReviewHtml(tricked, ID)).not.toContain("\u202E");
    expect(renderReviewMarkdown(tricked, ID)).not.toContain("\u202E");
  });
});

const CHROMIUM = "/usr/bin/chromium";
const noChromium = !existsSync(CHROMIUM);
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Runs Debian's chromium headless on a file with a fresh profile; the whole process group is killed on timeout. */
function chromium(page: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const profile = mkdtempSync(join(tmpdir(), "airlock-chromium-profile-"));
  dirs.push(profile);
  const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", `--user-data-dir=${profile}`];
  return new Promise((resolve, reject) => {
    // Detached: its own process group, so a hung browser's renderers die with it.
    const child = spawn(CHROMIUM, [...flags, ...args, `file://${page}`], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString("utf8")));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // Already gone.
      }
      reject(new Error(`chromium did not finish within ${timeoutMs} ms\n${stderr.slice(-2000)}`));
    }, timeoutMs);
    child.on("error", (e) => (clearTimeout(timer), reject(e)));
    child.on("close", (code) => (clearTimeout(timer), resolve({ code, stdout, stderr })));
  });
}

/** The text of a dumped DOM as a reader sees it: tags and styles gone, entities decoded, whitespace folded. */
function visibleText(dom: string): string {
  return dom
    .replace(/<style[\s\S]*?<\/style>/gi, " ")
    .replace(/<[^>]+>/g, " ")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ");
}

/** Decodes an 8-bit, non-interlaced RGB(A) PNG (what Chromium writes) to its width, height and a pixel reader. */
function decodePng(bytes: Buffer): { width: number; height: number; rgb: (x: number, y: number) => [number, number, number] } {
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  const [depth, colorType, interlace] = [bytes[24], bytes[25], bytes[28]];
  expect({ depth, interlace }).toEqual({ depth: 8, interlace: 0 });
  const channels = colorType === 6 ? 4 : colorType === 2 ? 3 : 0;
  expect(channels, `PNG colour type ${colorType}`).toBeGreaterThan(0);
  const idat: Buffer[] = [];
  for (let at = 8; at < bytes.length; ) {
    const len = bytes.readUInt32BE(at);
    if (bytes.toString("latin1", at + 4, at + 8) === "IDAT") idat.push(bytes.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    for (let i = 0; i < stride; i++) {
      const x = raw[y * (stride + 1) + 1 + i]!;
      const a = i >= channels ? px[y * stride + i - channels]! : 0;
      const b = y > 0 ? px[(y - 1) * stride + i]! : 0;
      const c = i >= channels && y > 0 ? px[(y - 1) * stride + i - channels]! : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      px[y * stride + i] = (x + [0, a, b, (a + b) >> 1, paeth][filter]!) & 0xff;
    }
  }
  return { width, height, rgb: (x, y) => [px[y * stride + x * channels]!, px[y * stride + x * channels + 1]!, px[y * stride + x * channels + 2]!] };
}

describe("review.html in a browser", () => {
  it.skipIf(noChromium)(
    `renders in headless Chromium: screenshot and visible text${noChromium ? " (skipped: needs Debian's chromium at /usr/bin/chromium)" : ""}`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "airlock-review-"));
      dirs.push(dir);
      const page = join(dir, "review.html");
      const png = join(dir, "review.png");
      writeFileSync(page, renderReviewHtml(incidentDiff(), ID));

      const shot = await chromium(page, [`--screenshot=${png}`, "--window-size=1280,2000"]);
      expect(existsSync(png), `no screenshot; chromium exited ${shot.code}: ${shot.stderr.slice(-2000)}`).toBe(true);
      const bytes = readFileSync(png);
      expect(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
      expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([1280, 2000]); // IHDR width, height
      expect(statSync(png).size).toBeGreaterThan(20_000);

      const dump = await chromium(page, ["--dump-dom"]);
      expect(dump.code, dump.stderr.slice(-2000)).toBe(0);
      expect(dump.stdout).not.toMatch(/<script/i); // the browser parsed no script element out of the data
      const visible = visibleText(dump.stdout);
      for (const text of ["✓ Verified", "282 inserts", "1 update", "290 deletes", "1 DDL statement", "BULK_DELETE", "LARGE_INSERT", "MASKED_VALUE", "NEW_INDEX", SCRIPT]) {
        expect(visible).toContain(text);
      }
    },
    150_000,
  );

  it.skipIf(noChromium)(
    `a danger hazard is shown first, with its full definition, in headless Chromium${noChromium ? " (skipped: needs Debian's chromium at /usr/bin/chromium)" : ""}`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "airlock-review-"));
      dirs.push(dir);
      const page = join(dir, "review.html");
      const png = join(dir, "review-hazards.png");
      writeFileSync(page, renderReviewHtml(functionDiff(), ID));

      const shot = await chromium(page, [`--screenshot=${png}`, "--window-size=1280,1400", "--force-device-scale-factor=1"]);
      expect(existsSync(png), `no screenshot; chromium exited ${shot.code}: ${shot.stderr.slice(-2000)}`).toBe(true);
      expect(statSync(png).size).toBeGreaterThan(20_000);
      const image = decodePng(readFileSync(png));
      expect([image.width, image.height]).toEqual([1280, 1400]);
      // The danger pills and the red-bordered definition are painted in the first screen: pixels of exactly var(--red), #b42318.
      let red = 0;
      for (let y = 0; y < image.height; y++) for (let x = 0; x < image.width; x++) if (image.rgb(x, y).join() === "180,35,24") red++;
      expect(red).toBeGreaterThan(500);

      const dump = await chromium(page, ["--dump-dom"]);
      expect(dump.code, dump.stderr.slice(-2000)).toBe(0);
      const dom = dump.stdout;
      expect(dom).not.toMatch(/<script|<img/i); // the definitions' markup stayed text
      const hazards = dom.slice(dom.indexOf('<section id="hazards">'), dom.indexOf("</section>", dom.indexOf('<section id="hazards">')));
      expect(dom.indexOf('<section id="hazards">')).toBeGreaterThan(-1);
      expect(dom.indexOf('<section id="hazards">')).toBeLessThan(dom.indexOf("<h2>Summary</h2>"));
      expect(dom.indexOf('<section id="hazards">')).toBeLessThan(dom.indexOf("<h2>Changed rows</h2>"));
      const text = visibleText(hazards);
      expect(text).toContain("danger FUNCTION · SECURITY_DEFINER on function public.run_sql(q text)");
      // The definition survives the browser's parse whole: every line, the fake </pre><script> included, as text.
      for (const line of RUN_SQL_BODY.split("\n")) expect(text).toContain(line.trim());
      expect(text).toContain("</pre><script>alert(1)</script>``` <img src=x onerror=alert(2)>");
      expect(text.indexOf("FUNCTION")).toBeLessThan(text.indexOf("LARGE_INSERT"));
    },
    150_000,
  );
});
