/**
 * The whole workflow as a user runs it, through the `airlock` CLI, against
 * a real "production" cluster: snapshot, an agent session repeating the
 * incident, its diff, refusals, a legitimate fix approved and promoted, the
 * audit trail, rollback. Assertions at every step; then `airlock demo`
 * itself must pass and leave no server running.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { type PgTarget, formatUrl, withClient } from "../src/pg/connect.ts";
import { defaultSandbox } from "../src/staging/sandbox.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";

const BIN = resolve("bin/airlock.mjs");
// The agent runs in the default sandbox where this machine has one (test/sandbox.test.ts covers it).
const SANDBOX = defaultSandbox() === undefined ? ["--sandbox", "none"] : [];
const AGENT = resolve("seeders/demo/agent.mjs");
const SECRET = "e2e-test-secret-0123456789abcdef";
let prodCluster: TestCluster;
let prod: PgTarget;
let projectDir: string;
let env: NodeJS.ProcessEnv;

function airlock(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: projectDir, encoding: "utf8", env, timeout: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) };
}

async function checksums(): Promise<string> {
  return withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
    const parts: string[] = [];
    for (const t of ["gallery_images", "guests", "bookings", "payments", "reviews", "booking_events"]) {
      parts.push(
        (await c.query(`SELECT count(*) || ':' || md5(coalesce(string_agg(to_jsonb(r)::text, E'\\n' ORDER BY to_jsonb(r)::text), '')) AS h FROM ${t} r`))
          .rows[0].h,
      );
    }
    return parts.join(" ");
  });
}

function processesUnder(dir: string): number {
  let n = 0;
  for (const p of readdirSync("/proc").filter((x) => /^\d+$/.test(x))) {
    try {
      if (readlinkSync(`/proc/${p}/cwd`).startsWith(dir)) n++;
    } catch {
      // gone
    }
  }
  return n;
}

beforeAll(async () => {
  prodCluster = await startTestCluster("e2e-prod");
  prod = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  projectDir = testClusterDir("e2e-project");
  mkdirSync(projectDir, { recursive: true });
  chmodSync(projectDir, 0o755);
  const rules = JSON.stringify(DEMO_MASKING_RULES);
  await import("node:fs").then((fs) => fs.writeFileSync(join(projectDir, "airlock.config.ts"), `export default { masking: { rules: ${rules} } };\n`));
  env = { ...process.env, PROD_DATABASE_URL: formatUrl(prodCluster.cluster.tcpTarget("production"), true), AIRLOCK_SECRET: SECRET };
});

afterAll(async () => {
  spawnSync(process.execPath, [BIN, "cluster", "destroy", "--erase"], { cwd: projectDir, env });
  await prodCluster?.close();
  rmSync(projectDir, { recursive: true, force: true });
});

describe("the workflow through the CLI", () => {
  it("snapshot → run (incident) → diff → refusals → run (fix) → approve → promote → audit → rollback", async () => {
    const original = await checksums();

    const snap = airlock("snapshot", "--json");
    expect(snap.code, snap.stderr).toBe(0);
    expect(snap.json().leakScan.ok).toBe(true);

    const incident = airlock("run", "--name", "incident", "--json", ...SANDBOX, "--", process.execPath, AGENT, "incident");
    expect(incident.code, incident.stderr).toBe(0);
    // --json: stdout is the result alone; the agent's own output went to stderr.
    expect(JSON.parse(incident.stdout)).toMatchObject({ session: "incident", exitCode: 0, diff: { verified: true } });
    expect(incident.stderr).toContain("agent: deleted the 170 remaining gallery rows");
    const flood = JSON.parse(/AGENT_RESULT (.*)/.exec(incident.stderr)![1]!) as { opened: number; refused: number };
    expect(flood.opened).toBeLessThan(20);
    expect(flood.refused).toBeGreaterThan(250);
    expect(await checksums()).toBe(original);

    const d1 = airlock("diff", "incident", "--json");
    expect(d1.code, d1.stderr).toBe(0);
    const incidentDiff = d1.json();
    expect(incidentDiff.verified).toBe(true);
    expect(incidentDiff.hazards.map((h: { code: string; severity: string }) => `${h.severity}:${h.code}`)).toEqual(
      expect.arrayContaining(["danger:BULK_DELETE", "warn:LARGE_INSERT"]),
    );

    const unapproved = airlock("promote", incidentDiff.id.slice(0, 12));
    expect(unapproved.code).toBe(2);
    expect(unapproved.stderr).toMatch(/^AIRLOCK_NOT_APPROVED/m);
    const notAccepted = airlock("approve", incidentDiff.id.slice(0, 12), "--by", "reviewer", "--yes");
    expect(notAccepted.code).toBe(2);
    expect(notAccepted.stderr).toContain("--accept BULK_DELETE");
    expect(await checksums()).toBe(original);

    const fix = airlock("run", "--name", "fix", "--json", ...SANDBOX, "--", process.execPath, AGENT, "fix");
    expect(fix.code, fix.stderr).toBe(0);
    const d2 = airlock("diff", "fix", "--json").json();
    expect(d2).toMatchObject({ verified: true, summary: { inserts: 0, updates: 1, deletes: 0, ddl: 1 }, hazards: [] });
    const approve = airlock("approve", d2.id.slice(0, 12), "--by", "reviewer", "--yes", "--note", "paid stay marked no-show");
    expect(approve.code, approve.stderr).toBe(0);
    const dry = airlock("promote", d2.id.slice(0, 12), "--dry-run", "--json");
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.json().dryRun).toBe(true);
    expect(await checksums()).toBe(original);
    const promoted = airlock("promote", d2.id.slice(0, 12), "--json");
    expect(promoted.code, promoted.stderr).toBe(0);
    const promotion = promoted.json();
    expect(promotion.confirmed).toBe(true);
    expect(await checksums()).not.toBe(original);
    const status = await withClient(
      prod,
      { step: "test", searchPath: "public" },
      async (c) => (await c.query("SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'bookings_check_in_status_idx'")).rows[0].n,
    );
    expect(status).toBe(1);

    const audit = airlock("audit", "--verify", "--json");
    expect(audit.code, audit.stderr).toBe(0);
    const trail = audit.json();
    expect(trail.staging.entries.map((e: { action: string }) => e.action)).toEqual(
      expect.arrayContaining(["snapshot", "up", "run", "diff", "approve", "promote"]),
    );
    expect(trail.production.entries.map((e: { action: string }) => e.action)).toContain("promote");

    const rollback = airlock("rollback", promotion.promotionId);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(await checksums()).toBe(original);
    const again = airlock("rollback", promotion.promotionId);
    expect(again.code).toBe(2);
    expect(airlock("audit", "--verify").code).toBe(0);
  }, 240_000);

  it("npm run demo passes, within a minute, and leaves no server running", () => {
    // The workflow above left the staging cluster running (commands start it on demand); the demo stops only what it starts.
    expect(airlock("cluster", "stop").code).toBe(0);
    // The demo keeps its state apart: the project's sessions and snapshots are the same before and after it.
    const listed = () => ({
      sessions: (JSON.parse(airlock("ls", "--json").stdout) as { id: string }[]).map((s) => s.id).sort(),
      snapshots: (JSON.parse(airlock("snapshot", "ls", "--json").stdout) as { id: string }[]).map((s) => s.id).sort(),
    });
    const before = listed();
    expect(before.sessions).toEqual(["fix", "incident"]);
    const started = Date.now();
    const r = airlock("demo", "--json");
    const elapsed = Date.now() - started;
    expect(r.code, r.stderr).toBe(0);
    const result = r.json();
    expect(result.ok).toBe(true);
    expect(result.checks.length).toBeGreaterThanOrEqual(15);
    expect(elapsed).toBeLessThan(60_000);
    expect(processesUnder(join(projectDir, ".airlock"))).toBe(0);
    expect(result.stateDir).toBe(join(projectDir, ".airlock", "demo"));
    expect(listed()).toEqual(before);
    // Nor did it start the project's own cluster, or leave its own running.
    expect(airlock("cluster", "status", "--json").json().state).toBe("stopped");
  }, 180_000);
});
