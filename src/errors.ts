/**
 * Airlock's error type: every failure a user can meet carries a stable `code`
 * (what scripts match on) and a `hint` (what to do next). Callers catch by
 * `code` or by class, never by message text.
 */

import { ERROR_CODES, EXIT_ERROR, type ErrorCode, type ErrorCodeInfo } from "./error-codes.ts";

// The exit codes (0 ok, 1 error, 2 refused) live beside the registry that gives each code its default.
export { EXIT_OK, EXIT_ERROR, EXIT_REFUSED, ERROR_CODES, type ErrorCode, type ErrorCodeInfo } from "./error-codes.ts";

/** Fields copied from a Postgres error so nothing the server said is lost. */
export interface PgErrorFields {
  readonly severity?: string;
  readonly sqlstate?: string;
  readonly detail?: string;
  readonly pgHint?: string;
  readonly position?: number;
  readonly where?: string;
  readonly schema?: string;
  readonly table?: string;
  readonly column?: string;
  readonly constraint?: string;
  /** The statement that failed, when Airlock knows it (for the caret). */
  readonly sql?: string;
}

export interface AirlockErrorOptions {
  readonly hint?: string;
  /** Default: the code's exit code in the registry (src/error-codes.ts). */
  readonly exitCode?: number;
  readonly pg?: PgErrorFields;
  readonly cause?: unknown;
  /** Extra machine-readable facts (counts, paths); never secrets or production values. */
  readonly details?: Readonly<Record<string, unknown>>;
}

/** An error with a stable code and a hint. */
export class AirlockError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly exitCode: number;
  readonly pg: PgErrorFields | undefined;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options: AirlockErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AirlockError";
    this.code = code;
    this.hint = options.hint;
    // A JavaScript caller can pass any string: an unregistered code is an error (exit 1), not a crash.
    this.exitCode = options.exitCode ?? (ERROR_CODES as Readonly<Partial<Record<string, ErrorCodeInfo>>>)[code]?.exitCode ?? EXIT_ERROR;
    this.pg = options.pg;
    this.details = options.details;
  }

  /** A JSON form for `--json` output. */
  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(this.pg === undefined ? {} : { pg: this.pg }),
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }
}

/** True when `e` is an AirlockError, optionally with the given code. */
export function isAirlockError(e: unknown, code?: ErrorCode): e is AirlockError {
  return e instanceof AirlockError && (code === undefined || e.code === code);
}

/** Renders an error for a terminal: code, message, Postgres fields, a caret under the SQL, hint. */
export function formatError(e: unknown): string {
  if (!(e instanceof AirlockError)) {
    const message = e instanceof Error ? e.message : String(e);
    return `AIRLOCK_INTERNAL: ${message}\n  hint: this is a bug in Airlock; please report it with the command you ran`;
  }
  const lines = [`${e.code}: ${e.message}`];
  const pg = e.pg;
  if (pg !== undefined) {
    const head = [pg.severity, pg.sqlstate].filter((x) => x !== undefined).join(" ");
    if (head !== "") lines.push(`  postgres: ${head}`);
    if (pg.detail !== undefined) lines.push(`  detail: ${pg.detail}`);
    if (pg.pgHint !== undefined) lines.push(`  postgres hint: ${pg.pgHint}`);
    if (pg.where !== undefined) lines.push(`  where: ${pg.where}`);
    if (pg.sql !== undefined && pg.position !== undefined) lines.push(...caretUnder(pg.sql, pg.position));
  }
  if (e.hint !== undefined) lines.push(`  hint: ${e.hint}`);
  return lines.join("\n");
}

/** The SQL line holding a 1-based character position, with a caret under that character. */
export function caretUnder(sql: string, position: number): string[] {
  let offset = 0;
  for (const line of sql.split("\n")) {
    if (position - 1 <= offset + line.length) {
      const column = Math.max(0, position - 1 - offset);
      return [`  | ${line}`, `  | ${" ".repeat(column)}^`];
    }
    offset += line.length + 1;
  }
  return [];
}
