/**
 * What a permission error (SQLSTATE 42501) means for the person who has to
 * fix it: the privilege the failing statement needed, on which object, the
 * GRANT that gives it, and which role the step should run as. Postgres says
 * only "permission denied for table x"; the statement says which privilege.
 */
import pg from "pg";

/** Quotes an identifier: pg's own escaping (connect.ts's quoteIdent is the same; importing it would make a cycle through pg-error.ts). */
const quoteIdent = (name: string): string => pg.escapeIdentifier(name);

/** The role each step that reaches production needs (README, "Roles and privileges"). */
export const STEP_ROLES: Readonly<Record<string, string>> = {
  capture:
    "USAGE on every schema and SELECT on every table and sequence (GRANT pg_read_all_data gives both), and BYPASSRLS where tables have row-level security",
  promote: "the role that owns the application's tables (or a member of it) and owns the airlock schema, never a superuser",
  rollback: "the role that promoted, which owns the application's tables (or is a member of their owner) and the airlock schema",
  audit: "USAGE on schema airlock and SELECT on airlock.audit_log and airlock.audit_head, nothing else",
};

/** What a permission error says is missing. */
export interface MissingPrivilege {
  /** What the role lacks, in words: "DELETE on table public.t", "ownership of table t". */
  readonly privilege: string;
  /** The object, as Postgres named it. */
  readonly object: string;
  /** The statement an administrator runs to give it (absent when only ownership helps). */
  readonly grant?: string;
}

/** The first SQL keyword of a statement, past a leading WITH … clause. */
function verb(sql: string): string {
  const body = sql.replace(/^\s*WITH\b[\s\S]*?\)\s*(?=(INSERT|UPDATE|DELETE|SELECT)\b)/i, "");
  return (/^\s*([A-Za-z]+)/.exec(body)?.[1] ?? "").toUpperCase();
}

/** The table privileges a statement needs, in the order a reader would name them. */
function tablePrivilegesOf(sql: string): string[] {
  const v = verb(sql);
  const locks = /\bFOR\s+(NO\s+KEY\s+)?(UPDATE|SHARE)\b/i.test(sql);
  if (v === "INSERT") return /\b(RETURNING|ON\s+CONFLICT)\b/i.test(sql) ? ["INSERT", "SELECT"] : ["INSERT"];
  if (v === "UPDATE") return ["UPDATE", "SELECT"];
  if (v === "DELETE") return ["DELETE", "SELECT"];
  if (v === "TRUNCATE") return ["TRUNCATE"];
  if (v === "LOCK") return ["SELECT"];
  return locks ? ["SELECT", "UPDATE"] : ["SELECT"];
}

