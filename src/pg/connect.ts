/**
 * The one place Airlock opens Postgres connections. Every connection pins the
 * session settings from DESIGN.md so that row texts and hashes come out the
 * same at capture, diff and promote, and says which step opened it through
 * `application_name`. Passwords stay off every printable form of a target.
 */
import pg from "pg";
import { parse as parseConnectionString } from "pg-connection-string";
import { AirlockError } from "../errors.ts";
import { toAirlockError } from "./pg-error.ts";
import { redactUrl } from "./redact.ts";

/**
 * The settings every Airlock connection pins (DESIGN.md, "Every Airlock connection pins its session").
 * Startup options outrank `ALTER DATABASE/ROLE … SET`, so nothing an agent sets on its database or
 * role changes how Airlock reads or writes: which functions unqualified names resolve to (the search
 * path holds only the catalog and, last, temporary objects), how quoted literals are read, whether
 * row-level security policies filter (and run their functions in) Airlock's queries — with
 * `row_security = off`, a query that a policy would filter fails instead of returning fewer rows.
 */
export const PINNED_SETTINGS: Readonly<Record<string, string>> = {
  search_path: "pg_catalog,pg_temp",
  standard_conforming_strings: "on",
  row_security: "off",
  array_nulls: "on",
  lc_monetary: "C",
  xmloption: "content",
  TimeZone: "UTC",
  DateStyle: "ISO",
  IntervalStyle: "postgres",
  extra_float_digits: "3",
  bytea_output: "hex",
};

/** Where to connect. `password` is non-enumerable, so logging or JSON-encoding a target never shows it. */
export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password?: string;
  /** A printable form with the password replaced. */
  readonly display: string;
  /** Extra libpq parameters from the URL (sslmode, options, …), passed through. */
  readonly params: Readonly<Record<string, string>>;
}

/** Builds a target from its parts; the password is hidden from enumeration. */
export function makeTarget(parts: {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string;
  params?: Record<string, string>;
}): PgTarget {
  const display = redactUrl(formatUrl({ ...parts, params: {} }));
  const target = { host: parts.host, port: parts.port, database: parts.database, user: parts.user, display, params: parts.params ?? {} };
  if (parts.password !== undefined) Object.defineProperty(target, "password", { value: parts.password, enumerable: false });
  return target as PgTarget;
}

const BAD_URL_HINT = "use the form postgres://user:password@host:5432/database (or libpq's host=… port=… dbname=… user=…)";

/**
 * A libpq `key=value` connection string (`host=db port=5432 dbname=app user=bob password='it\\'s'`) as
 * pg-connection-string's fields; undefined when it is not one.
 */
function parseKeywordValue(s: string): Record<string, string> | undefined {
  const pair = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\.)*))/y;
  const out: Record<string, string> = {};
  while (!/^\s*$/.test(s.slice(pair.lastIndex))) {
    const m = pair.exec(s);
    if (m === null) return undefined;
    const value = (m[2] ?? m[3] ?? "").replace(/\\(.)/g, "$1");
    const key = m[1]!;
    out[key === "dbname" ? "database" : key] = value;
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

/**
 * Parses a connection URL (or libpq key=value string); missing parts fall back
 * to the `PG*` environment variables as libpq does. No error message shows the
 * string's password, whatever its shape (redactUrl).
 */
export function parseTarget(url: string): PgTarget {
  const bad = (message: string, cause?: unknown) =>
    new AirlockError("AIRLOCK_BAD_URL", `${message}: ${redactUrl(url)}`, { hint: BAD_URL_HINT, ...(cause === undefined ? {} : { cause }) });
  let parsed: Partial<Record<string, string | null | undefined>>;
  if (/^\s*[A-Za-z_][A-Za-z0-9_]*\s*=/.test(url)) {
    const kv = parseKeywordValue(url);
    if (kv === undefined) throw bad("not a key=value connection string");
    // As the equivalent URL (every keyword a query parameter), so both forms mean the same (sslmode and all).
    const { database, ...rest } = kv;
    try {
      parsed = parseConnectionString(`postgres:///${encodeURIComponent(database ?? "")}?${new URLSearchParams(rest).toString()}`) as typeof parsed;
    } catch (e) {
      throw bad("not a key=value connection string", e);
    }
  } else {
    if (!/^postgres(ql)?:\/\//i.test(url)) throw bad("not a Postgres connection URL");
    try {
      parsed = parseConnectionString(url) as typeof parsed;
    } catch (e) {
      throw bad("not a Postgres connection URL", e);
    }
  }
  // A part left out of a URL comes back as "" (or null): libpq then takes the environment's, or its default.
  const given = (key: string): string | undefined => {
    const v = parsed[key];
    return typeof v === "string" && v !== "" ? v : undefined;
  };
  const env = process.env;
  const portText = given("port") ?? env.PGPORT ?? "5432";
  const port = /^\d+$/.test(portText) ? Number(portText) : Number.NaN;
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new AirlockError("AIRLOCK_BAD_URL", `bad port in ${redactUrl(url)}`, { hint: "the port must be a number from 1 to 65535" });
  }
  const params: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (["host", "port", "database", "user", "password"].includes(key)) continue;
    if (typeof value === "string") params[key] = value;
  }
  const user = given("user") ?? env.PGUSER ?? env.USER ?? "postgres";
  const password = given("password") ?? env.PGPASSWORD;
  return makeTarget({
    host: given("host") ?? env.PGHOST ?? "localhost",
    port,
    database: given("database") ?? env.PGDATABASE ?? user,
    user,
    ...(password === undefined || password === "" ? {} : { password }),
    params,
  });
}

