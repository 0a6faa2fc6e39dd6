/**
 * The Pulumi program of the `pulumi` staging backend: one stack per agent
 * session. A private Docker network, a Postgres image pinned by exact tag or
 * digest, and one container on that network that restores the snapshot into
 * `base`, clones it as `work` and gives the agent its own limited role. The
 * port is published on 127.0.0.1 only; memory and CPU are capped; labels say
 * which session it is and when it expires.
 *
 * Pulumi loads it through infra/index.mjs (Node 20 cannot import .ts without
 * a loader); tests import `airlockStack` directly, after setting mocks.
 */
import { randomBytes } from "node:crypto";
import docker from "@pulumi/docker";
import pulumi from "@pulumi/pulumi";
import { AGENT_ROLE, SUPERUSER, WORK_DB } from "../src/staging/container-names.ts";
import { SnapshotFileError, readSnapshotForRestore } from "../src/staging/container-restore.ts";
import { BRIDGE_OPTIONS, envValue, sessionContainerSpec } from "../src/staging/container-spec.ts";
import { StackConfigError, type StackSettings, readSettings } from "./settings.ts";

/** The stack outputs (what `pulumi stack output` and the Automation API see). */
export interface AirlockOutputs {
  /** postgres://agent:…@127.0.0.1:<port>/work — secret. */
  readonly agentUrl: pulumi.Output<string>;
  /** postgres://postgres:…@127.0.0.1:<port>/postgres — secret; the superuser, for diff and replay. */
  readonly adminUrl: pulumi.Output<string>;
  readonly session: pulumi.Output<string>;
  readonly snapshot: pulumi.Output<string>;
  readonly port: pulumi.Output<number>;
  /** ISO time, or "never". */
  readonly expiresAt: pulumi.Output<string>;
  readonly image: pulumi.Output<string>;
}

/** The stack's resources and outputs. */
export interface AirlockStack {
  readonly settings: StackSettings;
  /** Bridge mode only. */
  readonly network: docker.Network | undefined;
  readonly image: docker.RemoteImage;
  readonly container: docker.Container;
  readonly outputs: AirlockOutputs;
}

function newPassword(): string {
  // base64url: nothing to escape in a URL, a shell or SQL.
  return randomBytes(24).toString("base64url");
}

/** The value of `NAME=value` in a container's env list; the program's own env, so it is there. */
function envOrFail(envs: readonly string[] | undefined, name: string): string {
  const value = envValue(envs, name);
  if (value === undefined) throw new Error(`the container has no ${name}`);
  return value;
}

function label(labels: ReadonlyArray<{ label: string; value: string }> | undefined, name: string): string {
  return (labels ?? []).find((l) => l.label === name)?.value ?? "";
}

/** A libpq URL; user and password are percent-encoded. */
export function postgresUrl(user: string, password: string, port: number, database: string): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
}

/**
 * Property paths that keep their first value for the container's lifetime:
 * generated passwords and a computed expiry would otherwise change on every
 * `pulumi up` and, since env and labels force a new container, replace it
 * (and the agent's work with it). Explicit config values are not sticky:
 * changing one is a deliberate replacement.
 */
export function stickyPaths(generated: { adminPassword: boolean; agentPassword: boolean; expiresAt: boolean }): string[] {
  return [...(generated.adminPassword ? ["envs[0]"] : []), ...(generated.agentPassword ? ["envs[1]"] : []), ...(generated.expiresAt ? ["labels[1]"] : [])];
}

/** The configured settings, or a RunError that Pulumi prints without a stack trace. */
function settingsOrFail(config: pulumi.Config): StackSettings {
  try {
    const keys = Object.keys(pulumi.runtime.allConfig())
      .filter((k) => k.startsWith("airlock:"))
      .map((k) => k.slice("airlock:".length));
    return readSettings(config, pulumi.getStack(), process.cwd(), keys);
  } catch (e) {
    if (e instanceof StackConfigError) throw new pulumi.RunError(e.message);
    throw e;
  }
}

/** The spec's size in bytes as the provider's MB. */
const mb = (bytes: number): number => Math.floor(bytes / (1024 * 1024));

