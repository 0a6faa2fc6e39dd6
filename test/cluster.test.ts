/**
 * The embedded backend's cluster lifecycle, against real Postgres servers
 * started by the same code users run.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readlinkSync, readdirSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isAirlockError } from "../src/errors.ts";
import { findPgBinaries } from "../src/pg/binaries.ts";
import { type LocalCluster, clusterStatus, createCluster, destroyCluster, serverProcesses, startCluster, stopCluster } from "../src/pg/cluster.ts";
import { withClient } from "../src/pg/connect.ts";
import { resolveServerUser } from "../src/pg/os-user.ts";
import { testClusterDir } from "./helpers/cluster.ts";

const made: LocalCluster[] = [];
const dirs: string[] = [];

async function newCluster(name: string): Promise<LocalCluster> {
  const dir = testClusterDir(name);
  dirs.push(dir);
  const cluster = await createCluster({ dir });
  made.push(cluster);
  return cluster;
}

async function currentUser(target: ReturnType<LocalCluster["adminTarget"]>): Promise<string> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => (await c.query<{ u: string }>("select current_user as u")).rows[0]!.u);
}

/** Every process on the machine whose working directory lies under one of our test clusters. */
function processesUnder(roots: readonly string[]): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      if (roots.some((r) => cwd.startsWith(r))) out.push(Number(entry));
    } catch {
      // Process gone.
    }
  }
  return out;
}

function uidOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("Uid:"));
  return Number(line?.split(/\s+/)[1]);
}

afterAll(async () => {
  for (const c of made) await destroyCluster(c).catch(() => undefined);
});

describe("local cluster", () => {
  it("creates, starts, stops and destroys a cluster, running the server as an unprivileged user", async () => {
    const cluster = await newCluster("lifecycle");
    expect(clusterStatus(cluster).state).toBe("stopped");
    const started = await startCluster(cluster);
    expect(started.alreadyRunning).toBe(false);
    const status = clusterStatus(cluster);
    expect(status.state).toBe("running");
    // Both the Unix socket (trust) and TCP (scram) accept the superuser.
    expect(await currentUser(cluster.adminTarget())).toBe("airlock");
    expect(await currentUser(cluster.tcpTarget())).toBe("airlock");
    const serverUid = uidOf(status.pid!);
    expect(serverUid).not.toBe(0);
    expect(serverUid).toBe(resolveServerUser().uid);
    // Loopback only.
    const listen = await withClient(
      cluster.adminTarget(),
      { step: "test", searchPath: "public" },
      async (c) => (await c.query("show listen_addresses")).rows[0].listen_addresses,
    );
    expect(listen).toBe("127.0.0.1");

    expect(await stopCluster(cluster)).toEqual({ wasRunning: true });
    expect(clusterStatus(cluster).state).toBe("stopped");
    expect(serverProcesses(cluster)).toEqual([]);
    await destroyCluster(cluster);
    expect(existsSync(cluster.dir)).toBe(false);
    expect(clusterStatus(cluster).state).toBe("absent");
  });

  it("treats starting a running cluster as a no-op and creating an existing one as opening it", async () => {
    const cluster = await newCluster("idempotent");
    await startCluster(cluster);
    const pid = clusterStatus(cluster).pid;
    const again = await startCluster(cluster);
    expect(again.alreadyRunning).toBe(true);
    expect(clusterStatus(cluster).pid).toBe(pid);
    const reopened = await createCluster({ dir: cluster.dir });
    expect(reopened.port).toBe(cluster.port);
    expect(clusterStatus(reopened).pid).toBe(pid);
    expect(await stopCluster(cluster)).toEqual({ wasRunning: true });
    expect(await stopCluster(cluster)).toEqual({ wasRunning: false });
  });

  it("recovers from a postmaster killed with SIGKILL that left a stale pid file", async () => {
    const cluster = await newCluster("sigkill");
    await startCluster(cluster);
    // Hold a backend open so the crash leaves an orphaned child behind too.
    await withClient(cluster.adminTarget(), { step: "test", searchPath: "public" }, async (c) => {
      await c.query("create table survived (x int)");
      await c.query("insert into survived values (42)");
      const pid = clusterStatus(cluster).pid!;
      process.kill(pid, "SIGKILL");
      while (clusterStatus(cluster).state === "running") await new Promise((r) => setTimeout(r, 20));
    }).catch(() => undefined);
    expect(existsSync(join(cluster.dataDir, "postmaster.pid"))).toBe(true);
    expect(clusterStatus(cluster).state).toBe("stopped");

    const restarted = await startCluster(cluster);
    expect(restarted.alreadyRunning).toBe(false);
    const rows = await withClient(cluster.adminTarget(), { step: "test", searchPath: "public" }, async (c) => (await c.query("select x from survived")).rows);
    expect(rows).toEqual([{ x: 42 }]);
    await stopCluster(cluster);
    expect(serverProcesses(cluster)).toEqual([]);
  });

  it("runs two clusters side by side on different ports", async () => {
    const a = await newCluster("side-a");
    const b = await newCluster("side-b");
    await Promise.all([startCluster(a), startCluster(b)]);
    expect(a.port).not.toBe(b.port);
    await withClient(a.adminTarget(), { step: "test", searchPath: "public" }, (c) => c.query("create database only_in_a"));
    const inB = await withClient(
      b.tcpTarget(),
      { step: "test", searchPath: "public" },
      async (c) => (await c.query("select count(*)::int as n from pg_database where datname = 'only_in_a'")).rows[0].n,
    );
    expect(inB).toBe(0);
    await Promise.all([stopCluster(a), stopCluster(b)]);
  });

  it("moves to a free port when its port was taken while it was stopped", async () => {
    const cluster = await newCluster("port-taken");
    await startCluster(cluster);
    await stopCluster(cluster);
    const oldPort = cluster.port;
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(oldPort, "127.0.0.1", () => r()));
    try {
      await startCluster(cluster);
      expect(cluster.port).not.toBe(oldPort);
      expect(await currentUser(cluster.tcpTarget())).toBe("airlock");
      // The new port is remembered for the next process that opens the cluster.
      const reopened = await createCluster({ dir: cluster.dir });
      expect(reopened.port).toBe(cluster.port);
    } finally {
      blocker.close();
      await stopCluster(cluster);
    }
  });

  it("leaves no server process behind after stop and destroy", async () => {
    for (const c of made) await destroyCluster(c);
    expect(processesUnder(dirs)).toEqual([]);
    for (const d of dirs) expect(existsSync(d)).toBe(false);
  });
});

