/**
 * Snapshots on disk: `.airlock/snapshots/<id>/` with manifest.json,
 * schema.sql, one compressed COPY file per table and per-table row HMACs.
 * Listing, showing, removing and verifying them. A capture writes into
 * `.tmp-<id>/` with a claim naming its process (`capturing.json`) and renames
 * it into place when complete; a capture killed with -9 leaves that
 * directory behind, and the next capture or `airlock snapshot ls` removes it
 * once its process is gone.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { CatalogModel } from "../catalog/model.ts";
import { catalogModelSchema } from "../catalog/model-schema.ts";
import { claimState } from "../config/claims.ts";
import { parseStateText, readStateFile } from "../config/state-file.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import type { ManifestAllowance } from "./allowances.ts";
import { MANIFEST_FILE } from "./format.ts";
import { KeyedHmac } from "./keyed-hmac.ts";

/** One captured table in the manifest. */
export interface ManifestTable {
  readonly schema: string;
  readonly name: string;
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type: string; readonly rule: string }>;
  readonly key: readonly string[] | null;
  readonly rows: number;
  /** The data file (gzip of COPY text), relative to the snapshot directory. */
  readonly file: string;
  /** The row fingerprints (gzip of "key<TAB>hmac" lines), or null for a table without a key. */
  readonly hmacFile: string | null;
}

/** What a snapshot is: enough to restore it, verify it and tie later steps to it. Never a password or a real value. */
export interface SnapshotManifest {
  readonly formatVersion: 1;
  readonly id: string;
  readonly createdAt: string;
  readonly source: {
    readonly serverVersion: string;
    readonly systemIdentifier: string | null;
    readonly database: string;
    readonly host: string;
    readonly port: number;
    readonly user: string;
  };
  readonly pgDumpVersion: string;
  /** sha256 of the masking rules (custom functions by their source). */
  readonly rulesHash: string;
  /** Identifies the secret without revealing it: HMAC(secret, "airlock/secret-fingerprint"). */
  readonly secretFingerprint: string;
  readonly tables: readonly ManifestTable[];
  readonly sequences: ReadonlyArray<{ readonly schema: string; readonly name: string; readonly lastValue: string; readonly isCalled: boolean }>;
  /** sha256 of every file, by path relative to the snapshot directory. */
  readonly files: Readonly<Record<string, string>>;
  /**
   * Production's catalog model (catalog.json), the roles that own its objects
   * (mapped to the owner in comparisons) and the roles it names (recreated
   * in staging as NOLOGIN placeholders). Absent in snapshots from before it.
   */
  readonly catalog?: { readonly file: string; readonly owners: readonly string[]; readonly roles: readonly string[] };
  readonly leakScan: {
    readonly ok: true;
    readonly originalsChecked: number;
    readonly fieldsScanned: number;
    readonly elapsedMs: number;
    /**
     * The allowances of masking.allow (kept columns whose listed values equal originals of masked columns by
     * chance): column, reason and counts, never a value. Absent in snapshots from before allowances.
     */
    readonly allowed?: readonly ManifestAllowance[];
  };
  readonly elapsedMs: number;
}

const manifestAllowanceSchema: z.ZodType<ManifestAllowance> = z.object({
  column: z.string(),
  reason: z.string(),
  values: z.number(),
  valuesMatched: z.number(),
  fieldsMatched: z.number(),
});

const manifestTableSchema = z.object({
  schema: z.string(),
  name: z.string(),
  columns: z.array(z.object({ name: z.string(), type: z.string(), rule: z.string() })),
  key: z.array(z.string()).nullable(),
  rows: z.number(),
  file: z.string(),
  hmacFile: z.string().nullable(),
});

