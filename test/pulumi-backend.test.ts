/**
 * The Pulumi staging backend. Its availability check runs anywhere: each
 * missing piece (the Pulumi CLI, a Docker engine, PULUMI_CONFIG_PASSPHRASE)
 * is named on its own, at once, and stand-ins for all three make it pass. A
 * real session stack (up, admin target, agent connection, destroy) runs only
 * where the Pulumi CLI and a Docker engine exist, and says so when skipped.
 */
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { type Server, createServer } from "node:net";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AirlockError } from "../src/errors.ts";
import { makeTarget, openClient, withClient } from "../src/pg/connect.ts";
import { captureSnapshot } from "../src/snapshot/capture.ts";
import { dockerEndpoint } from "../src/staging/docker-engine.ts";
import { PulumiBackend } from "../src/staging/pulumi-backend.ts";
import { startTestCluster, testClusterDir, testRoot } from "./helpers/cluster.ts";

const REPO = resolve(import.meta.dirname, "..");
const work = testClusterDir("pulumi-backend");
mkdirSync(work, { recursive: true });

// Stand-ins: an executable named pulumi, and a Unix socket that accepts connections like dockerd's.
const fakeBin = join(work, "bin");
mkdirSync(fakeBin, { recursive: true });
writeFileSync(join(fakeBin, "pulumi"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
const fakeSocket = join(testRoot(), `dock-${process.pid}.sock`);
let dockerd: Server;

beforeAll(async () => {
  rmSync(fakeSocket, { force: true });
  dockerd = createServer((s) => s.end());
  await new Promise<void>((done) => dockerd.listen(fakeSocket, done));
});

afterAll(async () => {
  await new Promise<void>((done) => dockerd.close(() => done()));
  rmSync(fakeSocket, { force: true });
  rmSync(work, { recursive: true, force: true });
});

const everything = () => ({ PATH: fakeBin, DOCKER_HOST: `unix://${fakeSocket}`, PULUMI_CONFIG_PASSPHRASE: "test-passphrase" });

function backend(env: NodeJS.ProcessEnv): PulumiBackend {
  return new PulumiBackend({ stateDir: join(work, "state"), projectDir: REPO, env });
}

async function unavailable(env: NodeJS.ProcessEnv): Promise<{ error: AirlockError; ms: number }> {
  const started = Date.now();
  try {
    await backend(env).checkAvailable();
  } catch (e) {
    expect(e).toBeInstanceOf(AirlockError);
    return { error: e as AirlockError, ms: Date.now() - started };
  }
  throw new Error("expected checkAvailable to fail");
}

describe("checkAvailable", () => {
  it("passes when the CLI, a Docker engine and the passphrase are all there (stand-ins)", async () => {
    await expect(backend(everything()).checkAvailable()).resolves.toBeUndefined();
  });

  it("names a missing Pulumi CLI (PATH without pulumi), and nothing else", async () => {
    const { error } = await unavailable({ ...everything(), PATH: "" });
    expect(error.code).toBe("AIRLOCK_PULUMI_UNAVAILABLE");
    expect(error.details).toEqual({ missing: ["pulumi CLI"] });
    expect(error.message).toContain("the Pulumi CLI (`pulumi`) is not on PATH");
    expect(error.message).not.toMatch(/Docker|PASSPHRASE/);
    expect(error.hint).toContain("https://www.pulumi.com/docs/install/");
  });

  it("names a missing Docker engine (DOCKER_HOST at a socket that does not exist), at once", async () => {
    const gone = join(work, "no-such-dir", "docker.sock");
    const { error, ms } = await unavailable({ ...everything(), DOCKER_HOST: `unix://${gone}` });
    expect(error.code).toBe("AIRLOCK_PULUMI_UNAVAILABLE");
    expect(error.details).toEqual({ missing: ["Docker engine"] });
    expect(error.message).toContain(`there is no Docker socket at ${gone}`);
    expect(error.hint).toContain("DOCKER_HOST");
    expect(ms).toBeLessThan(1_500);
  });

  it("names a Docker engine that refuses connections", async () => {
    const closed = createServer();
    const port = await new Promise<number>((done) => closed.listen(0, "127.0.0.1", () => done((closed.address() as { port: number }).port)));
    await new Promise<void>((done) => closed.close(() => done()));
    const { error } = await unavailable({ ...everything(), DOCKER_HOST: `tcp://127.0.0.1:${port}` });
    expect(error.details).toEqual({ missing: ["Docker engine"] });
    expect(error.message).toContain(`nothing listens at tcp://127.0.0.1:${port}`);
  });

  it("names a missing PULUMI_CONFIG_PASSPHRASE", async () => {
    const { PULUMI_CONFIG_PASSPHRASE: _unset, ...env } = everything();
    const { error } = await unavailable(env);
    expect(error.details).toEqual({ missing: ["PULUMI_CONFIG_PASSPHRASE"] });
    expect(error.message).toContain("PULUMI_CONFIG_PASSPHRASE is not set");
    expect(error.hint).toContain("export PULUMI_CONFIG_PASSPHRASE");
    // A passphrase file is as good.
    await expect(backend({ ...env, PULUMI_CONFIG_PASSPHRASE_FILE: join(work, "passphrase") }).checkAvailable()).resolves.toBeUndefined();
  });

  it("lists everything that is missing in one error", async () => {
    const { error, ms } = await unavailable({ PATH: "", DOCKER_HOST: `unix://${join(work, "nothing.sock")}` });
    expect(error.details).toEqual({ missing: ["pulumi CLI", "Docker engine", "PULUMI_CONFIG_PASSPHRASE"] });
    expect(ms).toBeLessThan(1_500);
  });

  it("on this machine, names exactly what this machine lacks", async () => {
    // Worked out independently of the backend: the shell's PATH lookup, the default socket's existence.
    const lacks = [
      ...(spawnSync("sh", ["-c", "command -v pulumi"]).status === 0 ? [] : ["pulumi CLI"]),
      ...(process.env.DOCKER_HOST === undefined && !existsSync("/var/run/docker.sock") ? ["Docker engine"] : []),
      ...(process.env.PULUMI_CONFIG_PASSPHRASE === undefined && process.env.PULUMI_CONFIG_PASSPHRASE_FILE === undefined ? ["PULUMI_CONFIG_PASSPHRASE"] : []),
    ];
    const result = await backend(process.env)
      .checkAvailable()
      .then(
        () => null,
        (e: unknown) => e,
      );
    if (result === null) {
      expect(lacks).toEqual([]);
      return;
    }
    expect(result).toBeInstanceOf(AirlockError);
    expect((result as AirlockError).code).toBe("AIRLOCK_PULUMI_UNAVAILABLE");
    const missing = ((result as AirlockError).details?.missing ?? []) as string[];
    for (const piece of lacks) expect(missing).toContain(piece);
  });

  it("finds the Docker engine where the Docker provider does", () => {
    expect(dockerEndpoint({})).toEqual({ kind: "unix", path: "/var/run/docker.sock" });
    expect(dockerEndpoint({ DOCKER_HOST: "unix:///run/user/1000/docker.sock" })).toEqual({ kind: "unix", path: "/run/user/1000/docker.sock" });
    expect(dockerEndpoint({ DOCKER_HOST: "tcp://10.0.0.5:2376" })).toEqual({ kind: "tcp", host: "10.0.0.5", port: 2376 });
    expect(dockerEndpoint({ DOCKER_HOST: "ssh://me@builder" })).toEqual({ kind: "unprobed", url: "ssh://me@builder" });
  });
});

describe("provision", () => {
  it("turns a Pulumi failure into AIRLOCK_PULUMI_FAILED, with Pulumi's message and no stack trace of the SDK's", async () => {
    const failing = join(work, "failing-bin");
    mkdirSync(failing, { recursive: true });
    writeFileSync(join(failing, "pulumi"), "#!/bin/sh\necho 'error: the stand-in CLI refuses' >&2\nexit 1\n", { mode: 0o755 });
    const env = { ...process.env, PATH: `${failing}:${process.env.PATH ?? ""}`, PULUMI_CONFIG_PASSPHRASE: "test-passphrase" };
    const previous = process.env.PATH;
    // The Automation API finds the CLI on the process's own PATH.
    process.env.PATH = env.PATH;
    try {
      const error = await backend(env)
        .provision({
          sessionId: "never-made",
          snapshot: { dir: join(work, "no-snapshot"), manifest: { id: "snap-20260101-000000-aaaaaa" } as never },
          limits: { connectionLimit: 2, statementTimeoutMs: 1_000 },
          expiresAt: null,
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(error).toBeInstanceOf(AirlockError);
      expect((error as AirlockError).code).toBe("AIRLOCK_PULUMI_FAILED");
      expect((error as AirlockError).message).toContain("pulumi up for session never-made failed");
      expect((error as AirlockError).message).toContain("the stand-in CLI refuses");
    } finally {
      process.env.PATH = previous;
    }
  });
});

const hasPulumiAndDocker = await backend(process.env)
  .checkAvailable()
  .then(
    () => true,
    () => false,
  );

describe("a real session stack", () => {
  it.skipIf(!hasPulumiAndDocker)(
    "provisions with pulumi up, hands out the agent's work database, gives admin targets for base and work, and destroys the stack (skipped here: needs the Pulumi CLI and a Docker engine)",
    async () => {
      const cluster = await startTestCluster("pulumi-prod");
      const lines: string[] = [];
      const stateDir = join(work, "real-state");
      const b = new PulumiBackend({ stateDir, projectDir: REPO, onOutput: (l) => lines.push(l) });
      const sessionId = `it-${randomBytes(3).toString("hex")}`;
      try {
        const prod = await cluster.createDatabase("production");
        await withClient(prod, { step: "test", searchPath: "public" }, (c) =>
          c.query("CREATE TABLE items (id serial PRIMARY KEY, qty integer NOT NULL); INSERT INTO items (qty) SELECT i FROM generate_series(1, 25) i;"),
        );
        const snapshotsDir = join(work, "snapshots");
        mkdirSync(snapshotsDir, { recursive: true });
        const manifest = await captureSnapshot({
          source: prod,
          secret: "pulumi-test-secret-0123456789",
          rules: {},
          snapshotsDir,
          statementTimeoutMs: 60_000,
          lockTimeoutMs: 5_000,
          sampleSize: 100,
        });
        const provisioned = await b.provision({
          sessionId,
          snapshot: { dir: join(snapshotsDir, manifest.id), manifest },
          limits: { connectionLimit: 4, statementTimeoutMs: 2_000 },
          expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
        });
        const { password, ...agent } = provisioned.agent;
        expect(agent).toMatchObject({ host: "127.0.0.1", database: "work", user: "agent" });
        expect(JSON.stringify(provisioned.backendState)).not.toContain(password);
        await withClient(makeTarget({ ...agent, password }), { step: "test", searchPath: "public" }, async (c) => {
          expect((await c.query("SELECT count(*)::int AS n FROM public.items")).rows[0].n).toBe(25);
          expect((await c.query("SHOW statement_timeout")).rows[0].statement_timeout).toBe("2s");
          await c.query("DELETE FROM public.items WHERE id <= 5");
        });
        const base = await b.adminTarget(sessionId, provisioned.backendState, "base");
        const workDb = await b.adminTarget(sessionId, provisioned.backendState, "work");
        expect([base.database, workDb.database]).toEqual(["base", "work"]);
        expect(
          await withClient(base, { step: "test", searchPath: "public" }, async (c) => (await c.query("SELECT count(*)::int AS n FROM public.items")).rows[0].n),
        ).toBe(25);
        expect(
          await withClient(
            workDb,
            { step: "test", searchPath: "public" },
            async (c) => (await c.query("SELECT count(*)::int AS n FROM public.items")).rows[0].n,
          ),
        ).toBe(20);
        const denied = await openClient(makeTarget({ ...agent, password, database: "base" }), { step: "test", searchPath: "public" }).then(
          async (c) => {
            await c.end();
            return undefined;
          },
          (e: unknown) => e,
        );
        expect((denied as AirlockError).pg?.sqlstate).toBe("42501");
        for (const secret of [password, base.password ?? "never-empty"]) expect(lines.join("\n")).not.toContain(secret);
      } finally {
        await b.destroy(sessionId);
        await cluster.close();
      }
      // The stack is gone: destroying again is a no-op.
      await expect(b.destroy(sessionId)).resolves.toBeUndefined();
    },
    900_000,
  );
});
