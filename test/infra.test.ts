/**
 * The Pulumi program in infra/: its resource graph under Pulumi's own mocks
 * (no Docker engine and no CLI needed), its configuration checks, that
 * Pulumi's Node.js runtime loads infra/ the way `pulumi up` does, and the
 * restore it runs in the container (entrypoint, init script, SQL) against a
 * real Postgres cluster, with only Docker's own pieces (gosu,
 * docker-entrypoint.sh) stood in for.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AirlockStack } from "../infra/index.ts";
import { type ContainerPaths, POST_DATA_MARKER, restoreFiles, splitSchema } from "../infra/restore-files.ts";
import { StackConfigError, imagePinProblem, parseTtl, readSettings } from "../infra/settings.ts";
import { AirlockError } from "../src/errors.ts";
import { findPgBinaries } from "../src/pg/binaries.ts";
import { type PgTarget, makeTarget, openClient, withClient } from "../src/pg/connect.ts";
import { POST_DATA_MARKER as CAPTURE_MARKER, captureSnapshot } from "../src/snapshot/capture.ts";
import type { SnapshotManifest } from "../src/snapshot/store.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";

const REPO = resolve(import.meta.dirname, "..");
const CONTAINER = "docker:index/container:Container";
const NETWORK = "docker:index/network:Network";
const IMAGE = "docker:index/remoteImage:RemoteImage";
const MOCK_PORT = 54_321;

/** A directory the cluster's server user can pass through (COPY FROM PROGRAM runs as that user). */
function openDir(name: string): string {
  const dir = testClusterDir(name);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  return dir;
}

const fixtures = openDir("infra-fixtures");

/** A small valid snapshot directory (one table, one data file) for the mocks tests. */
function fixtureSnapshot(id: string): string {
  const dir = join(fixtures, id);
  mkdirSync(join(dir, "data"), { recursive: true });
  const schema = `CREATE TABLE public.t (id integer NOT NULL);\n${POST_DATA_MARKER}\nALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n`;
  const data = gzipSync("1\n2\n");
  writeFileSync(join(dir, "schema.sql"), schema);
  writeFileSync(join(dir, "data", "public.t.copy.gz"), data);
  const sha = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");
  const manifest = {
    formatVersion: 1,
    id,
    tables: [{ schema: "public", name: "t", columns: [{ name: "id", type: "integer", rule: "keep" }], key: ["id"], rows: 2, file: "data/public.t.copy.gz", hmacFile: null }],
    sequences: [],
    files: { "schema.sql": sha(schema), "data/public.t.copy.gz": sha(data) },
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2));
  return dir;
}

const SNAP_A = "snap-20260101-000000-aaaaaa";
const SNAP_B = "snap-20260202-000000-bbbbbb";
const dirA = fixtureSnapshot(SNAP_A);
const dirB = fixtureSnapshot(SNAP_B);

afterAll(() => rmSync(fixtures, { recursive: true, force: true }));

// ---------------------------------------------------------------- mocks

interface Registered {
  readonly type: string;
  readonly name: string;
  readonly inputs: Record<string, unknown>;
}

const SIG = pulumi.runtime.specialSigKey;
const SECRET = pulumi.runtime.specialSecretSig;

function isSecretValue(v: unknown): boolean {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SIG] === SECRET;
}

/** The value with every secret wrapper removed. */
function plain(v: unknown): unknown {
  if (isSecretValue(v)) return plain((v as { value: unknown }).value);
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((done) => o.apply((v) => done(v)));
}

/** Runs the program under mocks with `config`; returns what reached the "engine" and the program's handles. */
let lastResources: Registered[] = [];

