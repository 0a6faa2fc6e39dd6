/**
 * The staging proxy: agents authenticate to it (SCRAM-SHA-256) before anything
 * reaches Postgres, which it then reaches over the Unix socket (SCRAM or
 * trust) and relays raw. Refusals, per-session caps, a connection storm from
 * one session that must not hurt another, cancel requests, timeouts, and
 * clean shutdown, all against a real cluster with node-pg, psql and a bare
 * protocol client.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { type Socket, connect as connectSocket } from "node:net";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { quoteIdent, withClient } from "../src/pg/connect.ts";
import { type Proxy, type ProxySession, startProxy } from "../src/staging/proxy.ts";
import { checkServerFinal, clientFinal, clientFirst, parseServerFirst, saltedPassword } from "../src/staging/scram.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let tc: TestCluster;
let proxy: Proxy;
const logs: string[] = [];
const sessions = new Map<string, ProxySession>();
const HANDSHAKE_TIMEOUT_MS = 2_000;

const pw = () => randomBytes(18).toString("base64url");
/** Roles: which leg the socket gives them (scram or trust), and their caps. */
const ROLES = {
  agent_t: { password: pw(), socket: "scram", max: 5 },
  agent_u: { password: pw(), socket: "trust", max: 2 },
  agent_m: { password: pw(), socket: "scram", max: 2 }, // the session's password will not match Postgres's
  agent_a: { password: pw(), socket: "scram", max: 2 }, // the storm
  agent_b: { password: pw(), socket: "scram", max: 4 }, // its neighbour
} as const;
type Role = keyof typeof ROLES;
const MISMATCHED_PASSWORD = pw();

function session(role: Role, extra: Partial<ProxySession> = {}): ProxySession {
  const r = ROLES[role];
  return { role, database: `work_${role.slice(-1)}`, password: role === "agent_m" ? MISMATCHED_PASSWORD : r.password, maxConnections: r.max, ...extra };
}

function proxyOptions(extra: { handshakeTimeoutMs?: number } = {}) {
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

beforeAll(async () => {
  tc = await startTestCluster("proxy");
  await withClient(tc.cluster.adminTarget(), { step: "test", searchPath: "public" }, async (c) => {
    for (const [role, r] of Object.entries(ROLES)) {
      await c.query(`CREATE ROLE ${quoteIdent(role)} LOGIN PASSWORD '${r.password}'`);
      await c.query(`CREATE DATABASE ${quoteIdent(`work_${role.slice(-1)}`)} OWNER ${quoteIdent(role)}`);
    }
    // Production requires SCRAM on the socket for agent roles: so do these, except agent_u (trust).
    const hbaFile = join(tc.cluster.dataDir, "pg_hba.conf");
    const scram = Object.entries(ROLES).filter(([, r]) => r.socket === "scram").map(([role]) => `local all ${role} scram-sha-256\n`);
    writeFileSync(hbaFile, scram.join("") + readFileSync(hbaFile, "utf8"));
    await c.query("SELECT pg_reload_conf()");
  });
  for (const role of Object.keys(ROLES) as Role[]) sessions.set(role, session(role));
  proxy = await startProxy(proxyOptions());
});

afterAll(async () => {
  await proxy?.close();
  await tc?.close();
});

/** A node-pg client through the proxy. */
async function connect(role: string, password: string, database?: string, extra: pg.ClientConfig = {}): Promise<pg.Client> {
  const client = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: role, password, database: database ?? `work_${role.slice(-1)}`, connectionTimeoutMillis: 10_000, ...extra });
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
  return client;
}

const connectAs = (role: Role, extra: pg.ClientConfig = {}) => connect(role, ROLES[role].password, undefined, extra);

/** The Postgres error a connection attempt fails with. */
async function refusal(attempt: Promise<unknown>): Promise<{ code: string; message: string; severity?: string }> {
  try {
    const client = await attempt;
    await (client as pg.Client).end();
  } catch (e) {
    return e as { code: string; message: string; severity?: string };
  }
  throw new Error("expected the connection to be refused");
}

/** Backends of a role on the cluster (seen by the superuser over the socket). */
async function backends(role: string): Promise<number> {
  return withClient(tc.cluster.adminTarget(), { step: "test", searchPath: "public" }, async (c) => {
    const r = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1", [role]);
    return r.rows[0].n as number;
  });
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(25);
  }
}

