/**
 * What the CLI says is true, through the CLI: a config file that cannot
 * import `airlock` says to install it (not to fix a syntax error); arguments
 * are checked in the order a user reads them (the diff or promotion id
 * before the production URL or the secret); counts read as they should
 * ("1 insert", "1 entry"); audit shows whole snapshot ids; and a rollback
 * says what it did ("1 row restored; no schema changes to reverse").
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgTarget, formatUrl, parseTarget, withClient } from "../src/pg/connect.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";
import { runCli } from "./helpers/cli.ts";

const SECRET = "cli-messages-secret-0123456789abcdef";
const { PROD_DATABASE_URL: _p, AIRLOCK_SECRET: _s, ...bare } = process.env;
const dirs: string[] = [];

/** A fresh directory for one project. */
function project(name: string): string {
  const dir = testClusterDir(name);
  mkdirSync(dir, { recursive: true });
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("a config file outside an installed project", () => {
  it('that imports "airlock" says to install it there (its path, or types only), not to fix a syntax error', () => {
    const dir = project("config-no-airlock");
    writeFileSync(join(dir, "airlock.config.ts"), 'import { defineConfig } from "airlock";\n\nexport default defineConfig({ masking: { sampleSize: 50 } });\n');
    const r = runCli(dir, bare, ["config"], 60_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^AIRLOCK_CONFIG_LOAD_FAILED: cannot load .*airlock\.config\.ts: it imports "airlock", and the airlock package is not installed/m);
    expect(r.stderr).toContain(`install Airlock in that project (${dir})`);
    expect(r.stderr).toMatch(/`npm i -D \//);
    expect(r.stderr).toContain('import type { AirlockConfigInput } from "airlock"');
    expect(r.stderr).not.toMatch(/syntax|Require stack/);
    // What the hint offers without installing anything loads.
    writeFileSync(
      join(dir, "airlock.config.ts"),
      'import type { AirlockConfigInput } from "airlock";\n\nexport default { masking: { sampleSize: 50 } } satisfies AirlockConfigInput;\n',
    );
    const typesOnly = runCli(dir, bare, ["config", "--json"], 60_000);
    expect(typesOnly.code, typesOnly.stderr).toBe(0);
    expect(typesOnly.json().config.masking.sampleSize).toBe(50);
  });

  it("that imports another missing package names it; a syntax error is still called one", () => {
    const dir = project("config-no-package");
    writeFileSync(join(dir, "airlock.config.ts"), 'import { z } from "zod-not-installed/v4";\n\nexport default { masking: { sampleSize: z } };\n');
    const missing = runCli(dir, bare, ["config"], 60_000);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('it imports "zod-not-installed/v4", and zod-not-installed is not installed');
    expect(missing.stderr).toContain("`npm i -D zod-not-installed`");
    writeFileSync(join(dir, "airlock.config.ts"), "export default { masking: { sampleSize: 50 };\n");
    const syntax = runCli(dir, bare, ["config"], 60_000);
    expect(syntax.code).toBe(1);
    expect(syntax.stderr).toContain("hint: fix the syntax error");
  });
});

describe("arguments are checked in the order a user reads them", () => {
  it("the diff or promotion id first, then the production URL and the secret", () => {
    const dir = project("argument-order");
    const code = (args: string[]) => /^(AIRLOCK_\w+|error: .*)/m.exec(runCli(dir, bare, args, 60_000).stderr)?.[1];
    expect(code(["promote", "nonexist"])).toBe("AIRLOCK_BAD_DIFF_ID");
    expect(code(["promote", "abcdef12"])).toBe("AIRLOCK_DIFF_NOT_FOUND");
    expect(code(["promote", "abcdef12", "--dry-run"])).toBe("AIRLOCK_DIFF_NOT_FOUND");
    expect(code(["rollback", "nonexist"])).toBe("AIRLOCK_BAD_PROMOTION_ID");
    expect(code(["approve", "nonexist"])).toBe("AIRLOCK_BAD_DIFF_ID");
    expect(code(["approve", "abcdef12", "--yes"])).toBe("AIRLOCK_DIFF_NOT_FOUND");
    expect(code(["diff", "nonexist"])).toBe("AIRLOCK_SESSION_NOT_FOUND");
    expect(code(["review", "nonexist"])).toBe("AIRLOCK_BAD_DIFF_ID");
    // A well-formed promotion id goes on to what is missing next: production.
    expect(code(["rollback", "p-20261124101500-3fa2c1"])).toBe("AIRLOCK_NO_PRODUCTION_URL");
  });
});

describe("counts, ids and what a rollback did, through the CLI", () => {
  let cluster: TestCluster;
  let prod: PgTarget;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const airlock = (...args: string[]) => runCli(dir, env, args);

  beforeAll(async () => {
    cluster = await startTestCluster("cli-messages-prod");
    prod = await cluster.createDatabase("production");
    await withClient(prod, { step: "test", searchPath: "public" }, (c) =>
      c.query("CREATE TABLE tags (id serial PRIMARY KEY, label text NOT NULL); INSERT INTO tags (label) SELECT 'tag ' || g FROM generate_series(1, 5) g;"),
    );
    dir = project("cli-messages");
    env = { ...bare, AIRLOCK_SECRET: SECRET, PROD_DATABASE_URL: formatUrl(cluster.cluster.tcpTarget("production"), true) };
  }, 120_000);

  afterAll(async () => {
    if (dir !== undefined) airlock("cluster", "destroy", "--erase");
    await cluster?.close();
  });

  it("1 entry, 1 insert, 1 row restored; no schema changes to reverse; whole snapshot ids", async () => {
    const snap = airlock("snapshot");
    expect(snap.code, snap.stderr).toBe(0);
    const id = /^snapshot (snap-\d{8}-\d{6}-[0-9a-f]{6}): 1 table, 5 rows, 0 masked columns/m.exec(snap.stdout)?.[1];
    expect(id, snap.stdout).toBeDefined();
    const audit = airlock("audit");
    expect(audit.code, audit.stderr).toBe(0);
    expect(audit.stdout).toMatch(/^staging trail, .* \(1 entry\):$/m);
    expect(audit.stdout).toMatch(new RegExp(` snapshot=${id}$`, "m"));

    expect(airlock("up", "--name", "one-tag").code).toBe(0);
    const url = airlock("url", "one-tag").stdout.trim();
    await withClient(parseTarget(url), { step: "test-agent", searchPath: "public" }, (c) => c.query("INSERT INTO tags (label) VALUES ('tag 6')"));
    const diff = airlock("diff", "one-tag");
    expect(diff.code, diff.stderr).toBe(0);
    expect(diff.stdout).toMatch(/: 1 insert, 0 updates, 0 deletes, 0 schema statements \(/);
    const diffId = /^diff ([0-9a-f]{64}) /m.exec(diff.stdout)![1]!;
    expect(airlock("approve", diffId.slice(0, 8), "--by", "alice", "--yes").code).toBe(0);
    const promoted = airlock("promote", diffId.slice(0, 8));
    expect(promoted.code, promoted.stderr).toBe(0);
    expect(promoted.stdout).toContain(": 1 insert, 0 updates, 0 deletes, 0 schema statements; read back and confirmed");
    const promotion = / as (p-\d{14}-[0-9a-f]{6}):/.exec(promoted.stdout)![1]!;

    const rollback = airlock("rollback", promotion);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(rollback.stdout).toContain(`rolled back ${promotion}: 1 row restored; no schema changes to reverse`);
    expect(airlock("rollback", promotion).stderr).toMatch(/^AIRLOCK_ALREADY_ROLLED_BACK: /m);
    const trail = airlock("audit", "--verify");
    expect(trail.code, trail.stderr).toBe(0);
    expect(trail.stdout).toContain(`promotion=${promotion}`);
    expect(trail.stdout).toMatch(/^production trail, .* \(3 entries\):$/m); // promote, rollback, the refused second rollback
    expect(`${snap.stdout}${audit.stdout}${diff.stdout}${promoted.stdout}${rollback.stdout}${trail.stdout}`).not.toMatch(
      /(?<![\d.,])1 (?:rows|entries|inserts|updates|deletes|statements|tables|columns|fields|anchors|files)\b/,
    );
  }, 240_000);
});