async function runProgram(config: Record<string, string>, options: { stack?: string; secretKeys?: string[] } = {}): Promise<{ resources: Registered[]; stack: AirlockStack }> {
  const resources: Registered[] = [];
  lastResources = resources;
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        resources.push({ type: args.type, name: args.name, inputs: args.inputs as Record<string, unknown> });
        const state: Record<string, unknown> = { ...(args.inputs as Record<string, unknown>) };
        if (args.type === IMAGE) state.imageId = "sha256:0123456789abcdef";
        // Docker picks a free host port when none is given; the mock does the same.
        if (args.type === CONTAINER) {
          state.ports = (plain(state.ports) as Array<Record<string, unknown>>).map((p) => ({ ...p, external: p.external ?? MOCK_PORT }));
        }
        return { id: `${args.name}-id`, state };
      },
      call: () => ({}),
    },
    "airlock",
    options.stack ?? "mock-stack",
    false,
  );
  pulumi.runtime.setAllConfig(config, options.secretKeys);
  // Imported only now, with the mocks in place (the module itself declares nothing).
  const { airlockStack } = await import("../infra/index.ts");
  const stack = airlockStack();
  await Promise.all([valueOf(stack.outputs.agentUrl), valueOf(stack.outputs.expiresAt), valueOf(stack.outputs.port)]);
  return { resources, stack };
}

function only(resources: readonly Registered[], type: string): Registered {
  const found = resources.filter((r) => r.type === type);
  expect(found, `exactly one ${type}`).toHaveLength(1);
  return found[0]!;
}

const baseConfig = { "airlock:snapshot": SNAP_A, "airlock:snapshotDir": dirA };

