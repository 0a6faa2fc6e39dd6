/**
 * The environment an agent runs in: an allowlist, not a scrub. The agent
 * gets PATH, HOME, LANG, LC_*, TERM, TMPDIR, USER, SHELL (and a few like
 * them), the names the user lists in `run.env`, and its session's
 * DATABASE_URL, PG* and AIRLOCK_SESSION — and never a variable whose value
 * holds a secret Airlock knows (production's password or host:port,
 * AIRLOCK_SECRET, the staging superuser's password), under whatever name,
 * plainly or inside a percent-encoded URL.
 */
import { parseTarget, type PgTarget } from "../pg/connect.ts";

/** Variables every agent gets from Airlock's environment (when their values hold no secret). */
const ALLOWED = new Set(["PATH", "HOME", "LANG", "LANGUAGE", "TERM", "COLORTERM", "TMPDIR", "USER", "LOGNAME", "SHELL", "TZ", "NO_COLOR", "FORCE_COLOR"]);
/** Never passed, even when listed: Airlock's own and production's. */
const NEVER = /^(AIRLOCK_.*|PULUMI_.*|PROD(UCTION)?_.*|.*_PROD(UCTION)?_.*|DATABASE_URL|PG[A-Z_]+)$/;

/** What must never reach the agent. */
export interface AgentSecrets {
  /** Production targets: their passwords and host:port. */
  readonly production: readonly PgTarget[];
  /** Secret values (AIRLOCK_SECRET, the staging superuser's password, …). */
  readonly values: readonly string[];
}

function markersOf(parent: NodeJS.ProcessEnv, secrets: AgentSecrets): string[] {
  const markers = new Set<string>(secrets.values);
  const add = (t: PgTarget) => {
    markers.add(`${t.host}:${t.port}`);
    if (t.password !== undefined) markers.add(t.password);
  };
  for (const t of secrets.production) add(t);
  for (const [name, value] of Object.entries(parent)) {
    if (value === undefined || !/^PROD|_PROD|PRODUCTION|^AIRLOCK_SECRET$/.test(name)) continue;
    markers.add(value);
    try {
      add(parseTarget(value));
    } catch {
      // Not a URL: the value itself is the marker.
    }
  }
  // Short values would match by accident; real secrets are longer.
  return [...markers].filter((m) => m.length >= 6);
}

function holdsSecret(value: string, markers: readonly string[]): boolean {
  let decoded = value;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    // Not percent-encoded text: the value as it is.
  }
  return markers.some((m) => value.includes(m) || decoded.includes(m));
}

/** The agent's environment: allowed variables without secrets, plus DATABASE_URL, PG* and AIRLOCK_SESSION for its session. */
export function agentEnvironment(
  parent: NodeJS.ProcessEnv,
  agent: { url: string; target: PgTarget; sessionId: string },
  secrets: AgentSecrets = { production: [], values: [] },
  allow: readonly string[] = [],
): NodeJS.ProcessEnv {
  const markers = markersOf(parent, secrets);
  const listed = new Set(allow);
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value === undefined || NEVER.test(name)) continue;
    if (!ALLOWED.has(name) && !name.startsWith("LC_") && !listed.has(name)) continue;
    if (holdsSecret(value, markers)) continue;
    env[name] = value;
  }
  const t = agent.target;
  return {
    ...env,
    DATABASE_URL: agent.url,
    PGHOST: t.host,
    PGPORT: String(t.port),
    PGDATABASE: t.database,
    PGUSER: t.user,
    ...(t.password === undefined ? {} : { PGPASSWORD: t.password }),
    AIRLOCK_SESSION: agent.sessionId,
  };
}
