/**
 * Every error code Airlock can report, with what it means and the exit code
 * it gives by default. `AirlockError` takes only these codes, so a misspelt
 * code fails `tsc`; test/errors.test.ts checks that every code here is used,
 * every code used is here, and the README's table lists exactly these.
 */

/** Exit codes the CLI uses: 0 ok, 1 error, 2 refused (approval, hazard or conflict). */
export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_REFUSED = 2;

/** What a code means and the exit code it gives unless the thrower says otherwise. */
export interface ErrorCodeInfo {
  readonly exitCode: typeof EXIT_ERROR | typeof EXIT_REFUSED;
  /** One line, as the README's error-code table shows it. */
  readonly meaning: string;
}

const error = (meaning: string): ErrorCodeInfo => ({ exitCode: EXIT_ERROR, meaning });
const refused = (meaning: string): ErrorCodeInfo => ({ exitCode: EXIT_REFUSED, meaning });

/** The registry, in alphabetical order. */
export const ERROR_CODES = {
  AIRLOCK_AGENT_FAILED_TO_START: error("the agent command could not be started; its session is kept"),
  AIRLOCK_ALREADY_ROLLED_BACK: refused("the promotion was rolled back already"),
  AIRLOCK_APPLY_ROWCOUNT: error("a statement of the diff matched other than exactly one row; nothing was committed"),
  AIRLOCK_APPLY_TABLE_KIND: error("a table is partitioned on one side and plain on the other (the diff and the target disagree)"),
  AIRLOCK_APPROVAL_MISMATCH: refused("the approval beside a diff is for another diff"),
  AIRLOCK_APPROVAL_NOT_AUTHENTIC: refused("the approval is unreadable, has no MAC, or its MAC does not hold (forged or edited)"),
  AIRLOCK_APPROVAL_USED: refused("the approval has authorised a promotion already (one approval, one promotion)"),
  AIRLOCK_AUDIT_BUSY: error("another Airlock command holds the staging audit journal's lock"),
  AIRLOCK_AUDIT_CORRUPT: error(
    "a line of the staging audit journal (or of its unauthenticated events) is not valid JSON or not an audit entry; the message names the line and the field",
  ),
  AIRLOCK_AUDIT_PRIVILEGES: error("the audit role cannot read production's audit trail"),
  AIRLOCK_AUDIT_TAMPERED: error("`airlock audit --verify` found entries edited, removed, reordered or missing"),
  AIRLOCK_AUTH_FAILED: error("Postgres refused the login (password, pg_hba.conf, or no password given)"),
  AIRLOCK_BAD_DIFF_ID: error("the argument is not a diff id or a prefix of one"),
  AIRLOCK_BAD_PROMOTION_ID: error("the argument is not a promotion id (`p-<time>-<6 hex digits>`)"),
  AIRLOCK_BAD_SCALE: error("the demo scale is not a positive number up to the maximum"),
  AIRLOCK_BAD_SESSION_NAME: error("the session name is not lowercase letters, digits and dashes starting with a letter"),
  AIRLOCK_BAD_SNAPSHOT_ID: error("the argument is not a snapshot id"),
  AIRLOCK_BAD_TTL: error("`--ttl` is not a duration"),
  AIRLOCK_BAD_URL: error("a connection URL cannot be parsed"),
  AIRLOCK_BUSY: error("another process still holds the claim on this work (such as creating the staging cluster)"),
  AIRLOCK_CAPTURE_PRIVILEGES: error("the capture role cannot read everything a snapshot needs; nothing was captured"),
  AIRLOCK_CLUSTER_ABSENT: error("there is no cluster in the cluster directory"),
  AIRLOCK_CLUSTER_DIR_NOT_EMPTY: error("the cluster's data directory exists but is not an Airlock cluster"),
  AIRLOCK_CLUSTER_DIR_UNREACHABLE: error("the server's OS user cannot enter a parent of the cluster directory"),
  AIRLOCK_CLUSTER_PATH_TOO_LONG: error("the cluster directory is too deep for a Unix socket path"),
  AIRLOCK_CLUSTER_START_FAILED: error("the local cluster did not start (see its server log)"),
  AIRLOCK_CONFIG_INVALID: error("airlock.config.ts has problems (every one is listed) or no default export"),
  AIRLOCK_CONFIG_LOAD_FAILED: error("the config file cannot be loaded (syntax error or a failing import)"),
  AIRLOCK_CONFIG_NOT_FOUND: error("no config file at the `--config` path"),
  AIRLOCK_CONFIRMATION_REQUIRED: refused("approving needs a confirmation typed on a terminal, and none matched"),
  AIRLOCK_CONFLICT: refused("production changed since the snapshot (promote) or since the promotion (rollback); nothing was changed"),
  AIRLOCK_CONTAINER_FAILED: error("the session container did not become ready (its last log lines are shown), or has no server to reach"),
  AIRLOCK_DB_NOT_FOUND: error("the database in the connection URL does not exist (sqlstate 3D000)"),
  AIRLOCK_DEMO_EXISTS: error("the demo database already holds the demo's objects"),
  AIRLOCK_DIFF_AMBIGUOUS: error("a diff id prefix matches several diffs"),
  AIRLOCK_DIFF_NOT_AUTHENTIC: refused("the diff or its creation time has no MAC or one that does not hold (forged, or another secret)"),
  AIRLOCK_DIFF_NOT_FOUND: error("no diff has that id"),
  AIRLOCK_DIFF_TAMPERED: refused("diff.json no longer matches its id, is not canonical JSON, or created.json is missing"),
  AIRLOCK_DIFF_UNVERIFIED: refused("the diff's replay did not reproduce the agent's result"),
  AIRLOCK_DOCKER_UNAVAILABLE: error("no Docker engine answers at DOCKER_HOST (or the default socket): the docker backend and `airlock image` need one"),
  AIRLOCK_HAZARD_NOT_ACCEPTED: refused("the diff has danger hazards the approval did not accept by name"),
  AIRLOCK_IMAGE_BUILD_FAILED: error("`airlock image build` failed: debootstrap (its last lines are shown), the image check, or the import into the engine"),
  AIRLOCK_IMAGE_MISSING: error("the Docker engine has no session image; `airlock image build` makes one"),
  AIRLOCK_IMAGE_NEEDS_ROOT: error("building the session image needs root (debootstrap); or use a registry image with the PostgreSQL 15 server"),
  AIRLOCK_IMAGE_NO_DEBOOTSTRAP: error("building the session image needs debootstrap, and it is not installed"),
  AIRLOCK_INITDB_FAILED: error("initdb failed to create the local cluster"),
  AIRLOCK_INTERNAL: error("an unexpected error: a bug in Airlock"),
  AIRLOCK_LEAK_DETECTED: error("the leak scan found an original value of a masked column; the snapshot was deleted"),
  AIRLOCK_LOCK_TIMEOUT: error("a lock Airlock needs is held by another transaction (sqlstate 55P03)"),
  AIRLOCK_MASK_BAD_OUTPUT: error("a custom masking rule returned something other than a string or null"),
  AIRLOCK_MASK_DOES_NOT_FIT: error("a custom masking rule returned a value too long for the column, or null for NOT NULL"),
  AIRLOCK_MASK_NOT_UNIQUE: error("a masking rule's outputs collide in a unique column"),
  AIRLOCK_NOT_APPROVED: refused("the diff has no approval"),
  AIRLOCK_NO_AGENT_COMMAND: error("`airlock run` was given no agent command after `--`"),
  AIRLOCK_NO_PRODUCTION_URL: error("no production database given (`--from`/`--to` or PROD_DATABASE_URL)"),
  AIRLOCK_NO_SANDBOX: error("bubblewrap is missing or cannot start a sandbox on this machine"),
  AIRLOCK_NO_SERVER_USER: error("Airlock runs as root and has no unprivileged OS user to run Postgres as"),
  AIRLOCK_NO_SNAPSHOT: error("there is no snapshot yet"),
  AIRLOCK_PERMISSION_DENIED: error("the role lacks a privilege (sqlstate 42501); the message names it and the GRANT"),
  AIRLOCK_PG_DUMP_FAILED: error("pg_dump failed during capture"),
  AIRLOCK_PG_DUMP_TOO_OLD: error("the local pg_dump is older than production's server"),
  AIRLOCK_PG_ERROR: error("Postgres reported an error without a code of its own here (its fields are kept)"),
  AIRLOCK_PG_NOT_FOUND: error("no working Postgres server binaries (initdb, pg_ctl, postgres) were found"),
  AIRLOCK_PG_VERSION_MISMATCH: error("the local cluster was created by another Postgres major version than the binaries found"),
  AIRLOCK_PII_UNRULED: error("columns look like personal data but have no masking rule; nothing was captured"),
  AIRLOCK_PROMOTER_NOT_OWNER: refused("the promoting role does not own a table with triggers or rules the promotion must pause"),
  AIRLOCK_PROMOTE_PRIVILEGES: refused("the promoting role could not promote this diff and roll it back; nothing was changed"),
  AIRLOCK_PROMOTION_BUSY: error("another promotion or rollback is running on this database"),
  AIRLOCK_PROMOTION_NOT_FOUND: error("no promotion has that id in this database"),
  AIRLOCK_PROXY_LISTEN_FAILED: error("the staging proxy cannot listen on its host and port"),
  AIRLOCK_PULUMI_BUSY: error("another Pulumi operation holds the session's stack"),
  AIRLOCK_PULUMI_FAILED: error("a Pulumi operation failed, or the stack lacks the outputs Airlock needs"),
  AIRLOCK_PULUMI_UNAVAILABLE: error("the Pulumi staging backend cannot run on this machine"),
  AIRLOCK_READ_ONLY: error("a statement tried to write on a read-only connection (sqlstate 25006)"),
  AIRLOCK_RESTORE_MISMATCH: error("a restored snapshot's schema differs from production's"),
  AIRLOCK_ROLLBACK_IMPOSSIBLE: refused("the promotion could not be rolled back exactly, so it was not applied"),
  AIRLOCK_ROLLBACK_INEXACT: error("rolling back would not give production its schema back exactly, so nothing was rolled back"),
  AIRLOCK_ROLLBACK_PRIVILEGES: refused("the role cannot roll back this promotion; nothing was changed"),
  AIRLOCK_RULES_INVALID: error("the masking rules do not fit production (every problem is listed); nothing was captured"),
  AIRLOCK_SECRET_MISMATCH: refused("AIRLOCK_SECRET is not the one the snapshot was taken with"),
  AIRLOCK_SECRET_MISSING: refused("the step needs AIRLOCK_SECRET, and it is not set or too short"),
  AIRLOCK_SECRET_WEAK: error("masking or allowing coincidences needs AIRLOCK_SECRET of at least 16 characters"),
  AIRLOCK_SESSION_BROKEN: error("the session's record is unreadable or half-made; `airlock down` or `airlock gc` removes it"),
  AIRLOCK_SESSION_DEAD: error("the session's container is not running or not healthy (`airlock ls` says why)"),
  AIRLOCK_SESSION_EXISTS: error("a session or staging database of that name exists already"),
  AIRLOCK_SESSION_NOT_FOUND: error("no session has that name (or it is still being created)"),
  AIRLOCK_SNAPSHOT_CORRUPT: error("a snapshot file does not match its checksum, or its manifest or schema is unreadable"),
  AIRLOCK_SNAPSHOT_NOT_FOUND: error("no snapshot has that id"),
  AIRLOCK_SNAPSHOT_WRITE_FAILED: error("the snapshot cannot be written (disk full or state directory not writable)"),
  AIRLOCK_STAGING_FULL: error("the staging cluster has no room for another session's connections"),
  AIRLOCK_STATEMENT_TIMEOUT: error("a statement ran past statement_timeout (sqlstate 57014)"),
  AIRLOCK_STATE_INVALID: error(
    "a state file (session record, cluster file, a diff or approval whose MAC holds) is not valid JSON or not in the shape Airlock writes; the message names the file and the field",
  ),
  AIRLOCK_SUPERVISOR_DOWN: error("the staging supervisor did not start in time"),
  AIRLOCK_TOO_MANY_CONNECTIONS: error("the server's or role's connection limit is reached (sqlstate 53300)"),
  AIRLOCK_UNKNOWN_HAZARD: refused("`--accept` names a hazard the diff does not have"),
  AIRLOCK_UNREACHABLE: error("nothing answers at the connection's host and port, or the connection timed out"),
  AIRLOCK_USER_CODE_AS_SUPERUSER: refused("a schema change would run functions written in staging as a superuser; nothing was changed"),
} as const satisfies Readonly<Record<`AIRLOCK_${string}`, ErrorCodeInfo>>;

/** A code an AirlockError may carry. */
export type ErrorCode = keyof typeof ERROR_CODES;
