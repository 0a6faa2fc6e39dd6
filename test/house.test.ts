/**
 * House rules of the source tree: no source file is over 400 lines, tests
 * included (issue 18). A file that grows past it is split where its parts
 * are independent, or its setup, helpers and fixtures move to test/helpers/
 * and test/fixtures/. Every .ts and .mjs file of the folders that hold code
 * counts; node_modules, dist and hidden folders do not.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { describe, expect, it } from "vitest";

const REPO = join(import.meta.dirname, "..");
const MAX_LINES = 400;
const CODE_FOLDERS = ["src", "scripts", "test", "seeders", "infra", "bench", "tools", "bin"];

/** Every .ts and .mjs file under `dir`, repo-relative with forward slashes. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (name.startsWith(".") || name === "node_modules" || name === "dist") return [];
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|mjs)$/.test(name) ? [relative(REPO, path).split(sep).join("/")] : [];
  });
}

/** Lines of a text as `wc -l` counts them, plus a last line without its newline. */
function lineCount(text: string): number {
  return text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
}

describe("house rules", () => {
  const files = CODE_FOLDERS.flatMap((folder) => {
    try {
      return statSync(join(REPO, folder)).isDirectory() ? sourceFiles(join(REPO, folder)) : [];
    } catch {
      return [];
    }
  });

  it("the line count sees every folder of code", () => {
    expect(files).toEqual(
      expect.arrayContaining(["src/index.ts", "scripts/cli.ts", "test/house.test.ts", "bin/airlock.mjs", "tools/build.mjs", "infra/index.ts"]),
    );
    expect(lineCount("a\nb\n")).toBe(2);
    expect(lineCount("a\nb")).toBe(2);
  });

  it(`no source file is over ${MAX_LINES} lines, tests included`, () => {
    const over = files
      .map((file) => ({ file, lines: lineCount(readFileSync(join(REPO, file), "utf8")) }))
      .filter((f) => f.lines > MAX_LINES)
      .map((f) => `${f.file}: ${f.lines} lines (at most ${MAX_LINES}: split it, or move its helpers and fixtures out)`);
    expect(over).toEqual([]);
  });
});
