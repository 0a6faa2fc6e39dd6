/**
 * Schemas for untrusted input, on zod: the building blocks of
 * airlock.config.ts (strict objects whose unknown keys are problems, with a
 * suggestion when one is close; defaults; durations that must say their
 * unit) and the wording every problem is reported in, for the config and the
 * state files alike. zod collects every problem at once; `problemsOf` turns
 * them into `{ path, message }` with dotted paths such as `local.clusterDir`.
 */
import { z } from "zod";

/** One thing wrong with the input, at a dotted path such as `local.clusterDir`. */
export interface Problem {
  readonly path: string;
  readonly message: string;
}

/** A parser for one value in the old calling style: returns the parsed value, or records problems and returns undefined. */
export type Schema<T> = (value: unknown, path: string, problems: Problem[]) => T | undefined;

/** How a value is named in a message: with the value (config, written by the user) or by its kind only (state files, which hold passwords). */
function describe(value: unknown, withValue: boolean): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return withValue ? "an array" : "a list";
  if (typeof value === "object") return "an object";
  if (!withValue)
    return typeof value === "number" || typeof value === "string" || typeof value === "boolean" || typeof value === "function"
      ? `a ${typeof value}`
      : typeof value;
  return typeof value === "string" ? `the string ${JSON.stringify(value)}` : `${typeof value} ${String(value)}`;
}

const EXPECTED: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  object: "an object",
  record: "an object",
  array: "a list",
  null: "null",
  function: "a function",
};

/** The wording of zod's built-in checks; a schema's own `error` wins over it. */
function houseErrors(withValue: boolean): z.core.$ZodErrorMap {
  const got = (input: unknown) => describe(input, withValue);
  return (iss) => {
    switch (iss.code) {
      case "invalid_type":
        if (iss.input === undefined) return "is required";
        if (iss.expected === "int" && typeof iss.input === "number") return `expected a whole number${withValue ? `, got ${iss.input}` : ""}`;
        return `expected ${EXPECTED[iss.expected] ?? iss.expected}, got ${got(iss.input)}`;
      case "too_small":
      case "too_big": {
        const bound = iss.code === "too_small" ? iss.minimum : iss.maximum;
        const word = iss.code === "too_small" ? (iss.inclusive === false ? "more than" : "at least") : iss.inclusive === false ? "less than" : "at most";
        if (iss.origin === "string" || iss.origin === "array") {
          if (iss.code === "too_small" && Number(bound) === 1) return "must not be empty";
          return `must have ${word} ${String(bound)} ${iss.origin === "string" ? "characters" : "items"}`;
        }
        return `must be ${word} ${String(bound)}${withValue ? `, got ${String(iss.input)}` : ""}`;
      }
      case "invalid_value": {
        const choices = iss.values.map((v) => JSON.stringify(v));
        return `expected ${choices.length === 1 ? choices[0] : `one of ${choices.join(", ")}`}, got ${got(iss.input)}`;
      }
      case "invalid_format":
        return iss.format === "regex" && withValue
          ? `${JSON.stringify(iss.input)} is not of the form ${iss.pattern ?? "expected"}`
          : `is not ${iss.format === "regex" ? "of the expected form" : `a valid ${iss.format}`}`;
      case "unrecognized_keys":
        return iss.keys.map(() => "unknown key").join("\n");
      case "invalid_union":
        return `matches none of the forms it may take, got ${got(iss.input)}`;
      default:
        return undefined;
    }
  };
}

/** The wording for airlock.config.ts: values are quoted (the user wrote them). */
export const CONFIG_ERRORS = houseErrors(true);
/** The wording for state files: only kinds of values (a session record holds a password). */
export const STATE_ERRORS = houseErrors(false);

/** A dotted path such as `local.settings.work_mem` or `run.env[2]`; "" for the value itself. */
export function formatPath(path: readonly PropertyKey[], prefix = ""): string {
  let out = prefix;
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

/**
 * Every problem of a failed parse, with its path. An unknown key is one problem per key (its message, with a
 * suggestion, is one line per key: see `object`); a bad record key is reported with the key's own message.
 */
export function problemsOf(error: z.ZodError, prefix = ""): Problem[] {
  return error.issues.flatMap((issue): Problem[] => {
    if (issue.code === "unrecognized_keys") {
      const lines = issue.message.split("\n");
      return issue.keys.map((key, i) => ({ path: formatPath([...issue.path, key], prefix), message: lines[i] ?? "unknown key" }));
    }
    const message = issue.code === "invalid_key" ? (issue.issues[0]?.message ?? issue.message) : issue.message;
    return [{ path: formatPath(issue.path, prefix), message }];
  });
}

/** A zod schema in the old calling style (`(value, path, problems)`), reporting in the config's wording. */
export function checker<T>(schema: z.ZodType<T>): Schema<T> {
  return (value, path, problems) => {
    const r = schema.safeParse(value, { error: CONFIG_ERRORS });
    if (r.success) return r.data;
    problems.push(...problemsOf(r.error, path));
    return undefined;
  };
}

/** Runs `schema` on `value` inside a transform, passing its problems on (at their paths) and returning its output or z.NEVER. */
export function parseInto<T>(schema: z.ZodType<T>, value: unknown, ctx: z.core.$RefinementCtx): T {
  const r = schema.safeParse(value, { error: CONFIG_ERRORS });
  if (r.success) return r.data;
  for (const issue of r.error.issues) ctx.issues.push({ ...issue, input: value } as z.core.$ZodRawIssue);
  return z.NEVER;
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** "unknown key", with the known key it is probably a typo of. */
function unknownKey(key: string, known: readonly string[], note: string | undefined): string {
  if (note !== undefined) return `unknown key (${note})`;
  const close = known.find((k) => k.toLowerCase() === key.toLowerCase() || levenshtein(k, key) <= 2);
  return `unknown key${close === undefined ? "" : ` (did you mean "${close}"?)`}`;
}

/**
 * An object with known keys; any other key is a problem, suggesting the known key it is probably a typo of
 * (or saying `note`). zod reports a whole object's unknown keys as one issue: its message has one line per key.
 */
export function object<S extends z.ZodRawShape>(shape: S, options: { unknownKeyNote?: string } = {}) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => (iss.code === "unrecognized_keys" ? iss.keys.map((k) => unknownKey(k, known, options.unknownKeyNote)).join("\n") : undefined),
  });
}

