/**
 * Streams a generated table into Postgres with `COPY … FROM STDIN`. Rows are
 * produced in chunks only as fast as the connection takes them (stream
 * backpressure), so memory stays flat whatever the table's size.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { query, quoteIdent } from "../../src/pg/connect.ts";
import { toAirlockError } from "../../src/pg/pg-error.ts";
import type { TableSource } from "./tables/index.ts";

/** Bytes per chunk handed to the stream: large enough to amortise stream overhead, small enough to keep memory flat. */
const CHUNK_BYTES = 256 * 1024;
/** How often a table's progress is reported while it loads. */
const PROGRESS_EVERY_ROWS = 100_000;

/**
 * The table's lines as buffers of about CHUNK_BYTES. Writing each line into a
 * buffer is about three times faster than concatenating a chunk as a string
 * (V8 then has to flatten a rope of thousands of pieces before encoding it).
 */
function* chunks(source: TableSource, onRows: ((rows: number) => void) | undefined): Generator<Buffer> {
  let buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  let used = 0;
  let reported = 0;
  for (let i = 0; i < source.rows; i++) {
    const line = source.line(i);
    // A UTF-16 code unit never takes more than 3 bytes of UTF-8.
    const room = line.length * 3 + 1;
    if (buffer.length - used < room) {
      if (used > 0) yield buffer.subarray(0, used);
      buffer = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, room));
      used = 0;
      if (onRows !== undefined && i - reported >= PROGRESS_EVERY_ROWS) {
        reported = i;
        onRows(i);
      }
    }
    used += buffer.write(line, used);
    buffer[used++] = 0x0a;
  }
  if (used > 0) yield buffer.subarray(0, used);
}

/**
 * Loads all rows of `source` into its table, which this seeding run has just
 * created, over `client`; returns the row count the server reports.
 */
export async function copyIntoNewTable(
  client: pg.Client,
  source: TableSource,
  options: { signal?: AbortSignal; onRows?: (rows: number) => void } = {},
): Promise<number> {
  const sql = `COPY ${quoteIdent(source.table)} (${source.columns.map(quoteIdent).join(", ")}) FROM STDIN (FREEZE)`;
  // COPY FREEZE writes rows already frozen, sparing the index builds and the
  // first reads a pass that sets hint bits on every page (3-4 s of 22 at scale
  // 1000). It needs the table created or truncated in the same transaction;
  // the table is new and empty, so TRUNCATE loses nothing.
  await query(client, `BEGIN; TRUNCATE ${quoteIdent(source.table)}`);
  const sink = client.query(copyFrom(sql));
  try {
    await pipeline(Readable.from(chunks(source, options.onRows), { objectMode: false }), sink, options.signal === undefined ? {} : { signal: options.signal });
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw toAirlockError(e, { sql });
  }
  await query(client, "COMMIT");
  return sink.rowCount;
}
