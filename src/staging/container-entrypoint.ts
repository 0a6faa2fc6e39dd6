/**
 * The session container's own entrypoint. It needs nothing from an image but
 * bash, coreutils, util-linux's setpriv and the PostgreSQL server binaries
 * on PATH, so the official `postgres` image and one built from Debian's
 * packages (`airlock image build`) run it alike; neither the official
 * entrypoint nor gosu is used.
 *
 * First start (no ready mark): check every data file against the manifest's
 * sha256, stage the read-only snapshot for the postgres user, initdb, start
 * the server on its Unix socket only, restore `base`, clone `work`, create the
 * agent's role, hand `work` over, settle the disk quota (the configured one,
 * or with AIRLOCK_DISK_QUOTA_BYTES=measure four times the restored `base`, at
 * least 1 GiB, as the local backend measures its template) and make it each
 * temporary file's limit, stop, write pg_hba.conf and the ready mark.
 * A start that died half-way starts over. Every start then runs the server
 * as postgres (the passwords are not in its environment) and, every second,
 * cancels agent statements past the time limit and checks the work
 * database's size against the disk quota (the engine's `--storage-opt size`
 * needs a storage driver most engines lack): past it, the agent's role can
 * no longer log in and its connections end, as on the local backend.
 */
import { BASE_DB, SUPERUSER, WORK_DB, AGENT_ROLE } from "./container-names.ts";
import {
  CONTAINER_PATHS,
  type ContainerFile,
  type ContainerPaths,
  type RestoreOptions,
  checksumList,
  handoverSql,
  restoreSql,
  rolesSql,
  shellQuote,
} from "./container-restore.ts";

/** The data directory inside the container (not the official image's VOLUME path, so no image-declared volume holds it). */
export const CONTAINER_DATA = "/var/lib/postgresql/airlock/data";

/** The server's access rules once restored: the agent reaches only `work`; the superuser needs its password over TCP. */
export function containerHba(): string {
  return [
    "# Written by Airlock's container entrypoint; the agent reaches only its work database.",
    `local all ${SUPERUSER} peer`,
    `host ${WORK_DB} ${AGENT_ROLE} all scram-sha-256`,
    `host all ${AGENT_ROLE} all reject`,
    "host all all all scram-sha-256",
    "",
  ].join("\n");
}

/** The disk quota the container settled on at its restore, in bytes, in this file of its data directory. */
export const DISK_QUOTA_FILE = "airlock-disk-quota";

/** A measured quota is at least this (1 GiB), as on the local backend. */
const MEASURED_QUOTA_FLOOR_BYTES = 1024 ** 3;

