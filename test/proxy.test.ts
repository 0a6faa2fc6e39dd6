/**
 * The staging proxy: agents authenticate to it (SCRAM-SHA-256) before anything
 * reaches Postgres, which it then reaches over the Unix socket (SCRAM or
 * trust) and relays raw. Refusals, per-session caps, a connection storm from
 * one session that must not hurt another, cancel requests, timeouts, and
 * clean shutdown, all against a real cluster with node-pg, psql and a bare
 * protocol client (test/helpers/proxy-harness.ts, test/helpers/pg-wire.ts).
 */
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy } from "../src/staging/proxy.ts";
import {
  execFileP,
  sleep,
  tc,
  proxy,
  logs,
  sessions,
  HANDSHAKE_TIMEOUT_MS,
  pw,
  ROLES,
  MISMATCHED_PASSWORD,
  proxyOptions,
  connect,
  connectAs,
  refusal,
  backends,
  until,
  rawLogin,
  startProxyHarness,
  stopProxyHarness,
} from "./helpers/proxy-harness.ts";
import {
  int32,
  msg,
  packet,
  startupPacket,
  sslRequest,
  gssRequest,
  cancelRequest,
  saslInitial,
  simpleQuery,
  RawClient,
  untilReady,
} from "./helpers/pg-wire.ts";

beforeAll(startProxyHarness);
afterAll(stopProxyHarness);

describe("agents reach their database through the proxy", () => {
  it("runs simple and extended queries, large results and COPY, with SCRAM on both legs", async () => {
    const c = await connectAs("agent_t", { application_name: "probe", options: "-c statement_timeout=4321" } as pg.ClientConfig);
    try {
      const who = await c.query(
        "SELECT current_user AS u, current_database() AS d, current_setting('application_name') AS app, current_setting('statement_timeout') AS st",
      );
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
    const failed = await execFileP(psql, [url("require"), "-Atc", "SELECT 1"], { env, timeout: 15_000 }).then(
      () => "",
      (e: { stderr: string }) => e.stderr,
    );
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
    sessions.set("agent_s", {
      role: "agent_s",
      database: "work_s",
      password: pw(),
      maxConnections: 1,
      stopped: "session stopped: disk quota of 10 MB exceeded",
    });
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
    console.log(
      `storm: B's ${ROLES.agent_b.max} connections in ${bElapsed} ms; ${loginsA} A logins, A refused with ${[...refusedCodes].join(",") || "nothing"}; peak A backends ${peakA}; all done in ${total} ms`,
    );
  });
});

describe("cancel requests", () => {
  it("cancels a running query through the proxy", async () => {
    const c = await connectAs("agent_t");
    try {
      const keys = c as unknown as { processID: number; secretKey: number };
      const started = Date.now();
      const sleeping = c.query("SELECT pg_sleep(30)").then(
        () => undefined,
        (e: { code: string }) => e,
      );
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
    const handles = () =>
      process
        .getActiveResourcesInfo()
        .filter((r) => kinds.includes(r))
        .sort();
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
