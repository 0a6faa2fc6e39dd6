/**
 * The proxy under test (test/proxy.test.ts): a real cluster with one agent
 * role and database per entry of ROLES, the proxy in front of it, its log and
 * sessions, and clients that reach it (node-pg, and SCRAM by hand over the
 * bare protocol). The bindings are live: set by startProxyHarness.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { expect } from "vitest";
import { quoteIdent, withClient } from "../../src/pg/connect.ts";
import { type Proxy, type ProxySession, startProxy } from "../../src/staging/proxy.ts";
import { checkServerFinal, clientFinal, clientFirst, parseServerFirst, saltedPassword } from "../../src/staging/scram.ts";
import { type TestCluster, startTestCluster } from "./cluster.ts";
import { type RawClient, saslInitial, saslResponse, startupPacket } from "./pg-wire.ts";

export const execFileP = promisify(execFile);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export let tc: TestCluster;
export let proxy: Proxy;
export const logs: string[] = [];
export const sessions = new Map<string, ProxySession>();
export const HANDSHAKE_TIMEOUT_MS = 2_000;

export const pw = () => randomBytes(18).toString("base64url");
/** Roles: which leg the socket gives them (scram or trust), and their caps. */
export const ROLES = {
  agent_t: { password: pw(), socket: "scram", max: 5 },
  agent_u: { password: pw(), socket: "trust", max: 2 },
  agent_m: { password: pw(), socket: "scram", max: 2 }, // the session's password will not match Postgres's
  agent_a: { password: pw(), socket: "scram", max: 2 }, // the storm
  agent_b: { password: pw(), socket: "scram", max: 4 }, // its neighbour
} as const;
type Role = keyof typeof ROLES;
export const MISMATCHED_PASSWORD = pw();

/** The proxy session of a role (agent_m given a password that is not its role's). */
export function session(role: Role, extra: Partial<ProxySession> = {}): ProxySession {
  const r = ROLES[role];
  return { role, database: `work_${role.slice(-1)}`, password: role === "agent_m" ? MISMATCHED_PASSWORD : r.password, maxConnections: r.max, ...extra };
}

/** Options for a proxy in front of the test cluster. */
export function proxyOptions(extra: { handshakeTimeoutMs?: number } = {}) {
  return {
    host: "127.0.0.1",
    port: 0,
    upstreamSocketDir: tc.cluster.socketDir,
    upstreamPort: tc.cluster.port,
    sessions: (role: string) => sessions.get(role),
    handshakeTimeoutMs: extra.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
    log: (line: string) => logs.push(line),
  };
}

/** A node-pg client through the proxy. */
export async function connect(role: string, password: string, database?: string, extra: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = new pg.Client({
    host: "127.0.0.1",
    port: proxy.port,
    user: role,
    password,
    database: database ?? `work_${role.slice(-1)}`,
    connectionTimeoutMillis: 10_000,
    ...extra,
  });
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
  return client;
}

export const connectAs = (role: Role, extra: pg.ClientConfig = {}) => connect(role, ROLES[role].password, undefined, extra);

/** The Postgres error a connection attempt fails with. */
export async function refusal(attempt: Promise<unknown>): Promise<{ code: string; message: string; severity?: string }> {
  try {
    const client = await attempt;
    await (client as pg.Client).end();
  } catch (e) {
    return e as { code: string; message: string; severity?: string };
  }
  throw new Error("expected the connection to be refused");
}

/** Backends of a role on the cluster (seen by the superuser over the socket). */
export async function backends(role: string): Promise<number> {
  return withClient(tc.cluster.adminTarget(), { step: "test", searchPath: "public" }, async (c) => {
    const r = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1", [role]);
    return r.rows[0].n as number;
  });
}

/** Waits until `check` holds, failing after `timeoutMs`. */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(25);
  }
}

/** SCRAM by hand (with scram.ts's client half); `pipelined` is sent together with the client-final message. */
export async function rawLogin(raw: RawClient, role: Role, pipelined = Buffer.alloc(0)): Promise<void> {
  raw.send(startupPacket({ user: role, database: `work_${role.slice(-1)}` }));
  const sasl = await raw.message();
  expect([sasl.type, sasl.body.readInt32BE(0), sasl.body.subarray(4).toString()]).toEqual(["R", 10, "SCRAM-SHA-256\0\0"]);
  const start = clientFirst();
  raw.send(saslInitial(start.message));
  const cont = await raw.message();
  expect([cont.type, cont.body.readInt32BE(0)]).toEqual(["R", 11]);
  const serverFirstMessage = cont.body.subarray(4).toString();
  const challenge = parseServerFirst(serverFirstMessage, start.nonce);
  const proof = clientFinal(await saltedPassword(ROLES[role].password, challenge.salt, challenge.iterations), start, serverFirstMessage, challenge);
  raw.send(Buffer.concat([saslResponse(proof.message), pipelined]));
  const final = await raw.message();
  expect([final.type, final.body.readInt32BE(0)]).toEqual(["R", 12]);
  expect(checkServerFinal(final.body.subarray(4).toString(), proof)).toBe(true);
  const ok = await raw.message();
  expect([ok.type, ok.body.readInt32BE(0)]).toEqual(["R", 0]);
}

/** Starts the cluster with a role and a database per ROLES entry, and the proxy in front of it (beforeAll). */
export async function startProxyHarness(): Promise<void> {
  tc = await startTestCluster("proxy");
  await withClient(tc.cluster.adminTarget(), { step: "test", searchPath: "public" }, async (c) => {
    for (const [role, r] of Object.entries(ROLES)) {
      await c.query(`CREATE ROLE ${quoteIdent(role)} LOGIN PASSWORD '${r.password}'`);
      await c.query(`CREATE DATABASE ${quoteIdent(`work_${role.slice(-1)}`)} OWNER ${quoteIdent(role)}`);
    }
    // Production requires SCRAM on the socket for agent roles: so do these, except agent_u (trust).
    const hbaFile = join(tc.cluster.dataDir, "pg_hba.conf");
    const scram = Object.entries(ROLES)
      .filter(([, r]) => r.socket === "scram")
      .map(([role]) => `local all ${role} scram-sha-256\n`);
    writeFileSync(hbaFile, scram.join("") + readFileSync(hbaFile, "utf8"));
    await c.query("SELECT pg_reload_conf()");
  });
  for (const role of Object.keys(ROLES) as Role[]) sessions.set(role, session(role));
  proxy = await startProxy(proxyOptions());
}

/** Closes the proxy and stops the cluster (afterAll). */
export async function stopProxyHarness(): Promise<void> {
  await proxy?.close();
  await tc?.close();
}
