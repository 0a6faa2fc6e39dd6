/**
 * A small validator for untrusted settings: describes the shape of
 * airlock.config.ts, fills defaults, and collects every problem with its
 * path instead of stopping at the first. Unknown keys are problems too.
 */

/** One thing wrong with the input, at a dotted path such as `local.clusterDir`. */
export interface Problem {
  readonly path: string;
  readonly message: string;
}

/** A parser for one value: returns the parsed value, or records problems and returns undefined. */
export type Schema<T> = (value: unknown, path: string, problems: Problem[]) => T | undefined;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "string" ? `the string ${JSON.stringify(value)}` : `${typeof value} ${String(value)}`;
}

/** A string, optionally matching a pattern. */
export function string(options: { pattern?: RegExp; patternHint?: string; nonEmpty?: boolean } = {}): Schema<string> {
  return (value, path, problems) => {
    if (typeof value !== "string") return void problems.push({ path, message: `expected a string, got ${describe(value)}` });
    if (options.nonEmpty === true && value === "") return void problems.push({ path, message: "must not be empty" });
    if (options.pattern !== undefined && !options.pattern.test(value)) {
      return void problems.push({ path, message: `${JSON.stringify(value)} is not ${options.patternHint ?? `of the form ${options.pattern}`}` });
    }
    return value;
  };
}

/** A number within bounds. */
export function number(options: { min?: number; max?: number; integer?: boolean } = {}): Schema<number> {
  return (value, path, problems) => {
    if (typeof value !== "number" || Number.isNaN(value)) return void problems.push({ path, message: `expected a number, got ${describe(value)}` });
    if (options.integer === true && !Number.isInteger(value)) return void problems.push({ path, message: `expected a whole number, got ${value}` });
    if (options.min !== undefined && value < options.min) return void problems.push({ path, message: `must be at least ${options.min}, got ${value}` });
    if (options.max !== undefined && value > options.max) return void problems.push({ path, message: `must be at most ${options.max}, got ${value}` });
    return value;
  };
}

/** A boolean. */
export function boolean(): Schema<boolean> {
  return (value, path, problems) => (typeof value === "boolean" ? value : void problems.push({ path, message: `expected true or false, got ${describe(value)}` }));
}

/** One of a fixed set of strings. */
export function oneOf<const T extends string>(choices: readonly T[]): Schema<T> {
  return (value, path, problems) => {
    if (typeof value === "string" && (choices as readonly string[]).includes(value)) return value as T;
    return void problems.push({ path, message: `expected one of ${choices.map((c) => JSON.stringify(c)).join(", ")}, got ${describe(value)}` });
  };
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds in a duration such as "500ms", "30s", "5m", "2h", "7d"; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  return m === null ? undefined : Math.round(Number(m[1]) * UNIT_MS[m[2]!]!);
}

/**
 * A duration, always with its unit ("500ms", "30s", "5m", "2h", "7d"); parsed to milliseconds. A bare number is
 * refused: `ttl: 5` meant as five minutes would otherwise silently be five milliseconds.
 */
export function duration(): Schema<number> {
  return (value, path, problems) => {
    if (typeof value === "number") {
      return void problems.push({ path, message: `expected a duration with its unit, got the bare number ${value}: write "${value}ms", "${value}s", "${value}m" or "${value}h"` });
    }
    const ms = typeof value === "string" ? parseDuration(value) : undefined;
    if (ms === undefined) return void problems.push({ path, message: `expected a duration such as "30s", "5m" or "2h", got ${describe(value)}` });
    return ms;
  };
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)$/i;
const UNIT_BYTES: Readonly<Record<string, number>> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/** Bytes in a size such as "50MB", "2GB" (1 kB = 1024 bytes, as Postgres counts); undefined when malformed. */
export function parseSize(text: string): number | undefined {
  const m = SIZE.exec(text.trim());
  return m === null ? undefined : Math.round(Number(m[1]) * UNIT_BYTES[m[2]!.toLowerCase()]!);
}

