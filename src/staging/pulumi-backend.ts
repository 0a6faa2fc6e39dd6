/**
 * The `pulumi` staging backend: one Pulumi stack per session, running the
 * program in infra/ (a Postgres container restored from the snapshot)
 * through the Automation API, with the state in a local `file://` backend
 * under the project's state directory. The stack's secrets (passwords, URLs)
 * are encrypted with PULUMI_CONFIG_PASSPHRASE; no password is ever passed on
 * a command line, printed or logged.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Stack } from "@pulumi/pulumi/automation/index.js";
import { AirlockError } from "../errors.ts";
import { findOnPath } from "../os/executables.ts";
import { findFreePort } from "../pg/cluster-config.ts";
import { type PgTarget, makeTarget, parseTarget } from "../pg/connect.ts";
import { redactText } from "../pg/redact.ts";
import type { AgentEndpoint, Provisioned, ProvisionRequest, StagingBackend } from "./backend.ts";
import { BASE_DB, WORK_DB } from "./container-names.ts";
import { type ContainerSettings, sessionNetworkMode } from "./container-settings.ts";
import type { NetworkMode } from "./container-spec.ts";
import { dockerClient, dockerEndpoint, probeDocker } from "./docker-engine.ts";

/** Options of the Pulumi backend. */
export interface PulumiBackendOptions {
  /** The project's state directory (`.airlock`); the Pulumi state lives in `<stateDir>/pulumi`. */
  readonly stateDir: string;
  /** The user's project directory. */
  readonly projectDir: string;
  /** Where Pulumi.yaml and infra/ are; default: Airlock's own root. */
  readonly programDir?: string;
  /** Receives Pulumi's progress output, line by line (secrets are shown by Pulumi as [secret]). */
  readonly onOutput?: (line: string) => void;
  /**
   * The container's settings (`staging.docker`), as the docker backend takes them: the same image, network mode,
   * limits and project label. Without them, the program's own defaults apply (`infra/settings.ts`).
   */
  readonly container?: ContainerSettings;
  /** The environment to look in (PATH, DOCKER_HOST, PULUMI_CONFIG_PASSPHRASE); default: process.env. */
  readonly env?: NodeJS.ProcessEnv;
}

/** Airlock's root: the directory with Pulumi.yaml and infra/ (two levels above this file). */
export const AIRLOCK_ROOT = fileURLToPath(new URL("../../", import.meta.url));

type Automation = typeof import("@pulumi/pulumi/automation/index.js");

let loaded: Automation | undefined;

// Loaded on first use: the SDK is large, and checkAvailable must answer at once without it.
async function automation(): Promise<Automation> {
  if (loaded === undefined) {
    const mod = (await import("@pulumi/pulumi/automation/index.js")) as Automation & { default?: Automation };
    loaded = mod.default ?? mod;
  }
  return loaded;
}

/** What a session's stack is configured with (sessionStackConfig()). */
export interface SessionStackInput {
  readonly request: Pick<ProvisionRequest, "sessionId" | "snapshot" | "limits" | "expiresAt">;
  /** The container's settings with the network mode decided and the host port (host networking). */
  readonly container?: Omit<ContainerSettings, "network"> & { readonly network: NetworkMode; readonly port: number };
}

/**
 * The `airlock:*` stack config (not the passwords, which go in as secrets) for a session: the keys
 * `infra/settings.ts` reads, with the values the docker backend would give its container for the same request
 * (no `diskQuota` unless one is configured: the container then measures its own after the restore).
 */
