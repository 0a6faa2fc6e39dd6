/**
 * Airlock's configuration: the typed shape of airlock.config.ts, its
 * defaults, and `parseConfig`, which reports every problem at once.
 */
import { AirlockError } from "../errors.ts";
import { leakAllowance, maskRule, ruleKey } from "../snapshot/rules.ts";
import { type Problem, boolean, duration, list, number, object, oneOf, optional, record, section, size, string, withDefault } from "./schema.ts";

const serverSetting = (value: unknown, path: string, problems: Problem[]): string | number | boolean | undefined => {
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") return value;
  problems.push({ path, message: `expected a string, number or boolean Postgres setting, got ${typeof value}` });
  return undefined;
};

const configSchema = object({
  /** Where Airlock keeps its state (clusters, snapshots, sessions, diffs, audit log). */
  stateDir: withDefault(string({ nonEmpty: true }), ".airlock"),
  /** The embedded default backend. */
  local: section(
    object({
      /** The cluster directory; relative paths are under the project directory. */
      clusterDir: optional(string({ nonEmpty: true })),
      /** The Postgres bin directory (else AIRLOCK_PG_BIN, pg_config, PATH, /usr/lib/postgresql). */
      pgBin: optional(string({ nonEmpty: true })),
      /** The OS user the server runs as when Airlock is root (else AIRLOCK_PG_USER, then postgres). */
      serverUser: optional(string({ nonEmpty: true, pattern: /^[a-z_][a-z0-9_-]*$/i, patternHint: "a user name" })),
      /** Skip fsync in the staging cluster: faster, and staging is disposable. */
      disposable: withDefault(boolean(), true),
      /** Extra Postgres settings for the staging cluster. */
      settings: withDefault(record(serverSetting), () => ({})),
      /** max_connections of the staging cluster. */
      maxConnections: withDefault(number({ integer: true, min: 10, max: 10_000 }), 200),
    }),
  ),
  /** How production values become snapshot values: "schema.table.column" (or "table.column") → rule. */
  masking: section(
    object({
      rules: withDefault(record(maskRule, ruleKey), () => ({})),
      /** Values of kept columns the leak scan lets pass although they equal originals of masked columns (common words), with a reason: "schema.table.column" → { reason, values }. */
      allow: withDefault(record(leakAllowance, ruleKey), () => ({})),
      /** Non-null values sampled per column for PII detection. */
      sampleSize: withDefault(number({ integer: true, min: 10, max: 10_000 }), 200),
    }),
  ),
  /** Agent sessions: the default backend, lifetime and the limits on the agent's role. */
  staging: section(
    object({
      backend: withDefault(oneOf(["local", "pulumi"] as const), "local"),
      ttl: withDefault(duration(), 2 * 3_600_000),
      connectionLimit: withDefault(number({ integer: true, min: 1, max: 1_000 }), 20),
      statementTimeout: withDefault(duration(), 5 * 60_000),
      /** Disk a session's work database may use (its temporary files each too); the default is 4× the snapshot's restored size, at least 1GB. */
      diskQuota: optional(size()),
    }),
  ),
  /** How `airlock run` starts the agent. */
  run: section(
    object({
      /** The sandbox: bubblewrap (Linux) or none (the agent can then read .env and .airlock/). */
      sandbox: withDefault(oneOf(["bubblewrap", "none"] as const), "bubblewrap"),
      /** Names of variables the agent also gets (beside PATH, HOME, LANG, LC_*, TERM, TMPDIR, USER, SHELL and the session's). */
      env: withDefault(list(string({ pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, patternHint: "a variable name" })), () => []),
      /** Paths the agent may write besides the project (relative to it; ~ is the home directory). */
      writable: withDefault(list(string({ nonEmpty: true })), () => []),
    }),
  ),
  /** When a diff's changes become hazards. */
  hazards: section(
    object({
      /** A delete or update of more rows than this in one table is bulk. */
      bulkRows: withDefault(number({ integer: true, min: 1 }), 50),
      /** …or of more than this fraction of a table's rows. */
      bulkFraction: withDefault(number({ min: 0, max: 1 }), 0.1),
      /** More inserted rows than this in one table is a large insert. */
      largeInsert: withDefault(number({ integer: true, min: 1 }), 100),
    }),
  ),
  /** Limits for the promotion (and rollback) transaction on production. */
  promote: section(
    object({
      statementTimeout: withDefault(duration(), 60_000),
      lockTimeout: withDefault(duration(), 5_000),
    }),
  ),
  /** Limits for the read-only capture transaction on production. */
  capture: section(
    object({
      statementTimeout: withDefault(duration(), 3_600_000),
      lockTimeout: withDefault(duration(), 5_000),
    }),
  ),
});

/** The configuration after validation, with every default filled in. */
export type AirlockConfig = NonNullable<ReturnType<typeof configSchema>>;

/** What users write in airlock.config.ts (every key optional). */
export type AirlockConfigInput = DeepPartial<AirlockConfig>;

type DeepPartial<T> = { [K in keyof T]?: T[K] extends Record<string, unknown> ? DeepPartial<T[K]> : T[K] };

/** Identity function that gives airlock.config.ts its types. */
export function defineConfig(config: AirlockConfigInput): AirlockConfigInput {
  return config;
}

/** Validates untrusted settings; throws AIRLOCK_CONFIG_INVALID listing every problem with its path. */
export function parseConfig(input: unknown, source = "airlock.config.ts"): AirlockConfig {
  const problems: Problem[] = [];
  const parsed = configSchema(input, "", problems);
  if (parsed === undefined || problems.length > 0) {
    const list = problems.map((p) => `  - ${p.path}: ${p.message}`).join("\n");
    throw new AirlockError("AIRLOCK_CONFIG_INVALID", `${source} has ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${list}`, {
      hint: `fix them in ${source}; every key is described in the README's configuration reference`,
      details: { problems },
    });
  }
  return parsed;
}
