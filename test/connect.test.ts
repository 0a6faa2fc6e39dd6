/**
 * Connections: the pinned session, the step's application_name, error
 * mapping that keeps the server's fields, and passwords that never show.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatError } from "../src/errors.ts";
import { formatUrl, makeTarget, openClient, openPool, parseTarget, PINNED_SETTINGS, query, withClient } from "../src/pg/connect.ts";
import { redactText, redactUrl } from "../src/pg/redact.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { caught } from "./helpers/errors.ts";

let tc: TestCluster;
const PASSWORD = "s3cret-Pa55word-never-printed";

beforeAll(async () => {
  tc = await startTestCluster("connect");
  await tc.createDatabase("connect_test");
  await withClient(tc.cluster.adminTarget(), { step: "test", searchPath: "public" }, (c) => c.query(`CREATE ROLE app LOGIN PASSWORD '${PASSWORD}'`));
});
afterAll(async () => tc?.close());

function tcp(password: string, database = "connect_test") {
  return makeTarget({ host: "127.0.0.1", port: tc.cluster.port, database, user: "app", password });
}

describe("every Airlock connection pins its session", () => {
  it("pins TimeZone, DateStyle, IntervalStyle, extra_float_digits and bytea_output, and names the step", async () => {
    await withClient(tcp(PASSWORD), { step: "capture" }, async (c) => {
      for (const [name, value] of Object.entries(PINNED_SETTINGS)) {
        const r = await c.query("SELECT current_setting($1) AS v", [name]);
        expect(r.rows[0].v.toLowerCase()).toContain(value.toLowerCase());
      }
      const app = await c.query("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()");
      expect(app.rows[0].application_name).toBe("airlock/capture");
    });
  });

  it("keeps the pins against ALTER DATABASE and ALTER ROLE … SET by whoever owns the database", async () => {
    await withClient(tc.cluster.adminTarget("connect_test"), { step: "test", searchPath: "public" }, async (c) => {
      await c.query("CREATE SCHEMA IF NOT EXISTS evil");
      await c.query("CREATE OR REPLACE FUNCTION evil.md5(text) RETURNS text LANGUAGE sql AS $$ SELECT 'hijacked' $$");
      await c.query("ALTER DATABASE connect_test SET search_path = evil, pg_catalog, public");
      await c.query("ALTER DATABASE connect_test SET standard_conforming_strings = off");
      await c.query("ALTER ROLE app IN DATABASE connect_test SET row_security = on");
      await c.query("ALTER ROLE app SET array_nulls = off");
    });
    try {
      await withClient(tcp(PASSWORD), { step: "diff" }, async (c) => {
        const r = await c.query(String.raw`SELECT md5('x') AS h, 'a\b' AS lit, current_setting('row_security') AS rls, ('{NULL}'::text[])[1] IS NULL AS nulls`);
        expect(r.rows[0]).toEqual({ h: "9dd4e461268c8034f5c8564e155c67a6", lit: String.raw`a\b`, rls: "off", nulls: true });
      });
    } finally {
      await withClient(tc.cluster.adminTarget("connect_test"), { step: "test", searchPath: "public" }, async (c) => {
        await c.query("ALTER DATABASE connect_test RESET ALL");
        await c.query("ALTER ROLE app IN DATABASE connect_test RESET ALL");
        await c.query("ALTER ROLE app RESET ALL");
      });
    }
  });

  it("keeps the pins even when the URL asks for other settings, and pools pin every connection", async () => {
    const url = `postgres://app:${PASSWORD}@127.0.0.1:${tc.cluster.port}/connect_test?application_name=evil&options=-c%20TimeZone%3DAsia%2FTokyo`;
    await withClient(url, { step: "diff" }, async (c) => {
      const r = await c.query("SELECT current_setting('TimeZone') AS tz, current_setting('application_name') AS app");
      expect(r.rows[0]).toEqual({ tz: "UTC", app: "airlock/diff" });
    });
    const pool = openPool(tcp(PASSWORD), { step: "pool", max: 3 });
    try {
      const results = await Promise.all([1, 2, 3].map(() => pool.query("SELECT current_setting('DateStyle') AS ds, pg_sleep(0.05)")));
      for (const r of results) expect(r.rows[0].ds).toBe("ISO, MDY");
    } finally {
      await pool.end();
    }
  });

  it("returns timestamps as the server's text so microseconds and zones survive", async () => {
    await withClient(tcp(PASSWORD), { step: "test", searchPath: "public" }, async (c) => {
      const r = await c.query("SELECT '2024-02-29 23:59:59.123456+05'::timestamptz AS t, '1 day 02:03:04'::interval AS i, '2024-01-02'::date AS d");
      expect(r.rows[0]).toEqual({ t: "2024-02-29 18:59:59.123456+00", i: "1 day 02:03:04", d: "2024-01-02" });
    });
  });

  it("sets statement_timeout, lock_timeout and read-only when asked", async () => {
    await withClient(tcp(PASSWORD), { step: "capture", statementTimeoutMs: 200, lockTimeoutMs: 100, readOnly: true }, async (c) => {
      const err = await caught(() => query(c, "SELECT pg_sleep(2)"));
      expect(err.code).toBe("AIRLOCK_STATEMENT_TIMEOUT");
      const ro = await caught(() => query(c, "CREATE TABLE nope (x int)"));
      expect(ro.code).toBe("AIRLOCK_READ_ONLY");
      const lt = await c.query("SELECT current_setting('lock_timeout') AS v");
      expect(lt.rows[0].v).toBe("100ms");
    });
  });
});

describe("Postgres errors become Airlock errors that keep the server's fields", () => {
  it("keeps sqlstate and position and draws a caret under the failing SQL", async () => {
    const sql = "SELECT 1\nFROM nowhere_table";
    const err = await caught(() => withClient(tcp(PASSWORD), { step: "test", searchPath: "public" }, (c) => query(c, sql)));
    expect(err.code).toBe("AIRLOCK_PG_ERROR");
    expect(err.pg?.sqlstate).toBe("42P01");
    expect(err.pg?.position).toBe(15);
    const printed = formatError(err);
    expect(printed).toContain("42P01");
    expect(printed).toContain("  | FROM nowhere_table\n  |      ^");
  });

  it("maps a refused connection, an unknown database and a wrong password to stable codes", async () => {
    expect((await caught(() => openClient(`postgres://app:${PASSWORD}@127.0.0.1:1/x`, { step: "test", searchPath: "public" }))).code).toBe(
      "AIRLOCK_UNREACHABLE",
    );
    expect((await caught(() => openClient(tcp(PASSWORD, "no_such_db"), { step: "test", searchPath: "public" }))).code).toBe("AIRLOCK_DB_NOT_FOUND");
    expect((await caught(() => openClient(tcp("wrong-password-value"), { step: "test", searchPath: "public" }))).code).toBe("AIRLOCK_AUTH_FAILED");
    expect((await caught(() => Promise.resolve(parseTarget("http://example.com/")))).code).toBe("AIRLOCK_BAD_URL");
  });
});

describe("a password never appears in an error message or log line produced by Airlock", () => {
  it("keeps passwords out of targets, URLs, errors and the server log", async () => {
    const url = `postgres://app:${PASSWORD}@127.0.0.1:${tc.cluster.port}/connect_test`;
    const target = parseTarget(url);
    expect(target.password).toBe(PASSWORD);
    expect(JSON.stringify(target)).not.toContain(PASSWORD);
    expect(String(Object.keys(target))).not.toContain("password");
    expect(target.display).not.toContain(PASSWORD);
    expect(formatUrl(target)).not.toContain(PASSWORD);
    expect(formatUrl(target, true)).toContain(encodeURIComponent(PASSWORD));
    expect(redactUrl(url)).not.toContain(PASSWORD);
    expect(redactText(`failed: ${url} and password=${PASSWORD}`)).not.toContain(PASSWORD);

    const badPassword = "wrong-but-secret-Pw-123";
    const errors = await Promise.all([
      caught(() => openClient(`postgres://app:${badPassword}@127.0.0.1:${tc.cluster.port}/connect_test`, { step: "test", searchPath: "public" })),
      caught(() => openClient(`postgres://app:${PASSWORD}@127.0.0.1:1/connect_test`, { step: "test", searchPath: "public" })),
      caught(() => openClient(`postgres://app:${PASSWORD}@127.0.0.1:${tc.cluster.port}/missing_db`, { step: "test", searchPath: "public" })),
      caught(() => Promise.resolve(parseTarget(`postgres://app:${PASSWORD}@127.0.0.1:99999/x`))),
    ]);
    for (const e of errors) {
      const printed = formatError(e) + JSON.stringify(e.toJSON());
      expect(printed).not.toContain(PASSWORD);
      expect(printed).not.toContain(badPassword);
    }
    const log = readFileSync(tc.cluster.logFile, "utf8");
    expect(log).not.toContain(PASSWORD);
    expect(log).not.toContain(badPassword);
    expect(log).not.toContain(readFileSync(`${tc.cluster.dir}/superuser.password`, "utf8").trim());
  });
});

/** Strings a user may pass as a connection string that Airlock rejects, each carrying `pw` as its password somehow. */
function malformedConnectionStrings(pw: string): string[] {
  return [
    `bob:${pw}@db.example:5432/app`, // no scheme
    `bob:${pw}@db.example`,
    `bob:${pw}@db.example/app?sslmode=require`,
    `//bob:${pw}@db.example/app`,
    `postgres:bob:${pw}@db.example/app`, // no //
    `postgres://bob:${pw}@db.example:99999/app`, // port out of range
    `postgresql://bob:${pw}@db.example:abc/app`, // port not a number
    `postgresql://bob:${encodeURIComponent(`${pw}@/ x`)}@db.example:abc/app`, // percent-encoded password
    `postgres://bob:p@${pw}@db.example:abc/app`, // an unencoded @ in the password
    `postgres://bob:${pw} x@db.example:abc/app`, // a space in the password
    `postgres://bob:${pw}@[::1:5432/app`, // bad IPv6 host
    `postgres://db.example:abc/app?password=${pw}`,
    `postgres://db.example:abc/app?pass%77ord=${pw}&sslmode=require`, // percent-encoded key
    `mysql://bob:${pw}@db.example/app`, // another scheme
    `http://bob:${pw}@example.com/`,
    `host=db.example password=${pw} port=abc`, // libpq key=value, bad port
    `host=db.example PASSWORD = '${pw} x' port=99999`,
    `host=db.example password='${pw}`, // unterminated quote
    `host=db.example password=${pw} dbname`, // a keyword without value
  ];
}

