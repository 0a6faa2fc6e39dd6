/**
 * Reading COPY text as lines, the one way every part of Airlock does it.
 * A stream arrives in chunks that cut rows, and characters, anywhere:
 * decoding each chunk on its own (`chunk.toString("utf8")`) turned a
 * character split between two chunks into U+FFFD on both sides, so the
 * diff saw updates nobody made and promotion saw conflicts nobody caused.
 * COPY text escapes newlines inside values (`\n`), and UTF-8 never uses the
 * byte 0x0A inside a multibyte character, so a raw 0x0A always ends a row:
 * splitting on that byte and decoding whole lines is exact. Bytes of a row
 * that spans chunks are kept as bytes until its newline arrives, so a long
 * row costs one copy, not one per chunk.
 */
import type pg from "pg";
import { to as copyTo } from "pg-copy-streams";

const NEWLINE = 0x0a;

/** Splits a byte stream of COPY text (UTF-8) into decoded lines, chunk by chunk. */
export class CopyLineSplitter {
  /** Bytes of the row in progress (no newline yet). */
  private pending: Buffer[] = [];

  /** The lines this chunk completes, without their newlines. */
  push(chunk: Buffer): string[] {
    const last = chunk.lastIndexOf(NEWLINE);
    if (last < 0) {
      // The chunk may be reused by its producer: keep a copy.
      if (chunk.length > 0) this.pending.push(Buffer.from(chunk));
      return [];
    }
    const lines: string[] = [];
    let from = 0;
    if (this.pending.length > 0) {
      const first = chunk.indexOf(NEWLINE);
      this.pending.push(chunk.subarray(0, first));
      lines.push(Buffer.concat(this.pending).toString("utf8"));
      this.pending = [];
      from = first + 1;
    }
    // Whole lines only from here to the last newline: one decode, one split.
    if (from <= last) for (const line of chunk.toString("utf8", from, last).split("\n")) lines.push(line);
    if (last + 1 < chunk.length) this.pending.push(Buffer.from(chunk.subarray(last + 1)));
    return lines;
  }

  /** The last line when the stream did not end with a newline (COPY's always does), else nothing. */
  end(): string[] {
    if (this.pending.length === 0) return [];
    const tail = Buffer.concat(this.pending).toString("utf8");
    this.pending = [];
    return [tail];
  }
}

/** The lines of a byte stream of COPY text (a COPY TO STDOUT, a gunzipped snapshot file), a chunk's worth at a time. */
export async function* copyLineBatches(source: AsyncIterable<Buffer>): AsyncGenerator<string[]> {
  const splitter = new CopyLineSplitter();
  for await (const chunk of source) {
    const lines = splitter.push(chunk);
    if (lines.length > 0) yield lines;
  }
  const tail = splitter.end();
  if (tail.length > 0) yield tail;
}

/** Streams the rows of a `COPY … TO STDOUT` as text lines. */
export async function* copyOutLines(client: pg.ClientBase, sql: string): AsyncGenerator<string> {
  for await (const batch of copyLineBatches(client.query(copyTo(sql)))) yield* batch;
}

/** Every row of a `COPY … TO STDOUT` whose rows the caller holds anyway (a diff's touched rows): kept in memory. */
export async function copyOutRows(client: pg.ClientBase, sql: string): Promise<string[]> {
  const rows: string[] = [];
  for await (const batch of copyLineBatches(client.query(copyTo(sql)))) for (const line of batch) rows.push(line);
  return rows;
}