describe("finding the Postgres binaries", () => {
  it("finds the installed server binaries and their version", () => {
    const bin = findPgBinaries();
    expect(bin.major).toBeGreaterThanOrEqual(12);
    expect(existsSync(bin.tool("initdb"))).toBe(true);
    const out = execFileSync(bin.tool("postgres"), ["--version"], { encoding: "utf8" });
    expect(out).toContain(bin.version);
  });

  it("honours AIRLOCK_PG_BIN and refuses a wrong one instead of silently searching elsewhere", () => {
    const real = findPgBinaries();
    expect(findPgBinaries({ ...process.env, AIRLOCK_PG_BIN: real.dir }).source).toBe("AIRLOCK_PG_BIN");
    const empty = mkdtempSync(join(tmpdir(), "airlock-nobin-"));
    try {
      findPgBinaries({ ...process.env, AIRLOCK_PG_BIN: empty });
      expect.unreachable();
    } catch (e) {
      expect(isAirlockError(e, "AIRLOCK_PG_NOT_FOUND")).toBe(true);
      expect((e as { hint: string }).hint).toMatch(/AIRLOCK_PG_BIN/);
    }
  });

  it("says exactly how to install Postgres when no binaries exist anywhere", () => {
    const empty = mkdtempSync(join(tmpdir(), "airlock-nopath-"));
    try {
      findPgBinaries({ PATH: empty }, [empty]);
      expect.unreachable();
    } catch (e) {
      expect(isAirlockError(e, "AIRLOCK_PG_NOT_FOUND")).toBe(true);
      expect((e as { hint: string }).hint).toMatch(/apt-get install postgresql/);
    }
  });
});

describe("the server user", () => {
  const root = process.getuid?.() === 0;
  it.skipIf(!root)("names the fix when Airlock runs as root and the server user does not exist (needs root)", () => {
    try {
      resolveServerUser({ AIRLOCK_PG_USER: "no-such-user-airlock" });
      expect.unreachable();
    } catch (e) {
      expect(isAirlockError(e, "AIRLOCK_NO_SERVER_USER")).toBe(true);
      expect((e as { hint: string }).hint).toMatch(/useradd/);
    }
  });
});
