/**
 * The data of a capture: each table's rows stream out of production with
 * COPY, through the masking rules, into a gzip file, never held whole in
 * memory. On the way, every original and masked value of a masked column is
 * handed to the leak scan, and for a table with a key a keyed HMAC of each
 * original row is written under its masked key (the row fingerprints
 * promotion checks for conflicts).
 */
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import type pg from "pg";
import { to as copyTo } from "pg-copy-streams";
import { describeRule } from "../config/masking-rules.ts";
import { AirlockError } from "../errors.ts";
import { quoteIdent } from "../pg/connect.ts";
import { CopyLineSplitter } from "../pg/copy-lines.ts";
import { copyText, copyValue } from "../pg/copy-text.ts";
import { toAirlockError } from "../pg/pg-error.ts";
import { ownRows } from "../pg/table-names.ts";
import type { KeyedHmac } from "./keyed-hmac.ts";
import type { LeakScanner } from "./leak-scan.ts";
import type { Masker } from "./mask.ts";
import type { PlannedTable } from "./plan.ts";
import type { ManifestTable } from "./store.ts";

/** Streams COPY text lines, masks them, and writes row fingerprints beside. */
class MaskingTransform extends Transform {
  private readonly lines = new CopyLineSplitter();
  // One write per input chunk: each write to a zlib stream is a thread-pool round trip.
  private pendingFingerprints = "";
  rows = 0;

  constructor(
    private readonly plan: PlannedTable,
    private readonly masker: Masker,
    private readonly rowHmac: KeyedHmac,
    private readonly leaks: LeakScanner,
    private readonly fingerprints: NodeJS.WritableStream | null,
    private readonly onRows: (rows: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      let out = "";
      for (const line of this.lines.push(chunk)) out += this.maskLine(line);
      if (out !== "") this.push(out);
      this.flushFingerprints();
      done();
    } catch (e) {
      done(e as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      let out = "";
      for (const line of this.lines.end()) out += this.maskLine(line);
      if (out !== "") this.push(out);
      this.flushFingerprints();
      this.fingerprints?.end();
      done();
    } catch (e) {
      done(e as Error);
    }
  }

  private flushFingerprints(): void {
    if (this.pendingFingerprints === "" || this.fingerprints === null) return;
    this.fingerprints.write(this.pendingFingerprints);
    this.pendingFingerprints = "";
  }

  private maskLine(line: string): string {
    const plan = this.plan;
    const fields = plan.masked.length === 0 && plan.keyIndexes === null ? null : line.split("\t");
    if (fields !== null) {
      for (const i of plan.masked) {
        const original = copyValue(fields[i]!);
        const masked = this.masker.mask(plan.rules[i]!, plan.columns[i]!, original);
        const rule = plan.rules[i]!;
        // Date shifts keep values that look like any other date: not scanned.
        if (rule.kind !== "dateShift") {
          this.leaks.addOriginal(original);
          this.leaks.addProduced(masked);
        }
        fields[i] = copyText(masked);
      }
      if (plan.keyIndexes !== null && this.fingerprints !== null) {
        // Fingerprint of the original row, filed under its (masked) key: the snapshot holds no real value.
        const digest = this.rowHmac.digest(`${plan.table.schema}.${plan.table.name}\u0000${line}`).toString("base64url");
        this.pendingFingerprints += `${plan.keyIndexes.map((k) => fields[k]).join("\t")}\t${digest}\n`;
      }
    }
    this.rows++;
    if (this.rows % 50_000 === 0) this.onRows(this.rows);
    return `${fields === null ? line : fields.join("\t")}\n`;
  }
}

/** Streams one table out of production through the masking rules into its gzip file, and its row fingerprints into theirs. */
export async function copyTable(
  client: pg.Client,
  plan: PlannedTable,
  dir: string,
  masker: Masker,
  rowHmac: KeyedHmac,
  leaks: LeakScanner,
  onRows: (rows: number) => void,
): Promise<ManifestTable> {
  const base = `${plan.table.schema}.${plan.table.name}`;
  const file = `data/${base}.copy.gz`;
  const hmacFile = plan.keyIndexes === null ? null : `hmac/${base}.tsv.gz`;
  const cols = plan.columns.map((c) => quoteIdent(c.column)).join(", ");
  // ONLY: a table inheriting from this one is captured as itself (captured tables are plain, partitions as their leaves).
  const sql = `COPY (SELECT ${cols} FROM ${ownRows(plan.table.schema, plan.table.name, false)}) TO STDOUT`;
  const fingerprintGzip = hmacFile === null ? null : createGzip({ level: 1 });
  const fingerprintDone =
    hmacFile === null || fingerprintGzip === null ? Promise.resolve() : pipeline(fingerprintGzip, createWriteStream(join(dir, hmacFile), { mode: 0o600 }));
  const transform = new MaskingTransform(plan, masker, rowHmac, leaks, fingerprintGzip, onRows);
  try {
    await Promise.all([
      pipeline(client.query(copyTo(sql)), transform, createGzip({ level: 1 }), createWriteStream(join(dir, file), { mode: 0o600 })),
      fingerprintDone,
    ]);
  } catch (e) {
    fingerprintGzip?.destroy();
    throw e instanceof AirlockError
      ? e
      : (e as NodeJS.ErrnoException).code?.startsWith("E") === true && (e as NodeJS.ErrnoException).syscall !== undefined
        ? writeError(dir, e)
        : toAirlockError(e, { sql });
  }
  return {
    schema: plan.table.schema,
    name: plan.table.name,
    columns: plan.columns.map((c, i) => ({
      name: c.column,
      type: c.type,
      rule: describeRule(plan.rules[i]!).replace(/^custom\(([^)]*)\):.*$/s, "custom($1)"),
    })),
    key: plan.table.key,
    rows: transform.rows,
    file,
    hmacFile,
  };
}

/** A failure to write the snapshot, said as such (a full disk, a read-only directory). */
export function writeError(dir: string, e: unknown): AirlockError {
  const err = e as NodeJS.ErrnoException;
  return new AirlockError("AIRLOCK_SNAPSHOT_WRITE_FAILED", `cannot write the snapshot under ${dir}: ${err.code ?? ""} ${err.message}`.trim(), {
    hint: err.code === "ENOSPC" ? "free disk space or move the state directory (stateDir in airlock.config.ts)" : "check that the state directory is writable",
    cause: e,
  });
}
