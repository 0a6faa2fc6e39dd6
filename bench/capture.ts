/**
 * Times `airlock snapshot` (capture + masking + leak scan) against
 * `pg_dump -Fc` of the same database, in the same run, on a demo production
 * of the given scale. Usage: npx tsx bench/capture.ts [--scale N] [--runs N]
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../src/config/config.ts";
import { destroyCluster, ensureCluster } from "../src/pg/cluster.ts";
import { withClient } from "../src/pg/connect.ts";
import { captureSnapshot } from "../src/snapshot/capture.ts";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const scale = arg("scale", 1000);
const runs = arg("runs", 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const root = join(process.cwd(), ".airlock", "bench-capture");
rmSync(root, { recursive: true, force: true });
mkdirSync(root, { recursive: true });
const cluster = await ensureCluster({ dir: join(root, "cluster") });
try {
  await withClient(cluster.adminTarget(), { step: "bench" }, (c) => c.query("CREATE DATABASE production"));
  const prod = cluster.tcpTarget("production");
  const seeded = await seedDemo({ target: prod, scale });
  console.log(`seeded scale ${scale} in ${(seeded.elapsedMs / 1000).toFixed(1)} s`);
  const rules = parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules;
  const dumpTimes: number[] = [];
  const captureTimes: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t = Date.now();
    execFileSync(cluster.binaries.tool("pg_dump"), ["-Fc", "-f", join(root, "dump.pgc"), "-h", cluster.socketDir, "-p", String(cluster.port), "-U", "airlock", "production"]);
    dumpTimes.push(Date.now() - t);
    t = Date.now();
    const m = await captureSnapshot({ source: prod, secret: "bench-secret-0123456789abcdef", rules, snapshotsDir: join(root, "snapshots"), statementTimeoutMs: 3_600_000, lockTimeoutMs: 5_000, sampleSize: 200 });
    captureTimes.push(Date.now() - t);
    console.log(`run ${i + 1}: pg_dump -Fc ${dumpTimes[i]} ms, capture ${captureTimes[i]} ms (leak scan ${m.leakScan.elapsedMs} ms)`);
    rmSync(join(root, "snapshots"), { recursive: true, force: true });
  }
  console.log(`median: pg_dump -Fc ${median(dumpTimes)} ms, capture ${median(captureTimes)} ms, ratio ${(median(captureTimes) / median(dumpTimes)).toFixed(2)}x (target <= 1.5x)`);
  console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
} finally {
  await destroyCluster(cluster);
  rmSync(root, { recursive: true, force: true });
}
