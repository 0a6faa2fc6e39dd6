/**
 * Where the Docker engine is (DOCKER_HOST, else the default socket), a quick
 * probe that it answers, and a client for its API (dockerode). The docker
 * backend, the image builder and the Pulumi backend's availability check
 * share it.
 */
import { connect } from "node:net";
import Docker from "dockerode";

/** How long the Docker probe waits for the engine's socket. */
const DOCKER_PROBE_MS = 1_000;

/** Where the Docker engine is expected (as the Docker provider finds it: DOCKER_HOST, else the default socket). */
export type DockerEndpoint =
  | { readonly kind: "unix"; readonly path: string }
  | { readonly kind: "tcp"; readonly host: string; readonly port: number }
  | { readonly kind: "unprobed"; readonly url: string };

/** The Docker endpoint for an environment. */
export function dockerEndpoint(env: NodeJS.ProcessEnv = process.env): DockerEndpoint {
  const host = env.DOCKER_HOST;
  if (host === undefined || host === "") {
    return process.platform === "win32" ? { kind: "unix", path: "\\\\.\\pipe\\docker_engine" } : { kind: "unix", path: "/var/run/docker.sock" };
  }
  if (host.startsWith("unix://")) return { kind: "unix", path: host.slice("unix://".length) };
  if (host.startsWith("npipe://")) return { kind: "unix", path: host.slice("npipe://".length).replace(/\//g, "\\") };
  if (host.startsWith("tcp://")) {
    try {
      const url = new URL(host.replace(/^tcp:/, "http:"));
      return { kind: "tcp", host: url.hostname.replace(/^\[|\]$/g, ""), port: url.port === "" ? 2375 : Number(url.port) };
    } catch {
      return { kind: "unprobed", url: host };
    }
  }
  // ssh:// and anything else: nothing quick to probe; the provider reports problems itself.
  return { kind: "unprobed", url: host };
}

/** Connects to the Docker engine's socket; null when something answers, else what went wrong. */
export function probeDocker(endpoint: DockerEndpoint, timeoutMs = DOCKER_PROBE_MS): Promise<string | null> {
  if (endpoint.kind === "unprobed") return Promise.resolve(null);
  const where = endpoint.kind === "unix" ? endpoint.path : `tcp://${endpoint.host}:${endpoint.port}`;
  return new Promise((done) => {
    const socket = endpoint.kind === "unix" ? connect({ path: endpoint.path }) : connect({ host: endpoint.host, port: endpoint.port });
    const finish = (problem: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      done(problem);
    };
    const timer = setTimeout(() => finish(`the Docker engine at ${where} did not answer within ${timeoutMs} ms`), timeoutMs);
    socket.once("connect", () => finish(null));
    socket.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") finish(`there is no Docker socket at ${where}`);
      else if (e.code === "ECONNREFUSED") finish(`nothing listens at ${where} (is the Docker engine running?)`);
      else if (e.code === "EACCES" || e.code === "EPERM") finish(`no permission to use the Docker socket ${where}`);
      else finish(`the Docker engine at ${where} is unreachable (${e.code ?? e.message})`);
    });
  });
}

/** A client of the engine at DOCKER_HOST (or the default socket). */
export function dockerClient(env: NodeJS.ProcessEnv = process.env): Docker {
  const endpoint = dockerEndpoint(env);
  if (endpoint.kind === "unix") return new Docker({ socketPath: endpoint.path });
  if (endpoint.kind === "tcp") return new Docker({ host: endpoint.host, port: endpoint.port });
  // ssh:// and the like: docker-modem reads DOCKER_HOST itself.
  return new Docker();
}