export function sessionStackConfig(input: SessionStackInput): Record<string, string> {
  const { request, container } = input;
  const config: Record<string, string> = {
    "airlock:session": request.sessionId,
    "airlock:snapshot": request.snapshot.manifest.id,
    "airlock:snapshotDir": resolve(request.snapshot.dir),
    "airlock:maxConnections": String(Math.trunc(request.limits.connectionLimit)),
    // No unit (ms), as every backend sets it: the diff knows it as the setting Airlock imposed.
    "airlock:statementTimeout": String(Math.trunc(request.limits.statementTimeoutMs)),
    "airlock:expiresAt": request.expiresAt ?? "never",
  };
  if (request.limits.diskQuotaBytes !== undefined) config["airlock:diskQuota"] = String(Math.trunc(request.limits.diskQuotaBytes));
  if (container !== undefined) {
    Object.assign(config, {
      "airlock:image": container.image,
      "airlock:memoryMb": String(Math.trunc(container.memoryMb)),
      "airlock:cpus": String(container.cpus),
      "airlock:network": container.network,
      "airlock:project": container.project,
    });
    if (container.network === "host") config["airlock:port"] = String(container.port);
  }
  return config;
}

/** Splits Pulumi's output chunks into lines. */
function lineSplitter(sink: ((line: string) => void) | undefined, secrets: readonly string[]): { write: (chunk: string) => void; flush: () => void } {
  let pending = "";
  const emit = (line: string) => sink?.(redactText(line, secrets));
  return {
    write(chunk) {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) emit(line.replace(/\r$/, ""));
    },
    flush() {
      if (pending !== "") emit(pending);
      pending = "";
    },
  };
}

/** Sessions as Pulumi stacks of the infra/ program. */
export class PulumiBackend implements StagingBackend {
  readonly kind = "pulumi" as const;
  private readonly env: NodeJS.ProcessEnv;
  private readonly programDir: string;
  /** Admin URLs by session, so diff and replay do not ask Pulumi every time. */
  private readonly adminUrls = new Map<string, string>();

  constructor(private readonly options: PulumiBackendOptions) {
    this.env = options.env ?? process.env;
    this.programDir = resolve(options.programDir ?? AIRLOCK_ROOT);
  }

  /** The local state backend's URL. */
  get backendUrl(): string {
    return `file://${resolve(this.options.stateDir, "pulumi")}`;
  }

  async checkAvailable(): Promise<void> {
    const missing: Array<{ what: string; why: string; hint: string }> = [];
    const docker = probeDocker(dockerEndpoint(this.env));
    if (findOnPath("pulumi", this.env) === undefined) {
      missing.push({
        what: "pulumi CLI",
        why: "the Pulumi CLI (`pulumi`) is not on PATH",
        hint: "install the Pulumi CLI (https://www.pulumi.com/docs/install/) and put it on PATH",
      });
    }
    const dockerProblem = await docker;
    if (dockerProblem !== null) {
      missing.push({
        what: "Docker engine",
        why: `no Docker engine: ${dockerProblem}`,
        hint: "start a Docker engine, or set DOCKER_HOST to one that runs (unix:///path/to/docker.sock or tcp://host:port)",
      });
    }
    if (this.env.PULUMI_CONFIG_PASSPHRASE === undefined && this.env.PULUMI_CONFIG_PASSPHRASE_FILE === undefined) {
      missing.push({
        what: "PULUMI_CONFIG_PASSPHRASE",
        why: "PULUMI_CONFIG_PASSPHRASE is not set (it encrypts each session's passwords in the local Pulumi state)",
        hint: "export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) with a passphrase you keep; the same one is needed to destroy the session",
      });
    }
    if (!existsSync(join(this.programDir, "Pulumi.yaml"))) {
      missing.push({
        what: "Pulumi program",
        why: `there is no Pulumi.yaml in ${this.programDir}`,
        hint: "reinstall Airlock: its Pulumi.yaml and infra/ belong together",
      });
    }
    if (missing.length > 0) {
      throw new AirlockError("AIRLOCK_PULUMI_UNAVAILABLE", `the pulumi staging backend cannot run here: ${missing.map((m) => m.why).join("; ")}`, {
        hint: `${missing.map((m) => m.hint).join("; ")}; or use the local backend (\`airlock up --backend local\`)`,
        details: { missing: missing.map((m) => m.what) },
      });
    }
  }