/** The sequence privilege a statement needs. */
function sequencePrivilegeOf(sql: string): string {
  if (/\bsetval\s*\(/i.test(sql)) return "UPDATE";
  if (/\bnextval\s*\(/i.test(sql)) return "USAGE";
  return "SELECT";
}

/** Reads the object out of Postgres' message (names there are unqualified and unquoted, or double-quoted). */
function named(text: string): string {
  const t = text.trim();
  return /^".*"$/.test(t) ? t.slice(1, -1).replace(/""/g, '"') : t;
}

/**
 * Which privilege a 42501 error says is missing, judged from the server's message and the statement that
 * failed (when known); undefined when the message is not one this knows.
 */
export function missingPrivilege(message: string, sql: string | undefined, user: string | undefined): MissingPrivilege | undefined {
  const to = user === undefined ? "<role>" : quoteIdent(user);
  const statement = sql ?? "";
  let m = /^permission denied for (table|view|materialized view|foreign table) (.+)$/.exec(message);
  if (m !== null) {
    const privs = tablePrivilegesOf(statement);
    const object = named(m[2]!);
    return { privilege: `${privs.join(" and ")} on ${m[1]} ${object}`, object, grant: `GRANT ${privs.join(", ")} ON TABLE ${quoteIdent(object)} TO ${to}` };
  }
  m = /^permission denied for column "?(.+?)"? of relation "?(.+?)"?$/.exec(message);
  if (m !== null) {
    const privs = tablePrivilegesOf(statement);
    return {
      privilege: `${privs.join(" and ")} on table ${m[2]!} (column ${m[1]!})`,
      object: m[2]!,
      grant: `GRANT ${privs.join(", ")} ON TABLE ${quoteIdent(m[2]!)} TO ${to}`,
    };
  }
  m = /^permission denied for sequence (.+)$/.exec(message);
  if (m !== null) {
    const priv = sequencePrivilegeOf(statement);
    const object = named(m[1]!);
    return {
      privilege: `${priv} on sequence ${object}`,
      object,
      grant: `GRANT ${priv === "SELECT" ? "SELECT" : "SELECT, UPDATE"} ON SEQUENCE ${quoteIdent(object)} TO ${to}`,
    };
  }
  m = /^permission denied for schema (.+)$/.exec(message);
  if (m !== null) {
    const priv = verb(statement) === "CREATE" || verb(statement) === "ALTER" ? "CREATE" : "USAGE";
    const object = named(m[1]!);
    return { privilege: `${priv} on schema ${object}`, object, grant: `GRANT ${priv} ON SCHEMA ${quoteIdent(object)} TO ${to}` };
  }
  m = /^permission denied for database (.+)$/.exec(message);
  if (m !== null) {
    const priv = verb(statement) === "CREATE" ? "CREATE" : "CONNECT";
    const object = named(m[1]!);
    return { privilege: `${priv} on database ${object}`, object, grant: `GRANT ${priv} ON DATABASE ${quoteIdent(object)} TO ${to}` };
  }
  m = /^permission denied for function (.+)$/.exec(message);
  if (m !== null) return { privilege: `EXECUTE on function ${named(m[1]!)}`, object: named(m[1]!) };
  m = /^must be owner of (\w+(?: \w+)?) (.+)$/.exec(message);
  if (m !== null) {
    const object = named(m[2]!);
    return { privilege: `ownership of ${m[1]} ${object} (its owner, or a member of the owning role)`, object, grant: `GRANT <owner of ${object}> TO ${to}` };
  }
  m = /^query would be affected by row-level security policy for table "?(.+?)"?$/.exec(message);
  if (m !== null)
    return { privilege: `BYPASSRLS (table ${m[1]!} has row-level security; reading it whole needs it)`, object: m[1]!, grant: `ALTER ROLE ${to} BYPASSRLS` };
  m = /^must be member of role "?(.+?)"?$/.exec(message);
  if (m !== null) return { privilege: `membership in role ${m[1]!}`, object: m[1]!, grant: `GRANT ${quoteIdent(m[1]!)} TO ${to}` };
  return undefined;
}

/** The message and hint of a permission error: what is missing, the GRANT, and the role the step should use. */
export function describePermissionDenied(
  message: string,
  context: { sql?: string; step?: string; user?: string },
): { message: string; hint: string; missing?: MissingPrivilege } {
  const missing = missingPrivilege(message, context.sql, context.user);
  const who = context.user === undefined ? "the connected role" : `role ${context.user}`;
  const step = context.step === undefined ? undefined : context.step.replace(/^airlock\//, "");
  const roleText = step === undefined ? undefined : STEP_ROLES[step];
  const what = missing === undefined ? `${who} lacks a privilege this step needs: ${message}` : `${who} lacks ${missing.privilege}: ${message}`;
  // The role first: most often the step ran with another step's URL (the read-only one, say).
  const hints = [
    roleText === undefined
      ? 'see README "Roles and privileges" for what each step\'s role needs'
      : `run ${step} with the role it needs — ${roleText} (README "Roles and privileges");`,
    ...(missing?.grant === undefined ? [] : [`or, if ${who} is meant to do it, as an administrator: ${missing.grant};`]),
  ];
  return { message: what, hint: hints.join(" "), ...(missing === undefined ? {} : { missing }) };
}