// ------------------------------------------------------------------ a bare protocol client

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}
const cstr = (s: string) => Buffer.from(`${s}\0`);
const msg = (type: string, body: Buffer) => Buffer.concat([Buffer.from(type), int32(body.length + 4), body]);
const packet = (body: Buffer) => Buffer.concat([int32(body.length + 4), body]);
const startupPacket = (params: Record<string, string>, version = 196608) =>
  packet(Buffer.concat([int32(version), ...Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.alloc(1)]));
const sslRequest = () => packet(int32(80877103));
const gssRequest = () => packet(int32(80877104));
const cancelRequest = (pid: number, key: number) => packet(Buffer.concat([int32(80877102), int32(pid), int32(key)]));
const saslInitial = (data: string) => msg("p", Buffer.concat([cstr("SCRAM-SHA-256"), int32(Buffer.byteLength(data)), Buffer.from(data)]));
const saslResponse = (data: string) => msg("p", Buffer.from(data));
const simpleQuery = (sql: string) => msg("Q", cstr(sql));

function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of body.toString("utf8").split("\0")) if (f !== "") out[f[0]!] = f.slice(1);
  return out;
}

/** A socket that reads the protocol by hand, for what node-pg cannot do (pipelining, malformed packets). */
class RawClient {
  private buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      this.wake?.();
    });
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.ended = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connectSocket({ host: "127.0.0.1", port });
      s.once("error", reject);
      s.once("connect", () => resolve(new RawClient(s)));
    });
  }

  send(data: Buffer): void {
    this.socket.write(data);
  }

  private async need(n: number): Promise<void> {
    while (this.buffer.length < n) {
      if (this.ended) throw new Error(`connection closed while waiting for ${n} bytes`);
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  async byte(): Promise<string> {
    await this.need(1);
    const b = String.fromCharCode(this.buffer[0]!);
    this.buffer = this.buffer.subarray(1);
    return b;
  }

  async message(): Promise<{ type: string; body: Buffer }> {
    await this.need(5);
    const length = this.buffer.readInt32BE(1);
    await this.need(1 + length);
    const m = { type: String.fromCharCode(this.buffer[0]!), body: this.buffer.subarray(5, 1 + length) };
    this.buffer = this.buffer.subarray(1 + length);
    return m;
  }

  /** The next message, which must be an ErrorResponse; then the connection must close. */
  async fatal(): Promise<Record<string, string>> {
    const m = await this.message();
    expect(m.type).toBe("E");
    await this.closed;
    return errorFields(m.body);
  }
}

/** SCRAM by hand (with scram.ts's client half); `pipelined` is sent together with the client-final message. */
async function rawLogin(raw: RawClient, role: Role, pipelined = Buffer.alloc(0)): Promise<void> {
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

/** Reads messages until ReadyForQuery; returns their types and the DataRow texts. */
async function untilReady(raw: RawClient): Promise<{ types: string[]; rows: string[] }> {
  const types: string[] = [];
  const rows: string[] = [];
  for (;;) {
    const m = await raw.message();
    types.push(m.type);
    if (m.type === "D") rows.push(m.body.subarray(6).toString()); // one column: int16 count, int32 length, value
    if (m.type === "Z") return { types, rows };
  }
}

// ------------------------------------------------------------------ tests

describe("agents reach their database through the proxy", () => {
  it("runs simple and extended queries, large results and COPY, with SCRAM on both legs", async () => {
    const c = await connectAs("agent_t", { application_name: "probe", options: "-c statement_timeout=4321" } as pg.ClientConfig);
    try {
      const who = await c.query("SELECT current_user AS u, current_database() AS d, current_setting('application_name') AS app, current_setting('statement_timeout') AS st");
      expect(who.rows[0]).toEqual({ u: "agent_t", d: "work_t", app: "probe", st: "4321ms" });
      expect((await c.query("SELECT $1::int + $2::int AS s", [40, 2])).rows[0].s).toBe(42);
      for (const v of ["a", "b"]) expect((await c.query({ name: "echo", text: "SELECT $1::text AS t", values: [v] })).rows[0].t).toBe(v);

      const big = await c.query("SELECT repeat('x', 1000) AS s FROM generate_series(1, 5000)");
      expect(big.rows.length).toBe(5000);
      expect(big.rows.every((r) => r.s.length === 1000)).toBe(true);

      await c.query("CREATE TABLE items (id int PRIMARY KEY, label text)");
      const rows = Array.from({ length: 20_000 }, (_, i) => `${i}\tlabel ${i}\n`);
      await pipeline(Readable.from(rows), c.query(copyFrom("COPY items FROM STDIN")));
      let copied = "";
      const out = c.query(copyTo("COPY (SELECT id, label FROM items ORDER BY id) TO STDOUT"));
      for await (const chunk of out) copied += chunk.toString();
      expect(copied).toBe(rows.join(""));
    } finally {
      await c.end();
    }
  });

  it("connects over a trusted socket too (upstream answers AuthenticationOk without SASL)", async () => {
    const c = await connectAs("agent_u");
    try {
      expect((await c.query("SELECT current_user AS u")).rows[0].u).toBe("agent_u");
    } finally {
      await c.end();
    }
  });

  it("works for psql with sslmode=prefer (SSLRequest declined) and refuses sslmode=require", async () => {
    const url = (mode: string) => `postgresql://agent_t:${ROLES.agent_t.password}@127.0.0.1:${proxy.port}/work_t?sslmode=${mode}`;
    const env = { ...process.env, PGCONNECT_TIMEOUT: "5", PGGSSENCMODE: "prefer" };
    const psql = join(tc.cluster.binaries.dir, "psql");
    const { stdout } = await execFileP(psql, [url("prefer"), "-Atc", "SELECT current_user || '|' || current_database()"], { env, timeout: 15_000 });
    expect(stdout.trim()).toBe("agent_t|work_t");
    const failed = await execFileP(psql, [url("require"), "-Atc", "SELECT 1"], { env, timeout: 15_000 }).then(() => "", (e: { stderr: string }) => e.stderr);
    expect(failed).toMatch(/does not support SSL/);
  });

  it("sends bytes the client pipelined during authentication upstream first, and declines SSL and GSS encryption", async () => {
    const raw = await RawClient.open(proxy.port);
    raw.send(gssRequest());
    expect(await raw.byte()).toBe("N");
    raw.send(sslRequest());
    expect(await raw.byte()).toBe("N");
    await rawLogin(raw, "agent_t", simpleQuery("SELECT 40 + 2"));
    const startup = await untilReady(raw);
    expect(startup.types).toContain("K");
    expect(startup.types).toContain("S");
    expect(await untilReady(raw)).toEqual({ types: ["T", "D", "C", "Z"], rows: ["42"] });
    raw.send(msg("X", Buffer.alloc(0)));
    await raw.closed;
  });

  it("answers a newer protocol minor version and _pq_ options with NegotiateProtocolVersion, then goes on in 3.0", async () => {
    const raw = await RawClient.open(proxy.port);
    raw.send(startupPacket({ user: "agent_t", database: "work_t", "_pq_.fancy": "on" }, 196610));
    const v = await raw.message();
    expect(v.type).toBe("v");
    expect([v.body.readInt32BE(0), v.body.readInt32BE(4), v.body.subarray(8).toString()]).toEqual([0, 1, "_pq_.fancy\0"]);
    expect((await raw.message()).type).toBe("R");
    raw.socket.destroy();
  });
});

describe("the proxy refuses before Postgres is involved", () => {
  it("refuses a wrong password with Postgres's own error", async () => {
    const e = await refusal(connect("agent_t", "not-the-password"));
    expect([e.code, e.severity, e.message]).toEqual(["28P01", "FATAL", 'password authentication failed for user "agent_t"']);
  });

  it("refuses another database, an unknown role and a stopped session", async () => {
    const db = await refusal(connect("agent_t", ROLES.agent_t.password, "work_u"));
    expect([db.code, db.message]).toEqual(["28000", "airlock: role agent_t may only connect to database work_t"]);
    const unknown = await refusal(connect("nobody", "whatever"));
    expect([unknown.code, unknown.message]).toEqual(["28000", "airlock: no session for role nobody"]);
    sessions.set("agent_s", { role: "agent_s", database: "work_s", password: pw(), maxConnections: 1, stopped: "session stopped: disk quota of 10 MB exceeded" });
    const stopped = await refusal(connect("agent_s", sessions.get("agent_s")!.password));
    expect([stopped.code, stopped.message]).toEqual(["57P03", "airlock: session stopped: disk quota of 10 MB exceeded"]);
    // A role name is the client's to choose: it cannot forge log lines.
    const forged = await RawClient.open(proxy.port);
    forged.send(startupPacket({ user: "x\nproxy: all is well" }));
    expect((await forged.fatal()).C).toBe("28000");
    expect(logs.some((l) => l.includes("no session for role x?proxy: all is well"))).toBe(true);
    expect(logs.every((l) => !/[\n\r]/.test(l))).toBe(true);
  });

  it("refuses malformed packets, old protocols and channel binding", async () => {
    const huge = await RawClient.open(proxy.port);
    huge.send(int32(1_000_000));
    expect((await huge.fatal()).C).toBe("08P01");

    const old = await RawClient.open(proxy.port);
    old.send(startupPacket({ user: "agent_t" }, 2 << 16));
    expect((await old.fatal()).C).toBe("0A000");

    const unterminated = await RawClient.open(proxy.port);
    unterminated.send(packet(Buffer.concat([int32(196608), Buffer.from("user\0agent_t")])));
    expect((await unterminated.fatal()).C).toBe("08P01");

    const binding = await RawClient.open(proxy.port);
    binding.send(startupPacket({ user: "agent_t", database: "work_t" }));
    expect((await binding.message()).type).toBe("R");
    binding.send(saslInitial("p=tls-server-end-point,,n=,r=abcdefgh"));
    const e = await binding.fatal();
    expect(e.C).toBe("08P01");
    expect(e.M).toMatch(/^airlock: channel binding is not supported/);
  });

  it("forwards upstream's own refusal when the session's password is not the role's", async () => {
    const e = await refusal(connect("agent_m", MISMATCHED_PASSWORD));
    expect([e.code, e.message]).toEqual(["28P01", 'password authentication failed for user "agent_m"']);
    expect(logs.some((l) => l.includes("the staging server refused"))).toBe(true);
    expect(proxy.connections().has("agent_m")).toBe(false);
  });
});

describe("per-session caps", () => {
  it("refuses the connection past maxConnections with 53300, and lets a new one in once one closes", async () => {
    const first = await connectAs("agent_u");
    const second = await connectAs("agent_u");
    try {
      expect(proxy.connections().get("agent_u")).toBe(2);
      const e = await refusal(connectAs("agent_u"));
      expect([e.code, e.message]).toEqual(["53300", "airlock: session for role agent_u has all 2 connections in use"]);
      await first.end();
      await until(() => proxy.connections().get("agent_u") === 1);
      const third = await connectAs("agent_u");
      expect((await third.query("SELECT 1 AS one")).rows[0].one).toBe(1);
      await third.end();
    } finally {
      await first.end().catch(() => undefined);
      await second.end();
    }
    await until(() => !proxy.connections().has("agent_u"));
  });

  it("a storm from one session does not stop another from opening all its connections", async () => {
    const started = Date.now();
    // 100 sockets that connect and say nothing: each costs the proxy a socket, until the handshake timeout.
    const silent = await Promise.all(Array.from({ length: 100 }, () => RawClient.open(proxy.port)));
    let peakA = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peakA = Math.max(peakA, await backends("agent_a"));
        await sleep(20);
      }
    })();
    // 200 rapid connect/disconnect loops for agent_a: half full logins, half startup-then-hang-up.
    const refusedCodes = new Set<string>();
    let loginsA = 0;
    const storm = Promise.all(
      Array.from({ length: 20 }, async (_, worker) => {
        for (let i = 0; i < 10; i++) {
          if ((worker + i) % 2 === 0) {
            try {
              const c = await connectAs("agent_a");
              loginsA++;
              await c.end();
            } catch (e) {
              refusedCodes.add((e as { code: string }).code);
            }
          } else {
            const raw = await RawClient.open(proxy.port);
            raw.send(startupPacket({ user: "agent_a", database: "work_a" }));
            raw.socket.destroy();
          }
        }
      }),
    );
    await sleep(50);
    const bStart = Date.now();
    const bs = await Promise.all(Array.from({ length: ROLES.agent_b.max }, () => connectAs("agent_b")));
    const bElapsed = Date.now() - bStart;
    try {
      const answers = await Promise.all(bs.map((c) => c.query("SELECT current_user AS u")));
      expect(answers.map((r) => r.rows[0].u)).toEqual(Array(ROLES.agent_b.max).fill("agent_b"));
      expect(proxy.connections().get("agent_b")).toBe(ROLES.agent_b.max);
      // The silent sockets are still there: B got in despite them.
      expect(silent.filter((s) => !s.ended).length).toBe(100);
    } finally {
      await Promise.all(bs.map((c) => c.end()));
    }
    await storm;
    sampling = false;
    await sampler;
    expect(bElapsed).toBeLessThan(HANDSHAKE_TIMEOUT_MS);
    expect(loginsA).toBeGreaterThan(0);
    expect([...refusedCodes].every((c) => c === "53300")).toBe(true);
    expect(peakA).toBeLessThanOrEqual(ROLES.agent_a.max);
    // Then the handshake timeout closes every silent socket.
    await Promise.all(silent.map((s) => s.closed));
    const total = Date.now() - started;
    expect(total).toBeLessThan(HANDSHAKE_TIMEOUT_MS + 4_000);
    await until(() => !proxy.connections().has("agent_a") && !proxy.connections().has("agent_b"));
    console.log(`storm: B's ${ROLES.agent_b.max} connections in ${bElapsed} ms; ${loginsA} A logins, A refused with ${[...refusedCodes].join(",") || "nothing"}; peak A backends ${peakA}; all done in ${total} ms`);
  });
});

