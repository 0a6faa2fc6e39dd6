/**
 * The catalog model of a database: every user object read from pg_catalog
 * into typed, readonly data, keyed by a stable identity ("table
 * public.guests", "function public.f(integer)"). Two models compare equal
 * exactly when the databases' schemas do: definitions come from the
 * server's own pg_get_*def functions, and role names go through a role
 * mapping so a staging copy (owned by the agent) and production (owned by
 * the application's roles) can be equal.
 */

/** The role name every owner role maps to. */
export const OWNER = "$owner";

/**
 * Airlock's own per-diff roles on a staging server (a reader and a replayer, src/staging/roles.ts). Their
 * database-level grants are Airlock's bookkeeping, not part of a database's model: a diff killed before it
 * dropped its roles must not make the next diff of the session see a privilege difference.
 */
export const SERVICE_ROLE = /^airlock_(reader|replayer)_[0-9a-f]{8}$/;

/** The name of a new service role. */
export function serviceRoleName(kind: "reader" | "replayer", hex8: string): string {
  return `airlock_${kind}_${hex8}`;
}

/** Which roles are "the owner" in a database; everything else keeps its name. */
export interface RoleMapping {
  /** Roles mapped to OWNER: the staging superuser and agent, or production's object owners. */
  readonly owners: ReadonlySet<string>;
  /**
   * The role whose role-level settings belong to this model (the agent's, in work); none when absent. Roles are
   * server-wide: every database of a staging server sees the same ones, so only the session's own role counts.
   */
  readonly settingsRole?: string;
  /** Role-level settings put there by Airlock itself ("statement_timeout=30000"), not part of the model. */
  readonly imposedRoleSettings?: ReadonlySet<string>;
}

/** Every kind of object the model holds. */
export type ObjectKind =
  | "database"
  | "schema"
  | "extension"
  | "type"
  | "sequence"
  | "function"
  | "table"
  | "column"
  | "constraint"
  | "index"
  | "view"
  | "matview"
  | "trigger"
  | "rule"
  | "policy"
  | "cast"
  | "operator"
  | "event_trigger"
  | "default_acl"
  | "setting";

interface Common {
  readonly id: string;
  /** Mapped owner role (objects that have one of their own). */
  readonly owner?: string;
  /** Effective privileges, mapped and sorted: "grantee:PRIVILEGE" with "*" for WITH GRANT OPTION; PUBLIC is "PUBLIC". */
  readonly acl?: readonly string[];
  /** The privileges a new object of this kind gets by default (acldefault), mapped: GRANT/REVOKE are relative to it. */
  readonly aclDefault?: readonly string[];
  readonly comment?: string | null;
}

/** The database itself: its privileges (settings are separate objects). */
export interface DatabaseObject extends Common {
  readonly kind: "database";
}

export interface SchemaObject extends Common {
  readonly kind: "schema";
  readonly name: string;
}

export interface ExtensionObject extends Common {
  readonly kind: "extension";
  readonly name: string;
  readonly schema: string;
  readonly version: string;
}

/** enum, domain, composite, range, or a base type with its own I/O functions. */
export interface TypeObject extends Common {
  readonly kind: "type";
  readonly schema: string;
  readonly name: string;
  readonly typtype: "enum" | "domain" | "composite" | "range" | "base";
  /** The CREATE TYPE/DOMAIN statement. */
  readonly definition: string;
  /** Enum labels in order. */
  readonly labels?: readonly string[];
  /** Functions the type calls on its own: I/O, range subtype_diff/canonical. */
  readonly functions?: readonly string[];
}

export interface SequenceObject extends Common {
  readonly kind: "sequence";
  readonly schema: string;
  readonly name: string;
  /** AS type INCREMENT … (everything CREATE SEQUENCE takes but the name). */
  readonly options: string;
  /** The column that owns it ("column s.t.c"), or null. */
  readonly ownedBy: string | null;
  readonly lastValue: string | null;
  readonly isCalled: boolean;
}

export interface FunctionObject extends Common {
  readonly kind: "function";
  readonly schema: string;
  readonly name: string;
  /** Identity arguments ("integer, text"). */
  readonly args: string;
  readonly prokind: "function" | "procedure" | "aggregate" | "window";
  readonly language: string;
  readonly securityDefiner: boolean;
  readonly volatility: "immutable" | "stable" | "volatile";
  readonly returns: string;
  /** The full CREATE statement (pg_get_functiondef; built for aggregates). */
  readonly definition: string;
}

export interface TableObject extends Common {
  readonly kind: "table";
  readonly schema: string;
  readonly name: string;
  readonly relkind: "table" | "partitioned" | "foreign";
  readonly unlogged: boolean;
  /** PARTITION BY clause of a partitioned table. */
  readonly partitionKey: string | null;
  /** For a partition: its parent ("table s.t") and bound ("FOR VALUES …"). */
  readonly partitionOf: { readonly parent: string; readonly bound: string } | null;
  readonly inherits: readonly string[];
  readonly options: readonly string[];
  readonly rowSecurity: boolean;
  readonly forceRowSecurity: boolean;
}

