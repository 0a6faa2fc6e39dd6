/**
 * `airlock snapshot`: capture a masked snapshot of production, and list,
 * show, verify or remove snapshots.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { productionTarget } from "../src/config/production.ts";
import { EXIT_ERROR } from "../src/errors.ts";
import { plural, pluralGrouped } from "../src/format/plural.ts";
import { allowBlock } from "../src/snapshot/coincidences.ts";
import { rulesBlock } from "../src/snapshot/pii-render.ts";
import { listSnapshots, readManifest, removeSnapshot, removeStaleCaptures, snapshotsDir, verifySnapshot } from "../src/snapshot/store.ts";
import { proposeSnapshotRules, takeSnapshot } from "../src/snapshot/take.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson, table, warn, withProgress } from "./output.ts";
import { capturePhases } from "./phases.ts";

/** Registers the command. */
export function registerSnapshot(program: Command): void {
  const snapshot = program
    .command("snapshot")
    .description("capture a consistent, masked snapshot of production (read-only), or manage snapshots")
    .option("--from <url>", "the production database (default: PROD_DATABASE_URL)")
    .option(
      "--init-rules",
      "detect personal data and leak-scan coincidences, and write (or print) starting masking.rules and masking.allow blocks; captures nothing",
    )
    .addHelpText(
      "after",
      `
The capture runs in one read-only REPEATABLE READ transaction (plus pg_dump on
its exported snapshot: at most two connections), masks every ruled column
deterministically (AIRLOCK_SECRET), stops on unruled personal data, and scans
the result for leaks before keeping it.

Examples:
  airlock snapshot --init-rules          # start masking.rules for your schema
  airlock snapshot                       # capture from PROD_DATABASE_URL
  airlock snapshot ls
  airlock snapshot verify snap-20261124-101500-a1b2c3`,
    )
    .action(async (opts: { from?: string; initRules?: boolean }, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const project = await projectFor(cmd);
      const source = productionTarget(opts.from, "from");
      if (opts.initRules === true) {
        const { suspicions: pii, allowances } = await proposeSnapshotRules(project, { from: source });
        const key = (s: (typeof pii)[number]) => `${s.column.schema}.${s.column.table}.${s.column.column}`;
        const suspicions = [...pii, ...allowances.masked].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
        const allow = allowBlock(allowances);
        const block = `${rulesBlock(suspicions)}${allow}`;
        const file = join(project.dir, "airlock.config.ts");
        const something = suspicions.length > 0 || allow !== "";
        const written = something && project.configFile === undefined && !existsSync(file);
        // The block is `// comment` + `rules: { … },` (+ `allow: { … },`): it goes inside `masking`.
        if (written)
          writeFileSync(
            file,
            // Types only: the file loads whether or not the airlock package is installed in this project (a checkout, say).
            `import type { AirlockConfigInput } from "airlock";\n\nexport default {\n  masking: {\n    ${block.trim().replace(/\n/g, "\n    ")}\n  },\n} satisfies AirlockConfigInput;\n`,
          );
        // Column names, counts and keyed hashes only: no production value is printed.
        const coincidences = allowances.coincidences.map((c) => ({ column: c.column, equals: c.equals, values: c.values, fields: c.fields, kinds: c.kinds }));
        if (json) {
          return sayJson({
            columns: suspicions.map((s) => ({ column: key(s), reasons: s.reasons })),
            coincidences,
            unresolved: allowances.unresolved.map((u) => ({ column: u.column, equals: u.equals, fields: u.fields, kinds: u.kinds })),
            allow: allowances.allow,
            written: written ? file : null,
            block,
          });
        }
        if (!something) return say("no unruled column looks like personal data, and the leak scan finds no kept column equal to a masked one");
        for (const c of allowances.coincidences) {
          warn(
            `${c.column}: ${c.values} value${c.values === 1 ? "" : "s"} (${c.fields} row${c.fields === 1 ? "" : "s"}) equal values of ${c.equals.join(", ") || "masked columns"}; allowed below with a reason to review, or mask the column instead`,
          );
        }
        for (const u of allowances.unresolved)
          warn(
            `${u.column}: holds original ${u.kinds.join("/")} of ${u.equals.join(", ") || "masked columns"} and no rule fits its type; mask it with a custom rule or fix production`,
          );
        say(
          written
            ? `wrote ${file} with rules for ${plural(suspicions.length, "column")} and ${plural(allowances.coincidences.length, "allowance")}; review each before capturing:`
            : `add these to masking in ${project.configFile ?? file}:`,
        );
        return say(block);
      }
      // The library records the snapshot in the audit trail, as it does for a program calling it.
      const manifest = await withProgress(!json, "snapshot", (bar) => takeSnapshot(project, { from: source, onProgress: capturePhases(bar) }));
      const masked = manifest.tables.reduce((n, t) => n + t.columns.filter((c) => c.rule !== "keep").length, 0);
      const rows = manifest.tables.reduce((n, t) => n + t.rows, 0);
      if (json)
        return sayJson({
          id: manifest.id,
          tables: manifest.tables.length,
          rows,
          maskedColumns: masked,
          leakScan: manifest.leakScan,
          elapsedMs: manifest.elapsedMs,
        });
      say(
        `snapshot ${manifest.id}: ${plural(manifest.tables.length, "table")}, ${pluralGrouped(rows, "row")}, ${plural(masked, "masked column")}, leak scan clean (${pluralGrouped(manifest.leakScan.originalsChecked, "original")}) in ${(manifest.elapsedMs / 1000).toFixed(1)} s`,
      );
      const allowed = (manifest.leakScan.allowed ?? []).filter((a) => a.fieldsMatched > 0);
      if (allowed.length > 0) say(`allowed by masking.allow: ${allowed.map((a) => `${a.column} (${plural(a.fieldsMatched, "field")})`).join(", ")}`);
      say(`next: \`airlock up --snapshot ${manifest.id}\` or \`airlock run -- <agent>\``);
    });

  snapshot
    .command("ls")
    .description("list snapshots, newest first")
    .addHelpText("after", "\nExample:\n  airlock snapshot ls")
    .action(async (_opts, cmd: Command) => {
      const dir = snapshotsDir((await projectFor(cmd)).statePath());
      const removed = removeStaleCaptures(dir);
      if (removed.length > 0)
        warn(`removed ${removed.length} temporary director${removed.length === 1 ? "y" : "ies"} left by interrupted captures: ${removed.join(", ")}`);
      const all = listSnapshots(dir);
      if (globalFlags(cmd).json)
        return sayJson(
          all.map((m) => ({ id: m.id, createdAt: m.createdAt, tables: m.tables.length, rows: m.tables.reduce((n, t) => n + t.rows, 0), source: m.source })),
        );
      if (all.length === 0) return say("no snapshots yet: `airlock snapshot --from $PROD_DATABASE_URL`");
      say(
        table(
          ["id", "created", "tables", "rows", "source"],
          all.map((m) => [
            m.id,
            m.createdAt,
            m.tables.length,
            m.tables.reduce((n, t) => n + t.rows, 0),
            `${m.source.database}@${m.source.host} (Postgres ${m.source.serverVersion})`,
          ]),
        ),
      );
    });

  snapshot
    .command("show <id>")
    .description("show a snapshot's manifest: tables, row counts, masking per column")
    .addHelpText("after", "\nExample:\n  airlock snapshot show snap-20261124-101500-3fa2c1")
    .action(async (id: string, _opts, cmd: Command) => {
      const m = readManifest(snapshotsDir((await projectFor(cmd)).statePath()), id);
      if (globalFlags(cmd).json) return sayJson(m);
      say(`${m.id} taken ${m.createdAt} from ${m.source.database}@${m.source.host}:${m.source.port} (Postgres ${m.source.serverVersion})`);
      say(`rules ${m.rulesHash.slice(0, 12)}, leak scan clean over ${pluralGrouped(m.leakScan.fieldsScanned, "field")}`);
      for (const a of m.leakScan.allowed ?? [])
        say(`allowed in ${a.column}: ${a.valuesMatched} of ${plural(a.values, "listed value")} (${plural(a.fieldsMatched, "field")}), because: ${a.reason}`);
      say(
        table(
          ["table", "rows", "key", "masked columns"],
          m.tables.map((t) => [
            `${t.schema}.${t.name}`,
            t.rows,
            t.key?.join(", ") ?? "(none)",
            t.columns
              .filter((c) => c.rule !== "keep")
              .map((c) => `${c.name}=${c.rule}`)
              .join(", "),
          ]),
        ),
      );
    });

  snapshot
    .command("verify <id>")
    .description("re-check every file's sha256 and report the first corrupt one")
    .addHelpText("after", "\nExample:\n  airlock snapshot verify snap-20261124-101500-3fa2c1")
    .action(async (id: string, _opts, cmd: Command) => {
      const r = await verifySnapshot(snapshotsDir((await projectFor(cmd)).statePath()), id);
      if (globalFlags(cmd).json) sayJson({ id, ...r });
      else
        say(
          r.ok
            ? `${id}: ${r.files === 1 ? "its one file matches its checksum" : `all ${r.files} files match their checksums`}`
            : `${id}: ${r.file} is ${r.problem === "missing" ? "missing" : "corrupt (checksum mismatch)"}`,
        );
      if (!r.ok) process.exitCode = EXIT_ERROR;
    });

  snapshot
    .command("rm <id>")
    .description("delete a snapshot")
    .addHelpText("after", "\nExample:\n  airlock snapshot rm snap-20261124-101500-3fa2c1")
    .action(async (id: string, _opts, cmd: Command) => {
      removeSnapshot(snapshotsDir((await projectFor(cmd)).statePath()), id);
      if (globalFlags(cmd).json) return sayJson({ removed: id });
      say(`removed ${id}`);
    });
}
