/**
 * Claims on state that a running process is still writing: a session that
 * `airlock up` is creating, a snapshot that a capture is writing to its
 * temporary directory. A claim names its process (pid, the process's start
 * time, host), so that what a process killed with -9 (or by a crash or a
 * power cut) left behind can be told from what one still at work is
 * writing, and the next run can remove the first and leave the second.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { AirlockError } from "../errors.ts";
import { procStat, processAlive } from "../os/processes.ts";

/** Who is at work on a piece of state. */
export interface ProcessClaim {
  readonly pid: number;
  /** The process's start time (Linux: /proc/<pid>/stat field 22), so a reused pid is not taken for it. */
  readonly pidStart?: string;
  readonly host: string;
  readonly startedAt: string;
}

/**
 * What a claim must hold for this host to judge it: a usable pid and a host. Tolerant by design: anything else
 * (missing, garbled, another version's) is not an error but a claim whose process is "unknown"; a pidStart of
 * the wrong type is left out (the pid alone is judged).
 */
const judgeableClaimSchema = z.object({ pid: z.int().positive(), host: z.string(), pidStart: z.string().optional().catch(undefined) });

/** A claim for this process. */
export function claimForThisProcess(now = new Date()): ProcessClaim {
  const pidStart = procStat("self")?.start;
  return { pid: process.pid, ...(pidStart === undefined ? {} : { pidStart }), host: hostname(), startedAt: now.toISOString() };
}

/**
 * What a claim says of its process: `alive`, `dead`, or `unknown` when this host cannot tell (no usable pid,
 * or another host's claim on a shared disk).
 */
export function claimState(claim: unknown): "alive" | "dead" | "unknown" {
  const parsed = judgeableClaimSchema.safeParse(claim);
  if (!parsed.success || parsed.data.host !== hostname()) return "unknown";
  return processAlive(parsed.data.pid, parsed.data.pidStart) ? "alive" : "dead";
}

/**
 * Runs `fn` holding a lock file (created exclusively, holding this process's claim), so two processes do
 * not do `what` at once: the second waits for the first. A lock whose process died is taken over.
 */
export async function withLockFile<T>(file: string, what: string, fn: () => Promise<T>, waitMs = 180_000): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      writeFileSync(file, `${JSON.stringify(claimForThisProcess())}\n`, { flag: "wx", mode: 0o600 });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let claim: unknown;
    try {
      claim = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      claim = undefined; // being written, or gone meanwhile
    }
    if (claim !== undefined && claimState(claim) === "dead") {
      rmSync(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new AirlockError("AIRLOCK_BUSY", `another process is still busy with ${what} (it holds ${file})`, {
        hint: "wait for it to finish and run this again; if no Airlock process is running, remove that file",
      });
    }
    await sleep(100);
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}
