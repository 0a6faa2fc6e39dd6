/**
 * `airlock demo`: the main job on the embedded default. Starts a local
 * "production" cluster with the demo dataset, takes a masked snapshot of it
 * as a read-only role, restores the snapshot into the embedded staging
 * cluster, shows what masking changed (counts, never values), and stops
 * every process it started. Exits non-zero if any check it shows failed.
 */
import type { Command } from "commander";
import { restoreSnapshot } from "../seeders/restore.ts";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { parseConfig } from "../src/config/config.ts";
import { localClusterOptions } from "../src/config/load.ts";
import { type LocalCluster, clusterStatus, destroyCluster, ensureCluster, openCluster, serverProcesses, stopCluster } from "../src/pg/cluster.ts";
import { type PgTarget, makeTarget, query, withClient } from "../src/pg/connect.ts";
import { captureSnapshot } from "../src/snapshot/capture.ts";
import { snapshotDir, snapshotsDir } from "../src/snapshot/store.ts";
import { globalFlags, projectFor } from "./context.ts";
import { positiveNumber } from "./options.ts";
import { progress, say, sayJson, table } from "./output.ts";

// The demo's production is fake data; a fixed secret keeps its output stable. Real use reads AIRLOCK_SECRET.
const DEMO_SECRET = "airlock-demo-secret-not-for-real-data";
const READER_PASSWORD = "demo-reader-password";

interface Check {
  readonly name: string;
  readonly ok: boolean;
}

async function one<T>(target: PgTarget, sql: string): Promise<T> {
  return withClient(target, { step: "demo" }, async (c) => (await query(c, sql)).rows[0] as T);
}

async function tableChecksums(target: PgTarget, tables: readonly string[]): Promise<Record<string, string>> {
  return withClient(target, { step: "demo" }, async (c) => {
    const out: Record<string, string> = {};
    for (const t of tables) out[t] = (await query<{ h: string }>(c, `SELECT md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) AS h FROM ${t} r`)).rows[0]!.h;
    return out;
  });
}