/** Declares the session's resources from the stack configuration: the container is sessionContainerSpec's, field by field. */
export function airlockStack(): AirlockStack {
  const config = new pulumi.Config("airlock");
  const settings = settingsOrFail(config);
  let restore: ReturnType<typeof readSnapshotForRestore>;
  try {
    restore = readSnapshotForRestore(settings.snapshotDir, settings.snapshot);
  } catch (e) {
    if (e instanceof SnapshotFileError) throw new pulumi.RunError(e.message);
    throw e;
  }

  // Generated passwords rotate on every run, but stickyPaths keeps the container's first ones,
  // and the URLs below read them back from the container's state. `airlock:adminPassword` and
  // `airlock:agentPassword` (`pulumi config set --secret`) fix them instead.
  const adminConfigured = config.getSecret("adminPassword");
  const agentConfigured = config.getSecret("agentPassword");
  const adminPassword = adminConfigured ?? pulumi.secret(newPassword());
  const agentPassword = agentConfigured ?? pulumi.secret(newPassword());
  const expiresAt = settings.expiresAt ?? (settings.ttlMs === null ? "never" : new Date(Date.now() + settings.ttlMs).toISOString());
  const spec = sessionContainerSpec({
    session: settings.session,
    snapshotDir: settings.snapshotDir,
    image: settings.image,
    memoryMb: settings.memoryMb,
    cpus: settings.cpus,
    connectionLimit: settings.maxConnections,
    statementTimeout: settings.statementTimeout,
    diskQuotaBytes: settings.diskQuotaBytes,
    network: settings.network,
    port: settings.port,
    expiresAt,
    project: settings.project,
    readyTimeoutSeconds: settings.readyTimeoutSeconds,
    restore,
  });
  const bridge = spec.network === "bridge";

  // Bridge mode only; with host networking Postgres binds 127.0.0.1 itself.
  const network = bridge
    ? new docker.Network(
        "network",
        {
          name: spec.name,
          driver: "bridge",
          // Not `internal`: Docker publishes no port of a container whose only network is internal
          // (moby/moby#36174). BRIDGE_OPTIONS keep everything on it to itself instead.
          internal: false,
          options: { ...BRIDGE_OPTIONS },
          labels: spec.labels.map((l) => ({ ...l })),
        },
        { deleteBeforeReplace: true },
      )
    : undefined;

  const image = new docker.RemoteImage("postgres", { name: spec.image, keepLocally: true });
  const [adminEnv, agentEnv] = spec.secretEnv;
  const container = new docker.Container(
    "postgres",
    {
      name: spec.name,
      image: image.imageId,
      entrypoints: [...spec.entrypoint],
      command: [...spec.command],
      // The order matters: stickyPaths names envs[0], envs[1] and labels[1].
      envs: [
        pulumi.interpolate`${adminEnv}=${adminPassword}`,
        pulumi.interpolate`${agentEnv}=${agentPassword}`,
        ...spec.env.map((e) => `${e.name}=${e.value}`),
      ],
      labels: spec.labels.map((l) => ({ ...l })),
      ...(bridge
        ? {
            networksAdvanced: [{ name: network!.name }],
            ports: [{ internal: spec.port.container, ip: spec.port.hostIp, protocol: "tcp", ...(spec.port.host === 0 ? {} : { external: spec.port.host }) }],
          }
        : { networkMode: "host" }),
      memory: mb(spec.memoryBytes),
      memorySwap: mb(spec.memorySwapBytes),
      cpus: String(spec.nanoCpus / 1e9),
      shmSize: mb(spec.shmSizeBytes),
      securityOpts: [...spec.securityOpts],
      init: spec.init,
      volumes: spec.mounts.map((m) => ({ hostPath: m.hostPath, containerPath: m.containerPath, readOnly: m.readOnly })),
      uploads: spec.uploads.map((f) => ({ file: f.path, content: f.content, executable: f.executable })),
      healthcheck: {
        tests: [...spec.healthcheck.test],
        interval: `${spec.healthcheck.intervalSeconds}s`,
        timeout: `${spec.healthcheck.timeoutSeconds}s`,
        retries: spec.healthcheck.retries,
        startPeriod: `${spec.healthcheck.startPeriodSeconds}s`,
      },
      // `pulumi up` returns only once the snapshot is restored and the server takes connections.
      wait: true,
      waitTimeout: settings.readyTimeoutSeconds,
      restart: spec.restart,
      mustRun: true,
      removeVolumes: true,
      destroyGraceSeconds: spec.stopGraceSeconds,
    },
    {
      additionalSecretOutputs: ["envs"],
      ignoreChanges: stickyPaths({
        adminPassword: adminConfigured === undefined,
        agentPassword: agentConfigured === undefined,
        expiresAt: settings.expiresAt === null,
      }),
      // Fixed names (and maybe a fixed port): the old container must go before its replacement starts.
      deleteBeforeReplace: true,
    },
  );

  const port = container.ports.apply((ports) => {
    if (!bridge) return spec.port.host;
    const external = ports?.[0]?.external;
    if (external === undefined) throw new Error("the container has no published port");
    return external;
  });
  const outputs: AirlockOutputs = {
    agentUrl: pulumi.secret(pulumi.all([container.envs, port]).apply(([envs, p]) => postgresUrl(AGENT_ROLE, envOrFail(envs, agentEnv!), p, WORK_DB))),
    adminUrl: pulumi.secret(pulumi.all([container.envs, port]).apply(([envs, p]) => postgresUrl(SUPERUSER, envOrFail(envs, adminEnv!), p, "postgres"))),
    session: pulumi.output(settings.session),
    snapshot: pulumi.output(settings.snapshot),
    port,
    expiresAt: container.labels.apply((labels) => label(labels, "airlock.expires")),
    image: pulumi.output(settings.image),
  };
  return { settings, network, image, container, outputs };
}

/** The stack outputs, declared by running the program (what infra/index.mjs exports). */
export function main(): AirlockOutputs {
  return airlockStack().outputs;
}
