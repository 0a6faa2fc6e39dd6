/**
 * Limits the agent is given (connections, statement time, disk) are
 * enforced from outside its reach, and one session cannot starve another.
 * Each attack is one an adversarial agent tried inside its own session:
 * lifting its own statement_timeout, storms of connections and stalled
 * handshakes, writing past its disk, granting its database to PUBLIC, and
 * the supervisor that enforces all of it being killed.
 */
import { spawnSync } from "node:child_process";
import { Socket } from "node:net";
import { resolve } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { parseConfig } from "../src/config/config.ts";
import { type Project, localClusterDir, localClusterOptions } from "../src/config/load.ts";
import { openCluster } from "../src/pg/cluster.ts";
import { type PgTarget, makeTarget, withClient } from "../src/pg/connect.ts";
import { agentConnection, createSession, destroySession, sessionLimits, readSession } from "../src/staging/sessions.ts";
import { supervisorState } from "../src/staging/supervisor.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { captureInto, createTestProject, removeTestProject } from "./helpers/project.ts";

const SECRET = "limits-test-secret-0123456789";
const BIN = resolve("bin/airlock.mjs");
const STATEMENT_LIMIT_MS = 3_000;
const QUOTA_MB = 50;
let prodCluster: TestCluster;
let project: Project;

/** A raw node-pg client as the agent (no Airlock pins: the agent's own session). */
function agentClient(sessionId: string, database?: string): pg.Client {
  const t = agentConnection(project, sessionId).target;
  const c = new pg.Client({
    host: t.host,
    port: t.port,
    user: t.user,
    password: t.password,
    database: database ?? t.database,
    connectionTimeoutMillis: 10_000,
  });
  // A backend the supervisor ends reports it on the query; the client's late error event is expected.
  c.on("error", () => undefined);
  return c;
}

async function agentQuery(sessionId: string, sql: string): Promise<pg.QueryResult> {
  const c = agentClient(sessionId);
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function errorOf(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error("expected an error");
}

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await ok()) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

beforeAll(async () => {
  prodCluster = await startTestCluster("limits-prod");
  const prod: PgTarget = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  project = await createTestProject(
    "limits-project",
    `export default { staging: { connectionLimit: 20, statementTimeout: "${STATEMENT_LIMIT_MS}ms", diskQuota: "${QUOTA_MB}MB" } };\n`,
  );
  const rules = parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules;
  await captureInto(project, prod, SECRET, rules);
}, 120_000);

afterAll(async () => {
  await removeTestProject(project);
  await prodCluster?.close();
});