/** A nested section whose absence means "all its defaults". */
export function section<T extends z.ZodType<unknown, object>>(schema: T) {
  return schema.prefault({} as z.input<T>);
}

/** A string, optionally non-empty and matching a pattern (`patternHint` names what it must be, e.g. "a user name"). */
export function string(options: { pattern?: RegExp; patternHint?: string; nonEmpty?: boolean } = {}): z.ZodString {
  let s = z.string();
  if (options.nonEmpty === true) s = s.min(1);
  if (options.pattern !== undefined) {
    const hint = options.patternHint;
    s = s.regex(options.pattern, hint === undefined ? undefined : { error: (iss) => `${JSON.stringify(iss.input)} is not ${hint}` });
  }
  return s;
}

/** A number within bounds. */
export function number(options: { min?: number; max?: number; integer?: boolean } = {}) {
  let n = options.integer === true ? z.int() : z.number();
  if (options.min !== undefined) n = n.min(options.min);
  if (options.max !== undefined) n = n.max(options.max);
  return n;
}

/** true or false. */
export function boolean(): z.ZodBoolean {
  return z.boolean();
}

/** One of a fixed set of strings. */
export function oneOf<const T extends readonly [string, ...string[]]>(choices: T) {
  return z.enum(choices);
}

/** A list of values of one schema. */
export function list<T extends z.ZodType>(item: T) {
  return z.array(item);
}

/** A map from string keys (optionally checked and normalised by `key`) to values of one schema. */
export function record<V extends z.ZodType, K extends z.core.$ZodRecordKey = z.ZodString>(value: V, key?: K) {
  return z.record(key ?? (z.string() as unknown as K), value);
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds in a duration such as "500ms", "30s", "5m", "2h", "7d"; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  return m === null ? undefined : Math.round(Number(m[1]) * UNIT_MS[m[2]!]!);
}

const durationExample = (input: unknown) => `expected a duration such as "30s", "5m" or "2h", got ${describe(input, true)}`;

/**
 * A duration, always with its unit ("500ms", "30s", "5m", "2h", "7d"); parsed to milliseconds. A bare number is
 * refused: `ttl: 5` meant as five minutes would otherwise silently be five milliseconds.
 */
export function duration() {
  return z
    .string({
      error: (iss) =>
        typeof iss.input === "number"
          ? `expected a duration with its unit, got the bare number ${iss.input}: write "${iss.input}ms", "${iss.input}s", "${iss.input}m" or "${iss.input}h"`
          : durationExample(iss.input),
    })
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms !== undefined) return ms;
      ctx.issues.push({ code: "custom", message: durationExample(text), input: text });
      return z.NEVER;
    });
}

/**
 * A duration as `duration()` takes it (at least `minMs`), or "never" (parsed to null): a time after which something
 * happens by itself, which the user may turn off.
 */
export function durationOrNever(minMs = 1_000) {
  const orNever = (message: string | undefined) => `${message ?? "expected a duration"} (or "never")`;
  const durationProblem = (value: unknown) => duration().safeParse(value, { error: CONFIG_ERRORS }).error?.issues[0]?.message;
  return z.string({ error: (iss) => orNever(durationProblem(iss.input)) }).transform((text, ctx): number | null => {
    if (text === "never") return null;
    const ms = parseDuration(text);
    const message =
      ms === undefined
        ? durationProblem(text)
        : ms < minMs
          ? `must be at least ${minMs >= 1_000 ? `${minMs / 1_000}s` : `${minMs}ms`}, got ${JSON.stringify(text)}`
          : undefined;
    if (ms !== undefined && message === undefined) return ms;
    ctx.issues.push({ code: "custom", message: orNever(message), input: text });
    return z.NEVER;
  });
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)$/i;
const UNIT_BYTES: Readonly<Record<string, number>> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/** Bytes in a size such as "50MB", "2GB" (1 kB = 1024 bytes, as Postgres counts); undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  return m === null ? undefined : Math.round(Number(m[1]) * UNIT_BYTES[m[2]!.toLowerCase()]!);
}

const sizeExample = (input: unknown) => `expected a size such as "500MB" or "2GB", got ${describe(input, true)}`;

/** A size given as a string ("50MB") or a number of bytes; parsed to bytes. */
export function size() {
  return z.union([z.string(), z.number()], { error: (iss) => sizeExample(iss.input) }).transform((value, ctx) => {
    const bytes = typeof value === "number" ? (Number.isInteger(value) ? value : undefined) : parseSize(value);
    if (bytes !== undefined && bytes > 0) return bytes;
    ctx.issues.push({ code: "custom", message: sizeExample(value), input: value });
    return z.NEVER;
  });
}
