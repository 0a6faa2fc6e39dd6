/**
 * Snapshots on disk: `.airlock/snapshots/<id>/` with manifest.json,
 * schema.sql, one compressed COPY file per table and per-table row HMACs.
 * Listing, showing, removing and verifying them.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { CatalogModel } from "../catalog/model.ts";
import { AirlockError } from "../errors.ts";

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
  readonly leakScan: { readonly ok: true; readonly originalsChecked: number; readonly fieldsScanned: number; readonly elapsedMs: number };
  readonly elapsedMs: number;
}

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
  const file = join(snapshotDir(dir, id), "manifest.json");
  if (!existsSync(file)) {
    throw new AirlockError("AIRLOCK_SNAPSHOT_NOT_FOUND", `no snapshot ${id}`, { hint: "list snapshots with `airlock snapshot ls`" });
  }
  try {
    return JSON.parse(readFileSync(file, "utf8")) as SnapshotManifest;
  } catch (e) {
    throw new AirlockError("AIRLOCK_SNAPSHOT_CORRUPT", `the manifest of snapshot ${id} is not valid JSON`, { hint: "remove it (`airlock snapshot rm`) and capture again", cause: e });
  }
}

/** Every complete snapshot, newest first (partial captures have no manifest and are not listed). */
export function listSnapshots(dir: string): SnapshotManifest[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((d) => ID.test(d) && existsSync(join(dir, d, "manifest.json")))
    .sort()
    .reverse()
    .map((id) => readManifest(dir, id));
}

/** The newest snapshot, or an error saying how to take one. */
export function latestSnapshot(dir: string): SnapshotManifest {
  const all = listSnapshots(dir);
  if (all[0] === undefined) throw new AirlockError("AIRLOCK_NO_SNAPSHOT", "there is no snapshot yet", { hint: "take one with `airlock snapshot --from $PROD_DATABASE_URL`" });
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
export async function verifySnapshot(dir: string, id: string): Promise<{ ok: true; files: number } | { ok: false; file: string; problem: "missing" | "checksum" }> {
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
    throw new AirlockError("AIRLOCK_SNAPSHOT_CORRUPT", `snapshot ${manifest.id} is corrupt: ${manifest.catalog.file} does not match its checksum`, { hint: `check it with \`airlock snapshot verify ${manifest.id}\`, then capture a new one` });
  }
  return JSON.parse(text.toString("utf8")) as CatalogModel;
}
