/**
 * The embedded cluster stops by itself after `local.idleStop` with no
 * session of the project and no connection, leaving nothing behind, and the
 * next command starts it again; a live session or connection keeps it
 * running; `up` and `run` say that it keeps running and how it stops;
 * `cluster status` says when it will stop. Against a real cluster, with an
 * idle time of a few seconds.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/config.ts";
import { type Project, localClusterDir, localClusterOptions } from "../src/config/load.ts";
import { type LocalCluster, clusterStatus, openCluster, serverProcesses } from "../src/pg/cluster.ts";
import { openClient, withClient } from "../src/pg/connect.ts";
import { processAlive } from "../src/os/processes.ts";
import { claimForThisProcess } from "../src/config/claims.ts";
import { clusterLockFile, markClusterOpened } from "../src/staging/idle-stop.ts";
import { agentConnection, createSession, destroySession } from "../src/staging/sessions.ts";
import { supervisorPaths, supervisorState } from "../src/staging/supervisor.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";
import { findPgBinaries } from "../src/pg/binaries.ts";
import { captureInto, createTestProject, removeTestProject } from "./helpers/project.ts";

const BIN = resolve("bin/airlock.mjs");
const IDLE_MS = 3_000;
let prodCluster: TestCluster;
let project: Project;

function airlock(...args: string[]) {
  const env = { ...process.env };
  delete env.AIRLOCK_SECRET;
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: project.dir, encoding: "utf8", env, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, ok: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (ok()) return Date.now() - started;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

function staging(): LocalCluster {
  return openCluster(localClusterOptions(project))!;
}

const running = () => clusterStatus(staging()).state === "running";

/** The agent's own query through the supervisor's proxy. */
async function agentSelect(sessionId: string): Promise<number> {
  return withClient(
    agentConnection(project, sessionId).target,
    { step: "test" },
    async (c) => (await c.query<{ one: number }>("SELECT 1 AS one")).rows[0]!.one,
  );
}

/** Everything a stop must leave: no server process, no supervisor, no lock, pid files gone. */
function expectStoppedCleanly(before: { keeperPid?: number; workerPid?: number }): void {
  const dir = localClusterDir(project);
  expect(clusterStatus(staging()).state).toBe("stopped");
  expect(serverProcesses(staging())).toEqual([]);
  expect(supervisorState(dir).state).toBe("down");
  expect(existsSync(clusterLockFile(dir))).toBe(false);
  for (const pid of [before.keeperPid, before.workerPid]) if (pid !== undefined) expect(processAlive(pid), `pid ${pid}`).toBe(false);
}

beforeAll(async () => {
  prodCluster = await startTestCluster("idle-prod");
  const prod = await prodCluster.createDatabase("production");
  await withClient(prod, { step: "test", searchPath: "public" }, (c) =>
    c.query("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g"),
  );
  project = await createTestProject("idle-project", `export default { local: { idleStop: "${IDLE_MS / 1000}s" } };\n`);
  await captureInto(project, prod, "idle-test-secret-0123456789");
}, 120_000);

afterAll(async () => {
  await removeTestProject(project);
  await prodCluster?.close();
});

describe("local.idleStop", () => {
  it("is a duration with its unit or never; a bare number is refused", () => {
    expect(parseConfig({}).local.idleStop).toBe(30 * 60_000);
    expect(parseConfig({ local: { idleStop: "2h" } }).local.idleStop).toBe(2 * 3_600_000);
    expect(parseConfig({ local: { idleStop: "never" } }).local.idleStop).toBeNull();
    expect(() => parseConfig({ local: { idleStop: 30 } })).toThrow(/local\.idleStop: .*bare number 30.*"30m".*"never"/);
    expect(() => parseConfig({ local: { idleStop: "soon" } })).toThrow(/local\.idleStop: expected a duration.*"never"/);
    expect(() => parseConfig({ local: { idleStop: "10ms" } })).toThrow(/local\.idleStop: must be at least 1s/);
  });
});

