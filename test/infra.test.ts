/**
 * The Pulumi program in infra/: its resource graph under Pulumi's own mocks
 * (no Docker engine and no CLI needed), its configuration checks, that
 * Pulumi's Node.js runtime loads infra/ the way `pulumi up` does. The restore
 * it runs in the container is tested against a real cluster in
 * test/infra-restore.test.ts.
 */
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join, resolve } from "node:path";
import pulumi from "@pulumi/pulumi";
import { afterAll, describe, expect, it } from "vitest";
import { StackConfigError, imagePinProblem, parseTtl, readSettings } from "../infra/settings.ts";
import { fixtureSnapshot, openDir } from "./helpers/infra-fixtures.ts";
import { CONTAINER, IMAGE, NETWORK, type Registered, pulumiProgramRunner } from "./helpers/pulumi-mocks.ts";

const REPO = resolve(import.meta.dirname, "..");
const MOCK_PORT = 54_321;

const fixtures = openDir("infra-fixtures");

const SNAP_A = "snap-20260101-000000-aaaaaa";
const SNAP_B = "snap-20260202-000000-bbbbbb";
const dirA = fixtureSnapshot(fixtures, SNAP_A);
const dirB = fixtureSnapshot(fixtures, SNAP_B);

afterAll(() => rmSync(fixtures, { recursive: true, force: true }));

const { runProgram, isSecretValue, plain, valueOf, lastResources } = pulumiProgramRunner(pulumi, MOCK_PORT);

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
    expect(network.options).toMatchObject({
      "com.docker.network.bridge.enable_ip_masquerade": "false",
      "com.docker.network.bridge.enable_icc": "false",
      "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1",
    });

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
    expect(uploads.map((u) => u.file)).toContain("/airlock/scripts/pg_hba.conf");
    expect(container.entrypoints).toEqual(["/airlock/scripts/entrypoint.sh"]);
    expect(container.command[0]).toBe("postgres");
    const restore = uploads.find((u) => u.file === "/airlock/scripts/restore.sql")?.content ?? "";
    expect(restore).toContain(
      `COPY "public"."t" ("id") FROM PROGRAM 'exec gzip -dc -- ''/var/lib/postgresql/airlock-snapshot/data/public.t.copy.gz''' WITH (FREEZE);`,
    );
    const roles = uploads.find((u) => u.file === "/airlock/scripts/roles.sql")?.content ?? "";
    expect(roles).toContain("CONNECTION LIMIT 20 ");
    expect(roles).toContain(`ALTER ROLE "agent" SET statement_timeout = '5min';`);
    expect(roles).toContain(`REVOKE CONNECT ON DATABASE "base", "work", postgres, template1 FROM PUBLIC;`);
  });

  it("keeps passwords secret: in the container's env, in its state and in both URL outputs, and out of every uploaded file", async () => {
    const { resources, stack } = await runProgram(baseConfig);
    const envs = only(resources, CONTAINER).inputs.envs as unknown[];
    expect(isSecretValue(envs[0]) || isSecretValue(envs)).toBe(true);
    expect(isSecretValue(envs[1]) || isSecretValue(envs)).toBe(true);
    const env = plain(envs) as string[];
    const admin = env.find((e) => e.startsWith("AIRLOCK_ADMIN_PASSWORD="))?.split("=")[1] ?? "";
    const agent = env.find((e) => e.startsWith("AIRLOCK_AGENT_PASSWORD="))?.split("=")[1] ?? "";
    expect(admin.length).toBeGreaterThanOrEqual(24);
    expect(agent.length).toBeGreaterThanOrEqual(24);
    expect(admin).not.toBe(agent);

    expect(await pulumi.isSecret(stack.outputs.agentUrl)).toBe(true);
    expect(await pulumi.isSecret(stack.outputs.adminUrl)).toBe(true);
    expect(await pulumi.isSecret(stack.container.envs)).toBe(true);
    expect(await pulumi.isSecret(stack.outputs.session)).toBe(false);

    const agentUrl = new URL(await valueOf(stack.outputs.agentUrl));
    expect([agentUrl.hostname, agentUrl.port, agentUrl.pathname, agentUrl.username, decodeURIComponent(agentUrl.password)]).toEqual([
      "127.0.0.1",
      String(MOCK_PORT),
      "/work",
      "agent",
      agent,
    ]);
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
    expect(env).toContain("AIRLOCK_ADMIN_PASSWORD=admin-pw-from-config-1");
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
    expect(lastResources()).toEqual([]);
    await expect(runProgram({ ...baseConfig, "airlock:image": "postgres" })).rejects.toThrow(/neither name:tag/);
    await expect(runProgram({ ...baseConfig, "airlock:image": "postgres:15-bookworm" })).rejects.toThrow(/floats/);
    await expect(runProgram({ "airlock:snapshotDir": dirA })).rejects.toThrow(/airlock:snapshot is required/);
    await expect(runProgram({ "airlock:snapshot": SNAP_B, "airlock:snapshotDir": dirA })).rejects.toThrow(
      /manifest.json is snapshot snap-20260101-000000-aaaaaa, but airlock:snapshot is snap-20260202-000000-bbbbbb/,
    );
    await expect(runProgram({ ...baseConfig, "airlock:snapshotdir": "/typo" })).rejects.toThrow(/airlock:snapshotdir is not a setting/);
    await expect(runProgram({ ...baseConfig, "airlock:snapshotDir": dirB })).rejects.toThrow(/is snapshot snap-20260202-000000-bbbbbb/);
    expect(lastResources()).toEqual([]);
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
      network: "bridge",
      // No quota configured: the container measures its own after the restore.
      diskQuotaBytes: undefined,
      project: "",
    });
  });

  it("reports every problem at once", () => {
    let error: unknown;
    try {
      readSettings(
        source({ image: "postgres:latest", memoryMb: "lots", cpus: "-1", maxConnections: "0", ttl: "soon", statementTimeout: "5 minutes", port: "70000" }),
        "bad name!",
        "/p",
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StackConfigError);
    const problems = (error as StackConfigError).problems.join("\n");
    for (const key of ["session", "snapshot is required", "image", "memoryMb", "cpus", "maxConnections", "ttl", "statementTimeout", "port"])
      expect(problems).toContain(key);
  });

  it("reads TTLs and pins", () => {
    expect([parseTtl("2h"), parseTtl("30m"), parseTtl("90s"), parseTtl("1d"), parseTtl("never"), parseTtl("later")]).toEqual([
      7_200_000,
      1_800_000,
      90_000,
      86_400_000,
      null,
      undefined,
    ]);
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
    const result = spawnSync(process.execPath, ["-e", script], {
      cwd: REPO,
      env: { ...process.env, PULUMI_NODEJS_TYPESCRIPT: "true" },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(result.status, result.stderr).toBe(0);
    const line = result.stdout.split("\n").find((l) => l.startsWith("{"));
    expect(line, result.stdout + result.stderr).toBeDefined();
    const { types, outputs } = JSON.parse(line!) as { types: string[]; outputs: Record<string, unknown> };
    expect(types).toEqual(expect.arrayContaining(["pulumi:pulumi:Stack", NETWORK, IMAGE, CONTAINER]));
    expect(outputs).toMatchObject({
      agentUrl: "postgres://agent:***@127.0.0.1:40001/work",
      adminUrl: "postgres://postgres:***@127.0.0.1:40001/postgres",
      session: "loader-test",
      snapshot: SNAP_A,
      port: 40001,
      image: "postgres:15.10-bookworm",
    });
  });
});
