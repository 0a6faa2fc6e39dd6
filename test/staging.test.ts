/**
 * Agent sessions on the local backend, against real clusters: what the
 * agent may do in its work database, what it may not reach, its limits, and
 * sessions that come and go without leaving anything behind.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { parseConfig } from "../src/config/config.ts";
import { type Project, localClusterOptions } from "../src/config/load.ts";
import { AirlockError } from "../src/errors.ts";
import { openCluster } from "../src/pg/cluster.ts";
import { type PgTarget, formatUrl, makeTarget, openClient, withClient } from "../src/pg/connect.ts";
import { type SnapshotManifest, removeSnapshot } from "../src/snapshot/store.ts";
import { sessionObjectNames, templateName } from "../src/staging/local-backend.ts";
import { defaultSandbox } from "../src/staging/sandbox.ts";
import { agentConnection, backendFor, createSession, destroySession, gcSessions, listSessions, readSession } from "../src/staging/sessions.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { caught } from "./helpers/errors.ts";
import { captureInto, createTestProject, removeTestProject } from "./helpers/project.ts";

const SECRET = "staging-test-secret-0123456789";
const BIN = resolve("bin/airlock.mjs");
let prodCluster: TestCluster;
let prod: PgTarget;
let project: Project;
let snapshot: SnapshotManifest;

async function adminQuery(sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  const cluster = openCluster(localClusterOptions(project))!;
  return withClient(cluster.adminTarget(), { step: "test", searchPath: "public" }, async (c) => (await c.query(sql, values)).rows);
}

beforeAll(async () => {
  prodCluster = await startTestCluster("staging-prod");
  prod = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  project = await createTestProject("staging-project", `export default { staging: { connectionLimit: 3, statementTimeout: "1s" } };\n`);
  const rules = parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules;
  snapshot = await captureInto(project, prod, SECRET, rules);
});

afterAll(async () => {
  await removeTestProject(project);
  await prodCluster?.close();
});

describe("a session's work database belongs to the agent", () => {
  it("is ready quickly and lets the agent run any DDL and DML in work", async () => {
    const started = Date.now();
    const s = await createSession(project, { name: "owner" });
    const elapsed = Date.now() - started;
    console.log(`first session (restores the template) ready in ${elapsed} ms`);
    const t2 = Date.now();
    const s2 = await createSession(project, { name: "owner-two" });
    console.log(`second session from the same snapshot ready in ${Date.now() - t2} ms`);
    expect(readSession(project, s.id).snapshotId).toBe(snapshot.id);
    const { url } = agentConnection(project, s.id);
    await withClient(url, { step: "test", searchPath: "public" }, async (c) => {
      expect((await c.query("SELECT current_user AS u, current_database() AS d")).rows[0]).toEqual({
        u: sessionObjectNames(s.id).role,
        d: sessionObjectNames(s.id).work,
      });
      await c.query("CREATE TABLE scratch (id int PRIMARY KEY, note text)");
      await c.query("ALTER TABLE scratch ADD COLUMN extra int");
      await c.query("INSERT INTO scratch VALUES (1, 'a', 2)");
      await c.query("DROP TABLE scratch");
      await c.query("DELETE FROM gallery_images WHERE id < 100");
      await c.query("UPDATE guests SET city = 'Elsewhere' WHERE id = 1");
      await c.query("INSERT INTO gallery_images (title, url, category) VALUES ('new', 'https://example.com/x.jpg', 'rooms')");
      await c.query("ALTER TABLE bookings ADD COLUMN agent_flag boolean");
      await c.query("CREATE INDEX ON bookings (status)");
      await c.query("ALTER TYPE booking_status ADD VALUE 'archived'");
      await c.query("DROP VIEW published_gallery");
    });
    // Base stays the untouched snapshot.
    const base = await adminQuery(`SELECT count(*)::int AS n FROM pg_database WHERE datname = $1`, [sessionObjectNames(s.id).base]);
    expect(base).toEqual([{ n: 1 }]);
    await destroySession(project, s.id);
    await destroySession(project, s2.id);
  });
});

describe("the agent cannot reach what is not its own", () => {
  it("cannot connect to base, another session's work or postgres, cannot create roles or read server files", async () => {
    const a = await createSession(project, { name: "fence-a" });
    const b = await createSession(project, { name: "fence-b" });
    const agentA = agentConnection(project, a.id).target;
    const connectAs = (database: string) => openClient(makeTarget({ ...agentA, password: agentA.password!, database }), { step: "test", searchPath: "public" });
    for (const db of [sessionObjectNames(a.id).base, sessionObjectNames(b.id).work, "postgres", "template1"]) {
      // Refused at the door (the supervisor's proxy), before Postgres sees it.
      const err = await caught(connectAs(db));
      expect(err.code, db).toBe("AIRLOCK_AUTH_FAILED");
      expect(err.message, db).toContain(`may only connect to database ${sessionObjectNames(a.id).work}`);
    }
    await withClient(agentA, { step: "test", searchPath: "public" }, async (c) => {
      expect(
        (await caught(c.query("CREATE ROLE sneaky LOGIN").catch((e) => Promise.reject(new AirlockError("AIRLOCK_PG_ERROR", String(e.code)))))).message,
      ).toBe("42501");
      expect(
        (await caught(c.query("SELECT pg_read_file('postgresql.conf')").catch((e) => Promise.reject(new AirlockError("AIRLOCK_PG_ERROR", String(e.code))))))
          .message,
      ).toBe("42501");
      const su = await c.query("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user");
      expect(su.rows[0]).toEqual({ rolsuper: false, rolcreaterole: false, rolcreatedb: false });
    });
    await destroySession(project, a.id);
    await destroySession(project, b.id);
  });
});

describe("the agent's limits", () => {
  it("refuses connections past the session's limit without affecting other sessions, and cancels long statements", async () => {
    const a = await createSession(project, { name: "limits-a" });
    const b = await createSession(project, { name: "limits-b" });
    const clients: pg.Client[] = [];
    try {
      for (let i = 0; i < 3; i++) clients.push(await openClient(agentConnection(project, a.id).target, { step: "test", searchPath: "public" }));
      const err = await caught(openClient(agentConnection(project, a.id).target, { step: "test", searchPath: "public" }));
      expect(err.code).toBe("AIRLOCK_TOO_MANY_CONNECTIONS");
      // The other session still connects.
      await withClient(agentConnection(project, b.id).target, { step: "test", searchPath: "public" }, async (c) =>
        expect((await c.query("SELECT 1 AS x")).rows).toEqual([{ x: 1 }]),
      );
      const timeout = await clients[0]!.query("SELECT pg_sleep(3)").then(
        () => "finished",
        (e: { code?: string }) => e.code,
      );
      expect(timeout).toBe("57014");
    } finally {
      for (const c of clients) await c.end().catch(() => undefined);
      await destroySession(project, a.id);
      await destroySession(project, b.id);
    }
  });
});

describe("sessions come and go without leaving anything behind", () => {
  it("down removes the databases and the role; gc removes only expired sessions", async () => {
    const now = new Date();
    const short = await createSession(project, { name: "gc-short", ttlMs: 60_000, now });
    const long = await createSession(project, { name: "gc-long", ttlMs: 10 * 3_600_000, now });
    const kept = await createSession(project, { name: "gc-kept", keep: true, now });
    expect(await gcSessions(project, new Date(now.getTime() + 30_000))).toEqual([]);
    expect(await gcSessions(project, new Date(now.getTime() + 3_600_000))).toEqual([short.id]);
    expect(listSessions(project).map((s) => s.id)).toEqual(expect.arrayContaining([long.id, kept.id]));
    expect(listSessions(project).map((s) => s.id)).not.toContain(short.id);
    for (const s of [short, long]) {
      if (s === long) await destroySession(project, s.id);
      const names = sessionObjectNames(s.id);
      expect(await adminQuery("SELECT datname FROM pg_database WHERE datname = ANY($1)", [[names.base, names.work]])).toEqual([]);
      expect(await adminQuery("SELECT rolname FROM pg_roles WHERE rolname = $1", [names.role])).toEqual([]);
    }
    expect(await gcSessions(project, new Date(now.getTime() + 1000 * 3_600_000))).toEqual([]);
    await destroySession(project, kept.id);
  });

  it("fails clearly for an unknown snapshot, a taken name or a corrupt snapshot, and leaves nothing behind", async () => {
    const sessionsBefore = existsSync(project.statePath("sessions")) ? readdirSync(project.statePath("sessions")) : [];
    const dbsBefore = await adminQuery("SELECT datname FROM pg_database ORDER BY 1");
    expect((await caught(createSession(project, { snapshotId: "snap-20200101-000000-abcdef" }))).code).toBe("AIRLOCK_SNAPSHOT_NOT_FOUND");
    expect((await caught(createSession(project, { name: "Bad Name" }))).code).toBe("AIRLOCK_BAD_SESSION_NAME");
    const taken = await createSession(project, { name: "taken" });
    expect((await caught(createSession(project, { name: "taken" }))).code).toBe("AIRLOCK_SESSION_EXISTS");
    await destroySession(project, taken.id);

    const corrupt = await captureInto(project, prod, SECRET, parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules);
    const file = join(project.statePath("snapshots", corrupt.id), "data/public.bookings.copy.gz");
    const bytes = readFileSync(file);
    bytes[20] = bytes[20]! ^ 0xff;
    writeFileSync(file, bytes);
    expect((await caught(createSession(project, { snapshotId: corrupt.id, name: "from-corrupt" }))).code).toBe("AIRLOCK_SNAPSHOT_CORRUPT");
    const sessionsAfter = existsSync(project.statePath("sessions")) ? readdirSync(project.statePath("sessions")) : [];
    expect(sessionsAfter.sort()).toEqual(sessionsBefore.sort());
    expect(await adminQuery("SELECT datname FROM pg_database ORDER BY 1")).toEqual(dbsBefore);
    removeSnapshot(project.statePath("snapshots"), corrupt.id);
  });
});

describe("airlock run gives the agent the staging URL and nothing else", () => {
  it("passes DATABASE_URL and PG* for the session and scrubs production URLs and Airlock secrets", async () => {
    const prodUrl = formatUrl(
      makeTarget({ host: "127.0.0.1", port: prodCluster.cluster.port, database: "production", user: "airlock", password: "prod-Secret-pw-77" }),
      true,
    );
    const agent = "const e = process.env; console.log('ENV=' + JSON.stringify(e));";
    const sandbox = defaultSandbox() === undefined ? ["--sandbox", "none"] : [];
    const r = spawnSync(process.execPath, [BIN, "run", "--name", "run-env", ...sandbox, "--", process.execPath, "-e", agent], {
      cwd: project.dir,
      encoding: "utf8",
      env: {
        ...process.env,
        PROD_DATABASE_URL: prodUrl,
        AIRLOCK_SECRET: SECRET,
        PULUMI_CONFIG_PASSPHRASE: "pulumi-passphrase-123",
        PGPASSWORD: "prod-Secret-pw-77",
        APP_REPLICA_URL: prodUrl.replace("production", "replica"),
        HARMLESS_SETTING: "stays",
      },
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const line = r.stdout.split("\n").find((l) => l.startsWith("ENV="))!;
    const env = JSON.parse(line.slice(4)) as Record<string, string>;
    const { url } = agentConnection(project, "run-env");
    expect(env.DATABASE_URL).toBe(url);
    expect(env.PGDATABASE).toBe(sessionObjectNames("run-env").work);
    expect(env.PGUSER).toBe(sessionObjectNames("run-env").role);
    expect(env.AIRLOCK_SESSION).toBe("run-env");
    // An allowlist: a variable the user did not list in run.env does not reach the agent, however harmless.
    expect(env.HARMLESS_SETTING).toBeUndefined();
    expect(env.PATH).toBe(process.env.PATH);
    for (const name of ["PROD_DATABASE_URL", "AIRLOCK_SECRET", "PULUMI_CONFIG_PASSPHRASE", "APP_REPLICA_URL"]) expect(env[name], name).toBeUndefined();
    const all = JSON.stringify(env);
    for (const secret of ["prod-Secret-pw-77", SECRET, "pulumi-passphrase-123", `127.0.0.1:${prodCluster.cluster.port}`]) expect(all).not.toContain(secret);
    // The session is kept for review, and its URL works.
    expect(readSession(project, "run-env").id).toBe("run-env");
    await withClient(url, { step: "test", searchPath: "public" }, async (c) =>
      expect((await c.query("SELECT count(*)::int AS n FROM guests")).rows[0].n).toBe(400),
    );
    await destroySession(project, "run-env");
  });

  it("returns the agent's exit code and keeps the session", () => {
    const r = spawnSync(
      process.execPath,
      [BIN, "run", "--name", "run-exit", ...(defaultSandbox() === undefined ? ["--sandbox", "none"] : []), "--", process.execPath, "-e", "process.exit(7)"],
      { cwd: project.dir, encoding: "utf8", timeout: 120_000 },
    );
    expect(r.status).toBe(7);
    expect(r.stderr).toContain("session run-exit is kept");
    const down = spawnSync(process.execPath, [BIN, "down", "run-exit"], { cwd: project.dir, encoding: "utf8" });
    expect(down.status).toBe(0);
  });
});

describe("a killed `airlock up` leaves nothing that ls hides, gc ignores or down refuses", () => {
  const airlock = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: project.dir, encoding: "utf8", timeout: 120_000 });
  const sessionPath = (id: string) => join(project.statePath("sessions"), `${id}.json`);
  const writePlaceholder = (id: string, content: unknown) => writeFileSync(sessionPath(id), JSON.stringify(content), { mode: 0o600 });
  /** A pid no process has any more. */
  const deadPid = () => Number(spawnSync(process.execPath, ["-e", "console.log(process.pid)"], { encoding: "utf8" }).stdout.trim());

  async function waitUntil(ok: () => boolean, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!ok()) {
      if (Date.now() > until) throw new Error("timed out");
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** What a killed `up` can leave in the cluster: both databases and the agent's role (whichever it had not made yet, made here). */
  async function halfMake(id: string): Promise<void> {
    const n = sessionObjectNames(id);
    for (const db of [n.base, n.work]) await adminQuery(`CREATE DATABASE "${db}"`).catch(() => undefined);
    await adminQuery(`CREATE ROLE "${n.role}" LOGIN CONNECTION LIMIT 3 IN ROLE airlock_agents`).catch(() => undefined);
    expect(await leftovers(id)).toHaveLength(3);
  }

  async function leftovers(id: string): Promise<string[]> {
    const n = sessionObjectNames(id);
    const dbs = await adminQuery("SELECT datname AS name FROM pg_database WHERE datname = ANY($1)", [[n.base, n.work]]);
    const roles = await adminQuery("SELECT rolname AS name FROM pg_roles WHERE rolname = $1", [n.role]);
    return [...dbs, ...roles].map((r) => String(r.name));
  }

  beforeAll(async () => {
    await (await backendFor(project, "local")).checkAvailable();
  });

  it("ls shows it broken; gc removes it with its databases, role and half-restored template, and leaves a live one alone", async () => {
    // A real `airlock up`, killed -9 as soon as it has claimed its name.
    const child = spawn(process.execPath, [BIN, "up", "--name", "killed"], { cwd: project.dir, stdio: "ignore" });
    const exited = new Promise((r) => child.once("exit", r));
    await waitUntil(() => existsSync(sessionPath("killed")) && readFileSync(sessionPath("killed"), "utf8").includes("creating"), 60_000);
    child.kill("SIGKILL");
    await exited;
    expect(JSON.parse(readFileSync(sessionPath("killed"), "utf8")).creating.pid).toBe(child.pid);
    await halfMake("killed");
    // A template restore it left half-done, with a connection still in it.
    const loading = "airlock_tpl_20990101_000000_abcdef_loading";
    await adminQuery(`CREATE DATABASE ${loading}`);
    const inLoading = await openClient(openCluster(localClusterOptions(project))!.adminTarget(loading), { step: "test" });

    // Other claims: a live `up` (this process), a pid reused by another process, an older Airlock's `{}` (fresh and old).
    writePlaceholder("live", { creating: { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), backend: "local" } });
    writePlaceholder("reused", { creating: { pid: process.pid, pidStart: "1", host: hostname(), startedAt: new Date().toISOString(), backend: "local" } });
    writePlaceholder("legacy-new", {});
    writePlaceholder("legacy-old", {});
    const old = new Date(Date.now() - 20 * 60_000);
    utimesSync(sessionPath("legacy-old"), old, old);

    const ls = airlock("ls", "--json");
    expect(ls.status, ls.stderr).toBe(0);
    const states = Object.fromEntries((JSON.parse(ls.stdout) as { id: string; state: string }[]).map((s) => [s.id, s.state]));
    expect(states).toMatchObject({ killed: "broken", reused: "broken", "legacy-old": "broken", live: "creating", "legacy-new": "creating" });
    const text = airlock("ls");
    expect(text.stdout).toMatch(/killed .* broken/);
    expect(text.stdout).toContain(`killed: its \`airlock up\` (pid ${child.pid}`);
    expect(airlock("url", "killed").stderr).toContain("AIRLOCK_SESSION_BROKEN");

    const downLive = airlock("down", "live");
    expect(downLive.status).toBe(1);
    expect(downLive.stderr).toContain("still being created");

    const gc = airlock("gc", "--json");
    expect(gc.status, gc.stderr).toBe(0);
    expect((JSON.parse(gc.stdout) as { destroyed: string[] }).destroyed.sort()).toEqual(["killed", "legacy-old", "reused"]);
    for (const id of ["killed", "legacy-old", "reused"]) expect(existsSync(sessionPath(id)), id).toBe(false);
    expect(await leftovers("killed")).toEqual([]);
    expect(await adminQuery("SELECT datname FROM pg_database WHERE datname = $1", [loading])).toEqual([]);
    await inLoading.end().catch(() => undefined);
    for (const id of ["live", "legacy-new"]) expect(existsSync(sessionPath(id)), id).toBe(true);
    expect(listSessions(project).filter((s) => ["live", "legacy-new"].includes(s.id))).toHaveLength(2);
    for (const id of ["live", "legacy-new"]) rmSync(sessionPath(id));
  });

  it("down removes a broken session and whatever of it exists, by its id alone", async () => {
    writePlaceholder("dead-up", { creating: { pid: deadPid(), host: hostname(), startedAt: new Date().toISOString(), backend: "local" } });
    await halfMake("dead-up");
    expect((await caught(Promise.resolve().then(() => readSession(project, "dead-up")))).code).toBe("AIRLOCK_SESSION_BROKEN");
    const down = airlock("down", "dead-up", "--json");
    expect(down.status, down.stderr).toBe(0);
    expect(JSON.parse(down.stdout)).toEqual({ destroyed: "dead-up" });
    expect(existsSync(sessionPath("dead-up"))).toBe(false);
    expect(await leftovers("dead-up")).toEqual([]);
    // The name is free again.
    const s = await createSession(project, { name: "dead-up" });
    await destroySession(project, s.id);
  });

  it("ends a CREATE DATABASE of the session a killed up left running in the server before dropping", async () => {
    // CREATE DATABASE … TEMPLATE waits (5 s) while its template has a connection: a creation still in flight.
    await adminQuery("CREATE DATABASE inflight_tpl");
    const cluster = openCluster(localClusterOptions(project))!;
    const holder = await openClient(cluster.adminTarget("inflight_tpl"), { step: "test" });
    const creator = await openClient(cluster.adminTarget(), { step: "test" });
    const creating = creator.query(`CREATE DATABASE "${sessionObjectNames("inflight").base}" TEMPLATE inflight_tpl`).then(
      () => "created",
      (e: { code?: string }) => e.code,
    );
    await new Promise((r) => setTimeout(r, 300));
    await (await backendFor(project, "local")).destroy("inflight", {});
    expect(await creating).toBe("57P01"); // terminated by destroy, not refused for the template's connection
    expect(await leftovers("inflight")).toEqual([]);
    await Promise.all([holder.end(), creator.end()].map((p) => p.catch(() => undefined)));
    await adminQuery("DROP DATABASE inflight_tpl WITH (FORCE)");
  });

  it("the next up drops the half-restored template a killed up left, even with a connection still in it", async () => {
    const loading = `${templateName(snapshot.id)}_loading`;
    await adminQuery(`CREATE DATABASE ${loading}`);
    const inLoading = await openClient(openCluster(localClusterOptions(project))!.adminTarget(loading), { step: "test" });
    const s = await createSession(project, { name: "after-kill" });
    expect(await adminQuery("SELECT datname FROM pg_database WHERE datname = $1", [loading])).toEqual([]);
    await inLoading.end().catch(() => undefined);
    await destroySession(project, s.id);
  });
});

describe("two commands starting a project's first session at once", () => {
  it("both sessions come up: one creates the staging cluster while the other waits for it, and no lock is left behind", async () => {
    const fresh = await createTestProject("staging-race");
    try {
      cpSync(project.statePath("snapshots"), fresh.statePath("snapshots"), { recursive: true });
      const sessions = await Promise.all([createSession(fresh, { name: "race-a" }), createSession(fresh, { name: "race-b" })]);
      for (const s of sessions) {
        const r = await withClient(agentConnection(fresh, s.id).target, { step: "test", searchPath: "public" }, (c) =>
          c.query("SELECT count(*)::int AS n FROM guests"),
        );
        expect(r.rows[0].n).toBeGreaterThan(0);
      }
      expect(existsSync(`${resolve(localClusterOptions(fresh).dir)}.lock`)).toBe(false);
    } finally {
      await removeTestProject(fresh);
    }
  });
});