/** What readManifest checks a manifest against; fields added after the first format are optional, so older manifests read. */
export const snapshotManifestSchema: z.ZodType<SnapshotManifest> = z.object({
  formatVersion: z.literal(1),
  id: z.string(),
  createdAt: z.string(),
  source: z.object({
    serverVersion: z.string(),
    systemIdentifier: z.string().nullable(),
    database: z.string(),
    host: z.string(),
    port: z.number(),
    user: z.string(),
  }),
  pgDumpVersion: z.string(),
  rulesHash: z.string(),
  secretFingerprint: z.string(),
  tables: z.array(manifestTableSchema),
  sequences: z.array(z.object({ schema: z.string(), name: z.string(), lastValue: z.string(), isCalled: z.boolean() })),
  files: z.record(z.string(), z.string()),
  catalog: z.object({ file: z.string(), owners: z.array(z.string()), roles: z.array(z.string()) }).optional(),
  leakScan: z.object({
    ok: z.literal(true),
    originalsChecked: z.number(),
    fieldsScanned: z.number(),
    elapsedMs: z.number(),
    allowed: z.array(manifestAllowanceSchema).optional(),
  }),
  elapsedMs: z.number(),
});

/** The snapshots directory of a project state directory. */
export function snapshotsDir(stateDir: string): string {
  return join(stateDir, "snapshots");
}

/** A new snapshot id: sortable by time, unique by a random tail. */
export function newSnapshotId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return `snap-${t}-${randomBytes(3).toString("hex")}`;
}

const ID = /^snap-\d{8}-\d{6}-[0-9a-f]{6}$/;

/** The directory of a snapshot, checking the id's form (no path tricks). */
export function snapshotDir(dir: string, id: string): string {
  if (!ID.test(id)) {
    throw new AirlockError("AIRLOCK_BAD_SNAPSHOT_ID", `"${id}" is not a snapshot id`, { hint: "list snapshots with `airlock snapshot ls`" });
  }
  return join(dir, id);
}

/** Reads a snapshot's manifest, or fails with AIRLOCK_SNAPSHOT_NOT_FOUND. */
export function readManifest(dir: string, id: string): SnapshotManifest {
  const file = join(snapshotDir(dir, id), MANIFEST_FILE);
  if (!existsSync(file)) {
    throw new AirlockError("AIRLOCK_SNAPSHOT_NOT_FOUND", `no snapshot ${id}`, { hint: "list snapshots with `airlock snapshot ls`" });
  }
  // A snapshot whose manifest does not read is a corrupt snapshot: its own code, naming the file and the field.
  return readStateFile(file, snapshotManifestSchema, {
    code: "AIRLOCK_SNAPSHOT_CORRUPT",
    hint: `restore the manifest from a backup, or remove the snapshot (\`airlock snapshot rm ${id}\`) and capture again`,
  });
}

/** Identifies a secret without revealing it: HMAC(secret, "airlock/secret-fingerprint"), 16 hex digits. */
export function secretFingerprint(secret: string): string {
  return new KeyedHmac(secret).digest("airlock/secret-fingerprint").toString("hex").slice(0, 16);
}

/** Refuses (exit 2) an AIRLOCK_SECRET other than the one a snapshot was taken with: `step` could not check what it must. */
export function requireSnapshotSecret(manifest: SnapshotManifest, secret: string, step: string): void {
  if (secretFingerprint(secret) === manifest.secretFingerprint) return;
  throw new AirlockError("AIRLOCK_SECRET_MISMATCH", `AIRLOCK_SECRET is not the one snapshot ${manifest.id} was taken with; ${step} cannot go on`, {
    hint: "set the AIRLOCK_SECRET the snapshot was captured with; after rotating the secret, take a new snapshot, rerun the sessions on it, diff and approve again",
    exitCode: EXIT_REFUSED,
  });
}

/** The claim file in a capture's temporary directory: which process is writing it. */
export const CAPTURE_CLAIM = "capturing.json";

/** The temporary directory a capture writes a snapshot into before renaming it into place. */
export function captureTempDir(dir: string, id: string): string {
  return join(dir, `.tmp-${id}`);
}

