/**
 * One container spec, two drivers: the container the docker backend started
 * on a real engine, read back with the engine's own inspect API, must be the
 * container the Pulumi program declares (under Pulumi's mocks) for the same
 * session, field by field: image, entrypoint, command, environment, mounts,
 * uploaded files, health check, limits, labels, network and port. The two
 * mappings from the spec (src/staging/docker-container.ts and infra/index.ts)
 * are written separately, so either can break this test.
 */
import { rmSync } from "node:fs";
import pulumi from "@pulumi/pulumi";
import { extract } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadProject } from "../src/config/load.ts";
import { formatUrl, withClient } from "../src/pg/connect.ts";
import { memorySettings, pgDurationMs } from "../src/staging/container-spec.ts";
import { sessionNetworkMode } from "../src/staging/container-settings.ts";
import { sessionStackConfig } from "../src/staging/pulumi-backend.ts";
import { agentLimits, containerSettings, readSession } from "../src/staging/sessions.ts";
import { readManifest, snapshotDir, snapshotsDir } from "../src/snapshot/store.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { runCli } from "./helpers/cli.ts";
import { createTestProject } from "./helpers/project.ts";
import { dockerForTests, labelled } from "./helpers/docker.ts";
import { CONTAINER, IMAGE, NETWORK, pulumiProgramRunner } from "./helpers/pulumi-mocks.ts";

const engine = await dockerForTests();
if (!engine.ok) console.warn(`test/container-spec.test.ts skipped: ${engine.reason}`);

const MB = 1024 * 1024;
let prodCluster: TestCluster;
let projectDir: string;
let env: NodeJS.ProcessEnv;

function airlock(...args: string[]) {
  return runCli(projectDir, env, args);
}

/** The files at `paths` inside a container, by path. */
async function filesIn(container: import("dockerode").Container, paths: readonly string[]): Promise<Map<string, { content: string; mode: number }>> {
  const out = new Map<string, { content: string; mode: number }>();
  for (const path of paths) {
    const stream = await container.getArchive({ path });
    const ex = extract();
    const done = new Promise<void>((ok, fail) => {
      ex.on("entry", (header, body, next) => {
        const chunks: Buffer[] = [];
        body.on("data", (c: unknown) => chunks.push(c as Buffer));
        body.on("end", () => {
          out.set(path, { content: Buffer.concat(chunks).toString("utf8"), mode: header.mode ?? 0 });
          next();
        });
      });
      ex.on("finish", ok);
      ex.on("error", fail);
    });
    stream.pipe(ex);
    await done;
  }
  return out;
}

