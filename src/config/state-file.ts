/**
 * State files read back from disk (`.airlock/…`: manifests, session records,
 * approvals, diffs, the audit journal, the cluster file): parsed as JSON and
 * checked against a schema, so a file that is corrupt or was edited by hand
 * is an error naming the file and its first bad field, never a crash (or a
 * wrong decision) further on.
 *
 * State schemas only check: what a reader gets is the JSON as it was written
 * (no defaults filled, no keys dropped or reordered), so hashes and MACs over
 * it are unaffected and fields a newer Airlock added pass through. A state
 * schema therefore has no transforms or defaults.
 */
import { readFileSync } from "node:fs";
import { isAbsolute, relative } from "node:path";
import type { z } from "zod";
import { AirlockError, type ErrorCode } from "../errors.ts";
import { STATE_ERRORS, formatPath } from "./schema.ts";
import { plural } from "../format/plural.ts";

/** How a state file's problem is reported. */
export interface StateFileOptions {
  /** Default AIRLOCK_STATE_INVALID; a file kind with a code of its own (a snapshot's manifest) passes it. */
  readonly code?: ErrorCode;
  /** What to do: restore the file, or remove it and run the command that makes it again. */
  readonly hint: string;
  /** Where in the file, for files of many records ("line 3"). */
  readonly where?: string;
  readonly exitCode?: number;
}

/** A path as people see it: relative to the working directory when it is under it. */
export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? rel : file;
}

/**
 * The first problem of a value against a state schema, as "field: what is wrong" ("expiresAt: expected a string,
 * got a number"; the value itself is never shown), or undefined when it fits.
 */
export function stateProblem(schema: z.ZodType, value: unknown): string | undefined {
  const r = schema.safeParse(value, { error: STATE_ERRORS });
  if (r.success) return undefined;
  const [first, ...rest] = r.error.issues;
  if (first === undefined) return "does not fit";
  const path = first.code === "unrecognized_keys" ? [...first.path, first.keys[0] ?? ""] : first.path;
  const field = formatPath(path);
  const message = first.code === "unrecognized_keys" ? "unknown key" : first.message;
  const more = rest.length === 0 ? "" : ` (and ${plural(rest.length, "more problem")})`;
  return `${field === "" ? "" : `${field}: `}${message}${more}`;
}

/** The error for a state file with a problem (AIRLOCK_STATE_INVALID unless told): "<file>: <problem>", with the hint. */
export function stateError(file: string, problem: string, options: StateFileOptions, cause?: unknown): AirlockError {
  const where = options.where === undefined ? "" : ` ${options.where}`;
  return new AirlockError(options.code ?? "AIRLOCK_STATE_INVALID", `${displayPath(file)}${where}: ${problem}`, {
    hint: options.hint,
    ...(options.exitCode === undefined ? {} : { exitCode: options.exitCode }),
    ...(cause === undefined ? {} : { cause }),
    details: { file, ...(options.where === undefined ? {} : { where: options.where }), problem },
  });
}

/** Checks a value already parsed from a state file; throws (AIRLOCK_STATE_INVALID unless told) naming the file and the field. */
export function checkState<S extends z.ZodType>(file: string, value: unknown, schema: S, options: StateFileOptions): z.output<S> {
  const problem = stateProblem(schema, value);
  if (problem !== undefined) throw stateError(file, problem, options);
  return value as z.output<S>;
}

/** Parses the JSON text of a state file and checks it against its schema. */
export function parseStateText<S extends z.ZodType>(file: string, text: string, schema: S, options: StateFileOptions): z.output<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    // Not the parser's message: newer Node versions quote the text around the error, which may be a password.
    throw stateError(file, "not valid JSON", options, e);
  }
  return checkState(file, value, schema, options);
}

/** Reads a state file, parses its JSON and checks it against its schema. */
export function readStateFile<S extends z.ZodType>(file: string, schema: S, options: StateFileOptions): z.output<S> {
  return parseStateText(file, readFileSync(file, "utf8"), schema, options);
}
