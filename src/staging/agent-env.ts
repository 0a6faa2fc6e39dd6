/**
 * The environment an agent runs in: the staging URL and nothing else that
 * could reach production or unlock Airlock. Production URLs, Airlock's and
 * Pulumi's secrets, every libpq variable, and any variable whose value
 * mentions production (its URL, host:port or password) are removed.
 */
import { parseTarget, type PgTarget } from "../pg/connect.ts";

/** Variables that are secrets or production pointers by name. */
const SCRUBBED_NAMES = /^(AIRLOCK_.*|PULUMI_CONFIG_PASSPHRASE|PULUMI_ACCESS_TOKEN|PROD(UCTION)?_.*|.*_PROD(UCTION)?_.*|DATABASE_URL|PG[A-Z_]+)$/;

function productionMarkers(env: NodeJS.ProcessEnv, extra: readonly PgTarget[]): string[] {
  const markers = new Set<string>();
  const add = (t: PgTarget) => {
    markers.add(`${t.host}:${t.port}`);
    if (t.password !== undefined && t.password.length >= 4) markers.add(t.password);
  };
  for (const t of extra) add(t);
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || !/^PROD|_PROD|PRODUCTION/.test(name)) continue;
    markers.add(value);
    try {
      add(parseTarget(value));
    } catch {
      // Not a URL: the value itself is the marker.
    }
  }
  return [...markers].filter((m) => m.length >= 4);
}

/** The agent's environment: the parent's, scrubbed, plus DATABASE_URL and PG* for its session. */
export function agentEnvironment(parent: NodeJS.ProcessEnv, agent: { url: string; target: PgTarget; sessionId: string }, production: readonly PgTarget[] = []): NodeJS.ProcessEnv {
  const markers = productionMarkers(parent, production);
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value === undefined || SCRUBBED_NAMES.test(name)) continue;
    if (markers.some((m) => value.includes(m))) continue;
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
