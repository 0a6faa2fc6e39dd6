/**
 * The docker backend on a real Docker engine: `airlock up --backend docker`
 * against the demo snapshot, the agent's limits and isolation inside the
 * container, the whole workflow (run → diff → approve → promote → rollback)
 * on a container session, a killed container, a query over the memory limit,
 * the disk quota, and that nothing with this project's labels is left. Skips,
 * saying why, where no engine or no session image is present.
 */
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { type Socket, connect } from "node:net";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { loadProject } from "../src/config/load.ts";
import { type PgTarget, formatUrl, makeTarget, parseTarget, withClient } from "../src/pg/connect.ts";
import { projectLabel, sessionAdminTarget } from "../src/staging/sessions.ts";
import { defaultSandbox } from "../src/staging/sandbox.ts";
import { AUTHENTICATION_TIMEOUT_SECONDS } from "../src/staging/container-spec.ts";
import { checksums } from "./helpers/database-state.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { runCli } from "./helpers/cli.ts";
import { createTestProject } from "./helpers/project.ts";
import { dockerForTests, labelled } from "./helpers/docker.ts";

const engine = await dockerForTests();
if (!engine.ok) console.warn(`test/docker-backend.test.ts skipped: ${engine.reason}`);

const SANDBOX = defaultSandbox() === undefined ? ["--sandbox", "none"] : [];
const AGENT = resolve("seeders/demo/agent.mjs");
const SECRET = "docker-test-secret-0123456789abcdef";
const CONNECTION_LIMIT = 4;
let prodCluster: TestCluster;
let prod: PgTarget;
let projectDir: string;
let env: NodeJS.ProcessEnv;

function airlock(...args: string[]) {
  return runCli(projectDir, env, args);
}

/** The agent's target of a session, from `airlock url` (what an agent is handed). */
function agentTarget(session: string, database?: string): PgTarget {
  const r = airlock("url", session);
  expect(r.code, r.stderr).toBe(0);
  const t = parseTarget(r.stdout.trim());
  return database === undefined ? t : makeTarget({ ...t, database });
}

async function sqlstateOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: { code?: string; pg?: { sqlstate?: string } }) => e.pg?.sqlstate ?? e.code,
  );
}

