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
import { query } from "../pg/connect.ts";
import { copyLineBatches, copyOutRows } from "../pg/copy-lines.ts";
import { copyText } from "../pg/copy-text.ts";
import { KeyedHmac } from "../snapshot/keyed-hmac.ts";
import type { ManifestTable, SnapshotManifest } from "../snapshot/store.ts";
import { keyAfter, keyBefore, keyPredicate, ownRows } from "./rows.ts";

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

/** Locks every row the diff touches in production and returns the conflicts (empty when none). */
export async function lockAndCheck(c: pg.ClientBase, diff: Diff, manifest: SnapshotManifest, snapshotDirPath: string, secret: string): Promise<Conflict[]> {
  const hmac = new KeyedHmac(secret);
  const conflicts: Conflict[] = [];
  for (const t of diff.tables) {
    const captured = manifest.tables.find((m) => m.schema === t.schema && m.name === t.name);
    // A table the diff creates has no production rows to conflict with.
    if (captured === undefined || t.key === null) continue;
    const keyText = (k: RowValues) => captured.key!.map((col) => copyText(k[col] ?? null)).join("\t");
    const rows = ownRows(t.schema, t.name, t.partitioned === true);
    const touched = t.changes.map(keyBefore).filter((k): k is RowValues => k !== null);
    if (touched.length > 0 && captured.key !== null) {
      await query(c, `SELECT 1 FROM ${rows} WHERE ${keyPredicate(t, captured.key, touched)} FOR UPDATE`);
      const cols = captured.columns.map((col) => `"${col.name.replace(/"/g, '""')}"`).join(", ");
      const lines = await copyOutRows(c, `COPY (SELECT ${cols} FROM ${rows} WHERE ${keyPredicate(t, captured.key, touched)}) TO STDOUT`);
      const keyIdx = captured.key.map((k) => captured.columns.findIndex((col) => col.name === k));
      const now = new Map(lines.map((line) => {
        const fields = line.split("\t");
        return [keyIdx.map((i) => fields[i]).join("\t"), hmac.digest(`${t.schema}.${t.name}\u0000${line}`).toString("base64url")] as const;
      }));
      const wanted = new Set(touched.map(keyText));
      const then = await snapshotFingerprints(snapshotDirPath, captured, wanted);
      for (const k of touched) {
        const text = keyText(k);
        const current = now.get(text);
        if (current === undefined) conflicts.push({ table: `${t.schema}.${t.name}`, key: JSON.stringify(k), kind: "deleted" });
        else if (current !== then.get(text)) conflicts.push({ table: `${t.schema}.${t.name}`, key: JSON.stringify(k), kind: "changed" });
      }
    }
    const inserted = t.changes.filter((ch) => ch.kind === "insert").map((ch) => keyAfter(t, ch)).filter((k): k is RowValues => k !== null);
    if (inserted.length > 0) {
      const taken = await query<Record<string, string>>(c, `SELECT ${t.key.map((k) => `"${k.replace(/"/g, '""')}"::text`).join(", ")} FROM ${rows} WHERE ${keyPredicate(t, t.key, inserted)} FOR UPDATE`);
      for (const row of taken.rows) conflicts.push({ table: `${t.schema}.${t.name}`, key: JSON.stringify(Object.fromEntries(t.key.map((k, i) => [k, Object.values(row)[i] ?? null]))), kind: "exists" });
    }
  }
  return conflicts;
}