describe("the embedded cluster's idle stop", () => {
  it("a live session keeps it running; once none is left it stops after the idle time, cleanly, and the next command starts it", async () => {
    const s = await createSession(project, { name: "live" });
    const dir = localClusterDir(project);
    await sleep(IDLE_MS * 2);
    expect(running()).toBe(true);
    expect(supervisorState(dir).report?.idle).toMatchObject({ afterMs: IDLE_MS, sessions: 1, idleSince: null, stopsAt: null });
    expect(await agentSelect(s.id)).toBe(1);
    const busy = airlock("cluster", "status");
    expect(busy.stdout).toMatch(/1 session keeps it running; it stops by itself 3s after its last session is gone/);

    await destroySession(project, s.id);
    const gone = Date.now();
    const sup = supervisorState(dir);
    await waitFor("the idle stop", () => !running(), IDLE_MS + 10_000);
    const after = Date.now() - gone;
    console.log(`stopped ${after} ms after the last session was destroyed (idle time ${IDLE_MS} ms)`);
    expect(after).toBeGreaterThanOrEqual(IDLE_MS - 500);
    await waitFor("the supervisor to end", () => supervisorState(dir).state === "down" && !processAlive(sup.keeperPid ?? 0), 5_000);
    expectStoppedCleanly(sup);
    const status = airlock("cluster", "status");
    expect(status.stdout).toMatch(/^stopped/);
    expect(status.stdout).toMatch(/stopped by itself at \S+, unneeded for 3s; the next command that needs it starts it again/);

    // The next command starts cluster and supervisor again, and the session works.
    const again = await createSession(project, { name: "again" });
    expect(running()).toBe(true);
    expect(supervisorState(dir).state).toBe("running");
    expect(await agentSelect(again.id)).toBe(1);
    await destroySession(project, again.id);
  }, 90_000);

  it("a connection in progress keeps it running", async () => {
    await createSession(project, { name: "opener" }).then((s) => destroySession(project, s.id));
    const client = await openClient(staging().adminTarget(), { step: "test" });
    try {
      await sleep(IDLE_MS * 2);
      expect(running()).toBe(true);
      expect(supervisorState(localClusterDir(project)).report?.idle).toMatchObject({ sessions: 0, idleSince: null });
    } finally {
      await client.end();
    }
    await waitFor("the idle stop", () => !running(), IDLE_MS + 10_000);
  }, 60_000);

  it("sessions made as it stops always work: the stop and a command opening the cluster never overlap", async () => {
    const dir = localClusterDir(project);
    for (const pause of [IDLE_MS - 400, IDLE_MS + 300, IDLE_MS + 800, IDLE_MS + 1_300]) {
      await sleep(pause);
      const s = await createSession(project, { name: `race-${pause}` });
      expect(supervisorState(dir).state).toBe("running");
      expect(await agentSelect(s.id)).toBe(1);
      await destroySession(project, s.id);
    }
    await waitFor("the idle stop", () => !running(), IDLE_MS + 10_000);
    await waitFor("the supervisor to end", () => supervisorState(dir).state === "down", 5_000);
    expect(serverProcesses(staging())).toEqual([]);
    const log = readFileSync(supervisorPaths(dir).log, "utf8");
    console.log(
      `idle stops so far: ${log.split("the cluster stopped for idleness").length - 1}; stops given up for a command: ${log.split("not stopping").length - 1}`,
    );
  }, 90_000);

  it("a command opening the cluster holds off the stop: the supervisor waits for the cluster's lock, then counts from that opening", async () => {
    await createSession(project, { name: "opener2" }).then((s) => destroySession(project, s.id));
    const dir = localClusterDir(project);
    const lock = clusterLockFile(dir);
    // As LocalBackend.ensureCluster does: the lock held while the cluster is opened, the opening marked under it.
    writeFileSync(lock, `${JSON.stringify(claimForThisProcess())}\n`, { flag: "wx", mode: 0o600 });
    let released: number;
    try {
      await waitFor("the supervisor to find the lock taken", () => readFileSync(supervisorPaths(dir).log, "utf8").includes("a command holds its lock"), 20_000);
      expect(running()).toBe(true);
      markClusterOpened(dir, IDLE_MS);
    } finally {
      rmSync(lock, { force: true });
      released = Date.now();
    }
    await sleep(IDLE_MS - 1_000 - (Date.now() - released));
    expect(running()).toBe(true);
    await waitFor("the idle stop", () => !running(), IDLE_MS + 10_000);
    expect(Date.now() - released).toBeGreaterThanOrEqual(IDLE_MS - 200);
  }, 60_000);

  it("up and run say the cluster keeps running, where, and how it stops; up --json has it as a field", async () => {
    const up = airlock("up", "--name", "cli-up");
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toMatch(
      /the embedded staging cluster keeps running \(\S*cluster; agents connect through 127\.0\.0\.1:\d+\); it stops by itself 3s after its last session is gone \(local\.idleStop\), or now with `airlock cluster stop`/,
    );
    expect(up.stdout).not.toMatch(/keeps running/);
    const json = airlock("up", "--name", "cli-up-json", "--json");
    expect(json.code, json.stderr).toBe(0);
    expect(json.stderr).not.toMatch(/keeps running/);
    expect(JSON.parse(json.stdout).cluster).toMatchObject({ dir: localClusterDir(project), idleStopMs: IDLE_MS, stop: "airlock cluster stop" });
    const run = airlock("run", "--name", "cli-run", "--sandbox", "none", "--", process.execPath, "-e", "process.exit(0)");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/the embedded staging cluster keeps running .*`airlock cluster stop`/);
    for (const id of ["cli-up", "cli-up-json", "cli-run"]) await destroySession(project, id);
  }, 120_000);

  it("the supervisor runs the binaries local.pgBin names: its idle stop goes through that directory's pg_ctl", async () => {
    // A bin directory of its own: the server tools linked from the real one, pg_ctl a wrapper that logs each call.
    const real = findPgBinaries().dir;
    const bin = testClusterDir("idle-pgbin/bin");
    rmSync(bin, { recursive: true, force: true });
    mkdirSync(bin, { recursive: true });
    const calls = join(bin, "..", "pg_ctl.calls");
    writeFileSync(calls, "", { mode: 0o666 });
    chmodSync(calls, 0o666);
    for (const tool of ["initdb", "postgres", "pg_dump", "pg_restore", "psql"]) symlinkSync(join(real, tool), join(bin, tool));
    writeFileSync(join(bin, "pg_ctl"), `#!/bin/sh\necho "$*" >> '${calls}'\nexec '${join(real, "pg_ctl")}' "$@"\n`, { mode: 0o755 });
    chmodSync(join(bin, ".."), 0o755);
    const other = await createTestProject("idle-pgbin", `export default { local: { idleStop: "2s", pgBin: ${JSON.stringify(bin)} } };\n`);
    try {
      await captureInto(other, prodCluster.cluster.tcpTarget("production"), "idle-test-secret-0123456789");
      const s = await createSession(other, { name: "wrapped" });
      expect(readFileSync(calls, "utf8")).toMatch(/ start/);
      await destroySession(other, s.id);
      const dir = localClusterDir(other);
      const cluster = () => openCluster(localClusterOptions(other))!;
      const log = () => (existsSync(supervisorPaths(dir).log) ? readFileSync(supervisorPaths(dir).log, "utf8") : "");
      await waitFor("the idle stop", () => log().includes("the cluster stopped for idleness"), 20_000);
      expect(clusterStatus(cluster()).state).toBe("stopped");
      // The stop was the supervisor's, through the wrapper: the project's binaries, not the first ones on the machine.
      expect(readFileSync(calls, "utf8")).toMatch(/ stop/);
    } finally {
      await removeTestProject(other);
    }
  }, 120_000);

  it("cluster start and status say when it will stop by itself", async () => {
    const other = await createTestProject("idle-status", 'export default { local: { idleStop: "10m" } };\n');
    const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: other.dir, encoding: "utf8" });
    try {
      const start = cli("cluster", "start");
      expect(start.status, start.stderr).toBe(0);
      expect(start.stdout).toMatch(/it stops by itself 10m after its last session is gone \(local\.idleStop\), or now with `airlock cluster stop`/);
      const dir = localClusterDir(other);
      await waitFor("the supervisor's first report", () => supervisorState(dir).report?.idle !== undefined, 10_000);
      const status = cli("cluster", "status");
      expect(status.stdout).toMatch(/stops by itself at (\S+): nothing has needed it since (\S+) \(local\.idleStop: 10m\)/);
      const { idleStop } = JSON.parse(cli("cluster", "status", "--json").stdout) as { idleStop: { afterMs: number; idleSince: string; stopsAt: string } };
      expect(idleStop.afterMs).toBe(600_000);
      expect(Date.parse(idleStop.stopsAt) - Date.parse(idleStop.idleSince)).toBe(600_000);
      expect(Date.parse(idleStop.stopsAt)).toBeGreaterThan(Date.now() + 500_000);
    } finally {
      await removeTestProject(other);
    }
  }, 60_000);
});
