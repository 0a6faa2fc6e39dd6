/**
 * review.html in a real browser (Debian's chromium, when installed): the
 * incident diff's page renders with its counts, hazards and agent-written
 * values as text, and a danger hazard's full definition is painted first.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { inflateSync } from "node:zlib";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderReviewHtml } from "../src/diff/review-html.ts";
import { ID, RUN_SQL_BODY, SCRIPT, functionDiff, incidentDiff } from "./helpers/review-diffs.ts";

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
  const flags = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    `--user-data-dir=${profile}`,
  ];
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
  for (let at = 8; at < bytes.length;) {
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
      for (const text of [
        "✓ Verified",
        "282 inserts",
        "1 update",
        "290 deletes",
        "1 DDL statement",
        "BULK_DELETE",
        "LARGE_INSERT",
        "MASKED_VALUE",
        "NEW_INDEX",
        SCRIPT,
      ]) {
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
