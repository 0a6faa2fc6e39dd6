/**
 * The `airlock` CLI as users run it: a real process, real flags, real exit
 * codes, against a real cluster.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { testClusterDir } from "./helpers/cluster.ts";

const BIN = resolve("bin/airlock.mjs");

function airlock(args: readonly string[], cwd = process.cwd(), env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: "utf8", env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const projectDir = testClusterDir("cli-project");
mkdirSync(projectDir, { recursive: true });
chmodSync(projectDir, 0o755);

afterAll(() => {
  airlock(["cluster", "destroy", "--erase"], projectDir);
});

describe("airlock CLI", () => {
  it("--help lists every command with a one-line description", () => {
    const r = airlock(["--help"]);
    expect(r.code).toBe(0);
    for (const cmd of ["demo", "seed-demo", "cluster", "config"]) expect(r.stdout).toMatch(new RegExp(`\\n\\s+${cmd}\\b.*\\S`));
    expect(r.stdout).toContain("--json");
    expect(r.stdout).toContain("Exit codes");
  });

  it("rejects unknown commands and unknown flags with exit code 1", () => {
    const unknownCommand = airlock(["snapshott"]);
    expect(unknownCommand.code).toBe(1);
    expect(unknownCommand.stderr).toMatch(/unknown command 'snapshott'/);
    const unknownFlag = airlock(["seed-demo", "--to", "postgres://x@127.0.0.1/x", "--scael", "2"]);
    expect(unknownFlag.code).toBe(1);
    expect(unknownFlag.stderr).toMatch(/unknown option '--scael'/);
    const badValue = airlock(["seed-demo", "--to", "postgres://x@127.0.0.1/x", "--scale", "-3"]);
    expect(badValue.code).toBe(1);
    expect(badValue.stderr).toMatch(/positive number/);
    const missing = airlock(["seed-demo"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--to <url>/);
  });

  it("accepts --json and prints machine-readable output", () => {
    const r = airlock(["config", "--json"], projectDir);
    expect(r.code).toBe(0);
    const parsed = JSON.parse(r.stdout);
    expect(parsed.config.stateDir).toBe(".airlock");
    expect(parsed.clusterDir).toBe(join(projectDir, ".airlock", "cluster"));
  });

  it("prints errors with a stable code and a hint, and never the password of a URL", () => {
    const password = "cli-Secret-pw-9876";
    const r = airlock(["seed-demo", "--to", `postgres://someone:${password}@127.0.0.1:1/prod`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^AIRLOCK_UNREACHABLE: /);
    expect(r.stderr).toMatch(/hint: /);
    expect(r.stderr + r.stdout).not.toContain(password);
    const j = airlock(["--json", "seed-demo", "--to", `postgres://someone:${password}@127.0.0.1:1/prod`]);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout).error.code).toBe("AIRLOCK_UNREACHABLE");
    expect(j.stderr + j.stdout).not.toContain(password);
  });

  it("starts, reports, stops and destroys the embedded cluster", () => {
    const start = airlock(["cluster", "start", "--json"], projectDir);
    expect(start.code).toBe(0);
    const started = JSON.parse(start.stdout);
    expect(started.alreadyRunning).toBe(false);
    expect(JSON.parse(airlock(["cluster", "start", "--json"], projectDir).stdout).alreadyRunning).toBe(true);
    const status = JSON.parse(airlock(["cluster", "status", "--json"], projectDir).stdout);
    expect(status).toMatchObject({ state: "running", port: started.port });
    expect(airlock(["cluster", "stop"], projectDir).stdout).toContain("stopped");
    expect(JSON.parse(airlock(["cluster", "status", "--json"], projectDir).stdout).state).toBe("stopped");
    // Destroying is dangerous: it needs its own opt-in flag.
    const refused = airlock(["cluster", "destroy"], projectDir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("--erase");
    expect(airlock(["cluster", "destroy", "--erase"], projectDir).code).toBe(0);
    expect(JSON.parse(airlock(["cluster", "status", "--json"], projectDir).stdout).state).toBe("absent");
  });
});