/** A temporary directory without a readable claim (cut short right after mkdir) counts as abandoned after this. */
const UNCLAIMED_STALE_MS = 10 * 60_000;

function abandoned(temp: string, now: number): boolean {
  let claim: unknown;
  try {
    claim = JSON.parse(readFileSync(join(temp, CAPTURE_CLAIM), "utf8"));
  } catch {
    claim = undefined;
  }
  const state = claimState(claim);
  if (state !== "unknown") return state === "dead";
  // Another host's claim (a shared disk) is that host's to judge; no claim at all is judged by age.
  if (claim !== undefined) return false;
  try {
    return now - statSync(temp).mtimeMs > UNCLAIMED_STALE_MS;
  } catch {
    return false;
  }
}

/**
 * Removes the temporary directories of captures whose process is gone (killed, crashed); a capture still at
 * work is left alone. Returns the names removed.
 */
export function removeStaleCaptures(dir: string, now = Date.now()): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(".tmp-") || !ID.test(name.slice(".tmp-".length))) continue;
    const temp = join(dir, name);
    if (!abandoned(temp, now)) continue;
    rmSync(temp, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** Every complete snapshot, newest first (partial captures have no manifest and are not listed). */
export function listSnapshots(dir: string): SnapshotManifest[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((d) => ID.test(d) && existsSync(join(dir, d, MANIFEST_FILE)))
    .sort()
    .reverse()
    .map((id) => readManifest(dir, id));
}

/** The newest snapshot, or an error saying how to take one. */
export function latestSnapshot(dir: string): SnapshotManifest {
  const all = listSnapshots(dir);
  if (all[0] === undefined)
    throw new AirlockError("AIRLOCK_NO_SNAPSHOT", "there is no snapshot yet", { hint: "take one with `airlock snapshot --from $PROD_DATABASE_URL`" });
  return all[0];
}

/** Deletes a snapshot. */
export function removeSnapshot(dir: string, id: string): void {
  readManifest(dir, id);
  rmSync(snapshotDir(dir, id), { recursive: true, force: true });
}

/** sha256 of a file, streamed. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (d) => h.update(d))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

/** Re-checks every file's sha256; reports the first corrupt or missing file. */
export async function verifySnapshot(
  dir: string,
  id: string,
): Promise<{ ok: true; files: number } | { ok: false; file: string; problem: "missing" | "checksum" }> {
  const manifest = readManifest(dir, id);
  const root = snapshotDir(dir, id);
  for (const [file, expected] of Object.entries(manifest.files)) {
    const path = join(root, file);
    if (!existsSync(path)) return { ok: false, file, problem: "missing" };
    if ((await sha256File(path)) !== expected) return { ok: false, file, problem: "checksum" };
  }
  return { ok: true, files: Object.keys(manifest.files).length };
}

/** The catalog model of production a snapshot was taken from (checked against its sha256), or null for older snapshots. */
export function readSnapshotCatalog(dir: string, manifest: SnapshotManifest): CatalogModel | null {
  if (manifest.catalog === undefined) return null;
  const text = readFileSync(join(dir, manifest.catalog.file));
  if (createHash("sha256").update(text).digest("hex") !== manifest.files[manifest.catalog.file]) {
    throw new AirlockError("AIRLOCK_SNAPSHOT_CORRUPT", `snapshot ${manifest.id} is corrupt: ${manifest.catalog.file} does not match its checksum`, {
      hint: `check it with \`airlock snapshot verify ${manifest.id}\`, then capture a new one`,
    });
  }
  // Its bytes match the manifest's sha256 (so it is as the capture wrote it); the schema names a field of a model this version does not read.
  const hint = `capture a new snapshot (\`airlock snapshot rm ${manifest.id}\` removes this one)`;
  return parseStateText(join(dir, manifest.catalog.file), text.toString("utf8"), catalogModelSchema, { code: "AIRLOCK_SNAPSHOT_CORRUPT", hint });
}
