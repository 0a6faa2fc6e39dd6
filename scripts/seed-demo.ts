/**
 * `airlock seed-demo --to <url> [--scale N]`: loads the demo production
 * dataset (a small hospitality business) into an empty database.
 */
import type { Command } from "commander";
import { seedDemo } from "../seeders/demo/index.ts";
import { parseTarget } from "../src/pg/connect.ts";
import { globalFlags } from "./context.ts";
import { positiveNumber } from "./options.ts";
import { say, sayJson, table, withProgress } from "./output.ts";

/** Registers the command. */
export function registerSeedDemo(program: Command): void {
  program
    .command("seed-demo")
    .description("load the demo production dataset into an empty database")
    .requiredOption("--to <url>", "the database to load (postgres://user:password@host:port/db)")
    .option("--scale <n>", "size factor: 1 is hundreds of rows, 1000 is 1,000,000 bookings", positiveNumber, 1)
    .addHelpText("after", "\nExample:\n  airlock seed-demo --to postgres://postgres:secret@127.0.0.1:5432/shop --scale 10")
    .action(async (opts: { to: string; scale: number }, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const target = parseTarget(opts.to);
      // Tables load side by side: a phase line each time one is done (the only lines off a terminal), row counts live.
      // The first phase once loading has begun: an unreachable database is an error alone, with no phase before it.
      let loaded = 0;
      const result = await withProgress(!json, "seed-demo", (bar) =>
        seedDemo({
          target,
          scale: opts.scale,
          onProgress: (e) => {
            if (loaded === 0) bar.phase("loading the tables");
            if (!e.done) return bar.update(`${e.table}: ${e.rows.toLocaleString("en-US")} rows`);
            bar.phase(`loading the tables: ${++loaded} done, the last ${e.table} (${e.rows.toLocaleString("en-US")} rows)`);
          },
        }),
      );
      if (json) return sayJson({ target: target.display, ...result });
      say(`loaded the demo dataset (scale ${result.scale}) into ${target.display} in ${(result.elapsedMs / 1000).toFixed(1)} s`);
      say(
        table(
          ["table", "rows"],
          Object.entries(result.tables).map(([t, n]) => [t, n]),
        ),
      );
    });
}
