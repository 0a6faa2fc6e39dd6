/**
 * `airlock demo`: the main job on the embedded default. Starts a local
 * "production" cluster, loads the demo dataset into it, shows what is there,
 * and stops every process it started.
 */
import type { Command } from "commander";
import { seedDemo } from "../seeders/demo/index.ts";
import { clusterStatus, destroyCluster, ensureCluster, openCluster, serverProcesses, stopCluster } from "../src/pg/cluster.ts";
import { query, withClient } from "../src/pg/connect.ts";
import { globalFlags, projectFor } from "./context.ts";
import { positiveNumber } from "./options.ts";
import { progress, say, sayJson, table } from "./output.ts";

/** Registers the command. */
export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("run the demo on the embedded default: a local production with the demo dataset")
    .option("--scale <n>", "size of the demo production (1 is hundreds of rows)", positiveNumber, 1)
    .option("--keep-running", "leave the demo production cluster running afterwards")
    .action(async (opts: { scale: number; keepRunning?: boolean }, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const project = await projectFor(cmd);
      const heading = (text: string) => {
        if (!json) say(`\n== ${text}`);
      };
      const started = Date.now();

      heading("1. Start a local \"production\" Postgres (embedded, loopback only)");
      const dir = project.statePath("demo", "production");
      // A fresh production every run: the demo must show the same story each time.
      const previous = openCluster({ dir });
      if (previous !== undefined) await destroyCluster(previous);
      const prod = await ensureCluster({ dir, disposable: true });
      try {
        await withClient(prod.adminTarget(), { step: "demo" }, (c) => query(c, "CREATE DATABASE production"));
        const target = prod.adminTarget("production");
        if (!json) say(`Postgres ${prod.binaries.version} on 127.0.0.1:${prod.port}, data in ${dir}`);

        heading("2. Load the demo dataset (deterministic faker data, COPY streams)");
        const bar = progress(!json);
        const seeded = await seedDemo({ target, scale: opts.scale, onProgress: (e) => bar.update(`loading ${e.table}: ${e.rows.toLocaleString("en-US")} rows`) });
        bar.done();
        if (!json) {
          say(`loaded in ${(seeded.elapsedMs / 1000).toFixed(1)} s (scale ${seeded.scale}):`);
          say(table(["table", "rows"], Object.entries(seeded.tables).map(([t, n]) => [t, n])));
        }

        heading("3. The gallery the incident was about");
        const gallery = await withClient(target, { step: "demo" }, async (c) => {
          const r = await query<{ n: number; published: number; min: number; max: number }>(
            c,
            "SELECT count(*)::int AS n, count(*) FILTER (WHERE published)::int AS published, min(id) AS min, max(id) AS max FROM gallery_images",
          );
          return r.rows[0]!;
        });
        if (!json) say(`gallery_images: ${gallery.n} authentic rows (${gallery.published} published), ids ${gallery.min}..${gallery.max} with gaps`);

        heading("4. Clean up");
        if (opts.keepRunning !== true) await stopCluster(prod);
        const left = serverProcesses(prod).length;
        const state = clusterStatus(prod).state;
        if (json) {
          return sayJson({ ok: left === 0 || opts.keepRunning === true, production: { dir, port: prod.port, state }, tables: seeded.tables, gallery, elapsedMs: Date.now() - started });
        }
        say(opts.keepRunning === true ? `production left running on 127.0.0.1:${prod.port} (stop it with \`airlock cluster stop\` in ${dir})` : `production stopped; ${left} server processes left`);
        say(`\ndemo finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
        if (left !== 0 && opts.keepRunning !== true) process.exitCode = 1;
      } catch (e) {
        await stopCluster(prod).catch(() => undefined);
        throw e;
      }
    });
}
