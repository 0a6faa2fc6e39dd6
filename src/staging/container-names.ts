/**
 * Names inside a staging container (the `pulumi` backend's server, one per
 * session), shared by the backend that connects to it and the program in
 * infra/ that builds it.
 */

/** The restored snapshot, never handed out: the diff compares work with it. */
export const BASE_DB = "base";
/** The agent's database, cloned from base. */
export const WORK_DB = "work";
/** The agent's role, owner of everything in work. */
export const AGENT_ROLE = "agent";
/** The image's superuser. */
export const SUPERUSER = "postgres";
