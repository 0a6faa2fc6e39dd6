/**
 * The error-code registry (src/error-codes.ts) cannot rot: every code the
 * source uses is registered, every registered code is used, and the README's
 * table lists exactly the registry, with the same exit codes and meanings.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { AirlockError, ERROR_CODES, EXIT_ERROR, EXIT_REFUSED, formatError, isAirlockError } from "../src/errors.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** Where Airlock's own code lives: every code used here must be registered, and every registered code used here. */
const SOURCE_DIRS = ["src", "scripts", "seeders", "infra", "bench", "bin"];
const SOURCE_FILE = /\.(ts|mts|mjs|js|cjs|sh)$/;
/** AIRLOCK_* names that are environment variables (the session container's among them), not error codes. */
const ENVIRONMENT_VARIABLES = new Set([
  "AIRLOCK_SECRET",
  "AIRLOCK_PG_BIN",
  "AIRLOCK_PG_USER",
  "AIRLOCK_SESSION",
  "AIRLOCK_AGENT_PASSWORD",
  "AIRLOCK_ADMIN_PASSWORD",
  "AIRLOCK_PORT",
  "AIRLOCK_DISK_QUOTA_BYTES",
  "AIRLOCK_STATEMENT_TIMEOUT_MS",
  "AIRLOCK_DEBUG",
]);
/** A whole string literal naming a code: how codes are thrown, mapped (pg-error.ts), matched and recorded. */
const CODE_LITERAL = /(["'`])(AIRLOCK_[A-Z0-9_]+)\1/g;

function filesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && SOURCE_FILE.test(d.name) && !join(d.parentPath, d.name).includes("node_modules"))
    .map((d) => join(d.parentPath, d.name));
}

/** Each AIRLOCK_* string literal in the files (environment variables left out), with the files that hold it. */
function codesIn(files: readonly string[]): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of files) {
    for (const m of readFileSync(file, "utf8").matchAll(CODE_LITERAL)) {
      const code = m[2]!;
      if (ENVIRONMENT_VARIABLES.has(code)) continue;
      found.set(code, [...(found.get(code) ?? []), relative(ROOT, file)]);
    }
  }
  return found;
}

const registered = Object.keys(ERROR_CODES).sort();

describe("the error-code registry", () => {
  const used = codesIn(SOURCE_DIRS.flatMap(filesUnder));

  it("registers every code the source uses (including codes mapped from sqlstates)", () => {
    const unregistered = [...used].filter(([code]) => !(code in ERROR_CODES)).map(([code, files]) => `${code} (${[...new Set(files)].join(", ")})`);
    expect(unregistered).toEqual([]);
    // The scan sees codes that never appear as `new AirlockError("…")`: the sqlstate map and the fallback for non-Airlock errors.
    expect(used.get("AIRLOCK_LOCK_TIMEOUT")).toEqual(["src/pg/pg-error.ts"]);
    expect(used.has("AIRLOCK_INTERNAL")).toBe(true);
  });

  it("uses every code it registers", () => {
    expect(registered.filter((code) => !used.has(code))).toEqual([]);
  });

  it("knows every code the tests expect", () => {
    const tests = filesUnder("test").filter((f) => !f.endsWith("errors.test.ts"));
    expect([...codesIn(tests)].filter(([code]) => !(code in ERROR_CODES)).map(([code, files]) => `${code} (${[...new Set(files)].join(", ")})`)).toEqual([]);
  });

  it("names no environment variable as a code, and every meaning is one line", () => {
    expect(registered.filter((code) => ENVIRONMENT_VARIABLES.has(code))).toEqual([]);
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      expect(info.meaning, code).toMatch(/^[^\n|]+$/);
      expect([EXIT_ERROR, EXIT_REFUSED], code).toContain(info.exitCode);
    }
  });

  it("gives an error its code's exit code unless the thrower chose one", () => {
    expect(new AirlockError("AIRLOCK_CONFLICT", "x").exitCode).toBe(EXIT_REFUSED);
    expect(new AirlockError("AIRLOCK_BAD_URL", "x").exitCode).toBe(EXIT_ERROR);
    expect(new AirlockError("AIRLOCK_BAD_URL", "x", { exitCode: EXIT_REFUSED }).exitCode).toBe(EXIT_REFUSED);
    expect(isAirlockError(new AirlockError("AIRLOCK_BAD_URL", "x"), "AIRLOCK_BAD_URL")).toBe(true);
    expect(formatError(new AirlockError("AIRLOCK_BAD_URL", "bad port", { hint: "fix it" }))).toBe("AIRLOCK_BAD_URL: bad port\n  hint: fix it");
  });

  it("refuses an unregistered code at compile time", () => {
    // @ts-expect-error -- a misspelt code is a type error (tsc fails if this line compiles)
    const e = new AirlockError("AIRLOCK_CONFLICTS", "x");
    // At run time (a JavaScript caller) it is still an error, with exit 1.
    expect([e.code, e.exitCode]).toEqual(["AIRLOCK_CONFLICTS", EXIT_ERROR]);
  });

  it("is listed exactly in the README's error-code table", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const start = readme.indexOf("\n### Error codes\n");
    expect(start, "README.md has a section '### Error codes'").toBeGreaterThan(0);
    const end = readme.slice(start + 1).search(/\n#{1,3} /);
    const section = end < 0 ? readme.slice(start) : readme.slice(start, start + 1 + end);
    const rows = section
      .split("\n")
      .filter((line) => /^\|\s*`AIRLOCK_/.test(line))
      .map((line) =>
        line
          .split("|")
          .slice(1, -1)
          .map((cell) => cell.trim()),
      );
    const expected = Object.entries(ERROR_CODES).map(([code, info]) => [`\`${code}\``, String(info.exitCode), info.meaning]);
    expect(rows).toEqual(expected);
  });
});