/** Registers the command. */
export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("run the demo on the embedded default: local production, masked snapshot, staging restore")
    .option("--scale <n>", "size of the demo production (1 is hundreds of rows)", positiveNumber, 1)
    .option("--keep-running", "leave the demo clusters running afterwards")
    .action(async (opts: { scale: number; keepRunning?: boolean }, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const project = await projectFor(cmd);
      const heading = (text: string) => {
        if (!json) say(`\n== ${text}`);
      };
      const info = (text: string) => {
        if (!json) say(text);
      };
      const checks: Check[] = [];
      const check = (name: string, ok: boolean) => {
        checks.push({ name, ok });
        info(`  ${ok ? "ok  " : "FAIL"} ${name}`);
      };
      const started = Date.now();
      const bar = progress(!json);
      const clusters: LocalCluster[] = [];

      try {
        heading('1. A local "production" Postgres with the demo dataset');
        const dir = project.statePath("demo", "production");
        // A fresh production every run: the demo tells the same story each time.
        const previous = openCluster({ dir });
        if (previous !== undefined) await destroyCluster(previous);
        const prod = await ensureCluster({ dir });
        clusters.push(prod);
        await withClient(prod.adminTarget(), { step: "demo" }, (c) => query(c, "CREATE DATABASE production"));
        const production = prod.adminTarget("production");
        const seeded = await seedDemo({ target: production, scale: opts.scale, onProgress: (e) => bar.update(`loading ${e.table}: ${e.rows.toLocaleString("en-US")} rows`) });
        bar.done();
        info(`Postgres ${prod.binaries.version} on 127.0.0.1:${prod.port}; loaded in ${(seeded.elapsedMs / 1000).toFixed(1)} s:`);
        info(table(["table", "rows"], Object.entries(seeded.tables).map(([t, n]) => [t, n])));
        const gallery = await one<{ n: number; min: number; max: number }>(production, "SELECT count(*)::int AS n, min(id) AS min, max(id) AS max FROM gallery_images");
        info(`gallery_images: ${gallery.n} authentic rows, ids ${gallery.min}..${gallery.max} with gaps (the table the incident emptied)`);

        heading("2. A masked snapshot, taken as a role that can only read");
        await withClient(production, { step: "demo" }, async (c) => {
          await query(c, `CREATE ROLE demo_reader LOGIN PASSWORD '${READER_PASSWORD}'`);
          await query(c, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO demo_reader");
          await query(c, "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO demo_reader");
        });
        const reader = makeTarget({ host: "127.0.0.1", port: prod.port, database: "production", user: "demo_reader", password: READER_PASSWORD });
        const tables = Object.keys(seeded.tables);
        const before = await tableChecksums(production, tables);
        const rules = parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules;
        const snapshots = snapshotsDir(project.statePath());
        const manifest = await captureSnapshot({
          source: reader,
          secret: DEMO_SECRET,
          rules,
          snapshotsDir: snapshots,
          statementTimeoutMs: project.config.capture.statementTimeout,
          lockTimeoutMs: project.config.capture.lockTimeout,
          sampleSize: project.config.masking.sampleSize,
          onProgress: (e) => bar.update(e.phase === "table" ? `capturing ${e.table}: ${e.rows.toLocaleString("en-US")} rows` : `${e.phase}…`),
        });
        bar.done();
        const masked = manifest.tables.flatMap((t) => t.columns.filter((c) => c.rule !== "keep").map((c) => `${t.name}.${c.name} (${c.rule})`));
        info(`snapshot ${manifest.id} in ${(manifest.elapsedMs / 1000).toFixed(1)} s; masked: ${masked.join(", ")}`);
        check("production unchanged by the capture (checksum of every table)", JSON.stringify(await tableChecksums(production, tables)) === JSON.stringify(before));
        check(`leak scan: none of ${manifest.leakScan.originalsChecked.toLocaleString("en-US")} original values appears in the snapshot`, manifest.leakScan.ok);

        heading("3. Restore into the embedded staging cluster");
        const stagingOptions = localClusterOptions(project);
        const wasRunning = clusterStatus(openCluster(stagingOptions)).state === "running";
        const staging = await ensureCluster(stagingOptions);
        // Stop only what the demo started.
        if (!wasRunning) clusters.push(staging);
        await withClient(staging.adminTarget(), { step: "demo" }, async (c) => {
          await query(c, "DROP DATABASE IF EXISTS demo_restore");
          await query(c, "CREATE DATABASE demo_restore");
        });
        const restoredTarget = staging.adminTarget("demo_restore");
        const restored = await restoreSnapshot({ target: restoredTarget, dir: snapshotDir(snapshots, manifest.id), manifest, onProgress: (p) => bar.update(`restoring ${Math.round((100 * p.bytes) / Math.max(1, p.totalBytes))}%`) });
        bar.done();
        info(`restored ${restored.rows.toLocaleString("en-US")} rows in ${(restored.elapsedMs / 1000).toFixed(1)} s`);
        const sameIds = await one<{ n: number }>(restoredTarget, "SELECT count(*)::int AS n FROM guests");
        const prodGuests = await withClient(production, { step: "demo" }, async (c) => (await query<{ id: number; email: string; full_name: string }>(c, "SELECT id, email, full_name FROM guests ORDER BY id")).rows);
        const stagingGuests = await withClient(restoredTarget, { step: "demo" }, async (c) => (await query<{ id: number; email: string; full_name: string }>(c, "SELECT id, email, full_name FROM guests ORDER BY id")).rows);
        const changed = stagingGuests.filter((g, i) => g.email !== prodGuests[i]?.email && g.full_name !== prodGuests[i]?.full_name).length;
        check(`every guest's email and name masked (${changed} of ${prodGuests.length})`, changed === prodGuests.length && sameIds.n === prodGuests.length);
        const fk = await one<{ ok: boolean }>(restoredTarget, "SELECT count(*) = (SELECT count(*) FROM bookings) AS ok FROM bookings b JOIN guests g ON g.id = b.guest_id");
        check("bookings still join their guests after masking", fk.ok);
        const gal = await tableChecksums(restoredTarget, ["gallery_images"]);
        check("unmasked tables identical to production (gallery_images checksum)", gal.gallery_images === before.gallery_images);
        await withClient(staging.adminTarget(), { step: "demo" }, (c) => query(c, "DROP DATABASE demo_restore"));
      } finally {
        bar.done();
        if (opts.keepRunning !== true) for (const c of clusters) await stopCluster(c).catch(() => undefined);
      }

      heading("4. Clean up");
      const left = clusters.reduce((n, c) => n + serverProcesses(c).length, 0);
      if (opts.keepRunning !== true) check(`every cluster the demo started is stopped (${left} server processes left)`, left === 0 && clusters.every((c) => clusterStatus(c).state !== "running"));
      else info(`clusters left running: ${clusters.map((c) => `${c.dir} (127.0.0.1:${c.port})`).join(", ")}`);
      const ok = checks.every((c) => c.ok);
      if (json) sayJson({ ok, checks, elapsedMs: Date.now() - started });
      else say(`\ndemo ${ok ? "passed" : "FAILED"}: ${checks.filter((c) => c.ok).length}/${checks.length} checks held, ${((Date.now() - started) / 1000).toFixed(1)} s`);
      if (!ok) process.exitCode = 1;
    });
}
