/**
 * Directories for the infra tests (test/infra.test.ts, test/infra-restore.test.ts):
 * ones the cluster's server user can pass through, and small valid snapshot
 * directories for the Pulumi program under mocks.
 */
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { POST_DATA_MARKER } from "../../src/snapshot/format.ts";
import { testClusterDir } from "./cluster.ts";

/** Opens a snapshot directory up (0755/0644) for the server's OS user, as a container's mount: Airlock's own are 0700/0600. */
export function openUp(dir: string): void {
  chmodSync(dir, 0o755);
  for (const name of readdirSync(dir)) {
    const f = join(dir, name);
    if (statSync(f).isDirectory()) openUp(f);
    else chmodSync(f, 0o644);
  }
}

/** A directory the cluster's server user can pass through (COPY FROM PROGRAM runs as that user). */
export function openDir(name: string): string {
  const dir = testClusterDir(name);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  return dir;
}

/** A small valid snapshot directory (one table, one data file) in `fixtures`, for the mocks tests. */
export function fixtureSnapshot(fixtures: string, id: string): string {
  const dir = join(fixtures, id);
  mkdirSync(join(dir, "data"), { recursive: true });
  const schema = `CREATE TABLE public.t (id integer NOT NULL);\n${POST_DATA_MARKER}\nALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n`;
  const data = gzipSync("1\n2\n");
  writeFileSync(join(dir, "schema.sql"), schema);
  writeFileSync(join(dir, "data", "public.t.copy.gz"), data);
  const sha = (b: string | Buffer) => createHash("sha256").update(b).digest("hex");
  const manifest = {
    formatVersion: 1,
    id,
    tables: [
      {
        schema: "public",
        name: "t",
        columns: [{ name: "id", type: "integer", rule: "keep" }],
        key: ["id"],
        rows: 2,
        file: "data/public.t.copy.gz",
        hmacFile: null,
      },
    ],
    sequences: [],
    files: { "schema.sql": sha(schema), "data/public.t.copy.gz": sha(data) },
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2));
  return dir;
}
