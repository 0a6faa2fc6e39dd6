/**
 * `airlock run -- <agent command…>`: a session for the agent, and the agent
 * run inside it with the staging URL as its only database.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { defaultActor } from "../audit/chain.ts";
import { recordEvent } from "../audit/journal.ts";
import { type Project, localClusterDir } from "../config/load.ts";
import { AirlockError } from "../errors.ts";
import { makeTarget, type PgTarget, parseTarget } from "../pg/connect.ts";
import { readManifest, snapshotsDir } from "../snapshot/store.ts";
import { agentEnvironment } from "./agent-env.ts";
import { type SandboxKind, checkSandbox, sandboxed } from "./sandbox.ts";
import { type SessionRecord, type UpOptions, agentConnection, createSession } from "./sessions.ts";

/** What `runAgent` did. */
export interface RunResult {
  readonly session: SessionRecord;
  /** The agent's exit code (a signal counts as 128 + its number). */
  readonly exitCode: number;
  /** What the agent printed on stdout. */
  readonly output: string;
}

function productionTargets(project: Project, snapshotId: string): PgTarget[] {
  const targets: PgTarget[] = [];
  const url = process.env.PROD_DATABASE_URL;
  if (url !== undefined && url !== "") {
    try {
      targets.push(parseTarget(url));
    } catch {
      // A malformed PROD_DATABASE_URL is still scrubbed by name.
    }
  }
  const source = readManifest(snapshotsDir(project.statePath()), snapshotId).source;
  targets.push(makeTarget({ host: source.host, port: source.port, database: source.database, user: source.user }));
  return targets;
}

/** Secret values Airlock knows besides production's: its key, and the staging superuser's password. */
function knownSecrets(project: Project): string[] {
  const out: string[] = [];
  if (process.env.AIRLOCK_SECRET !== undefined && process.env.AIRLOCK_SECRET !== "") out.push(process.env.AIRLOCK_SECRET);
  const superuser = join(localClusterDir(project), "superuser.password");
  if (existsSync(superuser)) out.push(readFileSync(superuser, "utf8").trim());
  return out;
}

/** Options of runAgent. */
export interface RunOptions extends UpOptions {
  readonly onSession?: (s: SessionRecord) => void;
  /**
   * Where the agent's output goes: this process's stdout and stderr (inherit, the default), nowhere (ignore), or all of
   * it to stderr ("stderr", so that stdout carries only a machine-readable result). It is kept either way.
   */
  readonly stdio?: "inherit" | "ignore" | "stderr";
  /** The sandbox (default: the project's `run.sandbox`). */
  readonly sandbox?: SandboxKind;
  /** Told when the agent runs without a sandbox. */
  readonly onUnsandboxed?: () => void;
}

/** Creates a session and runs the agent command in it, sandboxed; the session is kept for review. */
export async function runAgent(project: Project, command: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  if (command.length === 0 || command[0] === undefined) {
    throw new AirlockError("AIRLOCK_NO_AGENT_COMMAND", "no agent command given", { hint: "put it after --, e.g. `airlock run -- python agent.py`" });
  }
  const sandbox = options.sandbox ?? project.config.run.sandbox;
  // Before a session is made: a machine that cannot sandbox says so at once.
  checkSandbox(sandbox);
  const session = await createSession(project, options);
  options.onSession?.(session);
  const conn = agentConnection(project, session.id);
  const env = agentEnvironment(
    process.env,
    { url: conn.url, target: conn.target, sessionId: session.id },
    { production: productionTargets(project, session.snapshotId), values: knownSecrets(project) },
    project.config.run.env,
  );
  const boxed = sandboxed(sandbox, command, {
    projectDir: project.dir,
    hideDirs: [project.statePath(), localClusterDir(project)],
    writable: project.config.run.writable,
  });
  if (sandbox === "none") options.onUnsandboxed?.();
  else env.TMPDIR = "/tmp";
  recordEvent(project, {
    actor: defaultActor(),
    action: "run-start",
    details: { session: session.id, command: command[0]!, sandbox, hidden: boxed.hidden.length },
  });
  let output = "";
  const exitCode = await new Promise<number>((resolve, reject) => {
    // The agent's output streams through (and is kept, so callers can read what it reported).
    const child = spawn(boxed.file, boxed.args, { env, stdio: ["inherit", "pipe", "pipe"] });
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
      if (options.stdio === "stderr") process.stderr.write(d);
      else if (options.stdio !== "ignore") process.stdout.write(d);
    });
    child.stderr.on("data", (d: Buffer) => {
      if (options.stdio !== "ignore") process.stderr.write(d);
    });
    child.on("error", (e) =>
      reject(
        new AirlockError("AIRLOCK_AGENT_FAILED_TO_START", `cannot start ${command[0]}: ${e.message}`, {
          hint: `the session ${session.id} is kept; \`airlock down ${session.id}\` removes it`,
          cause: e,
        }),
      ),
    );
    child.on("close", (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : (osSignals[signal] ?? 0))));
  });
  recordEvent(project, { actor: defaultActor(), action: "run", details: { session: session.id, command: command[0]!, sandbox, exitCode } });
  return { session, exitCode, output };
}

const osSignals: Readonly<Record<string, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