describe.skipIf(!engine.ok)("the docker backend, on a real engine", () => {
  const docker = engine.ok ? engine.docker : undefined!;

  beforeAll(async () => {
    prodCluster = await startTestCluster("docker-prod");
    prod = await prodCluster.createDatabase("production");
    await seedDemo({ target: prod, scale: 1 });
    const network = process.env.AIRLOCK_TEST_DOCKER_NETWORK ?? "auto";
    projectDir = (
      await createTestProject(
        "docker-project",
        `export default { masking: { rules: ${JSON.stringify(DEMO_MASKING_RULES)} }, staging: { connectionLimit: ${CONNECTION_LIMIT}, statementTimeout: "20s", diskQuota: "200MB", docker: { image: ${JSON.stringify(engine.ok ? engine.image : "")}, network: "${network}", memory: "256MB" } } };\n`,
      )
    ).dir;
    env = { ...process.env, PROD_DATABASE_URL: formatUrl(prodCluster.cluster.tcpTarget("production"), true), AIRLOCK_SECRET: SECRET };
    const snap = airlock("snapshot", "--json");
    expect(snap.code, snap.stderr).toBe(0);
  }, 300_000);

  afterAll(async () => {
    if (projectDir === undefined) return;
    const project = await loadProject({ dir: projectDir });
    const label = `airlock.project=${projectLabel(project)}`;
    for (const s of (airlock("ls", "--json").json() as Array<{ id: string }>) ?? []) airlock("down", s.id);
    // Nothing of this project's is left on the engine: no container, network or volume.
    const left = await labelled(docker, label);
    airlock("cluster", "destroy", "--erase");
    await prodCluster?.close();
    rmSync(projectDir, { recursive: true, force: true });
    expect(left).toEqual({ containers: [], networks: [], volumes: [] });
  }, 120_000);

  it("up --backend docker: the agent URL connects, base and work equal a local session's of the same snapshot, the agent's limits and isolation hold", async () => {
    const up = airlock("up", "--backend", "docker", "--name", "box", "--json");
    expect(up.code, up.stderr).toBe(0);
    const local = airlock("up", "--backend", "local", "--name", "ref", "--json");
    expect(local.code, local.stderr).toBe(0);
    const project = await loadProject({ dir: projectDir });
    for (const which of ["base", "work"] as const) {
      const inContainer = await checksums(await sessionAdminTarget(project, "box", which));
      expect(Object.keys(inContainer).length).toBeGreaterThan(5);
      expect(inContainer).toEqual(await checksums(await sessionAdminTarget(project, "ref", which)));
    }

    const agent = agentTarget("box");
    expect([agent.host, agent.database, agent.user]).toEqual(["127.0.0.1", "work", "agent"]);
    await withClient(agent, { step: "test", searchPath: "public" }, async (c) => {
      const me = (await c.query("SELECT current_user AS u, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su")).rows[0];
      expect(me).toEqual({ u: "agent", su: false });
      expect((await c.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("20s");
      await expect(sqlstateOf(c.query("COPY (SELECT 1) TO PROGRAM 'id'"))).resolves.toBe("42501");
      await expect(sqlstateOf(c.query("SELECT pg_read_file('/etc/passwd')"))).resolves.toBe("42501");
      await expect(sqlstateOf(c.query("CREATE ROLE sneaky SUPERUSER"))).resolves.toBe("42501");
      await expect(sqlstateOf(c.query("ALTER SYSTEM SET log_statement = 'all'"))).resolves.toBe("42501");
      await expect(sqlstateOf(c.query("ALTER ROLE agent LOGIN CONNECTION LIMIT -1"))).resolves.toBe("42501");
    });
    for (const db of ["base", "postgres", "template1"]) {
      expect(await sqlstateOf(withClient(agentTarget("box", db), { step: "test" }, async () => undefined)), `the agent must not reach ${db}`).toMatch(
        /^(28000|42501)$/,
      );
    }
    // The connection limit: the (limit+1)th connection is refused.
    const open: Array<() => Promise<void>> = [];
    try {
      for (let i = 0; i < CONNECTION_LIMIT; i++) {
        const { openClient } = await import("../src/pg/connect.ts");
        const c = await openClient(agent, { step: "test" });
        open.push(() => c.end());
      }
      expect(await sqlstateOf(withClient(agent, { step: "test" }, async () => undefined))).toBe("53300");
    } finally {
      for (const end of open) await end();
    }
    expect(airlock("down", "ref").code).toBe(0);
  }, 300_000);

  it("an agent stalling hundreds of connections before authenticating locks Airlock out of its container only for seconds", async () => {
    const agent = agentTarget("box");
    const admin = await sessionAdminTarget(await loadProject({ dir: projectDir }), "box", "base");
    // More sockets than the postmaster keeps processes for (2 × its backends), none of which ever sends a startup packet.
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 400; i++) {
        const s = connect({ host: agent.host, port: agent.port });
        s.on("error", () => undefined);
        sockets.push(s);
      }
      await new Promise((r) => setTimeout(r, 1000));
      const started = Date.now();
      let refused = 0;
      for (;;) {
        const state = await sqlstateOf(withClient(admin, { step: "test" }, async () => undefined));
        if (state === undefined) break;
        refused++;
        expect(Date.now() - started, `Airlock still locked out (${state})`).toBeLessThan(30_000);
        await new Promise((r) => setTimeout(r, 250));
      }
      console.log(`Airlock connected ${Date.now() - started} ms after the stalled connections, refused ${refused} times first`);
      expect(Date.now() - started).toBeLessThan(AUTHENTICATION_TIMEOUT_SECONDS * 1000 + 10_000);
    } finally {
      for (const s of sockets) s.destroy();
    }
  }, 120_000);

  it("run --backend docker → verified diff → approve → promote → rollback: production exactly as before", async () => {
    const before = await checksums(prod);
    const run = airlock("run", "--backend", "docker", "--name", "fixer", "--json", ...SANDBOX, "--", process.execPath, AGENT, "fix");
    expect(run.code, run.stderr).toBe(0);
    const diff = airlock("diff", "fixer", "--json");
    expect(diff.code, diff.stderr + diff.stdout.slice(0, 3000)).toBe(0);
    const d = diff.json();
    expect(d).toMatchObject({ verified: true, summary: { inserts: 0, updates: 1, deletes: 0, ddl: 1 }, hazards: [] });
    const approved = airlock("approve", d.id, "--by", "reviewer", "--yes");
    expect(approved.code, approved.stderr).toBe(0);
    const promoted = airlock("promote", d.id, "--json");
    expect(promoted.code, promoted.stderr).toBe(0);
    expect(await checksums(prod)).not.toEqual(before);
    const rollback = airlock("rollback", promoted.json().promotionId);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(await checksums(prod)).toEqual(before);
    expect(airlock("down", "fixer").code).toBe(0);
  }, 300_000);

  it("a killed session container shows as dead in `airlock ls`, and `airlock down` removes everything", async () => {
    expect(airlock("up", "--backend", "docker", "--name", "doomed").code).toBe(0);
    await docker.getContainer("airlock-doomed").kill();
    // The engine does not restart a container that was killed by hand (unless-stopped counts it as stopped).
    const row = (airlock("ls", "--json").json() as Array<{ id: string; state: string; container?: { detail: string } }>).find((s) => s.id === "doomed");
    expect(row?.state).toBe("dead");
    expect(row?.container?.detail).toMatch(/exited/);
    const diff = airlock("diff", "doomed");
    expect(diff.code).toBe(1);
    expect(diff.stderr).toMatch(/^AIRLOCK_SESSION_DEAD/m);
    expect(airlock("down", "doomed").code).toBe(0);
    expect(await labelled(docker, "airlock.session=doomed")).toEqual({ containers: [], networks: [], volumes: [] });
  }, 300_000);

  it("gc honours the expiry label: an expired session goes, and so does an expired container whose record was lost", async () => {
    expect(airlock("up", "--backend", "docker", "--name", "brief", "--ttl", "1s").code).toBe(0);
    expect(airlock("up", "--backend", "docker", "--name", "orphan", "--ttl", "1s").code).toBe(0);
    expect(airlock("up", "--backend", "docker", "--name", "kept", "--keep").code).toBe(0);
    // The orphan's record is lost (deleted by hand): only its container's labels say what it is and when it expires.
    rmSync(join(projectDir, ".airlock", "sessions", "orphan.json"));
    await new Promise((r) => setTimeout(r, 1500));
    const gc = airlock("gc", "--json");
    expect(gc.code, gc.stderr).toBe(0);
    expect([...gc.json().destroyed].sort()).toEqual(["brief", "orphan"]);
    for (const gone of ["brief", "orphan"]) expect(await labelled(docker, `airlock.session=${gone}`)).toEqual({ containers: [], networks: [], volumes: [] });
    expect((await labelled(docker, "airlock.session=kept")).containers).toHaveLength(1);
    expect(airlock("down", "kept").code).toBe(0);
  }, 300_000);

  it("a container whose restore fails (a damaged data file) fails `up` at once with its log lines, and leaves nothing", async () => {
    const project = await loadProject({ dir: projectDir });
    const snapshots = project.statePath("snapshots");
    const id = readdirSync(snapshots).find((d) => d.startsWith("snap-"))!;
    const manifest = JSON.parse(readFileSync(join(snapshots, id, "manifest.json"), "utf8")) as { tables: Array<{ file: string }> };
    const file = join(snapshots, id, manifest.tables[0]!.file);
    const original = readFileSync(file);
    const damaged = Buffer.from(original);
    damaged[damaged.length - 5] = (damaged[damaged.length - 5]! + 1) % 256;
    writeFileSync(file, damaged);
    try {
      const started = Date.now();
      const up = airlock("up", "--backend", "docker", "--name", "damaged");
      expect(up.code).toBe(1);
      expect(up.stderr).toMatch(/^AIRLOCK_CONTAINER_FAILED/m);
      expect(up.stderr).toContain("does not match its manifest's checksums");
      expect(Date.now() - started).toBeLessThan(60_000);
      expect(await labelled(docker, "airlock.session=damaged")).toEqual({ containers: [], networks: [], volumes: [] });
      expect((airlock("ls", "--json").json() as Array<{ id: string }>).map((s) => s.id)).not.toContain("damaged");
    } finally {
      writeFileSync(file, original);
    }
  }, 300_000);

  it("a query over the container's memory limit fails inside the container only; the session recovers", async () => {
    const agent = agentTarget("box");
    // 1 GB of text allocated and written at once in one backend (fast even on a loaded machine, so no time limit
    // can end it first), against a 256 MB limit with no swap.
    const hog = withClient(agent, { step: "test" }, async (c) => {
      await c.query("SELECT length(repeat('x', 1000000000))");
    });
    await expect(hog).rejects.toBeDefined();
    // The limit is what stopped it: the kernel killed the backend, or Postgres could not get the memory.
    const killed = /terminated by signal 9|out of memory/i;
    let logs = "";
    for (let i = 0; i < 50 && !killed.test(logs); i++) {
      await new Promise((r) => setTimeout(r, 200));
      logs = (await docker.getContainer("airlock-box").logs({ stdout: true, stderr: true, tail: 200 })).toString("utf8");
    }
    expect(logs).toMatch(killed);
    let recovered = false;
    for (let i = 0; i < 60 && !recovered; i++) {
      recovered = await withClient(
        agent,
        { step: "test", searchPath: "public" },
        async (c) => (await c.query("SELECT count(*)::int AS n FROM bookings")).rows[0].n > 0,
      ).catch(() => false);
      if (!recovered) await new Promise((r) => setTimeout(r, 1000));
    }
    expect(recovered).toBe(true);
    const row = (airlock("ls", "--json").json() as Array<{ id: string; state: string }>).find((s) => s.id === "box");
    expect(row?.state).toBe("ready");
  }, 300_000);

  it("the disk quota holds inside the container: past it, the agent's connections end and it cannot log in", async () => {
    const agent = agentTarget("box");
    // Uncompressible rows in 2.5 MB statements until the server ends the connection (57P01) or refuses the login
    // (28000). A loaded machine can cancel a statement at the time limit, or have the kernel kill a backend at the
    // memory limit while the disk lags behind the page cache: the agent then goes on, as a real one would.
    let written = 0;
    const interruptions: string[] = [];
    let ended = "not ended";
    while (ended === "not ended" && written < 600 * 2 ** 20) {
      const outcome = await withClient(agent, { step: "test", searchPath: "public" }, async (c) => {
        await c.query("CREATE TABLE IF NOT EXISTS ballast (pad text)");
        for (; written < 600 * 2 ** 20; written += 2.5 * 2 ** 20)
          await c.query("INSERT INTO ballast SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 800) g, generate_series(1, 100) r GROUP BY r");
      }).then(
        () => undefined,
        (e: Error & { code?: string; pg?: { sqlstate?: string } }) => `${e.pg?.sqlstate ?? e.code ?? "no sqlstate"}: ${e.message}`,
      );
      if (outcome === undefined) continue;
      if (/^(57P01|28000): /.test(outcome)) ended = outcome;
      else if (interruptions.push(outcome) > 20) ended = outcome;
      else await new Promise((r) => setTimeout(r, 1000));
    }
    const logs = (await docker.getContainer("airlock-box").logs({ stdout: true, stderr: true, tail: 200 })).toString("utf8");
    expect(ended, `after ${written / 2 ** 20} MB, interrupted by ${JSON.stringify(interruptions)}; the container's log:\n${logs}`).toMatch(/^(57P01|28000): /);
    expect(written).toBeGreaterThan(150 * 2 ** 20);
    expect(logs).toMatch(/over its disk quota of 209715200 bytes: the agent is stopped/);
    expect(await sqlstateOf(withClient(agent, { step: "test" }, async () => undefined))).toBe("28000");
  }, 300_000);
});
