/**
 * The scripts the staging container runs: a root entrypoint that checks and
 * stages the read-only snapshot, and the init script that restores it (the
 * SQL comes from container-restore.ts).
 */
import { quoteIdent } from "../pg/connect.ts";
import { BASE_DB, SUPERUSER, WORK_DB } from "./container-names.ts";
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

/** init.sh: run once by the image's entrypoint, as postgres, while the server listens on its Unix socket only. */
export function initScript(manifestId: string, paths: ContainerPaths = CONTAINER_PATHS): string {
  const s = (name: string) => shellQuote(`${paths.scripts}/${name}`);
  return `#!/usr/bin/env bash
# Airlock: restores snapshot ${manifestId} into ${BASE_DB}, clones it as ${WORK_DB}
# and creates the agent's role. The server listens on TCP only after this
# finished, and the health check also needs the ready mark written last, so
# the container is healthy only with a complete restore.
set -Eeuo pipefail
: "\${AIRLOCK_AGENT_PASSWORD:?the agent password is not in the environment}"
psql=(psql -X -q -v ON_ERROR_STOP=1 --username "\${POSTGRES_USER:-${SUPERUSER}}" --no-password)
"\${psql[@]}" --dbname postgres -c ${shellQuote(`CREATE DATABASE ${quoteIdent(BASE_DB)}`)}
"\${psql[@]}" --dbname ${BASE_DB} -f ${s("restore.sql")}
"\${psql[@]}" --dbname postgres -f ${s("roles.sql")}
"\${psql[@]}" --dbname ${WORK_DB} -f ${s("handover.sql")}
rm -rf -- ${shellQuote(paths.staged)}
touch "\${PGDATA:?}/airlock-ready"
echo "airlock: snapshot ${manifestId} restored into ${BASE_DB} and ${WORK_DB}"
`;
}

/** The hook the image's entrypoint sources or runs: the restore runs in its own shell so its options stay its own. */
export function initHook(paths: ContainerPaths = CONTAINER_PATHS): string {
  return `#!/usr/bin/env bash
# Airlock: see ${paths.scripts}/init.sh.
bash ${shellQuote(`${paths.scripts}/init.sh`)}
`;
}

/**
 * entrypoint.sh: runs as root before the image's own entrypoint. On the first
 * start (no cluster yet) it checks every data file against the manifest's
 * sha256 and makes the snapshot readable by the postgres user: a link to the
 * read-only mount when postgres can read it there, a private copy otherwise
 * (the host's owner and modes are not the container's).
 */
export function entrypointScript(paths: ContainerPaths = CONTAINER_PATHS): string {
  const mount = shellQuote(paths.snapshotMount);
  const staged = shellQuote(paths.staged);
  const sums = shellQuote(`${paths.scripts}/SHA256SUMS`);
  return `#!/usr/bin/env bash
set -Eeuo pipefail
if [ ! -s "\${PGDATA:?}/PG_VERSION" ]; then
  rm -rf -- ${staged}
  if ! (cd ${mount} && sha256sum --check --quiet ${sums}); then
    echo "airlock: the snapshot in ${paths.snapshotMount} does not match its manifest's checksums" >&2
    exit 1
  fi
  # Anything find cannot read as postgres (including its complaints) means: copy.
  if [ "$(id -u)" = 0 ] && [ -n "$(cd / && gosu postgres find ${mount} ! -readable -print -quit 2>&1)" ]; then
    cp -R -- ${mount} ${staged}
    chown -R postgres:postgres ${staged}
  else
    ln -s ${mount} ${staged}
  fi
fi
exec docker-entrypoint.sh "$@"
`;
}

/** Every file the container gets before it starts. */
export function restoreFiles(options: RestoreOptions): ContainerFile[] {
  const paths = options.paths ?? CONTAINER_PATHS;
  return [
    { path: `${paths.scripts}/entrypoint.sh`, content: entrypointScript(paths), executable: true },
    { path: `${paths.scripts}/init.sh`, content: initScript(options.manifest.id, paths), executable: true },
    { path: paths.initHook, content: initHook(paths), executable: true },
    { path: `${paths.scripts}/SHA256SUMS`, content: checksumList(options.manifest), executable: false },
    { path: `${paths.scripts}/restore.sql`, content: restoreSql(options), executable: false },
    { path: `${paths.scripts}/roles.sql`, content: rolesSql(options), executable: false },
    { path: `${paths.scripts}/handover.sql`, content: handoverSql(), executable: false },
  ];
}
