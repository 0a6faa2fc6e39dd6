/**
 * review.md and review.html of an incident-like diff: an agent bulk-deleted
 * gallery images, re-inserted 282 and wrote a masked email back into guests.
 * Hazards must lead, agent-written values must never act as markup, and the
 * page must render in a real browser (Debian's chromium, when installed).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { escapeHtml, renderReviewHtml } from "../src/diff/review-html.ts";
import { renderReviewMarkdown } from "../src/diff/review-md.ts";
import type { Diff, RowChange } from "../src/diff/types.ts";

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
    formatVersion: 1,
    session: "fix-gallery-2",
    snapshot: "snap-20250601",
    createdAt: "2025-06-01T12:00:00.000Z",
    schema: ["CREATE INDEX gallery_images_guest_id_idx ON public.gallery_images USING btree (guest_id);"],
    schemaAfterData: [],
    reverseSchema: [],
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
    expect(md).toContain("```sql\nCREATE INDEX gallery_images_guest_id_idx");
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
    expect(html).toContain('<pre class="ddl">CREATE INDEX gallery_images_guest_id_idx');
    expect(renderReviewHtml(incidentDiff(false), ID)).toContain("✗ Not verified");
  });

  it("shows direction-changing and invisible characters instead of obeying them", () => {
    const diff = incidentDiff();
    const tricked: Diff = { ...diff, schema: ["COMMENT ON TABLE public.guests IS 'ok\u202Egnp.exe';"] };
    expect(renderReviewHtml(tricked, ID)).toContain(`ok<span class="ctl">U+202E</span>gnp.exe`);
    expect(renderReviewMarkdown(tricked, ID)).toContain("ok⟨U+202E⟩gnp.exe");
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
      const visible = dump.stdout
        .replace(/<style[\s\S]*?<\/style>/gi, " ")
        .replace(/<[^>]+>/g, " ")
        .replace(/&lt;/g, "<")
        .replace(/&gt;/g, ">")
        .replace(/&quot;/g, '"')
        .replace(/&#39;/g, "'")
        .replace(/&amp;/g, "&")
        .replace(/\s+/g, " ");
      for (const text of ["✓ Verified", "282 inserts", "1 update", "290 deletes", "1 DDL statement", "BULK_DELETE", "LARGE_INSERT", "MASKED_VALUE", "NEW_INDEX", SCRIPT]) {
        expect(visible).toContain(text);
      }
    },
    150_000,
  );
});