describe("the program under Pulumi's mocks", () => {
  it("declares a private network, a pinned image and a loopback-only, limited container on that network", async () => {
    const { resources } = await runProgram(baseConfig, { stack: "sess-one" });
    expect(resources.map((r) => r.type).sort()).toEqual([CONTAINER, NETWORK, IMAGE].sort());
    const network = only(resources, NETWORK).inputs;
    const image = only(resources, IMAGE).inputs;
    const container = plain(only(resources, CONTAINER).inputs) as Record<string, any>;

    expect(network.name).toBe("airlock-sess-one");
    expect(network.driver).toBe("bridge");
    expect(network.options).toMatchObject({ "com.docker.network.bridge.enable_ip_masquerade": "false", "com.docker.network.bridge.enable_icc": "false", "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1" });

    expect(image.name).toBe("postgres:15.10-bookworm");
    expect(imagePinProblem(String(image.name))).toBeNull();
    expect(String(image.name)).not.toMatch(/:latest$/);
    expect(image.keepLocally).toBe(true);
    expect(container.image).toBe("sha256:0123456789abcdef");

    expect(container.networksAdvanced).toEqual([{ name: network.name }]);
    expect(container.ports.length).toBeGreaterThan(0);
    for (const p of container.ports) expect(p.ip).toBe("127.0.0.1");
    expect(container.ports[0]).toMatchObject({ internal: 5432 });
    expect(container.ports[0].external).toBeUndefined();
    expect(container.memory).toBe(1024);
    expect(container.memorySwap).toBe(1024);
    expect(container.cpus).toBe("1");
    expect(container.healthcheck.tests[0]).toBe("CMD-SHELL");
    expect(container.healthcheck.tests[1]).toContain("pg_isready");
    expect(container.wait).toBe(true);

    const labels = Object.fromEntries((container.labels as Array<{ label: string; value: string }>).map((l) => [l.label, l.value]));
    expect(labels["airlock.session"]).toBe("sess-one");
    expect(labels["airlock.snapshot"]).toBe(SNAP_A);
    const expires = Date.parse(labels["airlock.expires"] ?? "");
    expect(Math.abs(expires - (Date.now() + 2 * 3_600_000))).toBeLessThan(60_000);

    expect(container.volumes).toEqual([{ hostPath: dirA, containerPath: "/airlock/snapshot", readOnly: true }]);
    const uploads = container.uploads as Array<{ file: string; content: string; executable: boolean }>;
    expect(uploads.map((u) => u.file)).toContain("/docker-entrypoint-initdb.d/50-airlock.sh");
    expect(container.entrypoints).toEqual(["/airlock/scripts/entrypoint.sh"]);
    expect(container.command[0]).toBe("postgres");
    const restore = uploads.find((u) => u.file === "/airlock/scripts/restore.sql")?.content ?? "";
    expect(restore).toContain(`COPY "public"."t" ("id") FROM PROGRAM 'exec gzip -dc -- ''/var/lib/postgresql/airlock-snapshot/data/public.t.copy.gz''' WITH (FREEZE);`);
    const roles = uploads.find((u) => u.file === "/airlock/scripts/roles.sql")?.content ?? "";
    expect(roles).toContain("CONNECTION LIMIT 20 ");
    expect(roles).toContain(`ALTER ROLE "agent" SET statement_timeout = '5min';`);
    expect(roles).toContain(`REVOKE CONNECT, TEMPORARY ON DATABASE "base", "work", postgres, template1 FROM PUBLIC;`);
  });

  it("keeps passwords secret: in the container's env, in its state and in both URL outputs, and out of every uploaded file", async () => {
    const { resources, stack } = await runProgram(baseConfig);
    const envs = only(resources, CONTAINER).inputs.envs as unknown[];
    expect(isSecretValue(envs[0]) || isSecretValue(envs)).toBe(true);
    expect(isSecretValue(envs[1]) || isSecretValue(envs)).toBe(true);
    const env = plain(envs) as string[];
    const admin = env.find((e) => e.startsWith("POSTGRES_PASSWORD="))?.split("=")[1] ?? "";
    const agent = env.find((e) => e.startsWith("AIRLOCK_AGENT_PASSWORD="))?.split("=")[1] ?? "";
    expect(admin.length).toBeGreaterThanOrEqual(24);
    expect(agent.length).toBeGreaterThanOrEqual(24);
    expect(admin).not.toBe(agent);

    expect(await pulumi.isSecret(stack.outputs.agentUrl)).toBe(true);
    expect(await pulumi.isSecret(stack.outputs.adminUrl)).toBe(true);
    expect(await pulumi.isSecret(stack.container.envs)).toBe(true);
    expect(await pulumi.isSecret(stack.outputs.session)).toBe(false);

    const agentUrl = new URL(await valueOf(stack.outputs.agentUrl));
    expect([agentUrl.hostname, agentUrl.port, agentUrl.pathname, agentUrl.username, decodeURIComponent(agentUrl.password)]).toEqual(["127.0.0.1", String(MOCK_PORT), "/work", "agent", agent]);
    const adminUrl = new URL(await valueOf(stack.outputs.adminUrl));
    expect([adminUrl.hostname, adminUrl.username, decodeURIComponent(adminUrl.password)]).toEqual(["127.0.0.1", "postgres", admin]);
    expect(await valueOf(stack.outputs.port)).toBe(MOCK_PORT);

    const uploads = plain(only(resources, CONTAINER).inputs.uploads) as Array<{ content: string }>;
    for (const u of uploads) {
      expect(u.content).not.toContain(admin);
      expect(u.content).not.toContain(agent);
    }
  });

  it("uses secret config passwords when set", async () => {
    const { resources, stack } = await runProgram(
      { ...baseConfig, "airlock:adminPassword": "admin-pw-from-config-1", "airlock:agentPassword": "agent pw/with:odd@chars" },
      { secretKeys: ["airlock:adminPassword", "airlock:agentPassword"] },
    );
    const env = plain(only(resources, CONTAINER).inputs.envs) as string[];
    expect(env).toContain("POSTGRES_PASSWORD=admin-pw-from-config-1");
    expect(env).toContain("AIRLOCK_AGENT_PASSWORD=agent pw/with:odd@chars");
    const url = new URL(await valueOf(stack.outputs.agentUrl));
    expect(decodeURIComponent(url.password)).toBe("agent pw/with:odd@chars");
    expect(await pulumi.isSecret(stack.outputs.agentUrl)).toBe(true);
  });

  it("is driven by config: session, snapshot, limits, port, expiry and image change what it declares", async () => {
    const one = await runProgram(baseConfig, { stack: "from-stack-name" });
    const two = await runProgram(
      {
        "airlock:session": "beta",
        "airlock:snapshot": SNAP_B,
        "airlock:snapshotDir": dirB,
        "airlock:memoryMb": "512",
        "airlock:cpus": "0.5",
        "airlock:maxConnections": "7",
        "airlock:statementTimeout": "30s",
        "airlock:port": "15432",
        "airlock:expiresAt": "2030-01-02T03:04:05.000Z",
        "airlock:image": `postgres@sha256:${"a".repeat(64)}`,
      },
      { stack: "from-stack-name" },
    );
    const c1 = plain(only(one.resources, CONTAINER).inputs) as Record<string, any>;
    const c2 = plain(only(two.resources, CONTAINER).inputs) as Record<string, any>;
    const labels = (c: Record<string, any>) => Object.fromEntries((c.labels as Array<{ label: string; value: string }>).map((l) => [l.label, l.value]));

    expect(labels(c1)["airlock.session"]).toBe("from-stack-name");
    expect(labels(c2)["airlock.session"]).toBe("beta");
    expect(labels(c2)["airlock.snapshot"]).toBe(SNAP_B);
    expect(labels(c2)["airlock.expires"]).toBe("2030-01-02T03:04:05.000Z");
    expect(c2.name).toBe("airlock-beta");
    expect(only(two.resources, NETWORK).inputs.name).toBe("airlock-beta");
    expect(c2.volumes[0].hostPath).toBe(dirB);
    expect([c2.memory, c2.memorySwap, c2.cpus]).toEqual([512, 512, "0.5"]);
    expect(c2.ports).toEqual([{ internal: 5432, ip: "127.0.0.1", protocol: "tcp", external: 15432 }]);
    expect(only(two.resources, IMAGE).inputs.name).toBe(`postgres@sha256:${"a".repeat(64)}`);
    const roles = (c2.uploads as Array<{ file: string; content: string }>).find((u) => u.file.endsWith("roles.sql"))?.content ?? "";
    expect(roles).toContain("CONNECTION LIMIT 7 ");
    expect(roles).toContain("statement_timeout = '30s'");

    expect(await valueOf(one.stack.outputs.session)).toBe("from-stack-name");
    expect(await valueOf(two.stack.outputs.session)).toBe("beta");
    expect(await valueOf(one.stack.outputs.snapshot)).toBe(SNAP_A);
    expect(await valueOf(two.stack.outputs.snapshot)).toBe(SNAP_B);
    expect(await valueOf(two.stack.outputs.expiresAt)).toBe("2030-01-02T03:04:05.000Z");
    expect(await valueOf(two.stack.outputs.port)).toBe(15432);
  });

  it("refuses a floating image, a missing snapshot, a snapshot that is not the configured one, and unknown keys, before declaring anything", async () => {
    await expect(runProgram({ ...baseConfig, "airlock:image": "postgres:latest" })).rejects.toThrow(/latest/);
    expect(lastResources).toEqual([]);
    await expect(runProgram({ ...baseConfig, "airlock:image": "postgres" })).rejects.toThrow(/neither name:tag/);
    await expect(runProgram({ ...baseConfig, "airlock:image": "postgres:15-bookworm" })).rejects.toThrow(/floats/);
    await expect(runProgram({ "airlock:snapshotDir": dirA })).rejects.toThrow(/airlock:snapshot is required/);
    await expect(runProgram({ "airlock:snapshot": SNAP_B, "airlock:snapshotDir": dirA })).rejects.toThrow(/manifest.json is snapshot snap-20260101-000000-aaaaaa, but airlock:snapshot is snap-20260202-000000-bbbbbb/);
    await expect(runProgram({ ...baseConfig, "airlock:snapshotdir": "/typo" })).rejects.toThrow(/airlock:snapshotdir is not a setting/);
    await expect(runProgram({ ...baseConfig, "airlock:snapshotDir": dirB })).rejects.toThrow(/is snapshot snap-20260202-000000-bbbbbb/);
    expect(lastResources).toEqual([]);
    // The same program with good config declares everything.
    expect((await runProgram(baseConfig)).resources).toHaveLength(3);
  });
});

