/**
 * Loading the project's configuration: `.env` (secrets, via dotenv) and
 * airlock.config.ts (settings), resolved against the project directory.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
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

/** The directory of the Airlock that is running (a checkout, or an installed package): the nearest package.json named airlock. */
function runningAirlock(): string | undefined {
  for (let dir = import.meta.dirname; dirname(dir) !== dir; dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown }).name === "airlock") return dir;
    } catch {
      // no package.json here
    }
  }
  return undefined;
}

/** How to make "airlock" importable from a config file: build the checkout it resolves to, or install Airlock there. */
function installAirlockHint(file: string, unbuilt: string | undefined): string {
  const typesOnly =
    'or import only its types, which needs nothing installed or built: `import type { AirlockConfigInput } from "airlock"` and `export default { … } satisfies AirlockConfigInput`';
  if (unbuilt !== undefined) return `build that checkout: \`npm run build\` in ${unbuilt}; ${typesOnly}`;
  // Never `npm i airlock`: the registry's package of that name is another project. This one installs from its path or tarball.
  const root = runningAirlock();
  const from =
    root === undefined
      ? "from the tarball `npm pack` makes in a checkout of it"
      : existsSync(join(root, "dist", "src", "index.js"))
        ? `from this Airlock: \`npm i -D ${root}\``
        : `from this checkout: \`npm run build\` in ${root}, then \`npm i -D ${root}\``;
  return `install Airlock in that project (${dirname(file)}) ${from}; ${typesOnly}`;
}

/** Why a config file did not load, with the fix that applies: a module it imports is missing, or the file itself is wrong. */
function configLoadError(file: string, e: unknown): AirlockError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  // Node's "Require stack" (and tsx's ?namespace=… on the file) say nothing a user needs.
  const message = String((e as Error | undefined)?.message ?? e)
    .split("\nRequire stack:")[0]!
    .replace(/\?namespace=[\w-]+/g, "");
  const missing = /Cannot find (?:module|package) '([^']+)'/.exec(message)?.[1];
  if ((code === "MODULE_NOT_FOUND" || code === "ERR_MODULE_NOT_FOUND") && missing !== undefined) {
    // "airlock" inside a checkout resolves to its own dist/, there only after a build.
    const root = runningAirlock();
    const unbuilt = root !== undefined && missing === join(root, "dist", "src", "index.js") ? root : undefined;
    if (missing === "airlock" || unbuilt !== undefined) {
      return new AirlockError(
        "AIRLOCK_CONFIG_LOAD_FAILED",
        unbuilt !== undefined
          ? `cannot load ${file}: it imports "airlock", which resolves to the checkout at ${unbuilt}, and that has not been built (no dist/)`
          : `cannot load ${file}: it imports "airlock", and the airlock package is not installed where that file is (no node_modules/airlock in ${dirname(file)} or above)`,
        { hint: installAirlockHint(file, unbuilt), cause: e },
      );
    }
    if (/^[^./\\]/.test(missing) && !/^[a-z]:[\\/]/i.test(missing)) {
      const pkg = missing.startsWith("@") ? missing.split("/").slice(0, 2).join("/") : missing.split("/")[0]!;
      return new AirlockError("AIRLOCK_CONFIG_LOAD_FAILED", `cannot load ${file}: it imports "${missing}", and ${pkg} is not installed where that file is`, {
        hint: `install it in that project (${dirname(file)}): \`npm i -D ${pkg}\``,
        cause: e,
      });
    }
    return new AirlockError("AIRLOCK_CONFIG_LOAD_FAILED", `cannot load ${file}: it imports ${missing}, which does not exist`, {
      hint: "fix the import's path (relative imports are resolved from the config file's directory)",
      cause: e,
    });
  }
  const syntax = e instanceof SyntaxError || /Transform failed|Expected ".*" but found|Unexpected /.test(message);
  return new AirlockError("AIRLOCK_CONFIG_LOAD_FAILED", `cannot load ${file}: ${message}`, {
    hint: syntax ? "fix the syntax error at the place named above" : "the file threw an error while it was loaded: fix what the message names",
    cause: e,
  });
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
    throw configLoadError(file, e);
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