describe.skipIf(!engine.ok)("one container spec, two drivers", () => {
  const docker = engine.ok ? engine.docker : undefined!;

  beforeAll(async () => {
    prodCluster = await startTestCluster("spec-prod");
    const prod = await prodCluster.createDatabase("production");
    await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
      await c.query("CREATE TABLE notes (id integer PRIMARY KEY, body text); INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 50) i");
    });
    const network = process.env.AIRLOCK_TEST_DOCKER_NETWORK ?? "auto";
    projectDir = (
      await createTestProject(
        "spec-project",
        `export default { staging: { connectionLimit: 7, statementTimeout: "45s", docker: { image: ${JSON.stringify(engine.ok ? engine.image : "")}, network: "${network}", memory: "384MB", cpus: 0.5 } } };\n`,
      )
    ).dir;
    env = {
      ...process.env,
      PROD_DATABASE_URL: formatUrl(prodCluster.cluster.tcpTarget("production"), true),
      AIRLOCK_SECRET: "spec-test-secret-0123456789abcdef",
    };
    expect(airlock("snapshot").code).toBe(0);
    const up = airlock("up", "--backend", "docker", "--name", "twin");
    expect(up.code, up.stderr).toBe(0);
  }, 300_000);

  afterAll(async () => {
    if (projectDir === undefined) return;
    airlock("down", "twin");
    airlock("cluster", "destroy", "--erase");
    await prodCluster?.close();
    rmSync(projectDir, { recursive: true, force: true });
    expect(await labelled(docker, "airlock.session=twin")).toEqual({ containers: [], networks: [], volumes: [] });
  }, 120_000);

  it("the container the docker driver started, read back from the engine, is the one the Pulumi program declares", async () => {
    const project = await loadProject({ dir: projectDir });
    const session = readSession(project, "twin");
    const state = session.backendState;
    // No quota configured: the container measured its own after the restore (a small snapshot: the 1 GiB floor),
    // and the docker backend read it back from there.
    expect(state.diskQuotaBytes).toBe(1024 ** 3);
    const info = await docker.getContainer("airlock-twin").inspect();
    const imageInfo = await docker.getImage(info.Config.Image).inspect();

    // The Pulumi program, under mocks, with the stack config `airlock up --backend pulumi` would give the same session
    // (the project's settings and limits, the engine's network mode; the host port the docker driver picked).
    const { runProgram, plain } = pulumiProgramRunner(pulumi, Number(state.port));
    const request = {
      sessionId: "twin",
      snapshot: {
        dir: snapshotDir(snapshotsDir(project.statePath()), session.snapshotId),
        manifest: readManifest(snapshotsDir(project.statePath()), session.snapshotId),
      },
      limits: agentLimits(project),
      expiresAt: session.expiresAt,
    };
    const settings = await containerSettings(project);
    const network = await sessionNetworkMode(docker, settings.network);
    expect(network).toBe(state.network);
    const { resources } = await runProgram(sessionStackConfig({ request, container: { ...settings, network, port: Number(state.port) } }));
    const declared = plain(resources.find((r) => r.type === CONTAINER)!.inputs) as Record<string, any>;
    const image = resources.find((r) => r.type === IMAGE)!.inputs;

    expect(image.name).toBe(info.Config.Image);
    expect(declared.entrypoints).toEqual(info.Config.Entrypoint);
    expect(declared.command).toEqual(info.Config.Cmd);

    // Environment: the same names; the same values but for the two passwords (each driver makes its own).
    const envMap = (list: readonly string[]) => new Map(list.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
    const running = envMap(info.Config.Env);
    const fromImage = envMap(imageInfo.Config.Env ?? []);
    const wanted = envMap(declared.envs as string[]);
    expect([...running.keys()].filter((k) => !wanted.has(k) && !fromImage.has(k))).toEqual([]);
    for (const [name, value] of wanted) {
      if (name.endsWith("_PASSWORD")) expect(running.get(name)?.length, name).toBeGreaterThanOrEqual(24);
      else expect(running.get(name), name).toBe(value);
    }
    expect([...wanted.keys()].filter((k) => k.endsWith("_PASSWORD")).sort()).toEqual(["AIRLOCK_ADMIN_PASSWORD", "AIRLOCK_AGENT_PASSWORD"]);

    expect(declared.volumes.map((v: any) => `${v.hostPath}:${v.containerPath}${v.readOnly ? ":ro" : ""}`)).toEqual(info.HostConfig.Binds);
    const uploads = declared.uploads as Array<{ file: string; content: string; executable: boolean }>;
    const inside = await filesIn(
      docker.getContainer("airlock-twin"),
      uploads.map((u) => u.file),
    );
    for (const u of uploads) {
      expect(inside.get(u.file)?.content, u.file).toBe(u.content);
      expect(((inside.get(u.file)?.mode ?? 0) & 0o111) !== 0, `${u.file} executable`).toBe(u.executable);
    }

    const seconds = (d: string) => Number(/^(\d+)s$/.exec(d)![1]) * 1e9;
    expect(info.Config.Healthcheck).toEqual({
      Test: declared.healthcheck.tests,
      Interval: seconds(declared.healthcheck.interval),
      Timeout: seconds(declared.healthcheck.timeout),
      Retries: declared.healthcheck.retries,
      StartPeriod: seconds(declared.healthcheck.startPeriod),
    });
    expect(info.HostConfig.Memory).toBe(declared.memory * MB);
    expect(info.HostConfig.MemorySwap).toBe(declared.memorySwap * MB);
    expect(info.HostConfig.NanoCpus).toBe(Number(declared.cpus) * 1e9);
    expect(info.HostConfig.ShmSize).toBe(declared.shmSize * MB);
    expect(info.HostConfig.SecurityOpt).toEqual(declared.securityOpts);
    expect(info.HostConfig.Init).toBe(declared.init);
    expect(info.HostConfig.RestartPolicy?.Name).toBe(declared.restart);

    const labels = Object.fromEntries((declared.labels as Array<{ label: string; value: string }>).map((l) => [l.label, l.value]));
    const ownLabels = Object.fromEntries(Object.entries(info.Config.Labels ?? {}).filter(([k]) => imageInfo.Config.Labels?.[k] === undefined));
    expect(ownLabels).toEqual(labels);

    if (state.network === "host") {
      expect(declared.networkMode).toBe("host");
      expect(info.HostConfig.NetworkMode).toBe("host");
      expect(declared.ports).toBeUndefined();
      expect(resources.filter((r) => r.type === NETWORK)).toEqual([]);
    } else {
      expect(declared.networksAdvanced).toEqual([{ name: info.HostConfig.NetworkMode }]);
      const bound = Object.entries(info.HostConfig.PortBindings ?? {}).map(([k, v]) => ({ internal: Number(k.split("/")[0]), ip: (v as any)[0].HostIp }));
      expect(bound).toEqual(declared.ports.map((p: any) => ({ internal: p.internal, ip: p.ip })));
    }
  }, 120_000);
});

describe("the container spec", () => {
  it("sizes the server's memory from the container's limit: a quarter for shared buffers, work_mem shared by every connection", () => {
    const small = memorySettings(256, 100);
    expect(small).toEqual({ shared_buffers: "64MB", work_mem: "1024kB", maintenance_work_mem: "16MB", effective_cache_size: "128MB" });
    const large = memorySettings(8192, 120);
    expect(large.shared_buffers).toBe("2048MB");
    // All connections sorting at once stay within half of what shared buffers leave.
    expect(Number(large.work_mem.replace("kB", "")) * 120).toBeLessThanOrEqual(((8192 - 2048) * 1024) / 2);
  });

  it("reads Postgres durations as the server does (a bare number is milliseconds)", () => {
    expect([pgDurationMs("45000"), pgDurationMs("5min"), pgDurationMs("30s"), pgDurationMs("2h")]).toEqual([45_000, 300_000, 30_000, 7_200_000]);
    expect(() => pgDurationMs("soon")).toThrow(/not a Postgres duration/);
  });
});
