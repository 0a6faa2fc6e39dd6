/**
 * The sandbox `airlock run` starts an agent in. The agent is untrusted: it
 * must not read Airlock's secrets or state, reach the staging superuser, or
 * act as Airlock (approve, promote). On Linux the default driver is
 * bubblewrap:
 *
 * - the whole file system read-only, except the project directory and the
 *   paths the user lists (`run.writable`), and a private `/tmp` (where
 *   Airlock's own installation stays visible, read-only);
 * - hidden by mounts: `.airlock/` (sessions, snapshots, diffs, approvals, the
 *   cluster with its socket and superuser password), the cluster directory
 *   wherever it is, every `.env*` file of the project, Docker sockets,
 *   `/etc/shadow`;
 * - no capabilities, its own PID namespace (no `/proc/<airlock>/environ`), a
 *   fresh minimal `/dev`, and it dies with Airlock.
 *
 * The agent keeps Airlock's uid: it can write the checkout as the user who
 * ran `airlock run` can, and nothing the mounts hide. The network is not
 * isolated (it needs the staging proxy on 127.0.0.1).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AirlockError } from "../errors.ts";
import { findOnPath } from "../os/executables.ts";

/** Which sandbox runs the agent. */
export type SandboxKind = "bubblewrap" | "none";

/** What the sandbox needs to know of the project. */
export interface SandboxSpec {
  readonly projectDir: string;
  /** Directories to hide (Airlock's state, the cluster). */
  readonly hideDirs: readonly string[];
  /** Extra paths the agent may write. */
  readonly writable: readonly string[];
}

/** The command line that runs `command` in the sandbox. */
export interface SandboxedCommand {
  readonly file: string;
  readonly args: readonly string[];
  /** Paths hidden from the agent (for the README's promise and for `--json`). */
  readonly hidden: readonly string[];
}

/** The directory Airlock is installed in (this file is src/staging/sandbox.ts in it). */
const AIRLOCK_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DOCKER_SOCKETS = ["/var/run/docker.sock", "/run/docker.sock"];
const SYSTEM_SECRETS = ["/etc/shadow", "/etc/gshadow"];

/** The bubblewrap binary, or undefined when it is not installed. */
export function findBubblewrap(): string | undefined {
  return findOnPath("bwrap", { ...process.env, PATH: process.env.PATH ?? "/usr/bin:/bin" });
}

/** The default sandbox of this machine: bubblewrap on Linux when it is installed. */
export function defaultSandbox(): SandboxKind | undefined {
  return process.platform === "linux" && findBubblewrap() !== undefined ? "bubblewrap" : undefined;
}

/** Files of the project that hold secrets by convention: .env and .env.* (not examples). */
function envFiles(projectDir: string): string[] {
  return readdirSync(projectDir)
    .filter((f) => (f === ".env" || f.startsWith(".env.")) && !/\.(example|sample|template)$/.test(f))
    .map((f) => join(projectDir, f));
}

/** A Unix socket a DOCKER_HOST points at, if any: the engine is root on the host. */
function dockerHostSocket(): string[] {
  const host = process.env.DOCKER_HOST;
  return host?.startsWith("unix://") === true ? [host.slice("unix://".length)] : [];
}

/** The command that runs `command` in the sandbox of `kind`. */
export function sandboxed(kind: SandboxKind, command: readonly string[], spec: SandboxSpec): SandboxedCommand {
  if (kind === "none") return { file: command[0]!, args: command.slice(1), hidden: [] };
  const bwrap = findBubblewrap();
  if (bwrap === undefined) {
    throw new AirlockError("AIRLOCK_NO_SANDBOX", "bubblewrap (bwrap) is not installed, and `airlock run` starts agents in it", {
      hint: "install it (Debian/Ubuntu: apt-get install bubblewrap), or run with --sandbox none (the agent can then read .env and .airlock/)",
    });
  }
  const project = resolve(spec.projectDir);
  const home = homedir();
  const args: string[] = [
    "--die-with-parent",
    "--unshare-pid",
    "--cap-drop",
    "ALL",
    "--ro-bind",
    "/",
    "/",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp",
  ];
  // Airlock's own installation (code only: its users' state is elsewhere, and hidden below) stays visible
  // even when it lives under /tmp, so an agent can be one of its scripts.
  args.push("--ro-bind", AIRLOCK_ROOT, AIRLOCK_ROOT);
  // Writable: the project, what the user listed. Everything else stays read-only.
  for (const p of [project, ...spec.writable.map((w) => resolve(project, w.replace(/^~(?=\/|$)/, home)))]) if (existsSync(p)) args.push("--bind", p, p);
  const hidden: string[] = [];
  for (const d of spec.hideDirs.map((x) => resolve(x))) {
    if (!existsSync(d)) continue;
    args.push("--tmpfs", d);
    hidden.push(d);
  }
  for (const f of [...envFiles(project), ...DOCKER_SOCKETS, ...dockerHostSocket(), ...SYSTEM_SECRETS]) {
    if (!existsSync(f)) continue;
    args.push("--ro-bind", "/dev/null", f);
    hidden.push(f);
  }
  // The agent starts where Airlock was started when that is inside the project, else at its root.
  const cwd = resolve(process.cwd());
  args.push("--chdir", cwd === project || cwd.startsWith(`${project}/`) ? cwd : project, "--", ...command);
  return { file: bwrap, args, hidden };
}

/** Whether bubblewrap can start a process here (user namespaces may be off). */
export function checkSandbox(kind: SandboxKind): void {
  if (kind === "none") return;
  const bwrap = findBubblewrap();
  if (bwrap === undefined) sandboxed(kind, ["true"], { projectDir: process.cwd(), hideDirs: [], writable: [] });
  const r = spawnSync(
    bwrap!,
    ["--die-with-parent", "--unshare-pid", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"],
    { encoding: "utf8" },
  );
  if (r.status !== 0) {
    throw new AirlockError("AIRLOCK_NO_SANDBOX", `bubblewrap cannot start a sandbox on this machine: ${(r.stderr || r.error?.message || "").trim()}`, {
      hint: "allow unprivileged user namespaces (or run as root), or run with --sandbox none (the agent can then read .env and .airlock/)",
    });
  }
}