describe("stack settings", () => {
  const source = (values: Record<string, string>) => ({ get: (k: string) => values[k] });

  it("fills defaults: session from the stack, the snapshot directory under .airlock, 1 GB, 1 CPU, 20 connections, 5min, 2h, auto port", () => {
    const s = readSettings(source({ snapshot: SNAP_A }), "my-stack", "/proj");
    expect(s).toEqual({
      session: "my-stack",
      snapshot: SNAP_A,
      snapshotDir: `/proj/.airlock/snapshots/${SNAP_A}`,
      image: "postgres:15.10-bookworm",
      memoryMb: 1024,
      cpus: 1,
      maxConnections: 20,
      statementTimeout: "5min",
      ttlMs: 7_200_000,
      expiresAt: null,
      port: 0,
      readyTimeoutSeconds: 600,
    });
  });

  it("reports every problem at once", () => {
    let error: unknown;
    try {
      readSettings(source({ image: "postgres:latest", memoryMb: "lots", cpus: "-1", maxConnections: "0", ttl: "soon", statementTimeout: "5 minutes", port: "70000" }), "bad name!", "/p");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StackConfigError);
    const problems = (error as StackConfigError).problems.join("\n");
    for (const key of ["session", "snapshot is required", "image", "memoryMb", "cpus", "maxConnections", "ttl", "statementTimeout", "port"]) expect(problems).toContain(key);
  });

  it("reads TTLs and pins", () => {
    expect([parseTtl("2h"), parseTtl("30m"), parseTtl("90s"), parseTtl("1d"), parseTtl("never"), parseTtl("later")]).toEqual([7_200_000, 1_800_000, 90_000, 86_400_000, null, undefined]);
    expect(imagePinProblem("postgres:15.10-bookworm")).toBeNull();
    expect(imagePinProblem("registry.example.com:5000/team/postgres:16.4")).toBeNull();
    expect(imagePinProblem(`postgres:15.10@sha256:${"0".repeat(64)}`)).toBeNull();
    expect(imagePinProblem("postgres:latest")).toMatch(/latest/);
    expect(imagePinProblem("postgres:15")).toMatch(/floats/);
  });
});