describe("13. one session cannot lift its own limits or starve another session (connections, statement time, disk)", () => {
  it("a statement past the session's limit is cancelled whatever statement_timeout the agent set, on this connection or by ALTER ROLE", async () => {
    const s = await createSession(project, { name: "sleeper" });
    try {
      const c = agentClient(s.id);
      await c.connect();
      await c.query("SET statement_timeout = 0");
      let started = Date.now();
      let err = await errorOf(c.query("SELECT pg_sleep(60)"));
      let took = Date.now() - started;
      await c.end().catch(() => undefined);
      console.log(`a 60 s sleep with statement_timeout = 0 ended after ${took} ms (limit ${STATEMENT_LIMIT_MS} ms): ${err.message}`);
      expect(err.message).toMatch(/cancel|terminat/i);
      expect(took).toBeLessThan(STATEMENT_LIMIT_MS + 5_000);

      await agentQuery(s.id, `ALTER ROLE CURRENT_USER SET statement_timeout = 0; ALTER DATABASE ${s.agent.database} SET statement_timeout = 0`);
      started = Date.now();
      err = await errorOf(agentQuery(s.id, "SELECT pg_sleep(60)"));
      took = Date.now() - started;
      expect(err.message).toMatch(/cancel|terminat/i);
      expect(took).toBeLessThan(STATEMENT_LIMIT_MS + 5_000);
    } finally {
      await destroySession(project, s.id);
    }
  });

  it("one session's connection storm and stalled handshakes leave another session every one of its connections", async () => {
    const a = await createSession(project, { name: "storm" });
    const b = await createSession(project, { name: "calm" });
    const port = a.agent.port;
    const stalled: Socket[] = [];
    let stop = false;
    const loops: Array<Promise<void>> = [];
    try {
      // The agent lifts its database's connection limit: it changes nothing.
      await agentQuery(a.id, `ALTER DATABASE ${a.agent.database} CONNECTION LIMIT 500`);
      for (let i = 0; i < 100; i++) {
        const sock = new Socket();
        sock.on("error", () => undefined);
        sock.connect(port, "127.0.0.1");
        stalled.push(sock);
      }
      for (let i = 0; i < 300; i++) {
        loops.push(
          (async () => {
            while (!stop) {
              const c = agentClient(a.id);
              c.on("error", () => undefined);
              await c
                .connect()
                .then(() => c.end())
                .catch(() => undefined);
            }
          })(),
        );
      }
      await new Promise((r) => setTimeout(r, 1_500));
      const held: pg.Client[] = [];
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, async () => {
          const c = agentClient(b.id);
          c.on("error", () => undefined);
          await c.connect();
          held.push(c);
          return (await c.query("SELECT 1 AS one")).rows[0].one as number;
        }),
      );
      const failures = results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason));
      expect(failures).toEqual([]);
      // A's own cap held during the storm, whatever its database's limit says.
      const extra = await Promise.allSettled(
        Array.from({ length: 25 }, async () => {
          const c = agentClient(a.id);
          c.on("error", () => undefined);
          await c.connect();
          held.push(c);
        }),
      );
      expect(extra.filter((r) => r.status === "fulfilled").length).toBeLessThanOrEqual(20);
      await Promise.all(held.map((c) => c.end().catch(() => undefined)));
    } finally {
      stop = true;
      for (const s of stalled) s.destroy();
      await Promise.all(loops);
      await destroySession(project, a.id);
      await destroySession(project, b.id);
    }
  }, 60_000);

  it("an agent's role reaches only its own work database, whatever it grants, through the proxy or the socket", async () => {
    const a = await createSession(project, { name: "granter" });
    const b = await createSession(project, { name: "visitor" });
    try {
      await agentQuery(a.id, `GRANT CONNECT ON DATABASE ${a.agent.database} TO PUBLIC; GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC`);
      const viaProxy = await errorOf(
        agentQuery(b.id, "SELECT 1")
          .then(() => undefined)
          .then(async () => {
            const c = agentClient(b.id, a.agent.database);
            await c.connect();
            await c.end();
          }),
      );
      expect(viaProxy.message).toMatch(/may only connect|no pg_hba|not permitted|denied/i);
      // Straight to the server's socket, with B's password: pg_hba.conf refuses it.
      const cluster = openCluster(localClusterOptions(project))!;
      const t = agentConnection(project, b.id).target;
      const direct = await errorOf(
        withClient(
          makeTarget({ host: cluster.socketDir, port: cluster.port, database: a.agent.database, user: t.user, password: t.password! }),
          { step: "test" },
          (c) => c.query("SELECT 1"),
        ),
      );
      expect(direct.message).toMatch(/pg_hba\.conf|rejects connection/);
    } finally {
      await destroySession(project, a.id);
      await destroySession(project, b.id);
    }
  });

  it("a session writing past its disk quota is stopped with a message naming the quota; another session keeps writing", async () => {
    const a = await createSession(project, { name: "filler" });
    const b = await createSession(project, { name: "writer" });
    try {
      const quota = QUOTA_MB * 1024 * 1024;
      const started = Date.now();
      const err = await errorOf(agentQuery(a.id, "CREATE TABLE filler AS SELECT g AS id, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 400000) g"));
      console.log(`writing ~400 MB into a ${QUOTA_MB} MB quota ended after ${Date.now() - started} ms: ${err.message}`);
      expect(err.message).toMatch(/terminat|quota|connection/i);
      await waitFor("the supervisor to report the stop", () => sessionLimits(project, readSession(project, a.id))?.stopped !== null, 5_000);
      const usage = sessionLimits(project, readSession(project, a.id))!;
      expect(usage.stopped).toMatch(new RegExp(`disk quota of ${QUOTA_MB} MB is used up \\(\\d+ MB in its database\\)`));
      // The aborted write's files are gone again; the size when it was stopped is in the message.
      const atStop = Number(/\((\d+) MB in its database\)/.exec(usage.stopped!)![1]) * 1024 * 1024;
      console.log(`stopped at ${atStop / 1024 / 1024} MB of a ${QUOTA_MB} MB quota`);
      expect(atStop).toBeGreaterThanOrEqual(quota); // the message rounds to whole MB
      // The overshoot the README states: one check (250 ms) of writes and the time to end the backend.
      expect(atStop).toBeLessThan(quota + 200 * 1024 * 1024);
      const again = await errorOf(agentQuery(a.id, "SELECT 1"));
      expect(again.message).toContain(`disk quota of ${QUOTA_MB} MB`);
      // B goes on writing, and the cluster is up.
      await agentQuery(b.id, "CREATE TABLE still_writing AS SELECT g FROM generate_series(1, 10000) g");
      expect((await agentQuery(b.id, "SELECT count(*)::int AS n FROM still_writing")).rows[0].n).toBe(10_000);
      // airlock ls says so.
      const ls = spawnSync(process.execPath, [BIN, "ls", "--json"], { cwd: project.dir, encoding: "utf8" });
      const rows = JSON.parse(ls.stdout) as Array<{ id: string; state: string; limits?: { stopped: string | null; quotaBytes: number } }>;
      expect(rows.find((r) => r.id === a.id)).toMatchObject({ state: "stopped", limits: { quotaBytes: quota } });
      expect(rows.find((r) => r.id === b.id)).toMatchObject({ state: "ready" });
    } finally {
      await destroySession(project, a.id);
      await destroySession(project, b.id);
    }
  }, 60_000);

  it("a killed supervisor comes back; without it no agent connects, and cluster status says so", async () => {
    const s = await createSession(project, { name: "watched" });
    try {
      const dir = localClusterDir(project);
      const before = supervisorState(dir);
      expect(before.state).toBe("running");
      process.kill(before.workerPid!, "SIGKILL");
      const back = await waitFor(
        "a new worker",
        () => {
          const now = supervisorState(dir);
          return now.state === "running" && now.workerPid !== before.workerPid;
        },
        10_000,
      );
      console.log(`a killed worker was replaced in ${back} ms`);
      expect((await agentQuery(s.id, "SELECT 1 AS one")).rows[0].one).toBe(1);

      // Keeper and worker both killed: down, stays down, and no agent gets in.
      const now = supervisorState(dir);
      process.kill(now.keeperPid!, "SIGKILL");
      process.kill(now.workerPid!, "SIGKILL");
      await waitFor("the supervisor to be down", () => supervisorState(dir).state === "down", 5_000);
      const refused = await errorOf(agentQuery(s.id, "SELECT 1"));
      expect(refused.message).toMatch(/ECONNREFUSED|ECONNRESET/);
      const status = spawnSync(process.execPath, [BIN, "cluster", "status"], { cwd: project.dir, encoding: "utf8" });
      expect(status.stdout).toMatch(/supervisor: down/);
      // The next command that opens the cluster starts it again.
      const other = await createSession(project, { name: "restarts-it" });
      expect(supervisorState(dir).state).toBe("running");
      expect((await agentQuery(s.id, "SELECT 1 AS one")).rows[0].one).toBe(1);
      await destroySession(project, other.id);
    } finally {
      await destroySession(project, s.id);
    }
  }, 60_000);
});
