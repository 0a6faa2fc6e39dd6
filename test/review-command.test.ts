/**
 * `airlock review <diff>` opens a diff's review page on any OS and always
 * prints it as a file:// URL: with a fake opener on PATH that records its
 * argument (and one that never exits, which the CLI must not wait for),
 * with none, without a desktop session, with --no-open and --json. The
 * commands for macOS and Windows are checked as the opener would run them.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { openerFor } from "../src/os/open-file.ts";
import { testClusterDir } from "./helpers/cluster.ts";
import { runCli } from "./helpers/cli.ts";

const dir = testClusterDir("review-command");
const ID = "3f9a2c1b".padEnd(64, "0");
const OTHER = "3f9a2c1b77".padEnd(64, "1");
const page = join(dir, ".airlock", "diffs", ID, "review.html");
const bin = join(dir, "bin");
const calls = join(dir, "opener-calls");
for (const id of [ID, OTHER]) {
  mkdirSync(join(dir, ".airlock", "diffs", id), { recursive: true });
  writeFileSync(join(dir, ".airlock", "diffs", id, "review.html"), "<!doctype html><title>review</title>\n");
}
mkdirSync(bin);

/** A fake opener named `name` in bin/ that appends its arguments to opener-calls (and, if asked, then sleeps). */
function fakeOpener(name: string, then = ""): void {
  writeFileSync(join(bin, name), `#!/bin/sh\nprintf '%s\\n' "$*" >> "${calls}"\n${then}\n`);
  chmodSync(join(bin, name), 0o755);
}

/** The opener's recorded calls, once it has had time to run (it is started detached, never waited on). */
async function openerCalls(expected: number): Promise<string[]> {
  for (let i = 0; i < 50 && (existsSync(calls) ? readFileSync(calls, "utf8").split("\n").length - 1 : 0) < expected; i++)
    await new Promise((r) => setTimeout(r, 100));
  return existsSync(calls) ? readFileSync(calls, "utf8").split("\n").slice(0, -1) : [];
}

/** `airlock review …` with only bin/ on PATH (no system opener), and a desktop session unless `display` is "". */
function review(args: readonly string[], display = ":0") {
  const { DISPLAY: _d, WAYLAND_DISPLAY: _w, ...rest } = process.env;
  return runCli(dir, { ...rest, PATH: bin, ...(display === "" ? {} : { DISPLAY: display }) }, ["review", ...args], 60_000);
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("airlock review", () => {
  it("opens the page with the desktop's opener, by a unique id prefix, and prints its file:// URL", async () => {
    rmSync(calls, { force: true });
    fakeOpener("xdg-open");
    const r = review([ID.slice(0, 12)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${pathToFileURL(page).href}\n`);
    expect(r.stderr).toContain(`opening the review page of diff ${ID} with xdg-open`);
    expect(await openerCalls(1)).toEqual([page]);
  });

  it("never waits for the opener", async () => {
    rmSync(calls, { force: true });
    // An opener that runs until the test lets it go (at most two minutes, past the CLI's timeout): the CLI must have returned long before.
    const release = join(dir, "release-opener");
    fakeOpener("xdg-open", `i=0; while [ ! -e "${release}" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done`);
    const r = review([ID]);
    expect(r.code, r.stderr).toBe(0);
    expect(await openerCalls(1)).toEqual([page]);
    writeFileSync(release, "");
  });

  it("prints the URL and says why when there is no opener or no desktop session, and still succeeds", async () => {
    rmSync(join(bin, "xdg-open"), { force: true });
    const none = review([ID]);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toBe(`${pathToFileURL(page).href}\n`);
    expect(none.stderr).toContain("not opened: no xdg-open on PATH");
    rmSync(calls, { force: true });
    fakeOpener("xdg-open");
    const headless = review([ID], "");
    expect(headless.code, headless.stderr).toBe(0);
    expect(headless.stdout).toBe(`${pathToFileURL(page).href}\n`);
    expect(headless.stderr).toContain("no desktop session here");
    expect(await openerCalls(0)).toEqual([]);
  });

  it("--no-open only prints; --json prints {id, path, url}", async () => {
    rmSync(calls, { force: true });
    fakeOpener("xdg-open");
    const quiet = review([ID, "--no-open"]);
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stdout).toBe(`${pathToFileURL(page).href}\n`);
    expect(quiet.stderr).toBe("");
    const json = review([ID, "--no-open", "--json"]);
    expect(json.code, json.stderr).toBe(0);
    expect(json.json()).toEqual({ id: ID, path: page, url: pathToFileURL(page).href });
    await new Promise((r) => setTimeout(r, 500));
    expect(await openerCalls(0)).toEqual([]);
  });

  it("refuses what is not one diff: not an id, no such diff, a prefix of two", () => {
    expect(review(["nonexist", "--no-open"]).stderr).toMatch(/^AIRLOCK_BAD_DIFF_ID: /);
    expect(review(["abcdef12", "--no-open"]).stderr).toMatch(/^AIRLOCK_DIFF_NOT_FOUND: /);
    const ambiguous = review(["3f9a2c1b", "--no-open"]);
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.stderr).toMatch(/^AIRLOCK_DIFF_AMBIGUOUS: /);
  });

  it("uses open on macOS and start on Windows", () => {
    fakeOpener("open");
    expect(openerFor("/p/review.html", "darwin", { PATH: bin })).toEqual({ command: "open", args: ["/p/review.html"] });
    expect(openerFor("/p/review.html", "darwin", { PATH: join(dir, "nothing") })).toEqual({ reason: "no `open` command on PATH" });
    expect(openerFor("C:\\p\\review.html", "win32", {})).toEqual({
      command: "cmd.exe",
      args: ["/d", "/s", "/c", '"start "" "C:\\p\\review.html""'],
      windowsVerbatimArguments: true,
    });
    expect(openerFor("/p/review.html", "linux", { PATH: bin, WAYLAND_DISPLAY: "wayland-0" })).toEqual({ command: "xdg-open", args: ["/p/review.html"] });
  });
});
