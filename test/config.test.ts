/**
 * Configuration: airlock.config.ts is validated at load time and every
 * problem is reported at once with its path.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/config.ts";
import { loadProject, localClusterDir } from "../src/config/load.ts";
import { parseDuration } from "../src/config/schema.ts";
import { AirlockError } from "../src/errors.ts";

const CONFIG_MODULE = resolve("src/config/config.ts");

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "airlock-config-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function problemsOf(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AirlockError);
    expect((e as AirlockError).code).toBe("AIRLOCK_CONFIG_INVALID");
    return (e as AirlockError).details?.problems as Array<{ path: string; message: string }>;
  }
  throw new Error("expected AIRLOCK_CONFIG_INVALID");
}

describe("config validation lists every problem", () => {
  it("fills every default from an empty config", () => {
    const c = parseConfig({});
    expect(c.stateDir).toBe(".airlock");
    expect(c.local).toEqual({ disposable: true, settings: {}, maxConnections: 200, idleStop: 30 * 60_000 });
    expect(c.masking).toEqual({ rules: {}, allow: {}, sampleSize: 200 });
    expect(c.capture).toEqual({ statementTimeout: 3_600_000, lockTimeout: 5_000 });
    expect(c.promote).toEqual({ statementTimeout: 60_000, lockTimeout: 5_000 });
    expect(c.hazards).toEqual({ bulkRows: 50, bulkFraction: 0.1, largeInsert: 100 });
    expect(c.staging).toEqual({
      backend: "local",
      ttl: 7_200_000,
      connectionLimit: 20,
      statementTimeout: 300_000,
      docker: { network: "auto", memory: 1024 ** 3, cpus: 1 },
    });
  });

  it("reports unknown keys, wrong types and out-of-range values together, each with its path", () => {
    const problems = problemsOf(() =>
      parseConfig({ stateDir: 3, locl: {}, local: { maxConnections: 5, disposable: "yes", clusterdir: "x", settings: { work_mem: ["4MB"] } } }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        { path: "stateDir", message: "expected a string, got number 3" },
        { path: "locl", message: 'unknown key (did you mean "local"?)' },
        { path: "local.maxConnections", message: "must be at least 10, got 5" },
        { path: "local.disposable", message: 'expected true or false, got the string "yes"' },
        { path: "local.clusterdir", message: 'unknown key (did you mean "clusterDir"?)' },
        { path: "local.settings.work_mem", message: "expected a string, number or boolean Postgres setting, got object" },
      ]),
    );
    expect(problems).toHaveLength(6);
  });

  it("names the file and every problem in the message", () => {
    try {
      parseConfig({ a: 1, b: 2 }, "/x/airlock.config.ts");
      expect.unreachable();
    } catch (e) {
      const err = e as AirlockError;
      expect(err.message).toMatch(/^\/x\/airlock\.config\.ts has 2 problems:/);
      expect(err.message).toContain("  - a: unknown key");
      expect(err.message).toContain("  - b: unknown key");
      expect(err.hint).toBeDefined();
    }
  });

  it("parses durations", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("2h")).toBe(7_200_000);
    expect(parseDuration("1.5s")).toBe(1_500);
    expect(parseDuration("soon")).toBeUndefined();
  });

  it("refuses a duration without its unit instead of reading it as milliseconds, and parses sizes", () => {
    expect(problemsOf(() => parseConfig({ staging: { ttl: 5 } }))).toEqual([
      { path: "staging.ttl", message: 'expected a duration with its unit, got the bare number 5: write "5ms", "5s", "5m" or "5h"' },
    ]);
    expect(parseConfig({ staging: { ttl: "5m" } }).staging.ttl).toBe(300_000);
    expect(parseConfig({ staging: { diskQuota: "50MB" } }).staging.diskQuota).toBe(50 * 1024 * 1024);
    expect(problemsOf(() => parseConfig({ staging: { diskQuota: "lots" } }))[0]!.path).toBe("staging.diskQuota");
  });
});

describe("loading a project", () => {
  it("loads a typed airlock.config.ts with defineConfig and resolves paths against the project", async () => {
    const dir = project({
      "airlock.config.ts": `import { defineConfig } from ${JSON.stringify(CONFIG_MODULE)};\nexport default defineConfig({ stateDir: "state", local: { maxConnections: 50 } });\n`,
    });
    const p = await loadProject({ dir });
    expect(p.configFile).toBe(join(dir, "airlock.config.ts"));
    expect(p.config.local.maxConnections).toBe(50);
    expect(p.statePath("snapshots")).toBe(join(dir, "state", "snapshots"));
    expect(localClusterDir(p)).toBe(join(dir, "state", "cluster"));
  });

  it("uses defaults without a config file and reads .env without overriding the environment", async () => {
    process.env.AIRLOCK_TEST_KEPT = "from-env";
    const dir = project({ ".env": "AIRLOCK_TEST_KEPT=from-file\nAIRLOCK_TEST_NEW=from-file\n" });
    const p = await loadProject({ dir });
    expect(p.configFile).toBeUndefined();
    expect(p.config.stateDir).toBe(".airlock");
    expect(process.env.AIRLOCK_TEST_KEPT).toBe("from-env");
    expect(process.env.AIRLOCK_TEST_NEW).toBe("from-file");
  });

  it("reports a config file that fails to load, has no default export, or is invalid", async () => {
    const broken = project({ "airlock.config.ts": "export default {{;\n" });
    await expect(loadProject({ dir: broken })).rejects.toMatchObject({ code: "AIRLOCK_CONFIG_LOAD_FAILED" });
    const noDefault = project({ "airlock.config.ts": "export const x = 1;\n" });
    await expect(loadProject({ dir: noDefault })).rejects.toMatchObject({ code: "AIRLOCK_CONFIG_INVALID" });
    const invalid = project({ "airlock.config.ts": "export default { local: { pgbin: '/x' } };\n" });
    await expect(loadProject({ dir: invalid })).rejects.toMatchObject({ code: "AIRLOCK_CONFIG_INVALID", message: expect.stringContaining("local.pgbin") });
    await expect(loadProject({ dir: broken, configFile: "missing.ts" })).rejects.toMatchObject({ code: "AIRLOCK_CONFIG_NOT_FOUND" });
  });
});
