/**
 * What the capture role must be able to read, checked inside the capture's
 * own transaction before anything is written: USAGE on every schema it
 * reads, SELECT on every table (pg_dump locks each one, COPY reads it) and
 * on every sequence (their values go into the snapshot, or staging's
 * sequences would restart at 1 and the agent's first insert would fail),
 * and, for a table with row-level security, the right to read it whole
 * (BYPASSRLS, or owning it when it is not forced): capture runs with
 * `row_security = off`, so such a table fails rather than losing rows.
 * A role missing any of it is refused naming every object and the GRANTs.
 */
import type pg from "pg";
import { AirlockError } from "../errors.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { EXCLUDED_SCHEMAS } from "./catalog.ts";

/** One thing the capture role cannot read. */
export interface CaptureGap {
  readonly object: string;
  readonly kind: "schema" | "table" | "sequence";
  /** What is missing: "USAGE", "SELECT" or "BYPASSRLS". */
  readonly privilege: string;
}

// Tables as capture copies them (extension members are not), sequences as it reads them (all of them).
const USER_RELATIONS = `
  n.nspname NOT IN (${EXCLUDED_SCHEMAS.map((s) => `'${s}'`).join(", ")}) AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND (c.relkind = 'S' OR NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))`;

/** Everything the connected role lacks to capture (tables always; sequences when `sequences`). */
export async function captureGaps(client: pg.ClientBase, options: { sequences: boolean }): Promise<CaptureGap[]> {
  const r = await query<{ schema: string; name: string; relkind: string; usage: boolean; readable: boolean; rls_blocked: boolean }>(
    client,
    `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
            has_schema_privilege(n.oid, 'USAGE') AS usage,
            CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT') ELSE has_table_privilege(c.oid, 'SELECT') END AS readable,
            c.relkind IN ('r', 'p') AND c.relrowsecurity
              AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
              AND NOT (pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity) AS rls_blocked
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p'${options.sequences ? ", 'S'" : ""}) AND ${USER_RELATIONS}
      ORDER BY 1, 2`,
  );
  const gaps: CaptureGap[] = [];
  const schemas = new Set<string>();
  for (const x of r.rows) {
    const object = `${x.schema}.${x.name}`;
    const kind = x.relkind === "S" ? "sequence" : "table";
    if (!x.usage && !schemas.has(x.schema)) {
      schemas.add(x.schema);
      gaps.push({ object: x.schema, kind: "schema", privilege: "USAGE" });
    }
    if (!x.readable) gaps.push({ object, kind, privilege: "SELECT" });
    if (x.rls_blocked) gaps.push({ object, kind, privilege: "BYPASSRLS" });
  }
  return gaps;
}

/** The GRANT statements that close the gaps, per schema (an administrator runs them). */
export function captureGrants(gaps: readonly CaptureGap[], user: string): string[] {
  const role = quoteIdent(user);
  const out: string[] = [];
  const schemaOf = (g: CaptureGap) => (g.kind === "schema" ? g.object : g.object.slice(0, g.object.indexOf(".")));
  for (const schema of [...new Set(gaps.map(schemaOf))]) {
    const mine = gaps.filter((g) => schemaOf(g) === schema);
    const s = quoteIdent(schema);
    if (mine.some((g) => g.kind === "schema")) out.push(`GRANT USAGE ON SCHEMA ${s} TO ${role};`);
    if (mine.some((g) => g.kind === "table" && g.privilege === "SELECT")) out.push(`GRANT SELECT ON ALL TABLES IN SCHEMA ${s} TO ${role};`);
    if (mine.some((g) => g.kind === "sequence" && g.privilege === "SELECT")) out.push(`GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${s} TO ${role};`);
  }
  if (gaps.some((g) => g.privilege === "BYPASSRLS")) out.push(`ALTER ROLE ${role} BYPASSRLS;`);
  return out;
}

/**
 * Refuses a capture (or `--init-rules`, which reads tables only) whose role cannot read everything it
 * must, before anything is written, naming every object and the GRANTs to run.
 */
export async function checkCapturePrivileges(client: pg.ClientBase, options: { sequences: boolean }): Promise<void> {
  const gaps = await captureGaps(client, options);
  if (gaps.length === 0) return;
  const user = (await query<{ u: string }>(client, "SELECT current_user AS u")).rows[0]!.u;
  const list = gaps.map(
    (g) =>
      `  - ${g.privilege === "BYPASSRLS" ? `table ${g.object} has row-level security: reading it whole needs BYPASSRLS (or owning it)` : `${g.privilege} on ${g.kind} ${g.object}`}`,
  );
  const sequences = gaps.filter((g) => g.kind === "sequence").length;
  const why = sequences > 0 ? " (without its sequences' values, staging's sequences would restart at 1 and the agent's first insert would fail)" : "";
  const grants = captureGrants(gaps, user);
  throw new AirlockError(
    "AIRLOCK_CAPTURE_PRIVILEGES",
    `role ${user} cannot read everything a snapshot needs${why}; nothing was captured:\n${list.join("\n")}`,
    {
      hint: `as an administrator: ${grants.join(" ")}${gaps.some((g) => g.privilege !== "BYPASSRLS") ? ` (GRANT pg_read_all_data TO ${quoteIdent(user)}; gives USAGE and SELECT on everything at once)` : ""}; see README "Roles and privileges"`,
      details: { role: user, missing: gaps, grants },
    },
  );
}