/** A size given as a string ("50MB") or a number of bytes; parsed to bytes. */
export function size(): Schema<number> {
  return (value, path, problems) => {
    if (typeof value === "number" && Number.isInteger(value) && value > 0) return value;
    const bytes = typeof value === "string" ? parseSize(value) : undefined;
    if (bytes === undefined || bytes <= 0) return void problems.push({ path, message: `expected a size such as "500MB" or "2GB", got ${describe(value)}` });
    return bytes;
  };
}

/** A list of values of one schema. */
export function list<T>(itemSchema: Schema<T>): Schema<T[]> {
  return (value, path, problems) => {
    if (!Array.isArray(value)) return void problems.push({ path, message: `expected a list, got ${describe(value)}` });
    const out: T[] = [];
    value.forEach((item, i) => {
      const before = problems.length;
      const v = itemSchema(item, `${path}[${i}]`, problems);
      if (problems.length === before) out.push(v as T);
    });
    return out;
  };
}

/** A map from string keys to values of one schema. */
export function record<T>(valueSchema: Schema<T>, keySchema?: Schema<string>): Schema<Record<string, T>> {
  return (value, path, problems) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return void problems.push({ path, message: `expected an object, got ${describe(value)}` });
    const out: Record<string, T> = {};
    for (const [key, v] of Object.entries(value)) {
      const p = path === "" ? key : `${path}.${key}`;
      // The key schema may normalise the key (e.g. add a default schema name).
      const k = keySchema === undefined ? key : keySchema(key, p, problems);
      if (k === undefined) continue;
      const parsed = valueSchema(v, p, problems);
      if (parsed !== undefined) out[k] = parsed;
    }
    return out;
  };
}

/** A field of an object: its schema and, when optional, its default. */
export interface Field<T> {
  readonly schema: Schema<T>;
  readonly default?: T | (() => T);
  readonly optional?: boolean;
}

type Shape = Record<string, Field<unknown>>;
type Parsed<S extends Shape> = { [K in keyof S]: S[K] extends Field<infer T> ? T : never };

/** A field with a default used when the key is absent. */
export function withDefault<T>(schema: Schema<T>, value: NoInfer<T> | (() => NoInfer<T>)): Field<T> {
  return { schema, default: value };
}

/** A nested section whose absence means "all its defaults". */
export function section<T>(schema: Schema<T>): Field<T> {
  return { schema, default: () => schema({}, "", []) as T };
}

/** A field that may be absent (no default). */
export function optional<T>(schema: Schema<T>): Field<T | undefined> {
  return { schema, optional: true } as Field<T | undefined>;
}

/** A field that must be present. */
export function required<T>(schema: Schema<T>): Field<T> {
  return { schema };
}

/** An object with known keys; any other key is reported with a suggestion when one is close. */
export function object<S extends Shape>(shape: S): Schema<Parsed<S>> {
  return (value, path, problems) => {
    const input = value === undefined ? {} : value;
    if (typeof input !== "object" || input === null || Array.isArray(input)) return void problems.push({ path: path || "(root)", message: `expected an object, got ${describe(value)}` });
    const out: Record<string, unknown> = {};
    let ok = true;
    for (const key of Object.keys(input)) {
      if (!(key in shape)) {
        const close = Object.keys(shape).find((k) => k.toLowerCase() === key.toLowerCase() || levenshtein(k, key) <= 2);
        problems.push({ path: path === "" ? key : `${path}.${key}`, message: `unknown key${close === undefined ? "" : ` (did you mean "${close}"?)`}` });
        ok = false;
      }
    }
    for (const [key, field] of Object.entries(shape)) {
      const p = path === "" ? key : `${path}.${key}`;
      const v = (input as Record<string, unknown>)[key];
      if (v === undefined) {
        if (field.default !== undefined) out[key] = typeof field.default === "function" ? (field.default as () => unknown)() : field.default;
        else if (field.optional !== true) {
          problems.push({ path: p, message: "is required" });
          ok = false;
        }
        continue;
      }
      const before = problems.length;
      const parsed = field.schema(v, p, problems);
      if (problems.length > before) ok = false;
      else out[key] = parsed;
    }
    return ok ? (out as Parsed<S>) : undefined;
  };
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