export interface ColumnObject extends Common {
  readonly kind: "column";
  /** "table s.t" (or a view's id, for comments and grants on view columns). */
  readonly table: string;
  readonly name: string;
  readonly type: string;
  readonly collation: string | null;
  readonly notNull: boolean;
  readonly default: string | null;
  /** Expression of a GENERATED ALWAYS AS (…) STORED column. */
  readonly generated: string | null;
  readonly identity: "always" | "by default" | null;
  /** Position among the table's columns, for CREATE TABLE order (not compared). */
  readonly position: number;
}

export interface ConstraintObject extends Common {
  readonly kind: "constraint";
  /** "table s.t" or "type s.domain". */
  readonly on: string;
  readonly name: string;
  readonly contype: "check" | "foreign key" | "primary key" | "unique" | "exclusion" | "trigger";
  /** pg_get_constraintdef. */
  readonly definition: string;
}

export interface IndexObject extends Common {
  readonly kind: "index";
  readonly on: string;
  readonly name: string;
  /** pg_get_indexdef. */
  readonly definition: string;
}

export interface ViewObject extends Common {
  readonly kind: "view" | "matview";
  readonly schema: string;
  readonly name: string;
  /** pg_get_viewdef. */
  readonly definition: string;
  readonly options: readonly string[];
  /** Materialized views: whether they hold data (created WITH DATA or refreshed). */
  readonly populated: boolean;
  /** Comments and privileges on the view's columns, by column name; only columns that have either, absent when none do. */
  readonly columns?: Readonly<Record<string, ViewColumn>>;
}

/** What a view's column carries of its own: a comment, column privileges. */
export interface ViewColumn {
  readonly comment: string | null;
  readonly acl: readonly string[];
}

export interface TriggerObject extends Common {
  readonly kind: "trigger";
  readonly on: string;
  readonly name: string;
  /** pg_get_triggerdef. */
  readonly definition: string;
  /** tgenabled: O (origin), D (disabled), R (replica), A (always). */
  readonly enabled: "O" | "D" | "R" | "A";
}

export interface RuleObject extends Common {
  readonly kind: "rule";
  readonly on: string;
  readonly name: string;
  /** pg_get_ruledef. */
  readonly definition: string;
  readonly enabled: "O" | "D" | "R" | "A";
}

export interface PolicyObject extends Common {
  readonly kind: "policy";
  readonly on: string;
  readonly name: string;
  readonly permissive: boolean;
  readonly command: "ALL" | "SELECT" | "INSERT" | "UPDATE" | "DELETE";
  readonly roles: readonly string[];
  readonly using: string | null;
  readonly withCheck: string | null;
}

export interface CastObject extends Common {
  readonly kind: "cast";
  readonly source: string;
  readonly target: string;
  /** The CREATE CAST statement. */
  readonly definition: string;
}

export interface OperatorObject extends Common {
  readonly kind: "operator";
  readonly schema: string;
  readonly name: string;
  readonly left: string | null;
  readonly right: string | null;
  /** The CREATE OPERATOR statement. */
  readonly definition: string;
}

export interface EventTriggerObject extends Common {
  readonly kind: "event_trigger";
  readonly name: string;
  readonly definition: string;
  readonly enabled: "O" | "D" | "R" | "A";
}

/** ALTER DEFAULT PRIVILEGES FOR ROLE role [IN SCHEMA schema] … ON objtype. */
export interface DefaultAclObject extends Common {
  readonly kind: "default_acl";
  readonly role: string;
  readonly schema: string | null;
  readonly objtype: "TABLES" | "SEQUENCES" | "FUNCTIONS" | "TYPES" | "SCHEMAS";
}

/** A database-level (`ALTER DATABASE … SET`) or role-level (`ALTER ROLE … SET`) setting. */
export interface SettingObject extends Common {
  readonly kind: "setting";
  readonly scope: "database" | "role";
  /** For role settings, the (mapped) role; inDatabase: ALTER ROLE … IN DATABASE <this one>. */
  readonly role: string | null;
  readonly inDatabase: boolean;
  readonly name: string;
  readonly value: string;
}

/** One object of the model. */
export type CatalogObject =
  | DatabaseObject
  | SchemaObject
  | ExtensionObject
  | TypeObject
  | SequenceObject
  | FunctionObject
  | TableObject
  | ColumnObject
  | ConstraintObject
  | IndexObject
  | ViewObject
  | TriggerObject
  | RuleObject
  | PolicyObject
  | CastObject
  | OperatorObject
  | EventTriggerObject
  | DefaultAclObject
  | SettingObject;

/** A whole database's model: objects by id, and what each depends on (from pg_depend). */
export interface CatalogModel {
  readonly objects: Readonly<Record<string, CatalogObject>>;
  /** id → ids of model objects it depends on (sorted). */
  readonly dependsOn: Readonly<Record<string, readonly string[]>>;
}
