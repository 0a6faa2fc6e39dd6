/**
 * Loading the project's configuration: `.env` (secrets, via dotenv) and
 * airlock.config.ts (settings), resolved against the project directory.
 */
import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import dotenv from "dotenv";
import { AirlockError } from "../errors.ts";
import { type AirlockConfig, parseConfig } from "./config.ts";
import { findPgBinaries } from "../pg/binaries.ts";
import type { ClusterOptions } from "../pg/cluster.ts";

/** Config file names looked for in the project directory, in order. */
export const CONFIG_FILES = ["airlock.config.ts", "airlock.config.mts", "airlock.config.js", "airlock.config.mjs"] as const;

/** A loaded project: its directory, validated config and where it came from. */
export interface Project {
  readonly dir: string;
  readonly config: AirlockConfig;
  /** The config file used, or undefined when defaults apply. */
  readonly configFile: string | undefined;
  /** An absolute path inside the state directory. */
  statePath(...parts: string[]): string;
}

/** Loads `.env` from the project directory into process.env without overriding what is already set. */
export function loadEnvFile(dir: string): void {
  const file = join(dir, ".env");
  if (existsSync(file)) dotenv.config({ path: file, quiet: true, override: false });
}

/** Imports and validates a config file; a file that does not load or validate is an error naming it. */
export async function loadConfigFile(file: string): Promise<AirlockConfig> {
  let mod: { default?: unknown };
  try {
    // tsImport loads TypeScript as ESM whatever the user's package.json says (a CJS project included). It is
    // imported only here: the compiled CLI starts without loading tsx unless a config file needs it.
    const ts = /\.m?ts$/.test(file) ? (await import("tsx/esm/api")).tsImport : undefined;
    mod = (ts !== undefined ? await ts(pathToFileURL(file).href, import.meta.url) : await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (e) {
    throw new AirlockError("AIRLOCK_CONFIG_LOAD_FAILED", `cannot load ${file}: ${(e as Error).message}`, {
      hint: "fix the syntax error, or check the file's imports",
      cause: e,
    });
  }
  // A config compiled as CommonJS arrives wrapped once more: { default: { default: config } }.
  const inner = mod.default as Record<string, unknown> | undefined;
  if (typeof inner === "object" && inner !== null && "default" in inner && Object.keys(inner).every((k) => k === "default" || k === "__esModule"))
    mod = { default: inner.default };
  if (mod.default === undefined) {
    throw new AirlockError("AIRLOCK_CONFIG_INVALID", `${file} has no default export`, {
      hint: "end it with `export default defineConfig({ … })`",
    });
  }
  return parseConfig(mod.default, file);
}

/** Loads the project in `dir`: `.env`, then the config file (given, or found), else defaults. */
export async function loadProject(options: { dir?: string; configFile?: string } = {}): Promise<Project> {
  const dir = resolve(options.dir ?? process.cwd());
  loadEnvFile(dir);
  let configFile: string | undefined;
  if (options.configFile !== undefined) {
    configFile = resolve(dir, options.configFile);
    if (!existsSync(configFile)) {
      throw new AirlockError("AIRLOCK_CONFIG_NOT_FOUND", `no config file at ${configFile}`, { hint: "check the --config path" });
    }
  } else {
    configFile = CONFIG_FILES.map((f) => join(dir, f)).find((f) => existsSync(f));
  }
  const config = configFile === undefined ? parseConfig({}) : await loadConfigFile(configFile);
  const stateDir = isAbsolute(config.stateDir) ? config.stateDir : join(dir, config.stateDir);
  return { dir, config, configFile, statePath: (...parts) => join(stateDir, ...parts) };
}

/** The embedded staging cluster's directory for a project. */
export function localClusterDir(project: Project): string {
  const configured = project.config.local.clusterDir;
  if (configured === undefined) return project.statePath("cluster");
  return isAbsolute(configured) ? configured : join(project.dir, configured);
}

/** The options that create or open a project's embedded staging cluster. */
export function localClusterOptions(project: Project): ClusterOptions {
  const local = project.config.local;
  return {
    dir: localClusterDir(project),
    ...(local.pgBin === undefined ? {} : { binaries: findPgBinaries({ ...process.env, AIRLOCK_PG_BIN: local.pgBin }) }),
    ...(local.serverUser === undefined ? {} : { serverUser: local.serverUser }),
    disposable: local.disposable,
    settings: {
      // Only the Unix socket: agents come in through the supervisor's proxy (src/staging/supervisor.ts).
      listen_addresses: "",
      max_connections: local.maxConnections,
      // A client stalling its handshake on the socket holds a backend slot at most this long.
      authentication_timeout: "5s",
      // pg_wal is recycled past this at checkpoints; the supervisor checkpoints when it holds twice as much.
      max_wal_size: "256MB",
      ...local.settings,
    },
  };
}
