/**
 * Airlock's state on disk is private to the user who runs it: every file
 * under `.airlock/` is 0600 and every directory 0700 — snapshots (masked data
 * and row fingerprints), sessions (agent passwords), diffs, approvals, the
 * audit journal. Two directories are 0711 (enter, not list): the state root
 * and the cluster directory, which the Postgres server's own user must pass
 * through to reach its data directory.
 */
import { appendFileSync, chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";

/** The state root (`.airlock/`): created 0711 when missing, and never left more open than that. */
export function ensureStateRoot(root: string): void {
  mkdirSync(root, { recursive: true, mode: 0o711 });
  chmodSync(root, 0o711);
}

/** A private directory (0700) under the state root, and any missing ones between them. */
export function privateDir(dir: string, root: string): void {
  ensureStateRoot(root);
  const rel = relative(resolve(root), resolve(dir));
  if (rel === "" || rel.startsWith("..")) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return;
  }
  let at = resolve(root);
  for (const part of rel.split("/")) {
    at = resolve(at, part);
    if (!existsSync(at)) mkdirSync(at, { mode: 0o700 });
  }
  chmodSync(dir, 0o700);
}

/** Writes a private file (0600), making its directory private first when `root` is given. */
export function writePrivate(file: string, data: string | Uint8Array, options: { root?: string; flag?: string } = {}): void {
  if (options.root !== undefined) privateDir(dirname(file), options.root);
  writeFileSync(file, data, { mode: 0o600, ...(options.flag === undefined ? {} : { flag: options.flag }) });
  chmodSync(file, 0o600);
}

/** Appends to a private file (created 0600). */
export function appendPrivate(file: string, data: string): void {
  appendFileSync(file, data, { mode: 0o600 });
}