describe("cancel requests", () => {
  it("cancels a running query through the proxy", async () => {
    const c = await connectAs("agent_t");
    try {
      const keys = c as unknown as { processID: number; secretKey: number };
      const started = Date.now();
      const sleeping = c.query("SELECT pg_sleep(30)").then(() => undefined, (e: { code: string }) => e);
      await sleep(300);
      const raw = await RawClient.open(proxy.port);
      raw.send(cancelRequest(keys.processID, keys.secretKey));
      await raw.closed;
      expect(((await sleeping) as { code: string }).code).toBe("57014");
      expect(Date.now() - started).toBeLessThan(5_000);
      expect((await c.query("SELECT 1 AS one")).rows[0].one).toBe(1);
    } finally {
      await c.end();
    }
  });

  it("ignores a cancel request for a connection it does not relay, without touching Postgres", async () => {
    const raw = await RawClient.open(proxy.port);
    raw.send(cancelRequest(12345, 67890));
    await raw.closed;
    expect(logs.some((l) => l.includes("ignored a cancel request"))).toBe(true);
  });
});

describe("timeouts, disconnect and close", () => {
  it("closes a silent socket, and one that stalls mid-handshake, after the handshake timeout", async () => {
    const quick = await startProxy(proxyOptions({ handshakeTimeoutMs: 300 }));
    try {
      const started = Date.now();
      const silent = await RawClient.open(quick.port);
      const stalled = await RawClient.open(quick.port);
      stalled.send(startupPacket({ user: "agent_t", database: "work_t" }));
      expect((await stalled.message()).type).toBe("R");
      await Promise.all([silent.closed, stalled.closed]);
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(1_500);
    } finally {
      await quick.close();
    }
  });

  it("disconnect(role) ends that role's connections and their backends", async () => {
    const clients = [await connectAs("agent_u"), await connectAs("agent_u")];
    const other = await connectAs("agent_t");
    try {
      expect(await backends("agent_u")).toBe(2);
      const ended = clients.map((c) => new Promise<void>((r) => c.once("end", () => r())));
      proxy.disconnect("agent_u");
      await Promise.all(ended);
      expect(proxy.connections().has("agent_u")).toBe(false);
      await until(async () => (await backends("agent_u")) === 0);
      expect((await other.query("SELECT 1 AS one")).rows[0].one).toBe(1);
    } finally {
      for (const c of clients) await c.end().catch(() => undefined);
      await other.end();
    }
  });

  it("close() stops listening, ends every connection and leaves no open handles", async () => {
    const kinds = ["TCPServerWrap", "TCPSocketWrap", "PipeWrap", "Timeout"];
    const handles = () => process.getActiveResourcesInfo().filter((r) => kinds.includes(r)).sort();
    // Earlier tests' sockets may still be closing: start from a quiet state.
    let before = handles();
    await until(async () => {
      await sleep(100);
      const now = handles();
      const stable = JSON.stringify(now) === JSON.stringify(before);
      before = now;
      return stable;
    });
    const p = await startProxy(proxyOptions());
    const c = new pg.Client({ host: "127.0.0.1", port: p.port, user: "agent_t", password: ROLES.agent_t.password, database: "work_t" });
    c.on("error", () => undefined);
    await c.connect();
    const silent = await RawClient.open(p.port);
    const ended = new Promise<void>((r) => c.once("end", () => r()));
    await p.close();
    await Promise.all([ended, silent.closed]);
    await expect(RawClient.open(p.port)).rejects.toThrow(/ECONNREFUSED/);
    await sleep(50);
    expect(handles()).toEqual(before);
  });

  it("never logs a password", () => {
    const text = logs.join("\n");
    for (const r of Object.values(ROLES)) expect(text).not.toContain(r.password);
    expect(text).not.toContain(MISMATCHED_PASSWORD);
    expect(text).not.toContain(sessions.get("agent_s")!.password);
  });
});
