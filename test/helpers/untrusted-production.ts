/**
 * The production the untrusted-code tests promote into
 * (test/untrusted-code.test.ts), the project whose snapshot is taken from it,
 * and the probes: agent code that finds itself running as a superuser leaves
 * a file in a marker directory; code run under an owner's rights logs who ran
 * it into production's `public.calls`. The bindings are live: set by
 * startUntrustedProduction.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import { expect } from "vitest";
import { seedDemo } from "../../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../../seeders/demo/masking.ts";
import { parseConfig } from "../../src/config/config.ts";
import type { Project } from "../../src/config/load.ts";
import { type DiffResult, diffSession } from "../../src/diff/run-diff.ts";
import type { TableChanges } from "../../src/diff/types.ts";
import { type PgTarget, withClient } from "../../src/pg/connect.ts";
import { approveDiff } from "../../src/promote/approval.ts";
import { promoteDiff } from "../../src/promote/promote.ts";
import { agentConnection, createSession, destroySession } from "../../src/staging/sessions.ts";
import { type TestCluster, startTestCluster, testRoot } from "./cluster.ts";
import { captureInto, createTestProject, removeTestProject } from "./project.ts";

export const SECRET = "untrusted-code-test-secret-0123456789";
let prodCluster: TestCluster;
export let prod: PgTarget;
export let project: Project;
const markerDirs: string[] = [];

/** Production as it is before the snapshot: the demo data plus the wild objects real databases have. */
const PRODUCTION_EXTRAS = `
  -- A BEFORE trigger that stamps every update.
  CREATE TABLE public.notes (id int PRIMARY KEY, body text, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE FUNCTION public.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
  END $$;
  CREATE TRIGGER notes_touch_updated_at BEFORE UPDATE ON public.notes FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
  INSERT INTO public.notes (id, body, updated_at)
    SELECT g, 'note ' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' FROM generate_series(1, 6) g;

  -- An AFTER trigger that writes a history row (keyed by a sequence) for every update.
  CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL);
  CREATE TABLE public.account_history (id bigserial PRIMARY KEY, account_id int NOT NULL REFERENCES public.accounts (id), balance int NOT NULL);
  CREATE FUNCTION public.record_balance() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO public.account_history (account_id, balance) VALUES (NEW.id, NEW.balance);
    RETURN NULL;
  END $$;
  CREATE TRIGGER accounts_record_balance AFTER UPDATE ON public.accounts FOR EACH ROW EXECUTE FUNCTION public.record_balance();
  INSERT INTO public.accounts (id, balance) VALUES (1, 100), (2, 200), (3, 300), (4, 400);

  -- Objects owned by an ordinary role, and a log anyone may write to.
  CREATE ROLE app_owner NOLOGIN;
  CREATE TABLE public.owned_items (id int PRIMARY KEY, name text);
  INSERT INTO public.owned_items (id, name) VALUES (1, 'widget'), (2, 'gadget'), (3, 'gizmo');
  ALTER TABLE public.owned_items OWNER TO app_owner;
  CREATE SCHEMA app AUTHORIZATION app_owner;
  CREATE TABLE public.calls (who text, super boolean);
  GRANT INSERT, SELECT ON public.calls TO PUBLIC;
`;

/** A fresh directory the servers' OS user may write to: where agent code running as a superuser leaves its mark. */
export function markerDir(name: string): string {
  const dir = join(testRoot(), `untrusted-${name}-${process.pid}-${randomBytes(3).toString("hex")}`);
  mkdirSync(dir);
  chmodSync(dir, 0o777);
  markerDirs.push(dir);
  return dir;
}

/** The databases in which agent code ran as a superuser (one file each). */
export function superuserRuns(dir: string): string[] {
  return readdirSync(dir).sort();
}

/**
 * PL/pgSQL: when the current user is a superuser, run a shell command on the database server
 * (COPY TO PROGRAM) that creates `<dir>/<current database>`; once per database, as this may run per row.
 */
export function ifSuperuserTouch(dir: string): string {
  return `IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        IF (pg_catalog.pg_stat_file('${dir}/' || pg_catalog.current_database(), true)).size IS NULL THEN
          EXECUTE pg_catalog.format('COPY (SELECT 1) TO PROGRAM %L', 'touch ${dir}/' || pg_catalog.current_database());
        END IF;
      END IF;`;
}

/**
 * An agent function that, outside staging (in production), logs who runs it into public.calls,
 * touches the marker whenever a superuser runs it, and returns `value`. Staging databases are
 * all named airlock_…; logging only outside them keeps replays deterministic.
 */