describe("no error message shows a password, whatever the shape of the string Airlock rejects", () => {
  const pw = "Hunter2-s3cretPW";
  it.each(malformedConnectionStrings(pw))("%s", (input) => {
    let err: unknown;
    try {
      parseTarget(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    const e = err as { code: string; message: string; toJSON(): unknown };
    expect(e.code).toBe("AIRLOCK_BAD_URL");
    const printed = `${formatError(e)}\n${JSON.stringify(e.toJSON())}`;
    for (const form of [pw, encodeURIComponent(pw), "s3cretPW"]) expect(printed).not.toContain(form);
    // The string is shown, with its password replaced.
    expect(e.message).toContain("********");
    expect(e.message).toMatch(/db\.example|example\.com|\[::1/);
  });

  it("still parses URLs without a port and libpq key=value strings", () => {
    const url = parseTarget(`postgres://bob:${pw}@db.example/app`);
    expect([url.host, url.port, url.database, url.user, url.password]).toEqual(["db.example", 5432, "app", "bob", pw]);
    const kv = parseTarget(`host=db.example port=5433 dbname=app user=bob password='it\\'s ${pw}' sslmode=disable`);
    expect([kv.host, kv.port, kv.database, kv.user, kv.password, kv.params]).toEqual(["db.example", 5433, "app", "bob", `it's ${pw}`, { sslmode: "disable" }]);
    expect(kv.display).not.toContain(pw);
    expect(redactText(`from ${kv.display}: password=${pw} and "password":"${pw}"`)).not.toContain(pw);
  });
});