  /** What every Pulumi command of this backend gets in its environment. */
  private envVars(): Record<string, string> {
    const vars: Record<string, string> = { PULUMI_BACKEND_URL: this.backendUrl, PULUMI_SKIP_UPDATE_CHECK: "true" };
    for (const key of ["PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "DOCKER_HOST"]) {
      const value = this.env[key];
      if (value !== undefined) vars[key] = value;
    }
    return vars;
  }

  private async stack(sessionId: string, create: boolean): Promise<Stack> {
    mkdirSync(resolve(this.options.stateDir, "pulumi"), { recursive: true, mode: 0o700 });
    const { LocalWorkspace } = await automation();
    const args = { stackName: sessionId, workDir: this.programDir };
    const options = { envVars: this.envVars() };
    return create ? LocalWorkspace.createOrSelectStack(args, options) : LocalWorkspace.selectStack(args, options);
  }

  /** Sets one secret config value through stdin, so it is on no command line (`pulumi config set` reads a piped value). */
  private setSecretConfig(sessionId: string, key: string, value: string): Promise<void> {
    return new Promise((done, fail) => {
      const child = spawn("pulumi", ["config", "set", "--secret", "--non-interactive", "--stack", sessionId, key], {
        cwd: this.programDir,
        env: { ...this.env, ...this.envVars() },
        stdio: ["pipe", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
      });
      child.once("error", fail);
      child.once("close", (code) => {
        if (code === 0) done();
        else
          fail(
            new AirlockError("AIRLOCK_PULUMI_FAILED", `pulumi config set ${key} failed: ${redactText(stderr.trim(), [value])}`, {
              hint: "check PULUMI_CONFIG_PASSPHRASE and the Pulumi state under .airlock/pulumi",
            }),
          );
      });
      child.stdin.end(value);
    });
  }

  async provision(request: ProvisionRequest): Promise<Provisioned> {
    const id = request.sessionId;
    const adminPassword = randomBytes(24).toString("base64url");
    const agentPassword = randomBytes(24).toString("base64url");
    const secrets = [adminPassword, agentPassword];
    const out = lineSplitter(this.options.onOutput, secrets);
    try {
      const stack = await this.stack(id, true);
      const settings = this.options.container;
      let container: SessionStackInput["container"];
      if (settings !== undefined) {
        const network = await sessionNetworkMode(dockerClient(this.env), settings.network);
        container = { ...settings, network, port: network === "host" ? await findFreePort() : 0 };
      }
      const config = sessionStackConfig({ request, ...(container === undefined ? {} : { container }) });
      await stack.setAllConfig(Object.fromEntries(Object.entries(config).map(([key, value]) => [key, { value }])));
      // Secret config keeps the passwords stable across updates; they go in through stdin.
      await this.setSecretConfig(id, "airlock:adminPassword", adminPassword);
      await this.setSecretConfig(id, "airlock:agentPassword", agentPassword);
      // The program creates the container, whose entrypoint restores the snapshot: `up` ends once it is healthy.
      request.onProgress?.({ phase: "restore", into: "container" });
      await stack.up({ onOutput: (chunk) => out.write(chunk), color: "never", suppressOutputs: true });
      out.flush();
      const outputs = await stack.outputs();
      const agentUrl = outputs.agentUrl?.value;
      const adminUrl = outputs.adminUrl?.value;
      if (typeof agentUrl !== "string" || typeof adminUrl !== "string") {
        throw new AirlockError("AIRLOCK_PULUMI_FAILED", `the stack of session ${id} has no agentUrl/adminUrl outputs`, {
          hint: "check infra/ (its outputs) and run `airlock down` for this session",
        });
      }
      this.adminUrls.set(id, adminUrl);
      const agent = parseTarget(agentUrl);
      if (agent.password === undefined)
        throw new AirlockError("AIRLOCK_PULUMI_FAILED", `the agentUrl of session ${id} has no password`, { hint: "check infra/ (its outputs)" });
      const endpoint: AgentEndpoint = { host: agent.host, port: agent.port, database: agent.database, user: agent.user, password: agent.password };
      return {
        agent: endpoint,
        backendState: {
          stack: id,
          state: this.backendUrl,
          programDir: this.programDir,
          container: `airlock-${id}`,
          port: agent.port,
          image: typeof outputs.image?.value === "string" ? outputs.image.value : null,
        },
      };
    } catch (e) {
      out.flush();
      // Nothing half-made survives: the stack (container, network) goes with the failure.
      await this.destroy(id).catch(() => undefined);
      throw this.failure(e, `pulumi up for session ${id}`, secrets);
    }
  }

  /** The session's admin URL (a stack output; secret). */
  private async adminUrl(sessionId: string): Promise<string> {
    const known = this.adminUrls.get(sessionId);
    if (known !== undefined) return known;
    const stack = await this.stack(sessionId, false).catch((e: unknown) => {
      throw this.failure(e, `selecting the stack of session ${sessionId}`, []);
    });
    const url = (await stack.outputs()).adminUrl?.value;
    if (typeof url !== "string") {
      throw new AirlockError("AIRLOCK_PULUMI_FAILED", `the stack of session ${sessionId} has no adminUrl output`, {
        hint: "the stack may be half-made; run `airlock down` for it and start a new session",
      });
    }
    this.adminUrls.set(sessionId, url);
    return url;
  }

  async adminTarget(sessionId: string, _state: Provisioned["backendState"], which: "base" | "work"): Promise<PgTarget> {
    const t = parseTarget(await this.adminUrl(sessionId));
    return makeTarget({
      host: t.host,
      port: t.port,
      user: t.user,
      database: which === "base" ? BASE_DB : WORK_DB,
      ...(t.password === undefined ? {} : { password: t.password }),
    });
  }

  async destroy(sessionId: string): Promise<void> {
    this.adminUrls.delete(sessionId);
    const { StackNotFoundError } = await automation();
    let stack: Stack;
    try {
      stack = await this.stack(sessionId, false);
    } catch (e) {
      if (e instanceof StackNotFoundError) return;
      throw this.failure(e, `selecting the stack of session ${sessionId}`, []);
    }
    const out = lineSplitter(this.options.onOutput, []);
    try {
      await stack.destroy({ onOutput: (chunk) => out.write(chunk), color: "never" });
      out.flush();
      await stack.workspace.removeStack(sessionId);
    } catch (e) {
      out.flush();
      throw this.failure(e, `pulumi destroy for session ${sessionId}`, []);
    }
  }

  /** An AirlockError for a failed Pulumi operation; Pulumi's own message, with secrets removed. */
  private failure(e: unknown, what: string, secrets: readonly string[]): AirlockError {
    if (e instanceof AirlockError) return e;
    const text = redactText(e instanceof Error ? e.message : String(e), secrets);
    // The tail of Pulumi's output says what went wrong; the head is progress.
    const tail = text
      .split("\n")
      .filter((l) => l.trim() !== "")
      .slice(-15)
      .join("\n");
    if (loaded !== undefined && e instanceof loaded.ConcurrentUpdateError) {
      return new AirlockError("AIRLOCK_PULUMI_BUSY", `${what}: another Pulumi operation holds this session's stack`, {
        hint: "wait for it to finish; if none runs any more, `pulumi cancel` it (PULUMI_BACKEND_URL=file://…/.airlock/pulumi)",
      });
    }
    return new AirlockError("AIRLOCK_PULUMI_FAILED", `${what} failed:\n${tail}`, {
      hint: "read Pulumi's message above; the stack's state is in .airlock/pulumi (PULUMI_BACKEND_URL)",
    });
  }
}
