/**
 * What the benchmark's parts share: a row of the table, running one Airlock
 * step in its own process (bench/step.ts), timing a baseline, the median.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";

export interface Row {
  readonly measured: string;
  readonly airlockMs: number;
  readonly baseline: string;
  readonly baselineMs: number | null;
  readonly target: string;
  /** The target as a predicate over (airlock, baseline); null when there is none or the row was skipped. */
  readonly met: boolean | null;
  readonly maxRssMb: number;
  /** Why the row was not measured in this run (nothing else in it is a measurement then). */
  readonly skipped?: string;
}

export const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs one step of bench/step.ts in a process of its own; its wall time, peak RSS and facts. */
export function step(name: string, args: Record<string, string>): { ms: number; maxRssMb: number; [k: string]: unknown } {
  const out = execFileSync(process.execPath, ["--import", "tsx", join("bench", "step.ts"), name, JSON.stringify(args)], {
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(out.trim().split("\n").pop()!) as { ms: number; maxRssMb: number };
}

export function timed(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}
