/**
 * The session container's entrypoint (src/staging/container-entrypoint.ts)
 * run on the host as root, as the engine runs it: against a snapshot
 * captured from a production with schemas, enums, views, functions, grants to
 * a role only production has and awkward names, it checks and stages the
 * snapshot, initialises a cluster, restores base, clones work, hands work to
 * a limited agent role, serves on loopback without the passwords in the
 * server's environment, stops on SIGTERM and starts again without restoring
 * twice. test/docker-backend.test.ts runs the same script in real containers.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AirlockError } from "../src/errors.ts";
import { findPgBinaries } from "../src/pg/binaries.ts";
import { findFreePort } from "../src/pg/cluster-config.ts";
import { type PgTarget, makeTarget, openClient, withClient } from "../src/pg/connect.ts";
import { captureSnapshot } from "../src/snapshot/capture.ts";
import { POST_DATA_MARKER } from "../src/snapshot/format.ts";
import type { SnapshotManifest } from "../src/snapshot/store.ts";
import { restoreFiles } from "../src/staging/container-entrypoint.ts";
import { type ContainerPaths, readSnapshotForRestore, splitSchema } from "../src/staging/container-restore.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { openDir, openUp } from "./helpers/infra-fixtures.ts";

const asRoot = process.getuid?.() === 0;
if (!asRoot) console.warn("test/infra-restore.test.ts skipped: the entrypoint runs as root (as in a container) and drops to postgres");

describe.skipIf(!asRoot)("the container's entrypoint, run as the engine runs it", () => {
  let cluster: TestCluster;
  let manifest: SnapshotManifest;
  let snapDir: string;
  let root: string;
  let paths: ContainerPaths;
  let servers: ChildProcess[] = [];
  const agentPassword = `agent-${randomBytes(9).toString("base64url")}`;
  const adminPassword = `admin-${randomBytes(12).toString("base64url")}`;
  const pgBin = findPgBinaries().dir;

  function write(files: ReturnType<typeof restoreFiles>): void {
    for (const f of files) {
      mkdirSync(dirname(f.path), { recursive: true });
      writeFileSync(f.path, f.content, { mode: f.executable ? 0o755 : 0o644 });
    }
  }

  /** The environment the engine gives the container (the spec's env and the two secrets), with the server's binaries on PATH. */
  function containerEnv(pgdata: string, port: number, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      PATH: `${pgBin}:${process.env.PATH ?? ""}`,
      PGDATA: pgdata,
      AIRLOCK_PORT: String(port),
      AIRLOCK_DISK_QUOTA_BYTES: String(1024 ** 3),
      AIRLOCK_STATEMENT_TIMEOUT_MS: "1500",
      AIRLOCK_ADMIN_PASSWORD: adminPassword,
      AIRLOCK_AGENT_PASSWORD: agentPassword,
      LANG: "C.UTF-8",
      ...extra,
    };
  }

  /** Runs entrypoint.sh to its end (for the refusals). */
  function runToEnd(p: ContainerPaths, env: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync("bash", [join(p.scripts, "entrypoint.sh"), "postgres"], { env, encoding: "utf8", timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** Starts entrypoint.sh with the server command the spec gives it; resolves once the agent can log in. */
  async function start(
    p: ContainerPaths,
    pgdata: string,
    port: number,
    extra: Record<string, string> = {},
  ): Promise<{ child: ChildProcess; output: () => string }> {
    const child = spawn("bash", [join(p.scripts, "entrypoint.sh"), "postgres", "-c", "listen_addresses=127.0.0.1", "-c", `port=${port}`], {
      env: containerEnv(pgdata, port, extra),
      stdio: ["ignore", "pipe", "pipe"],
    });
    servers.push(child);
    let out = "";
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    for (let i = 0; i < 600; i++) {
      if (child.exitCode !== null) throw new Error(`the entrypoint exited with ${child.exitCode}:\n${out}`);
      const ready =
        existsSync(join(pgdata, "airlock-ready")) && (await withClient(agentAt(port, "work"), { step: "test" }, async () => true).catch(() => false));
      if (ready) return { child, output: () => out };
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the entrypoint did not get ready:\n${out}`);
  }

  function stop(child: ChildProcess): Promise<number | null> {
    return new Promise((done) => {
      if (child.exitCode !== null) return done(child.exitCode);
      child.once("exit", (code) => done(code));
      child.kill("SIGTERM");
    });
  }

  const agentAt = (port: number, database: string): PgTarget => makeTarget({ host: "127.0.0.1", port, database, user: "agent", password: agentPassword });

  beforeAll(async () => {
    cluster = await startTestCluster("infra-restore");
    const prod = await cluster.createDatabase("production");
    await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
      await c.query(`
        CREATE SCHEMA shop;
        CREATE TYPE shop.size AS ENUM ('s', 'm', 'l');
        CREATE TABLE shop.items (id serial PRIMARY KEY, code text NOT NULL UNIQUE, size shop.size NOT NULL, price numeric(8,2) NOT NULL);
        CREATE TABLE shop.stock (item_id integer PRIMARY KEY REFERENCES shop.items (id), qty integer NOT NULL CHECK (qty >= 0));
        CREATE INDEX items_price ON shop.items (price);
        CREATE VIEW shop.cheap AS SELECT id, code FROM shop.items WHERE price < 10;
        CREATE FUNCTION shop.double_qty(n integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT n * 2';
        -- A grant to a role only production has: the container's restore recreates it as a NOLOGIN placeholder.
        DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'infra_reporting') THEN CREATE ROLE infra_reporting NOLOGIN; END IF; END $$;
        GRANT SELECT ON shop.items TO infra_reporting;
        CREATE TABLE public."odd ""name"" table" ("it's" integer, remark text);
        INSERT INTO shop.items (code, size, price) SELECT 'SKU-' || lpad(i::text, 4, '0'), (ARRAY['s','m','l'])[1 + i % 3]::shop.size, i * 1.25 FROM generate_series(1, 40) i;
        INSERT INTO shop.stock SELECT id, id % 7 FROM shop.items;
        INSERT INTO public."odd ""name"" table" VALUES (1, E'tab\\there'), (2, E'two\\nlines'), (3, E'back\\\\slash'), (4, NULL);
      `);
    });
    const snapshotsDir = openDir("infra-snapshots");
    manifest = await captureSnapshot({
      source: prod,
      secret: "infra-test-secret-0123456789",
      rules: {},
      snapshotsDir,
      statementTimeoutMs: 60_000,
      lockTimeoutMs: 5_000,
      sampleSize: 100,
    });
    snapDir = join(snapshotsDir, manifest.id);
    root = openDir("infra-container");
    paths = { snapshotMount: snapDir, staged: join(root, "staged"), scripts: join(root, "scripts"), initHook: join(root, "unused") };
    // Airlock's snapshots are private (0700/0600); this one is opened up as a mount the container's postgres
    // user can read (a test below closes a copy again to check the entrypoint's copying path).
    openUp(snapDir);
    write(restoreFiles({ ...readSnapshotForRestore(snapDir, manifest.id), maxConnections: 3, statementTimeout: "1500ms", paths }));
  });

  afterAll(async () => {
    for (const child of servers) await stop(child);
    await cluster?.close();
    for (const d of [root, snapDir === undefined ? undefined : dirname(snapDir)]) if (d !== undefined) rmSync(d, { recursive: true, force: true });
  });

  it("splits the schema capture wrote at its post-data marker, and refuses psql meta-commands in a schema", () => {
    // Tables before the data; the index, keys and constraints after it (a restore loads rows between the two).
    const { pre, post } = splitSchema(readFileSync(join(snapDir, "schema.sql"), "utf8"));
    expect(pre).toContain("CREATE TABLE shop.items");
    expect(pre).not.toMatch(/CREATE INDEX|FOREIGN KEY|PRIMARY KEY/);
    expect(post).not.toContain("CREATE TABLE");
    expect(post).toContain("CREATE INDEX items_price ON shop.items");
    expect(post).toMatch(/FOREIGN KEY \(item_id\) REFERENCES shop\.items\(id\)/);
    expect(() => splitSchema(`SELECT 1;\n\\! rm -rf /\n${POST_DATA_MARKER}\n`)).toThrow(/meta-command/);
    expect(splitSchema(`\\restrict abc\nSELECT 1;\n${POST_DATA_MARKER}\nSELECT 2;\n\\unrestrict abc\n`)).toEqual({ pre: "SELECT 1;\n", post: "\nSELECT 2;\n" });
  });

  it("writes a shell script bash accepts", () => {
    expect(spawnSync("bash", ["-n", join(paths.scripts, "entrypoint.sh")]).status).toBe(0);
  });

  it("refuses a snapshot whose files do not match the manifest, before initialising anything", () => {
    const corrupt = join(root, "corrupt-snapshot");
    cpSync(snapDir, corrupt, { recursive: true });
    const file = join(corrupt, manifest.tables[0]!.file);
    const bytes = readFileSync(file);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5]! + 1) % 256;
    writeFileSync(file, bytes);
    const p: ContainerPaths = { ...paths, snapshotMount: corrupt, staged: join(root, "staged-corrupt"), scripts: join(root, "scripts-corrupt") };
    write(restoreFiles({ ...readSnapshotForRestore(snapDir, manifest.id), maxConnections: 3, statementTimeout: "1500ms", paths: p }));
    const pgdata = join(openDir("infra-corrupt-home"), "data");
    const r = runToEnd(p, containerEnv(pgdata, 1));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("does not match its manifest's checksums");
    expect(existsSync(p.staged)).toBe(false);
    expect(existsSync(join(pgdata, "PG_VERSION"))).toBe(false);
  });

  it("stops before touching anything when a password is not in its environment", () => {
    const pgdata = join(openDir("infra-nopw-home"), "data");
    const r = runToEnd(paths, containerEnv(pgdata, 1, { AIRLOCK_AGENT_PASSWORD: "" }));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("AIRLOCK_AGENT_PASSWORD");
    expect(existsSync(pgdata)).toBe(false);
  });

  it("copies a snapshot the postgres user cannot read, and restores from the copy", async () => {
    const closed = join(root, "closed-snapshot");
    cpSync(snapDir, closed, { recursive: true });
    chmodSync(closed, 0o700);
    const p: ContainerPaths = { ...paths, snapshotMount: closed, staged: join(root, "staged-copy"), scripts: join(root, "scripts-copy") };
    write(restoreFiles({ ...readSnapshotForRestore(snapDir, manifest.id), maxConnections: 3, statementTimeout: "1500ms", paths: p }));
    const pgdata = join(openDir("infra-copy-home"), "data");
    const port = await findFreePort();
    const { child } = await start(p, pgdata, port);
    // The private copy is gone once restored.
    expect(existsSync(p.staged)).toBe(false);
    const n = await withClient(agentAt(port, "work"), { step: "test" }, async (c) => (await c.query("SELECT count(*)::int AS n FROM shop.items")).rows[0].n);
    expect(n).toBe(40);
    expect(await stop(child)).toBe(0);
  });

  it("measures the disk quota after its restore when none is given: 4× the restored base, at least 1 GiB, and each temporary file's limit", async () => {
    // 320 MB of incompressible-on-disk rows (storage EXTERNAL) that gzip makes small: a snapshot of a few hundred kB
    // whose restore is 4× over 1 GiB, so the quota is measured, not estimated from the files or the floor.
    const big = await cluster.createDatabase("big");
    await withClient(big, { step: "test", searchPath: "public" }, async (c) => {
      await c.query("CREATE TABLE ballast (id integer PRIMARY KEY, pad text)");
      await c.query("ALTER TABLE ballast ALTER COLUMN pad SET STORAGE EXTERNAL");
      await c.query("INSERT INTO ballast SELECT g, repeat('x', 1024 * 1024) FROM generate_series(1, 320) g");
    });
    const snapshotsDir = openDir("infra-big-snapshots");
    const bigManifest = await captureSnapshot({
      source: big,
      secret: "infra-test-secret-0123456789",
      rules: {},
      snapshotsDir,
      statementTimeoutMs: 120_000,
      lockTimeoutMs: 5_000,
      sampleSize: 10,
    });
    const bigDir = join(snapshotsDir, bigManifest.id);
    const compressed = bigManifest.tables.reduce((n, t) => n + statSync(join(bigDir, t.file)).size, 0);
    expect(compressed).toBeLessThan(10 * 1024 ** 2);
    chmodSync(snapshotsDir, 0o755);
    openUp(bigDir);
    const home = openDir("infra-big-home");
    const p: ContainerPaths = { ...paths, snapshotMount: bigDir, staged: join(home, "staged"), scripts: join(home, "scripts") };
    write(restoreFiles({ ...readSnapshotForRestore(bigDir, bigManifest.id), maxConnections: 3, statementTimeout: "60s", paths: p }));
    const pgdata = join(home, "data");
    const port = await findFreePort();
    const { child } = await start(p, pgdata, port, { AIRLOCK_DISK_QUOTA_BYTES: "measure", AIRLOCK_STATEMENT_TIMEOUT_MS: "60000" });
    try {
      const admin = makeTarget({ host: "127.0.0.1", port, database: "base", user: "postgres", password: adminPassword });
      const { size, tempLimit } = await withClient(admin, { step: "test" }, async (c) => ({
        size: Number((await c.query("SELECT pg_database_size('base')::text AS n")).rows[0].n),
        tempLimit: (await c.query("SELECT setting FROM pg_settings WHERE name = 'temp_file_limit'")).rows[0].setting as string,
      }));
      expect(size).toBeGreaterThan(300 * 1024 ** 2);
      const quota = Number(readFileSync(join(pgdata, "airlock-disk-quota"), "utf8").trim());
      expect(quota).toBe(Math.max(1024 ** 3, 4 * size));
      expect(quota).toBeGreaterThan(1024 ** 3);
      expect(Number(tempLimit)).toBe(Math.ceil(quota / 1024));
    } finally {
      expect(await stop(child)).toBe(0);
      rmSync(home, { recursive: true, force: true });
      rmSync(snapshotsDir, { recursive: true, force: true });
    }
  }, 300_000);

  it("refuses a disk quota that is neither a number of bytes nor measure", () => {
    const pgdata = join(openDir("infra-bad-quota"), "data");
    const r = runToEnd(paths, containerEnv(pgdata, 5999, { AIRLOCK_DISK_QUOTA_BYTES: "1e9; rm -rf /" }));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("AIRLOCK_DISK_QUOTA_BYTES must be a number of bytes or measure");
    expect(existsSync(pgdata)).toBe(false);
  });

  it("restores base, clones work, hands it to the limited agent role, serves on loopback, stops on SIGTERM and restarts without restoring again", async () => {
    const pgdata = join(openDir("infra-home"), "data");
    const port = await findFreePort();
    const first = await start(paths, pgdata, port);
    expect(first.output()).toContain("restored into base and work");
    expect(first.output()).not.toContain(agentPassword);
    expect(first.output()).not.toContain(adminPassword);
    expect(existsSync(paths.staged)).toBe(false);
    expect(lstatSync(pgdata).uid).toBe(Number(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout.trim()));

    // The server runs as postgres, without the passwords in its environment.
    const pid = Number(readFileSync(join(pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
    const environ = readFileSync(`/proc/${pid}/environ`, "utf8");
    expect(environ).not.toContain(adminPassword);
    expect(environ).not.toContain(agentPassword);
    expect(statSync(`/proc/${pid}`).uid).toBe(lstatSync(pgdata).uid);

    const admin = (database: string) => makeTarget({ host: "127.0.0.1", port, database, user: "postgres", password: adminPassword });
    const prodRows = await withClient(
      cluster.cluster.adminTarget("production"),
      { step: "test", searchPath: "public" },
      async (c) => (await c.query(`SELECT "it's", remark FROM public."odd ""name"" table" ORDER BY 1`)).rows,
    );
    for (const db of ["base", "work"]) {
      await withClient(admin(db), { step: "test", searchPath: "public" }, async (c) => {
        for (const t of manifest.tables) {
          const n = await c.query(`SELECT count(*)::int AS n FROM ${`"${t.schema}"."${t.name.replace(/"/g, '""')}"`}`);
          expect(n.rows[0].n, `${db}: ${t.schema}.${t.name}`).toBe(t.rows);
        }
        expect((await c.query(`SELECT "it's", remark FROM public."odd ""name"" table" ORDER BY 1`)).rows).toEqual(prodRows);
        const seq = manifest.sequences.find((s) => s.name === "items_id_seq")!;
        expect((await c.query("SELECT last_value::text, is_called FROM shop.items_id_seq")).rows[0]).toEqual({
          last_value: seq.lastValue,
          is_called: seq.isCalled,
        });
        expect((await c.query("SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'items_price'")).rows[0].n).toBe(1);
        await expect(c.query("INSERT INTO shop.stock VALUES (9999, 1)")).rejects.toMatchObject({ code: "23503" });
      });
    }
    await withClient(admin("work"), { step: "test", searchPath: "public" }, async (c) => {
      const role = (await c.query("SELECT rolsuper, rolcreatedb, rolcreaterole, rolconnlimit, rolconfig FROM pg_roles WHERE rolname = 'agent'")).rows[0];
      expect(role).toEqual({ rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolconnlimit: 3, rolconfig: ["statement_timeout=1500ms"] });
      expect((await c.query("SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'work'")).rows[0].owner).toBe("agent");
      const notOwned = await c.query(`
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'shop') AND c.relkind IN ('r', 'v', 'S', 'm') AND pg_get_userbyid(c.relowner) <> 'agent'
        UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'shop' AND pg_get_userbyid(p.proowner) <> 'agent'
        UNION ALL SELECT n.nspname FROM pg_namespace n WHERE n.nspname = 'shop' AND pg_get_userbyid(n.nspowner) <> 'agent'`);
      expect(notOwned.rows).toEqual([]);
    });

    await withClient(agentAt(port, "work"), { step: "test", searchPath: "public" }, async (c) => {
      expect((await c.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("1500ms");
      await c.query("ALTER TABLE shop.items ADD COLUMN note text");
      await c.query("CREATE TABLE shop.mine (id int)");
      await c.query("UPDATE shop.stock SET qty = qty + 1");
      await expect(c.query("SELECT pg_sleep(3)")).rejects.toMatchObject({ code: "57014" });
      // Lifting its own limit does not help: the watcher cancels from outside.
      await c.query("SET statement_timeout = 0");
      const started = Date.now();
      await expect(c.query("SELECT pg_sleep(30)")).rejects.toMatchObject({ code: "57014" });
      expect(Date.now() - started).toBeLessThan(10_000);
    });
    for (const db of ["base", "postgres", "template1"]) {
      const err = await openClient(agentAt(port, db), { step: "test" }).then(
        async (c) => {
          await c.end();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect(err, `the agent must not reach ${db}`).toBeInstanceOf(AirlockError);
    }
    // The superuser needs its password over TCP.
    const noPassword = await openClient(makeTarget({ host: "127.0.0.1", port, database: "postgres", user: "postgres", password: "wrong" }), {
      step: "test",
    }).then(
      async (c) => {
        await c.end();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(noPassword).toBeInstanceOf(AirlockError);

    expect(await stop(first.child)).toBe(0);
    // A restart serves the same cluster: the agent's change is still there and nothing was restored again.
    const second = await start(paths, pgdata, port);
    expect(second.output()).not.toContain("restored into");
    const note = await withClient(
      agentAt(port, "work"),
      { step: "test" },
      async (c) => (await c.query("SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'")).rows[0].n,
    );
    expect(note).toBe(1);
    expect(await stop(second.child)).toBe(0);
  }, 120_000);
});
