/**
 * Runs the `airlock` CLI as a user would, in a project directory with a given
 * environment, and reads its output (the JSON of `--json` from the first
 * `{` or `[` of stdout).
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";

export const BIN = resolve(import.meta.dirname, "..", "..", "bin", "airlock.mjs");

/** What a CLI run gave. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  json(): any;
}

/** `airlock …args` in `cwd` with `env`, waiting at most `timeoutMs`. */
export function runCli(cwd: string, env: NodeJS.ProcessEnv, args: readonly string[], timeoutMs = 300_000): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: "utf8", env, timeout: timeoutMs });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout.slice(r.stdout.search(/[[{]/))) };
}
