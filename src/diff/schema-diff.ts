/**
 * Schema diff: the DDL that turns one database's schema into another's,
 * from @pgkit/migra (a TypeScript port of migra), dependency-ordered.
 * Drops are allowed here (unsafe): the diff shows them and hazards flag them.
 */
import { createClient } from "@pgkit/client";
import { run as migra } from "@pgkit/migra";
import { AirlockError } from "../errors.ts";
import type { PgTarget } from "../pg/connect.ts";

/** A URL migra's own client accepts (it reads host/port from the URL, socket directories via ?host=). */
function migraUrl(t: PgTarget): string {
  const auth = encodeURIComponent(t.user) + (t.password === undefined ? "" : `:${encodeURIComponent(t.password)}`);
  if (t.host.startsWith("/")) return `postgresql://${auth}@localhost:${t.port}/${encodeURIComponent(t.database)}?host=${encodeURIComponent(t.host)}`;
  return `postgresql://${auth}@${t.host}:${t.port}/${encodeURIComponent(t.database)}`;
}

const ADD_NOT_NULL = /^(alter table "(?:[^"]|"")+"\."(?:[^"]|"")+" add column ("(?:[^"]|"")+") )(.*) not null$/is;

/**
 * Splits the schema changes around the data: a new NOT NULL column without a
 * default is added nullable before the data (which fills it) and made NOT
 * NULL after, as an agent does by hand; everything else goes before.
 */
export function splitAroundData(statements: readonly string[]): { before: string[]; after: string[] } {
  const before: string[] = [];
  const after: string[] = [];
  for (const s of statements) {
    const m = ADD_NOT_NULL.exec(s);
    if (m === null || /\bdefault\b/i.test(m[3]!)) {
      before.push(s);
      continue;
    }
    before.push(`${m[1]}${m[3]}`);
    after.push(`${m[1]!.replace(/ add column .*$/is, "")} alter column ${m[2]} set not null`);
  }
  return { before, after };
}

/** The DDL statements from `from`'s schema to `to`'s (Airlock's own schema excluded). */
export async function schemaDiff(from: PgTarget, to: PgTarget): Promise<string[]> {
  try {
    // Our own clients, so that we can close them: a left-open connection to base would block cloning it.
    // noWarnings: pg-promise otherwise prints to stdout when one process diffs the same database twice.
    const options = { pgpOptions: { initialize: { noWarnings: true } } };
    const a = createClient(migraUrl(from), options);
    const b = createClient(migraUrl(to), options);
    // A pooled connection the server drops must not become an unhandled error.
    for (const client of [a, b]) client.pgp.$pool.on("error", () => undefined);
    let m: Awaited<ReturnType<typeof migra>>;
    try {
      m = await migra(a, b, { unsafe: true, excludeSchema: ["airlock"] });
    } finally {
      await Promise.all([a.end(), b.end()]).catch(() => undefined);
    }
    // One statement per entry (function bodies may hold semicolons, so never split text).
    return [...m.statements].map((s) => s.trim().replace(/;$/, "").trim()).filter((s) => s !== "");
  } catch (e) {
    const secrets = [from.password, to.password].filter((x): x is string => x !== undefined);
    let message = (e as Error).message;
    for (const s of secrets) message = message.split(s).join("********");
    throw new AirlockError("AIRLOCK_SCHEMA_DIFF_FAILED", `the schema diff failed: ${message}`, { hint: "this may be an object kind migra cannot diff; see the message", cause: e });
  }
}
