/**
 * Mapping of `pg` and socket errors to AirlockErrors that keep every field the
 * server sent (sqlstate, detail, hint, position) and never the password.
 */
import { AirlockError, type ErrorCode, type PgErrorFields } from "../errors.ts";
import { describePermissionDenied } from "./privilege-error.ts";
import { redactText } from "./redact.ts";

interface PgDatabaseErrorLike {
  code?: string;
  severity?: string;
  detail?: string;
  hint?: string;
  position?: string;
  where?: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
  message?: string;
}

/** A sqlstate we give a stable Airlock code of its own; others become AIRLOCK_PG_ERROR. */
const CODES_BY_SQLSTATE: Readonly<Record<string, { code: ErrorCode; hint: string }>> = {
  "28P01": { code: "AIRLOCK_AUTH_FAILED", hint: "check the user and password in the connection URL" },
  "28000": { code: "AIRLOCK_AUTH_FAILED", hint: "the server refused this user (pg_hba.conf); check the user and host" },
  "3D000": { code: "AIRLOCK_DB_NOT_FOUND", hint: "check the database name in the connection URL" },
  "57014": {
    code: "AIRLOCK_STATEMENT_TIMEOUT",
    hint: "the statement ran past statement_timeout; raise it in airlock.config.ts or retry when the server is less busy",
  },
  "55P03": { code: "AIRLOCK_LOCK_TIMEOUT", hint: "another transaction holds a lock Airlock needs; retry when it has finished, or raise lock_timeout" },
  "53300": { code: "AIRLOCK_TOO_MANY_CONNECTIONS", hint: "the server or role connection limit is reached; close idle connections or raise the limit" },
  "25006": { code: "AIRLOCK_READ_ONLY", hint: "this connection is read-only by design; the statement tried to write" },
  "42501": { code: "AIRLOCK_PERMISSION_DENIED", hint: "the role lacks a privilege this step needs" },
};

const NETWORK_CODES: Readonly<Record<string, string>> = {
  ECONNREFUSED: "nothing is listening there",
  ENOTFOUND: "the host name does not resolve",
  EHOSTUNREACH: "the host is unreachable",
  ETIMEDOUT: "the connection timed out",
  ECONNRESET: "the server closed the connection",
  ENOENT: "no Unix socket at that path",
};

/** Where an error happened: the statement, the target, and (for permission errors) the step and its login role. */
export interface ErrorContext {
  readonly target?: string;
  readonly sql?: string;
  readonly secrets?: readonly string[];
  /** The pipeline step of the connection (`promote`, `audit`, …): a permission error names the role it needs. */
  readonly step?: string;
  /** The role the connection logged in as. */
  readonly user?: string;
}

/** Turns anything `pg` throws into an AirlockError; `sql` (if given) lets the printer draw a caret. */
export function toAirlockError(e: unknown, context: ErrorContext = {}): AirlockError {
  if (e instanceof AirlockError) return e;
  const secrets = context.secrets ?? [];
  const where = context.target === undefined ? "" : ` (${context.target})`;
  const err = (e ?? {}) as PgDatabaseErrorLike & { errno?: number };
  const rawMessage = redactText(e instanceof Error ? e.message : String(e), secrets);

  if (typeof err.code === "string" && /^[0-9A-Z]{5}$/.test(err.code) && err.severity !== undefined) {
    const known = CODES_BY_SQLSTATE[err.code];
    const pg: PgErrorFields = {
      severity: err.severity,
      sqlstate: err.code,
      ...(err.detail === undefined ? {} : { detail: redactText(err.detail, secrets) }),
      ...(err.hint === undefined ? {} : { pgHint: err.hint }),
      ...(err.position === undefined ? {} : { position: Number(err.position) }),
      ...(err.where === undefined ? {} : { where: err.where }),
      ...(err.schema === undefined ? {} : { schema: err.schema }),
      ...(err.table === undefined ? {} : { table: err.table }),
      ...(err.column === undefined ? {} : { column: err.column }),
      ...(err.constraint === undefined ? {} : { constraint: err.constraint }),
      ...(context.sql === undefined ? {} : { sql: context.sql }),
    };
    if (err.code === "42501") {
      // Which privilege, on what, the GRANT that gives it, and the role this step should run as.
      const denied = describePermissionDenied(rawMessage, context);
      return new AirlockError("AIRLOCK_PERMISSION_DENIED", `${denied.message}${where}`, {
        hint: denied.hint,
        pg,
        cause: e,
        ...(denied.missing === undefined
          ? {}
          : {
              details: {
                missing: denied.missing.privilege,
                object: denied.missing.object,
                ...(denied.missing.grant === undefined ? {} : { grant: denied.missing.grant }),
              },
            }),
      });
    }
    return new AirlockError(known?.code ?? "AIRLOCK_PG_ERROR", `${rawMessage}${where}`, {
      hint: known?.hint ?? err.hint ?? "see the Postgres error above",
      pg,
      cause: e,
    });
  }
  if (typeof err.code === "string" && err.code in NETWORK_CODES) {
    return new AirlockError("AIRLOCK_UNREACHABLE", `cannot connect to Postgres${where}: ${NETWORK_CODES[err.code]}`, {
      hint: "check the host and port, and that the server is running and accepts TCP connections",
      cause: e,
    });
  }
  if (/timeout expired|Connection terminated due to connection timeout/i.test(rawMessage)) {
    return new AirlockError("AIRLOCK_UNREACHABLE", `cannot connect to Postgres${where}: connection timed out`, {
      hint: "check the host and port, and that no firewall drops the connection",
      cause: e,
    });
  }
  if (/password/i.test(rawMessage) && /SASL|SCRAM|client password must be a string/i.test(rawMessage)) {
    return new AirlockError("AIRLOCK_AUTH_FAILED", `the server asked for a password that was not given${where}`, {
      hint: "put the password in the connection URL or in PGPASSWORD",
      cause: e,
    });
  }
  return new AirlockError("AIRLOCK_PG_ERROR", `${rawMessage}${where}`, { hint: "see the message above", cause: e });
}
