/**
 * Which OS user runs the embedded Postgres server. initdb and postgres refuse
 * to run as root, so a root Airlock (CI, containers) hands the server to an
 * unprivileged account: AIRLOCK_PG_USER, else `postgres`.
 */
import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { AirlockError } from "../errors.ts";

/** The account the server processes run as. */
export interface ServerUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  /** True when Airlock must switch to this user to run server tools (Airlock runs as root). */
  readonly switchUser: boolean;
}

function lookupPasswd(name: string): { uid: number; gid: number } | undefined {
  let passwd: string;
  try {
    passwd = readFileSync("/etc/passwd", "utf8");
  } catch {
    return undefined;
  }
  for (const line of passwd.split("\n")) {
    const [user, , uid, gid] = line.split(":");
    if (user === name && uid !== undefined && gid !== undefined) return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

/** The server user for this process: itself when unprivileged, an unprivileged account when root. */
export function resolveServerUser(env: NodeJS.ProcessEnv = process.env): ServerUser {
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) {
    const me = userInfo();
    return { name: me.username, uid: me.uid, gid: me.gid, switchUser: false };
  }
  const name = env.AIRLOCK_PG_USER !== undefined && env.AIRLOCK_PG_USER !== "" ? env.AIRLOCK_PG_USER : "postgres";
  const found = lookupPasswd(name);
  if (found === undefined) {
    throw new AirlockError("AIRLOCK_NO_SERVER_USER", `Airlock runs as root and the OS user "${name}" does not exist; Postgres refuses to run as root`, {
      hint: `create an unprivileged user (\`useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin ${name}\`), set AIRLOCK_PG_USER to an existing one, or run Airlock as a normal user`,
    });
  }
  if (found.uid === 0) {
    throw new AirlockError("AIRLOCK_NO_SERVER_USER", `AIRLOCK_PG_USER=${name} is root; Postgres refuses to run as root`, {
      hint: "set AIRLOCK_PG_USER to an unprivileged account such as postgres",
    });
  }
  return { name, uid: found.uid, gid: found.gid, switchUser: true };
}
