/**
 * Conflict detection at promotion: every row the diff updates or deletes is
 * locked (FOR UPDATE) and its canonical text fingerprinted with the same
 * HMAC the capture recorded; a different fingerprint means production
 * changed the row since the snapshot, a missing row that it was deleted, and
 * an inserted key that exists already that production took it meanwhile.
 * Conflicts name table, key and kind, never a production value.
 */
import { createReadStream, existsSync } from "node:fs";
import { join } from "node:path";
import { createGunzip } from "node:zlib";
import type pg from "pg";
import type { Diff, RowValues } from "../diff/types.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { copyLineBatches, copyOutRows } from "../pg/copy-lines.ts";
import { copyText } from "../pg/copy-text.ts";
import { KeyedHmac } from "../snapshot/keyed-hmac.ts";
import type { ManifestTable, SnapshotManifest } from "../snapshot/store.ts";
import { ownRows, qualified } from "../pg/table-names.ts";
import { keyAfter, keyBefore, keyPredicate } from "./rows.ts";

/** One conflict. */
export interface Conflict {
  readonly table: string;
  /** The key as the diff names it (staging's key; masked keys are never production's). */
  readonly key: string;
  readonly kind: "changed" | "deleted" | "exists";
}

async function snapshotFingerprints(dir: string, table: ManifestTable, wanted: ReadonlySet<string>): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (table.hmacFile === null || wanted.size === 0 || !existsSync(join(dir, table.hmacFile))) return out;
  // Keys are COPY text, so the file splits like COPY output (readline would also split on a raw "\r").
  for await (const lines of copyLineBatches(createReadStream(join(dir, table.hmacFile)).pipe(createGunzip()))) {
    for (const line of lines) {
      const at = line.lastIndexOf("\t");
      const key = line.slice(0, at);
      if (wanted.has(key)) out.set(key, line.slice(at + 1));
    }
  }
  return out;
}

/**
 * The captured tables holding a diff table's rows: the table itself, or, for a partitioned table, its
 * leaf partitions (the snapshot captures partitions as their leaves).
 */
async function capturedParts(c: pg.ClientBase, manifest: SnapshotManifest, schema: string, name: string, partitioned: boolean): Promise<ManifestTable[]> {
  const self = manifest.tables.find((m) => m.schema === schema && m.name === name);
  if (self !== undefined || !partitioned) return self === undefined ? [] : [self];
  const leaves = await query<{ s: string; n: string }>(
    c,
    `SELECT n.nspname AS s, k.relname AS n FROM pg_partition_tree(to_regclass($1)) p JOIN pg_class k ON k.oid = p.relid
       JOIN pg_namespace n ON n.oid = k.relnamespace WHERE p.isleaf`,
    [qualified(schema, name)],
  );
  return leaves.rows.map((l) => manifest.tables.find((m) => m.schema === l.s && m.name === l.n)).filter((m): m is ManifestTable => m !== undefined);
}

/** Locks every row the diff touches in production and returns the conflicts (empty when none). */
export async function lockAndCheck(c: pg.ClientBase, diff: Diff, manifest: SnapshotManifest, snapshotDirPath: string, secret: string): Promise<Conflict[]> {
  const hmac = new KeyedHmac(secret);
  const conflicts: Conflict[] = [];
  for (const t of diff.tables) {
    const parts = await capturedParts(c, manifest, t.schema, t.name, t.partitioned === true);
    // A table the diff creates has no production rows to conflict with.
    if (parts.length === 0 || t.key === null) continue;
    // Rows are matched by the key the snapshot recorded (a partition's is its parent's).
    const key = parts.find((p) => p.key !== null)?.key ?? null;
    const keyText = (k: RowValues) => (key ?? []).map((col) => copyText(k[col] ?? null)).join("\t");
    const rows = ownRows(t.schema, t.name, t.partitioned === true);
    const touched = t.changes.map(keyBefore).filter((k): k is RowValues => k !== null);
    if (touched.length > 0 && key !== null) {
      await query(c, `SELECT 1 FROM ${rows} WHERE ${keyPredicate(t, key, touched)} FOR UPDATE`);
      const wanted = new Set(touched.map(keyText));
      // Where each touched row is now and was then, by captured table: a row moved to another partition changed.
      const now = new Map<string, string>();
      const then = new Map<string, string>();
      for (const part of parts) {
        if (part.key === null) continue;
        const cols = part.columns.map((col) => quoteIdent(col.name)).join(", ");
        const lines = await copyOutRows(
          c,
          `COPY (SELECT ${cols} FROM ${ownRows(part.schema, part.name, false)} WHERE ${keyPredicate(t, key, touched)}) TO STDOUT`,
        );
        const keyIdx = key.map((k) => part.columns.findIndex((col) => col.name === k));
        for (const line of lines) {
          const fields = line.split("\t");
          now.set(
            keyIdx.map((i) => fields[i]).join("\t"),
            `${part.schema}.${part.name}:${hmac.digest(`${part.schema}.${part.name}\u0000${line}`).toString("base64url")}`,
          );
        }
        for (const [k, digest] of await snapshotFingerprints(snapshotDirPath, part, wanted)) then.set(k, `${part.schema}.${part.name}:${digest}`);
      }
      for (const k of touched) {
        const text = keyText(k);
        const current = now.get(text);
        if (current === undefined) conflicts.push({ table: `${t.schema}.${t.name}`, key: JSON.stringify(k), kind: "deleted" });
        else if (current !== then.get(text)) conflicts.push({ table: `${t.schema}.${t.name}`, key: JSON.stringify(k), kind: "changed" });
      }
    }
    const inserted = t.changes
      .filter((ch) => ch.kind === "insert")
      .map((ch) => keyAfter(t, ch))
      .filter((k): k is RowValues => k !== null);
    if (inserted.length > 0) {
      const taken = await query<Record<string, string>>(
        c,
        `SELECT ${t.key.map((k) => `${quoteIdent(k)}::text`).join(", ")} FROM ${rows} WHERE ${keyPredicate(t, t.key, inserted)} FOR UPDATE`,
      );
      for (const row of taken.rows)
        conflicts.push({
          table: `${t.schema}.${t.name}`,
          key: JSON.stringify(Object.fromEntries(t.key.map((k, i) => [k, Object.values(row)[i] ?? null]))),
          kind: "exists",
        });
    }
  }
  return conflicts;
}
