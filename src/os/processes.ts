/**
 * Whether a process still runs, told apart from a zombie and from a later
 * process that reused its pid: what claims on state (a session being
 * created, a capture at work, a lock file), the staging supervisor and the
 * embedded cluster's postmaster check are all asked.
 */
import { readFileSync } from "node:fs";

/** The state and start time of a process (Linux /proc), or undefined where /proc does not tell. */
export function procStat(pid: number | "self"): { state: string; start: string } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0]!, start: fields[19]! };
  } catch {
    return undefined;
  }
}

/** Whether a process still runs (same pid, same start time when known, not a zombie). */
export function processAlive(pid: number, pidStart?: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const stat = procStat(pid);
  if (stat === undefined) return true;
  if (stat.state === "Z" || stat.state === "X") return false;
  return pidStart === undefined || stat.start === pidStart;
}