export function callLogger(name: string, marker: string, options: { args?: string; returns?: string; value?: string } = {}): string {
  return `CREATE FUNCTION public.${name}(${options.args ?? ""}) RETURNS ${options.returns ?? "int"} LANGUAGE plpgsql AS $$
    BEGIN
      ${ifSuperuserTouch(marker)}
      IF pg_catalog.current_database() NOT LIKE 'airlock\\_%' THEN
        INSERT INTO public.calls (who, super) SELECT current_user, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
      END IF;
      RETURN ${options.value ?? "1"};
    END $$;`;
}

/** Runs SQL (or a function of the connection) as the session's agent, as an agent would: unqualified names resolve in public. */
export async function asAgent<T = unknown>(sessionId: string, run: string | ((c: pg.Client) => Promise<T>)): Promise<T> {
  return withClient(agentConnection(project, sessionId).target, { step: "test-agent", searchPath: "public" }, (c) =>
    typeof run === "string" ? (c.query(run) as Promise<T>) : run(c),
  );
}

export async function agentRows(sessionId: string, sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return asAgent(sessionId, async (c) => (await c.query(sql, values)).rows);
}

export async function prodQuery(sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return withClient(prod, { step: "test" }, async (c) => (await c.query(sql, values)).rows);
}

/** Runs `fn` in a fresh session and always destroys the session. */
export async function inSession<T>(name: string, fn: (sessionId: string) => Promise<T>): Promise<T> {
  const s = await createSession(project, { name });
  try {
    return await fn(s.id);
  } finally {
    await destroySession(project, s.id);
  }
}

/** Diffs a session; whether or not the diff succeeds, no agent code may have run as a superuser meanwhile. */
export async function diffWatching(sessionId: string, marker: string): Promise<DiffResult> {
  let result: DiffResult | undefined;
  let error: unknown;
  try {
    result = await diffSession(project, sessionId);
  } catch (e) {
    error = e;
  }
  expect.soft(superuserRuns(marker), "databases where agent code ran as a superuser during the diff").toEqual([]);
  if (result === undefined) throw error;
  return result;
}

export function expectVerified(r: DiffResult): void {
  expect(r.diff.verification, JSON.stringify(r.diff.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
}

/** A reviewer approves the diff, accepting every danger hazard it has by name. */
export function approveAccepting(r: DiffResult): void {
  const accept = [...new Set(r.diff.hazards.filter((h) => h.severity === "danger").map((h) => h.code))];
  approveDiff(project, r.id, { by: "reviewer", accept });
}

export const promote = (id: string) => promoteDiff(project, id, { to: prod, secret: SECRET, by: "tester" });

export function tableChanges(r: DiffResult, qualifiedName: string): TableChanges | undefined {
  return r.diff.tables.find((t) => `${t.schema}.${t.name}` === qualifiedName);
}

type Call = { who: string; super: boolean };
export const callRows = async () => (await prodQuery("SELECT who, super FROM public.calls")) as Call[];

/** The rows public.calls holds now that it did not hold in `before` (as a multiset). */
export async function callsSince(before: readonly Call[]): Promise<Call[]> {
  const left = new Map<string, number>();
  for (const c of before) left.set(JSON.stringify(c), (left.get(JSON.stringify(c)) ?? 0) + 1);
  const gained: Call[] = [];
  for (const c of await callRows()) {
    const k = JSON.stringify(c);
    if ((left.get(k) ?? 0) > 0) left.set(k, left.get(k)! - 1);
    else gained.push(c);
  }
  return gained;
}

export const NOTES = "SELECT id, body, updated_at::text AS updated_at FROM public.notes ORDER BY id";
export const ACCOUNTS = "SELECT id, balance FROM public.accounts ORDER BY id";
export const HISTORY = "SELECT id::text AS id, account_id, balance FROM public.account_history ORDER BY id";

/** Starts production (the demo data and the wild objects), and takes the snapshot the sessions start from (beforeAll). */
export async function startUntrustedProduction(): Promise<void> {
  // diff and approve authenticate what they write with AIRLOCK_SECRET, the one the snapshot is taken with.
  process.env.AIRLOCK_SECRET = SECRET;
  prodCluster = await startTestCluster("untrusted-prod");
  prod = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  await prodQuery(PRODUCTION_EXTRAS);
  project = await createTestProject("untrusted-project", `export default { promote: { lockTimeout: "500ms", statementTimeout: "20s" } };\n`);
  const rules = parseConfig({
    masking: { rules: { ...DEMO_MASKING_RULES, "public.notes.body": "keep", "public.owned_items.name": "keep", "public.calls.who": "keep" } },
  }).masking.rules;
  await captureInto(project, prod, SECRET, rules);
}

/** Removes the project, stops production and removes the marker directories (afterAll). */
export async function stopUntrustedProduction(): Promise<void> {
  await removeTestProject(project);
  await prodCluster?.close();
  for (const dir of markerDirs) rmSync(dir, { recursive: true, force: true });
}