// ---------------------------------------------------------------- Pulumi's own loader

describe("Pulumi's Node.js runtime", () => {
  it("loads infra/ as `pulumi up` does (Pulumi.yaml: main infra/, typescript) and gets the stack outputs", () => {
    // cmd/run/run.js is what the nodejs language host runs; its index.js would parse a real
    // engine's command line on load, so only that module is stood in for.
    const script = `
const { createRequire } = require("node:module");
const Module = require("node:module");
const req = createRequire(${JSON.stringify(join(REPO, "package.json"))});
const pulumi = req("@pulumi/pulumi");
const types = [];
(async () => {
  await pulumi.runtime.setMocks({
    newResource(args) {
      types.push(args.type);
      const state = { ...args.inputs };
      if (args.type === ${JSON.stringify(CONTAINER)}) state.ports = [{ ...args.inputs.ports[0], external: 40001 }];
      if (args.type === ${JSON.stringify(IMAGE)}) state.imageId = "sha256:abc";
      return { id: args.name + "-id", state };
    },
    call: () => ({}),
  }, "airlock", "loader-test", false);
  pulumi.runtime.setAllConfig({ "airlock:snapshot": ${JSON.stringify(SNAP_A)}, "airlock:snapshotDir": ${JSON.stringify(dirA)} });
  const indexPath = req.resolve("@pulumi/pulumi/cmd/run/index.js");
  const stub = new Module(indexPath); stub.exports = {}; stub.loaded = true; Module._cache[indexPath] = stub;
  const { run } = req("@pulumi/pulumi/cmd/run/run.js");
  const outputs = await run({ _: ["./infra/"] }, () => {}, (e) => { console.error("reported:", e && e.message); }, () => false);
  const masked = JSON.parse(JSON.stringify(outputs ?? {}), (k, v) => (typeof v === "string" ? v.replace(/:[^:@/]+@/, ":***@") : v));
  console.log(JSON.stringify({ types, outputs: masked }));
})().catch((e) => { console.error("FAILED:", e && e.stack); process.exitCode = 1; });
`;
    const result = spawnSync(process.execPath, ["-e", script], { cwd: REPO, env: { ...process.env, PULUMI_NODEJS_TYPESCRIPT: "true" }, encoding: "utf8", timeout: 60_000 });
    expect(result.status, result.stderr).toBe(0);
    const line = result.stdout.split("\n").find((l) => l.startsWith("{"));
    expect(line, result.stdout + result.stderr).toBeDefined();
    const { types, outputs } = JSON.parse(line!) as { types: string[]; outputs: Record<string, unknown> };
    expect(types).toEqual(expect.arrayContaining(["pulumi:pulumi:Stack", NETWORK, IMAGE, CONTAINER]));
    expect(outputs).toMatchObject({ agentUrl: "postgres://agent:***@127.0.0.1:40001/work", adminUrl: "postgres://postgres:***@127.0.0.1:40001/postgres", session: "loader-test", snapshot: SNAP_A, port: 40001, image: "postgres:15.10-bookworm" });
  });
});