/** entrypoint.sh: runs as root (under the engine's init), drops to postgres for everything the server does. */
export function entrypointScript(manifestId: string, paths: ContainerPaths = CONTAINER_PATHS): string {
  const mount = shellQuote(paths.snapshotMount);
  const staged = shellQuote(paths.staged);
  const script = (name: string) => shellQuote(`${paths.scripts}/${name}`);
  return `#!/usr/bin/env bash
# Airlock's session container (src/staging/container-entrypoint.ts): snapshot ${manifestId}.
set -Eeuo pipefail
: "\${PGDATA:?PGDATA is not set}" "\${AIRLOCK_PORT:?AIRLOCK_PORT is not set}" "\${AIRLOCK_DISK_QUOTA_BYTES:?AIRLOCK_DISK_QUOTA_BYTES is not set}" "\${AIRLOCK_STATEMENT_TIMEOUT_MS:?AIRLOCK_STATEMENT_TIMEOUT_MS is not set}"
: "\${AIRLOCK_ADMIN_PASSWORD:?the superuser password is not in the environment}"
: "\${AIRLOCK_AGENT_PASSWORD:?the agent password is not in the environment}"
if ! [[ "$AIRLOCK_DISK_QUOTA_BYTES" =~ ^(measure|[1-9][0-9]{0,18})$ ]]; then echo "airlock: AIRLOCK_DISK_QUOTA_BYTES must be a number of bytes or measure" >&2; exit 1; fi
if [ "$(id -u)" != 0 ]; then echo "airlock: the entrypoint must start as root (it runs the server as postgres)" >&2; exit 1; fi
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
home=$(dirname -- "$PGDATA")
socket="$home/socket"
mkdir -p -- "$home" "$socket"
chown postgres:postgres -- "$home" "$socket"
chmod 0700 -- "$home" "$socket"

if [ ! -f "$PGDATA/airlock-ready" ]; then
  rm -rf -- "$PGDATA" ${staged}
  if ! (cd ${mount} && sha256sum --check --quiet ${script("SHA256SUMS")}); then
    echo "airlock: the snapshot in ${paths.snapshotMount} does not match its manifest's checksums" >&2
    exit 1
  fi
  # Anything find cannot read as postgres (including its complaints) means: copy.
  if [ -n "$(cd / && as_postgres find ${mount} ! -readable -print -quit 2>&1)" ]; then
    cp -R -- ${mount} ${staged}
    chown -R postgres:postgres -- ${staged}
  else
    ln -s -- ${mount} ${staged}
  fi
  pwfile="$home/initdb.pw"
  (umask 077 && printf '%s\\n' "$AIRLOCK_ADMIN_PASSWORD" > "$pwfile")
  chown postgres:postgres -- "$pwfile"
  as_postgres initdb -D "$PGDATA" -U ${SUPERUSER} --pwfile="$pwfile" --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync > "$home/initdb.log"
  rm -f -- "$pwfile"
  # A failed restore must not leave its server behind (the container may be restarted and start over).
  trap 'as_postgres pg_ctl -D "$PGDATA" -m immediate stop > /dev/null 2>&1 || true' EXIT
  as_postgres pg_ctl -D "$PGDATA" -w -t 120 -l "$home/restore.log" -o "-c listen_addresses='' -c port=$AIRLOCK_PORT -c unix_socket_directories='$socket'" start > /dev/null
  psql() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$socket" -p "$AIRLOCK_PORT" -U ${SUPERUSER} "$@"; }
  psql -d postgres -c 'CREATE DATABASE ${BASE_DB}'
  psql -d ${BASE_DB} -f ${script("restore.sql")} > /dev/null
  psql -d postgres -f ${script("roles.sql")}
  psql -d ${WORK_DB} -f ${script("handover.sql")}
  if [ "$AIRLOCK_DISK_QUOTA_BYTES" = measure ]; then
    quota=$(psql -d postgres -At -c "SELECT greatest(${MEASURED_QUOTA_FLOOR_BYTES}, 4 * pg_database_size('${BASE_DB}'))")
  else
    quota=$AIRLOCK_DISK_QUOTA_BYTES
  fi
  psql -d postgres -c "ALTER SYSTEM SET temp_file_limit = '$(( (quota + 1023) / 1024 ))kB'"
  printf '%s\n' "$quota" > "$PGDATA/${DISK_QUOTA_FILE}"
  chown postgres:postgres -- "$PGDATA/${DISK_QUOTA_FILE}"
  as_postgres pg_ctl -D "$PGDATA" -w -m fast stop > /dev/null
  trap - EXIT
  cat ${script("pg_hba.conf")} > "$PGDATA/pg_hba.conf"
  rm -rf -- ${staged}
  as_postgres touch "$PGDATA/airlock-ready"
  echo "airlock: snapshot ${manifestId} restored into ${BASE_DB} and ${WORK_DB}"
fi

quota=$(cat -- "$PGDATA/${DISK_QUOTA_FILE}")
if ! [[ "$quota" =~ ^[1-9][0-9]{0,18}$ ]]; then echo "airlock: $PGDATA/${DISK_QUOTA_FILE} does not hold a number of bytes" >&2; exit 1; fi

# Over the memory limit the kernel kills the largest process, a backend: the postmaster recovers from that.
env -u AIRLOCK_ADMIN_PASSWORD -u AIRLOCK_AGENT_PASSWORD setpriv --reuid=postgres --regid=postgres --init-groups -- "$@" -c "unix_socket_directories=$socket" &
server=$!
trap 'kill -INT "$server" 2> /dev/null || true' TERM INT

# The limits the agent could lift from inside (a role or session statement_timeout is its own to change), kept from
# outside as the local supervisor keeps them: a statement past the time limit is cancelled, and its backend ended
# 2 s later; past the disk quota, the agent cannot log in and its connections end.
(
  while sleep 1; do
    as_postgres psql -X -q -h "$socket" -p "$AIRLOCK_PORT" -U ${SUPERUSER} -d postgres -v ON_ERROR_STOP=1 > /dev/null 2>&1 <<SQL || true
DO \\$\\$ BEGIN
  PERFORM pg_cancel_backend(pid) FROM pg_stat_activity
   WHERE usename = '${AGENT_ROLE}' AND state = 'active' AND now() - query_start > make_interval(secs => $AIRLOCK_STATEMENT_TIMEOUT_MS / 1000.0);
  PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
   WHERE usename = '${AGENT_ROLE}' AND state = 'active' AND now() - query_start > make_interval(secs => $AIRLOCK_STATEMENT_TIMEOUT_MS / 1000.0 + 2);
  IF pg_database_size('${WORK_DB}') > $quota AND (SELECT rolcanlogin FROM pg_roles WHERE rolname = '${AGENT_ROLE}') THEN
    ALTER ROLE ${AGENT_ROLE} NOLOGIN;
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${AGENT_ROLE}';
    RAISE LOG 'airlock: the work database is over its disk quota of % bytes: the agent is stopped', $quota;
  END IF;
END \\$\\$;
SQL
  done
) &
watcher=$!

set +e
while :; do
  wait "$server"
  status=$?
  kill -0 "$server" 2> /dev/null || break
done
kill "$watcher" 2> /dev/null
exit "$status"
`;
}

/** Every file the container gets before it starts, under `paths.scripts`. */
export function restoreFiles(options: RestoreOptions): ContainerFile[] {
  const paths = options.paths ?? CONTAINER_PATHS;
  return [
    { path: `${paths.scripts}/entrypoint.sh`, content: entrypointScript(options.manifest.id, paths), executable: true },
    { path: `${paths.scripts}/SHA256SUMS`, content: checksumList(options.manifest), executable: false },
    { path: `${paths.scripts}/restore.sql`, content: restoreSql(options), executable: false },
    { path: `${paths.scripts}/roles.sql`, content: rolesSql(options), executable: false },
    { path: `${paths.scripts}/handover.sql`, content: handoverSql(), executable: false },
    { path: `${paths.scripts}/pg_hba.conf`, content: containerHba(), executable: false },
  ];
}
