/**
 * The restore infra/ runs in the container (entrypoint, init script, SQL),
 * against a real Postgres cluster, with only Docker's own pieces (gosu,
 * docker-entrypoint.sh) stood in for: a snapshot captured from a production
 * with schemas, enums, views, functions, grants to a role only production has
 * and awkward names is checked, staged, restored into base and work, and
 * handed to a limited agent role.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { restoreFiles } from "../src/staging/container-entrypoint.ts";
import { type ContainerPaths, splitSchema } from "../src/staging/container-restore.ts";
import { AirlockError } from "../src/errors.ts";
import { findPgBinaries } from "../src/pg/binaries.ts";
import { type PgTarget, makeTarget, openClient, withClient } from "../src/pg/connect.ts";
import { captureSnapshot } from "../src/snapshot/capture.ts";
import { POST_DATA_MARKER } from "../src/snapshot/format.ts";
import type { SnapshotManifest } from "../src/snapshot/store.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { openDir } from "./helpers/infra-fixtures.ts";

describe("the container's restore, run against a real cluster", () => {
  let cluster: TestCluster;
  let manifest: SnapshotManifest;
  let snapDir: string;
  let root: string;
  let paths: ContainerPaths;
  let fakeBin: string;
  let pgdata: string;
  const agentPassword = `agent-${randomBytes(9).toString("base64url")}`;
  const pgBin = findPgBinaries().dir;

  function write(files: ReturnType<typeof restoreFiles>): void {
    for (const f of files) {
      mkdirSync(dirname(f.path), { recursive: true });
      writeFileSync(f.path, f.content, { mode: f.executable ? 0o755 : 0o644 });
    }
  }

  function bash(script: string, args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync("bash", [script, ...args], {
      env: { PATH: `${fakeBin}:${pgBin}:${process.env.PATH ?? ""}`, PGDATA: pgdata, HOME: root, ...env },
      encoding: "utf8",
      timeout: 60_000,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

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
    paths = { snapshotMount: snapDir, staged: join(root, "staged"), scripts: join(root, "scripts"), initHook: join(root, "initdb.d", "50-airlock.sh") };
    // Airlock's snapshots are private (0700/0600); this one is opened up as a mount the container's postgres
    // user can read (the test below closes a copy again to check the entrypoint's copying path).
    const openUp = (dir: string): void => {
      chmodSync(dir, 0o755);
      for (const name of readdirSync(dir)) {
        const f = join(dir, name);
        if (statSync(f).isDirectory()) openUp(f);
        else chmodSync(f, 0o644);
      }
    };
    openUp(snapDir);
    const schemaSql = readFileSync(join(snapDir, "schema.sql"), "utf8");
    write(restoreFiles({ manifest, schemaSql, maxConnections: 3, statementTimeout: "1500ms", paths }));
    // Docker's pieces: gosu (run as a user) and the image's entrypoint (records how it was called).
    fakeBin = join(root, "bin");
    mkdirSync(fakeBin);
    writeFileSync(join(fakeBin, "gosu"), '#!/bin/sh\nuser="$1"; shift\nexec runuser -u "$user" -- "$@"\n', { mode: 0o755 });
    writeFileSync(join(fakeBin, "docker-entrypoint.sh"), `#!/bin/sh\nprintf '%s ' "$@" > ${JSON.stringify(join(root, "entrypoint-args"))}\n`, { mode: 0o755 });
    pgdata = join(root, "pgdata");
    mkdirSync(pgdata);
  });

  afterAll(async () => {
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

  it("writes shell scripts bash accepts", () => {
    for (const f of ["entrypoint.sh", "init.sh"]) expect(spawnSync("bash", ["-n", join(paths.scripts, f)]).status).toBe(0);
    expect(spawnSync("bash", ["-n", paths.initHook]).status).toBe(0);
  });

  it("entrypoint: refuses a snapshot whose files do not match the manifest", () => {
    const corrupt = join(root, "corrupt-snapshot");
    cpSync(snapDir, corrupt, { recursive: true });
    const file = join(corrupt, manifest.tables[0]!.file);
    const bytes = readFileSync(file);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5]! + 1) % 256;
    writeFileSync(file, bytes);
    const p: ContainerPaths = { ...paths, snapshotMount: corrupt, staged: join(root, "staged-corrupt"), scripts: join(root, "scripts-corrupt") };
    write(restoreFiles({ manifest, schemaSql: readFileSync(join(snapDir, "schema.sql"), "utf8"), maxConnections: 3, statementTimeout: "1500ms", paths: p }));
    const r = bash(join(p.scripts, "entrypoint.sh"), ["postgres"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("does not match its manifest's checksums");
    expect(existsSync(p.staged)).toBe(false);
  });

  it("entrypoint: copies a snapshot the postgres user cannot read, and hands it to postgres", () => {
    const closed = join(root, "closed-snapshot");
    cpSync(snapDir, closed, { recursive: true });
    chmodSync(closed, 0o700);
    const p: ContainerPaths = { ...paths, snapshotMount: closed, staged: join(root, "staged-copy"), scripts: join(root, "scripts-copy") };
    write(restoreFiles({ manifest, schemaSql: readFileSync(join(snapDir, "schema.sql"), "utf8"), maxConnections: 3, statementTimeout: "1500ms", paths: p }));
    const r = bash(join(p.scripts, "entrypoint.sh"), ["postgres"]);
    expect(r.status, r.stderr).toBe(0);
    expect(lstatSync(p.staged).isSymbolicLink()).toBe(false);
    const postgresUid = Number(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout.trim());
    expect(statSync(join(p.staged, manifest.tables[0]!.file)).uid).toBe(postgresUid);
  });

  it("entrypoint: links a readable snapshot and starts the image's entrypoint with the server command", () => {
    const r = bash(join(paths.scripts, "entrypoint.sh"), ["postgres", "-c", "max_connections=100"]);
    expect(r.status, r.stderr).toBe(0);
    expect(readlinkSync(paths.staged)).toBe(snapDir);
    expect(readFileSync(join(root, "entrypoint-args"), "utf8").trim()).toBe("postgres -c max_connections=100");
  });

  describe("init.sh", () => {
    let admin: PgTarget;
    let env: Record<string, string>;

    beforeAll(() => {
      const tcp = cluster.cluster.tcpTarget("postgres");
      admin = tcp;
      env = { PGHOST: "127.0.0.1", PGPORT: String(tcp.port), PGPASSWORD: tcp.password ?? "", POSTGRES_USER: tcp.user };
    });

    it("stops before touching anything when the agent's password is not in its environment", async () => {
      const r = bash(join(paths.scripts, "init.sh"), [], env);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain("AIRLOCK_AGENT_PASSWORD");
      const dbs = await withClient(
        cluster.cluster.adminTarget(),
        { step: "test", searchPath: "public" },
        async (c) => (await c.query("SELECT datname FROM pg_database WHERE datname IN ('base', 'work')")).rowCount,
      );
      expect(dbs).toBe(0);
    });

    it("restores base, clones work, creates the limited agent role and marks the server ready", async () => {
      const r = bash(join(paths.scripts, "init.sh"), [], { ...env, AIRLOCK_AGENT_PASSWORD: agentPassword });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).not.toContain(agentPassword);
      expect(existsSync(join(pgdata, "airlock-ready"))).toBe(true);
      expect(existsSync(paths.staged)).toBe(false);

      const prodRows = await withClient(
        cluster.cluster.adminTarget("production"),
        { step: "test", searchPath: "public" },
        async (c) => (await c.query(`SELECT "it's", remark FROM public."odd ""name"" table" ORDER BY 1`)).rows,
      );
      for (const db of ["base", "work"]) {
        await withClient(cluster.cluster.adminTarget(db), { step: "test", searchPath: "public" }, async (c) => {
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
          // Post-data ran: the index and the foreign key exist.
          expect((await c.query("SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'items_price'")).rows[0].n).toBe(1);
          await expect(c.query("INSERT INTO shop.stock VALUES (9999, 1)")).rejects.toMatchObject({ code: "23503" });
        });
      }

      await withClient(cluster.cluster.adminTarget("work"), { step: "test", searchPath: "public" }, async (c) => {
        const role = (await c.query("SELECT rolsuper, rolcreatedb, rolcreaterole, rolconnlimit, rolconfig FROM pg_roles WHERE rolname = 'agent'")).rows[0];
        expect(role).toEqual({ rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolconnlimit: 3, rolconfig: ["statement_timeout=1500ms"] });
        expect((await c.query("SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'work'")).rows[0].owner).toBe("agent");
        const notOwned = await c.query(`
          SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname IN ('public', 'shop') AND c.relkind IN ('r', 'v', 'S', 'm') AND pg_get_userbyid(c.relowner) <> 'agent'
          UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'shop' AND pg_get_userbyid(p.proowner) <> 'agent'
          UNION ALL SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'shop' AND t.typtype = 'e' AND pg_get_userbyid(t.typowner) <> 'agent'
          UNION ALL SELECT n.nspname FROM pg_namespace n WHERE n.nspname = 'shop' AND pg_get_userbyid(n.nspowner) <> 'agent'`);
        expect(notOwned.rows).toEqual([]);
      });

      const agentTarget = (database: string) => makeTarget({ host: "127.0.0.1", port: admin.port, database, user: "agent", password: agentPassword });
      await withClient(agentTarget("work"), { step: "test", searchPath: "public" }, async (c) => {
        expect((await c.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("1500ms");
        await c.query("ALTER TABLE shop.items ADD COLUMN note text");
        await c.query("CREATE TABLE shop.mine (id int)");
        await c.query("UPDATE shop.stock SET qty = qty + 1");
        await expect(c.query("SELECT pg_sleep(3)")).rejects.toMatchObject({ code: "57014" });
      });
      for (const db of ["base", "postgres", "template1"]) {
        const err = await openClient(agentTarget(db), { step: "test", searchPath: "public" }).then(
          async (c) => {
            await c.end();
            return undefined;
          },
          (e: unknown) => e,
        );
        expect(err, `the agent must not reach ${db}`).toBeInstanceOf(AirlockError);
        expect((err as AirlockError).pg?.sqlstate).toBe("42501");
      }
    });
  });
});