// ---------------------------------------------------------------- the restore, for real

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
    const r = spawnSync("bash", [script, ...args], { env: { PATH: `${fakeBin}:${pgBin}:${process.env.PATH ?? ""}`, PGDATA: pgdata, HOME: root, ...env }, encoding: "utf8", timeout: 60_000 });
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
    manifest = await captureSnapshot({ source: prod, secret: "infra-test-secret-0123456789", rules: {}, snapshotsDir, statementTimeoutMs: 60_000, lockTimeoutMs: 5_000, sampleSize: 100 });
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

  it("uses the same post-data marker as capture, and refuses psql meta-commands in a schema", () => {
    expect(POST_DATA_MARKER).toBe(CAPTURE_MARKER);
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
      const dbs = await withClient(cluster.cluster.adminTarget(), { step: "test", searchPath: "public" }, async (c) => (await c.query("SELECT datname FROM pg_database WHERE datname IN ('base', 'work')")).rowCount);
      expect(dbs).toBe(0);
    });

    it("restores base, clones work, creates the limited agent role and marks the server ready", async () => {
      const r = bash(join(paths.scripts, "init.sh"), [], { ...env, AIRLOCK_AGENT_PASSWORD: agentPassword });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).not.toContain(agentPassword);
      expect(existsSync(join(pgdata, "airlock-ready"))).toBe(true);
      expect(existsSync(paths.staged)).toBe(false);

      const prodRows = await withClient(cluster.cluster.adminTarget("production"), { step: "test", searchPath: "public" }, async (c) => (await c.query(`SELECT "it's", remark FROM public."odd ""name"" table" ORDER BY 1`)).rows);
      for (const db of ["base", "work"]) {
        await withClient(cluster.cluster.adminTarget(db), { step: "test", searchPath: "public" }, async (c) => {
          for (const t of manifest.tables) {
            const n = await c.query(`SELECT count(*)::int AS n FROM ${`"${t.schema}"."${t.name.replace(/"/g, '""')}"`}`);
            expect(n.rows[0].n, `${db}: ${t.schema}.${t.name}`).toBe(t.rows);
          }
          expect((await c.query(`SELECT "it's", remark FROM public."odd ""name"" table" ORDER BY 1`)).rows).toEqual(prodRows);
          const seq = manifest.sequences.find((s) => s.name === "items_id_seq")!;
          expect((await c.query("SELECT last_value::text, is_called FROM shop.items_id_seq")).rows[0]).toEqual({ last_value: seq.lastValue, is_called: seq.isCalled });
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
