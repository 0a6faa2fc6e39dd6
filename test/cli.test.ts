/**
 * The `airlock` CLI as users run it: a real process, real flags, real exit
 * codes, against a real cluster.
 */
import { execFile, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
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

/** Runs the CLI without blocking the test process, so that many runs can go at once. */
function airlockAsync(
  args: readonly string[],
  cwd = process.cwd(),
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { cwd, encoding: "utf8", env: { ...process.env, ...env }, timeout: 120_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === "number" ? error.code : null, stdout, stderr });
    });
  });
}

describe("no password reaches stdout or stderr, whatever the shape of a rejected connection string", () => {
  const pw = "Hunter2-s3cretPW";
  const inputs = [
    `bob:${pw}@db.example:5432/app`,
    `bob:${pw}@db.example/app?sslmode=require`,
    `//bob:${pw}@db.example/app`,
    `postgres:bob:${pw}@db.example/app`,
    `postgres://bob:${pw}@db.example:99999/app`,
    `postgresql://bob:${encodeURIComponent(`${pw}@/ x"`)}@db.example:abc/app`,
    `postgres://bob:p@${pw}@db.example:abc/app`,
    `postgres://bob:${pw} x@db.example:abc/app`,
    `postgres://db.example:abc/app?pass%77ord=${pw}`,
    `mysql://bob:${pw}@db.example/app`,
    `host=db.example password='${pw} x' port=abc`,
    `host=db.example password='${pw}`,
  ];

  it("through --from, --to and PROD_DATABASE_URL, as text and as --json", async () => {
    const runs: Array<{ what: string; run: Promise<{ code: number | null; stdout: string; stderr: string }> }> = [];
    for (const input of inputs) {
      runs.push({ what: `snapshot --from ${input}`, run: airlockAsync(["snapshot", "--from", input], projectDir) });
      runs.push({ what: `--json seed-demo --to ${input}`, run: airlockAsync(["--json", "seed-demo", "--to", input]) });
    }
    runs.push({ what: "PROD_DATABASE_URL (--json)", run: airlockAsync(["snapshot", "--json"], projectDir, { PROD_DATABASE_URL: inputs[0]! }) });
    for (const { what, run } of runs) {
      const r = await run;
      expect(r.code, what).toBe(1);
      const out = r.stdout + r.stderr;
      expect(out, what).toContain("AIRLOCK_BAD_URL");
      expect(out, what).toContain("********");
      for (const form of [pw, encodeURIComponent(pw), "s3cretPW"]) expect(out, what).not.toContain(form);
      if (what.includes("json")) expect(JSON.parse(r.stdout).error.code, what).toBe("AIRLOCK_BAD_URL");
    }
  }, 240_000);
});

describe("output into a pipe that closes early", () => {
  /** Runs `airlock <args> | <reader>` in a shell; the CLI's exit code is appended to stderr. */
  function piped(args: string, reader: string, cwd = process.cwd()) {
    const r = spawnSync("sh", ["-c", `{ "${process.execPath}" "${BIN}" ${args}; echo "exit=$?" >&2; } | ${reader}`], {
      cwd,
      encoding: "utf8",
      timeout: 120_000,
    });
    return { stdout: r.stdout, stderr: r.stderr };
  }

  it("exits quietly with the command's own code when the reader is gone (help, long ls, long ls --json)", () => {
    // `true` never reads: the whole help hits a closed pipe.
    expect(piped("--help", "true").stderr).toBe("exit=0\n");
    expect(piped("--help", "head -1").stdout).toMatch(/^Usage: airlock/);
    // Far more than a pipe holds (64 kB), so `head` leaves while the CLI still writes.
    const dir = testClusterDir("cli-pipe");
    const sessions = join(dir, ".airlock", "sessions");
    mkdirSync(sessions, { recursive: true });
    for (let i = 0; i < 3000; i++) {
      const id = `pipe-${String(i).padStart(4, "0")}`;
      const record = {
        id,
        backend: "pulumi",
        snapshotId: "snap-20260101-000000-abcdef",
        createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i % 60)).toISOString(),
        expiresAt: null,
        agent: { host: "127.0.0.1", port: 5432, database: id, user: id },
        backendState: {},
      };
      writeFileSync(join(sessions, `${id}.json`), JSON.stringify({ ...record, agentPassword: "x" }), { mode: 0o600 });
    }
    try {
      for (const args of ["ls", "ls --json"]) {
        const r = piped(args, "head -1", dir);
        expect(r.stderr, args).toBe("exit=0\n");
        expect(r.stdout.split("\n").length, args).toBe(2);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("every command's --help teaches by example", () => {
  function help(path: readonly string[]): string {
    return spawnSync(process.execPath, [BIN, ...path, "--help"], { encoding: "utf8", timeout: 30_000 }).stdout;
  }

  /** The sub-commands a --help text lists (commander's "Commands:" section, up to the next blank line), without `help`. */
  function subcommands(text: string): string[] {
    const section = text.split(/\nCommands:\n/)[1]?.split(/\n\s*\n/)[0];
    if (section === undefined) return [];
    return section
      .split("\n")
      .map((l) => /^ {2}([a-z][\w-]*)/.exec(l)?.[1])
      .filter((n): n is string => n !== undefined && n !== "help");
  }

  it("walks every command and sub-command: each --help ends with at least one example", () => {
    const missing: string[] = [];
    const seen: string[] = [];
    const walk = (path: string[], text: string) => {
      for (const name of subcommands(text)) {
        const sub = [...path, name];
        seen.push(sub.join(" "));
        const h = help(sub);
        if (!/\nExamples?:\n {2}\S/.test(h)) missing.push(sub.join(" "));
        walk(sub, h);
      }
    };
    walk([], help([]));
    // The walk found the commands (a broken parse must not pass by finding none).
    expect(seen).toEqual(
      expect.arrayContaining(["up", "run", "diff", "approve", "promote", "rollback", "audit", "ls", "cluster", "cluster status", "snapshot", "snapshot ls"]),
    );
    expect(missing).toEqual([]);
  }, 180_000);
});
