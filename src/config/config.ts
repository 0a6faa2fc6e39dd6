/**
 * Airlock's configuration: the typed shape of airlock.config.ts, its
 * defaults, and `parseConfig`, which reports every problem at once.
 */
import { z } from "zod";
import { AirlockError } from "../errors.ts";
import { leakAllowanceSchema, maskRuleSchema, ruleKeySchema } from "./masking-rules.ts";
import { CONFIG_ERRORS, boolean, duration, durationOrNever, list, number, object, oneOf, problemsOf, record, section, size, string } from "./schema.ts";
import { plural } from "../format/plural.ts";

const serverSetting = z.union([z.string(), z.number(), z.boolean()], {
  error: (iss) => `expected a string, number or boolean Postgres setting, got ${typeof iss.input}`,
});

const configSchema = object({
  /** Where Airlock keeps its state (clusters, snapshots, sessions, diffs, audit log). */
  stateDir: string({ nonEmpty: true }).default(".airlock"),
  /** The embedded default backend. */
  local: section(
    object({
      /** The cluster directory; relative paths are under the project directory. */
      clusterDir: string({ nonEmpty: true }).optional(),
      /** The Postgres bin directory (else AIRLOCK_PG_BIN, pg_config, PATH, /usr/lib/postgresql). */
      pgBin: string({ nonEmpty: true }).optional(),
      /** The OS user the server runs as when Airlock is root (else AIRLOCK_PG_USER, then postgres). */
      serverUser: string({ nonEmpty: true, pattern: /^[a-z_][a-z0-9_-]*$/i, patternHint: "a user name" }).optional(),
      /** Skip fsync in the staging cluster: faster, and staging is disposable. */
      disposable: boolean().default(true),
      /** Extra Postgres settings for the staging cluster. */
      settings: record(serverSetting).default(() => ({})),
      /** max_connections of the staging cluster. */
      maxConnections: number({ integer: true, min: 10, max: 10_000 }).default(200),
      /** Stop the cluster after this long with no session of the project (and no connection); "never" keeps it running. */
      idleStop: durationOrNever().default(30 * 60_000),
    }),
  ),
  /** How production values become snapshot values: "schema.table.column" (or "table.column") → rule. */
  masking: section(
    object({
      rules: record(maskRuleSchema, ruleKeySchema).default(() => ({})),
      /** Values of kept columns the leak scan lets pass although they equal originals of masked columns (common words), with a reason: "schema.table.column" → { reason, values }. */
      allow: record(leakAllowanceSchema, ruleKeySchema).default(() => ({})),
      /** Non-null values sampled per column for PII detection. */
      sampleSize: number({ integer: true, min: 10, max: 10_000 }).default(200),
    }),
  ),
  /** Agent sessions: the default backend, lifetime and the limits on the agent's role. */
  staging: section(
    object({
      backend: oneOf(["local", "docker", "pulumi"]).default("local"),
      ttl: duration().default(2 * 3_600_000),
      connectionLimit: number({ integer: true, min: 1, max: 1_000 }).default(20),
      statementTimeout: duration().default(5 * 60_000),
      /** Disk a session's work database may use (its temporary files each too); the default is 4× the snapshot's restored size, at least 1GB. */
      diskQuota: size().optional(),
      /** The docker backend: one container per session on the engine at DOCKER_HOST. */
      docker: section(
        object({
          /** An image with the PostgreSQL 15 server binaries; default: the one `airlock image build` makes. */
          image: string({ nonEmpty: true }).optional(),
          /** auto: bridge (port published on 127.0.0.1) when the engine has a bridge network, else host (Postgres binds 127.0.0.1). */
          network: oneOf(["auto", "host", "bridge"]).default("auto"),
          /** The container's memory limit (no swap); shared_buffers and work_mem are sized from it. */
          memory: size().default(1024 ** 3),
          cpus: number({ min: 0.1, max: 1_024 }).default(1),
        }),
      ),
    }),
  ),
  /** How `airlock run` starts the agent. */
  run: section(
    object({
      /** The sandbox: bubblewrap (Linux) or none (the agent can then read .env and .airlock/). */
      sandbox: oneOf(["bubblewrap", "none"]).default("bubblewrap"),
      /** Names of variables the agent also gets (beside PATH, HOME, LANG, LC_*, TERM, TMPDIR, USER, SHELL and the session's). */
      env: list(string({ pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, patternHint: "a variable name" })).default(() => []),
      /** Paths the agent may write besides the project (relative to it; ~ is the home directory). */
      writable: list(string({ nonEmpty: true })).default(() => []),
    }),
  ),
  /** When a diff's changes become hazards. */
  hazards: section(
    object({
      /** A delete or update of more rows than this in one table is bulk. */
      bulkRows: number({ integer: true, min: 1 }).default(50),
      /** …or of more than this fraction of a table's rows. */
      bulkFraction: number({ min: 0, max: 1 }).default(0.1),
      /** More inserted rows than this in one table is a large insert. */
      largeInsert: number({ integer: true, min: 1 }).default(100),
    }),
  ),
  /** Limits for the promotion (and rollback) transaction on production. */
  promote: section(
    object({
      statementTimeout: duration().default(60_000),
      lockTimeout: duration().default(5_000),
    }),
  ),
  /** Limits for the read-only capture transaction on production. */
  capture: section(
    object({
      statementTimeout: duration().default(3_600_000),
      lockTimeout: duration().default(5_000),
    }),
  ),
});

/** The configuration after validation, with every default filled in. */
export type AirlockConfig = z.output<typeof configSchema>;

/** What users write in airlock.config.ts (every key optional; durations and sizes as text, rules as written). */
export type AirlockConfigInput = z.input<typeof configSchema>;

/** Identity function that gives airlock.config.ts its types. */
export function defineConfig(config: AirlockConfigInput): AirlockConfigInput {
  return config;
}

/** Validates untrusted settings; throws AIRLOCK_CONFIG_INVALID listing every problem with its path. */
export function parseConfig(input: unknown, source = "airlock.config.ts"): AirlockConfig {
  const parsed = configSchema.safeParse(input, { error: CONFIG_ERRORS });
  if (parsed.success) return parsed.data;
  const problems = problemsOf(parsed.error).map((p) => (p.path === "" ? { ...p, path: "(root)" } : p));
  const list = problems.map((p) => `  - ${p.path}: ${p.message}`).join("\n");
  throw new AirlockError("AIRLOCK_CONFIG_INVALID", `${source} has ${plural(problems.length, "problem")}:\n${list}`, {
    hint: `fix them in ${source}; every key is described in the README's configuration reference`,
    details: { problems },
  });
}
