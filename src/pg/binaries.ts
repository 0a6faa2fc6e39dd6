/**
 * Finds the Postgres server binaries the embedded backend runs: the
 * directory named by AIRLOCK_PG_BIN, then `pg_config --bindir`, then PATH,
 * then /usr/lib/postgresql/<major>/bin, newest major first.
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants, existsSync, readdirSync, realpathSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { AirlockError } from "../errors.ts";

/** The tools Airlock runs from a Postgres installation. */
export type PgTool = "initdb" | "pg_ctl" | "postgres" | "pg_dump" | "pg_restore" | "psql";

/** A usable Postgres installation. */
export interface PgBinaries {
  readonly dir: string;
  readonly major: number;
  /** The full version, e.g. "15.18". */
  readonly version: string;
  /** Where the setting came from, for `airlock doctor`-style output. */
  readonly source: "AIRLOCK_PG_BIN" | "pg_config" | "PATH" | "/usr/lib/postgresql" | "cluster";
  /** The absolute path of a tool. */
  tool(name: PgTool): string;
}

const SERVER_TOOLS: readonly PgTool[] = ["initdb", "pg_ctl", "postgres"];

const INSTALL_HINT =
  "install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@16`), " +
  "or point AIRLOCK_PG_BIN at the directory holding initdb, pg_ctl and postgres";

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function hasServerTools(dir: string): boolean {
  return SERVER_TOOLS.every((t) => isExecutable(join(dir, t)));
}

function readVersion(dir: string): { major: number; version: string } | undefined {
  try {
    const out = execFileSync(join(dir, "postgres"), ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const match = /(\d+)(?:\.(\d+))?/.exec(out.replace(/^[^)]*\)/, ""));
    if (match === null || match[1] === undefined) return undefined;
    return { major: Number(match[1]), version: match[2] === undefined ? match[1] : `${match[1]}.${match[2]}` };
  } catch {
    return undefined;
  }
}

function make(dir: string, source: PgBinaries["source"]): PgBinaries | undefined {
  if (!hasServerTools(dir)) return undefined;
  const v = readVersion(dir);
  if (v === undefined) return undefined;
  return { dir, ...v, source, tool: (name) => join(dir, name) };
}

/** Candidate directories in the order of precedence (without AIRLOCK_PG_BIN). */
function candidates(env: NodeJS.ProcessEnv, roots: readonly string[]): Array<{ dir: string; source: PgBinaries["source"] }> {
  const out: Array<{ dir: string; source: PgBinaries["source"] }> = [];
  try {
    const dir = execFileSync("pg_config", ["--bindir"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], env }).trim();
    if (dir !== "") out.push({ dir, source: "pg_config" });
  } catch {
    // No pg_config on PATH: fall through to the other places.
  }
  for (const p of (env.PATH ?? "").split(delimiter)) {
    if (p === "") continue;
    const initdb = join(p, "initdb");
    if (!existsSync(initdb)) continue;
    // Debian puts symlinks or wrappers on PATH; the real tools live beside the resolved initdb.
    try {
      out.push({ dir: dirname(realpathSync(initdb)), source: "PATH" });
    } catch {
      continue;
    }
  }
  for (const root of roots) {
    if (!existsSync(root)) continue;
    const majors = readdirSync(root)
      .filter((d) => /^\d+(\.\d+)?$/.test(d))
      .sort((a, b) => Number(b) - Number(a));
    for (const m of majors) out.push({ dir: join(root, m, "bin"), source: "/usr/lib/postgresql" });
  }
  return out;
}

/**
 * The binaries to open an existing cluster with: AIRLOCK_PG_BIN when set, else those the cluster was created with
 * (the bin directory its cluster file records, `local.pgBin` perhaps) while that directory still holds working
 * server tools of the cluster's major version, else the usual search.
 */
export function clusterPgBinaries(recordedDir: string, major: number, env: NodeJS.ProcessEnv = process.env): PgBinaries {
  if (env.AIRLOCK_PG_BIN === undefined || env.AIRLOCK_PG_BIN === "") {
    const recorded = make(recordedDir, "cluster");
    if (recorded?.major === major) return recorded;
  }
  return findPgBinaries(env);
}

/** Where distributions install versioned Postgres trees (`<root>/<major>/bin`). */
export const VERSIONED_ROOTS: readonly string[] = ["/usr/lib/postgresql"];

/** Finds the Postgres binaries, or fails with an error that says how to install them. */
export function findPgBinaries(env: NodeJS.ProcessEnv = process.env, roots: readonly string[] = VERSIONED_ROOTS): PgBinaries {
  const explicit = env.AIRLOCK_PG_BIN;
  if (explicit !== undefined && explicit !== "") {
    const found = make(explicit, "AIRLOCK_PG_BIN");
    if (found === undefined) {
      throw new AirlockError("AIRLOCK_PG_NOT_FOUND", `AIRLOCK_PG_BIN=${explicit} does not hold a working initdb, pg_ctl and postgres`, {
        hint: `fix AIRLOCK_PG_BIN (for example /usr/lib/postgresql/15/bin), or unset it to search the usual places; otherwise ${INSTALL_HINT}`,
      });
    }
    return found;
  }
  const seen = new Set<string>();
  for (const c of candidates(env, roots)) {
    if (seen.has(c.dir)) continue;
    seen.add(c.dir);
    const found = make(c.dir, c.source);
    if (found !== undefined) return found;
  }
  throw new AirlockError("AIRLOCK_PG_NOT_FOUND", "no PostgreSQL server binaries found (initdb, pg_ctl, postgres)", {
    hint: INSTALL_HINT,
    details: { searched: [...seen] },
  });
}