/** A target's URL. Includes the password only when `withPassword` is set: for handing to a child process, never for printing. */
export function formatUrl(
  t: { host: string; port: number; database: string; user: string; password?: string; params?: Readonly<Record<string, string>> },
  withPassword = false,
): string {
  const auth = encodeURIComponent(t.user) + (withPassword && t.password !== undefined ? `:${encodeURIComponent(t.password)}` : "");
  const socket = t.host.startsWith("/");
  const host = socket ? "" : t.host.includes(":") ? `[${t.host}]` : t.host;
  const query = new URLSearchParams(t.params ?? {});
  if (socket) query.set("host", t.host);
  const qs = query.toString();
  return `postgres://${auth}@${host}:${t.port}/${encodeURIComponent(t.database)}${qs === "" ? "" : `?${qs}`}`;
}

/** Options for a single connection. */
export interface ConnectOptions {
  /** The pipeline step, shown as `application_name=airlock/<step>`. */
  readonly step: string;
  /** Server-side statement timeout for this connection, in ms. */
  readonly statementTimeoutMs?: number;
  /** Lock timeout for this connection, in ms. */
  readonly lockTimeoutMs?: number;
  /** Makes every transaction of this connection read-only. */
  readonly readOnly?: boolean;
  /** Client-side connect timeout, in ms (default 10 s). */
  readonly connectTimeoutMs?: number;
  /**
   * Overrides the pinned `pg_catalog,pg_temp` search path. Only for connections that run a user's own
   * unqualified SQL on a database the user trusts (seeding the demo, scripted agents); never for a
   * connection that reads or writes what an agent made. Such a connection gets the row-level security
   * its role has, not the pinned `row_security = off`.
   */
  readonly searchPath?: string;
}

// Date/time values stay the server's text: a JS Date would drop microseconds
// and time zones, and hashes of rows must match what COPY produces.
const TEXT_TYPE_OIDS = new Set([1082, 1083, 1114, 1184, 1186, 1266]);
const passthroughTypes = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (TEXT_TYPE_OIDS.has(oid)) return (value: string) => value;
    return pg.types.getTypeParser(oid, format as "text");
  },
};

function clientConfig(target: PgTarget, options: ConnectOptions): pg.ClientConfig {
  const settings: Record<string, string> = { ...PINNED_SETTINGS };
  if (options.searchPath !== undefined) {
    // The user's own SQL: its search path, and row-level security as the user's role gets it.
    settings.search_path = options.searchPath.replace(/\s+/g, "");
    delete settings.row_security;
  }
  if (options.statementTimeoutMs !== undefined) settings.statement_timeout = String(options.statementTimeoutMs);
  if (options.lockTimeoutMs !== undefined) settings.lock_timeout = String(options.lockTimeoutMs);
  if (options.readOnly === true) settings.default_transaction_read_only = "on";
  const pinned = Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(" ");
  const fromUrl = target.params.options;
  const { options: _ignored, application_name: _app, ...rest } = target.params;
  return {
    ...rest,
    host: target.host,
    port: target.port,
    database: target.database,
    user: target.user,
    ...(target.password === undefined ? {} : { password: target.password }),
    application_name: `airlock/${options.step}`,
    options: fromUrl === undefined ? pinned : `${fromUrl} ${pinned}`,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    types: passthroughTypes,
  } as pg.ClientConfig;
}

function asTarget(target: PgTarget | string): PgTarget {
  return typeof target === "string" ? parseTarget(target) : target;
}

/** Each open connection's step and login role, so a permission error can say which role the step needs. */
const opened = new WeakMap<pg.ClientBase, { readonly step: string; readonly user: string }>();

/** Opens one connection with the pinned session; the caller ends it. */
export async function openClient(target: PgTarget | string, options: ConnectOptions): Promise<pg.Client> {
  const t = asTarget(target);
  const client = new pg.Client(clientConfig(t, options));
  opened.set(client, { step: options.step, user: t.user });
  // An idle connection that the server drops must not crash the process.
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw toAirlockError(e, { target: t.display, step: options.step, user: t.user, ...(t.password === undefined ? {} : { secrets: [t.password] }) });
  }
  return client;
}

/** Opens a pool whose every connection has the pinned session. */
export function openPool(target: PgTarget | string, options: ConnectOptions & { readonly max: number }): pg.Pool {
  const t = asTarget(target);
  const pool = new pg.Pool({ ...clientConfig(t, options), max: options.max });
  pool.on("error", () => undefined);
  return pool;
}

/** Runs `fn` with a fresh connection and always closes it. */
export async function withClient<T>(target: PgTarget | string, options: ConnectOptions, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await openClient(target, options);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Runs `fn` in one transaction on `client`: BEGIN (or `begin`, e.g. with an isolation level), then COMMIT,
 * or ROLLBACK when `fn` throws (the error is rethrown) or when `commit` says no to its result (a dry run).
 */
export async function inTransaction<T>(
  client: pg.ClientBase,
  fn: () => Promise<T>,
  options: { begin?: string; commit?: (result: T) => boolean } = {},
): Promise<T> {
  await query(client, options.begin ?? "BEGIN");
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
  await query(client, options.commit === undefined || options.commit(result) ? "COMMIT" : "ROLLBACK");
  return result;
}

/** Runs one statement and maps any error to an AirlockError that carries the SQL (for the caret). */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.ClientBase,
  sql: string,
  values?: readonly unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await client.query<R>(sql, values as unknown[] | undefined);
  } catch (e) {
    throw toAirlockError(e, { sql, ...opened.get(client) });
  }
}

/** Quotes an identifier for SQL. */
export function quoteIdent(name: string): string {
  return pg.escapeIdentifier(name);
}

/** Quotes a string literal for SQL. */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
