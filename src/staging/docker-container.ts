/**
 * The docker driver of the session container spec (container-spec.ts): the
 * spec as an Engine API create request, its files uploaded as a tar before
 * the start, and the container's state read back. The Pulumi program
 * (infra/index.ts) is the other driver of the same spec.
 */
import type Docker from "dockerode";
import { pack } from "tar-stream";
import type { ContainerFile } from "./container-restore.ts";
import { BRIDGE_OPTIONS, type ContainerSpec, envValue } from "./container-spec.ts";

const SECOND_NS = 1_000_000_000;

/** The Engine API's create body for a spec, with the secret env values (in `spec.secretEnv` order). */
export function createOptions(spec: ContainerSpec, secrets: readonly string[]): Docker.ContainerCreateOptions {
  if (secrets.length !== spec.secretEnv.length) throw new Error(`the container needs ${spec.secretEnv.length} secrets, got ${secrets.length}`);
  const portKey = `${spec.port.container}/tcp`;
  const bridge = spec.network === "bridge";
  return {
    name: spec.name,
    Image: spec.image,
    Entrypoint: [...spec.entrypoint],
    Cmd: [...spec.command],
    Env: [...spec.secretEnv.map((name, i) => `${name}=${secrets[i]}`), ...spec.env.map((e) => `${e.name}=${e.value}`)],
    Labels: Object.fromEntries(spec.labels.map((l) => [l.label, l.value])),
    Healthcheck: {
      Test: [...spec.healthcheck.test],
      Interval: spec.healthcheck.intervalSeconds * SECOND_NS,
      Timeout: spec.healthcheck.timeoutSeconds * SECOND_NS,
      Retries: spec.healthcheck.retries,
      StartPeriod: spec.healthcheck.startPeriodSeconds * SECOND_NS,
    },
    ...(bridge ? { ExposedPorts: { [portKey]: {} } } : {}),
    StopTimeout: spec.stopGraceSeconds,
    HostConfig: {
      Binds: spec.mounts.map((m) => `${m.hostPath}:${m.containerPath}${m.readOnly ? ":ro" : ""}`),
      Memory: spec.memoryBytes,
      MemorySwap: spec.memorySwapBytes,
      NanoCpus: spec.nanoCpus,
      ShmSize: spec.shmSizeBytes,
      SecurityOpt: [...spec.securityOpts],
      Init: spec.init,
      RestartPolicy: { Name: spec.restart },
      NetworkMode: bridge ? spec.name : "host",
      ...(bridge ? { PortBindings: { [portKey]: [{ HostIp: spec.port.hostIp, HostPort: spec.port.host === 0 ? "" : String(spec.port.host) }] } } : {}),
    },
  };
}

/** The network a bridge-mode session gets (BRIDGE_OPTIONS). */
export function networkOptions(spec: ContainerSpec): Docker.NetworkCreateOptions {
  return {
    Name: spec.name,
    Driver: "bridge",
    Internal: false,
    Options: { ...BRIDGE_OPTIONS },
    Labels: Object.fromEntries(spec.labels.map((l) => [l.label, l.value])),
  };
}

/** A tar of the files, with absolute paths made relative to `/` (the container's root) and their directories. */
export async function uploadsTar(files: readonly ContainerFile[]): Promise<Buffer> {
  const tar = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    tar.on("data", (c: unknown) => chunks.push(c as Buffer));
    tar.on("end", () => resolve(Buffer.concat(chunks)));
    tar.on("error", reject);
  });
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.replace(/^\/+/, "").split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      tar.entry({ name: `${dir}/`, type: "directory", mode: 0o755 });
    }
    tar.entry({ name: parts.join("/"), mode: f.executable ? 0o755 : 0o644 }, f.content);
  }
  tar.finalize();
  return done;
}

/** What `airlock ls` says of a session's container. */
export type ContainerState = "ready" | "starting" | "restarting" | "unhealthy" | "stopped" | "dead" | "missing";

/** The container's state from an inspect result (undefined: no such container). */
export function containerState(info: Docker.ContainerInspectInfo | undefined): { state: ContainerState; detail: string | null } {
  if (info === undefined) return { state: "missing", detail: "its container is gone" };
  const s = info.State;
  if (s.Restarting) return { state: "restarting", detail: s.OOMKilled ? "the kernel killed it for memory; the engine restarts it" : null };
  if (s.Dead) return { state: "dead", detail: "the engine marked its container dead" };
  if (!s.Running) {
    const why = s.OOMKilled ? "killed for exceeding its memory limit" : `exited with code ${s.ExitCode}${s.Error ? `: ${s.Error}` : ""}`;
    return { state: s.Status === "created" ? "starting" : "dead", detail: `its container ${why}` };
  }
  const health = s.Health?.Status;
  if (health === "healthy") return { state: "ready", detail: null };
  if (health === "unhealthy") return { state: "unhealthy", detail: "its server fails the health check" };
  return { state: "starting", detail: null };
}

/** The value of `NAME=value` in an inspected container's environment, or undefined. */
export function envOf(info: Docker.ContainerInspectInfo, name: string): string | undefined {
  return envValue(info.Config.Env, name);
}
