/**
 * The session container where this machine cannot take it: the official
 * `postgres` image (needs a registry, or the image loaded by hand) and bridge
 * networking (needs an engine with a bridge network). Each variant runs the
 * same check — `airlock up --backend docker`, the agent reaches work and only
 * work, `airlock down` leaves nothing — where it can, and skips saying why
 * where it cannot.
 */
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatUrl, makeTarget, parseTarget, withClient } from "../src/pg/connect.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { runCli } from "./helpers/cli.ts";
import { createTestProject } from "./helpers/project.ts";
import { dockerForTests, labelled } from "./helpers/docker.ts";

const engine = await dockerForTests();
const OFFICIAL = process.env.AIRLOCK_TEST_OFFICIAL_IMAGE ?? "postgres:15.10-bookworm";

async function officialImage(): Promise<string | null> {
  if (!engine.ok) return engine.reason;
  try {
    await engine.docker.getImage(OFFICIAL).inspect();
    return null;
  } catch {
    return `the engine has no ${OFFICIAL} (no registry here to pull it from; \`docker pull ${OFFICIAL}\` where one is reachable)`;
  }
}

async function bridgeNetwork(): Promise<string | null> {
  if (!engine.ok) return engine.reason;
  const networks = await engine.docker.listNetworks({ filters: { driver: ["bridge"] } });
  return networks.some((n) => n.Name === "bridge") ? null : "the engine has no bridge network (started with --bridge=none, as tools/dockerd.sh does)";
}

const variants = [
  { name: "the official postgres image, host or bridge as the engine allows", why: await officialImage(), docker: { image: OFFICIAL, network: "auto" } },
  {
    name: "Airlock's image on a bridge network, published on 127.0.0.1",
    why: await bridgeNetwork(),
    docker: { image: engine.ok ? engine.image : "", network: "bridge" },
  },
];
for (const v of variants) if (v.why !== null) console.warn(`test/container-variants.test.ts: "${v.name}" skipped: ${v.why}`);

let prodCluster: TestCluster | undefined;
let env: NodeJS.ProcessEnv;
const dirs: string[] = [];

function airlock(dir: string, ...args: string[]) {
  return runCli(dir, env, args);
}

describe.skipIf(variants.every((v) => v.why !== null))("the session container on other images and networks", () => {
  beforeAll(async () => {
    prodCluster = await startTestCluster("variants-prod");
    const prod = await prodCluster.createDatabase("production");
    await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
      await c.query("CREATE TABLE notes (id integer PRIMARY KEY, body text); INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 20) i");
    });
    env = {
      ...process.env,
      PROD_DATABASE_URL: formatUrl(prodCluster.cluster.tcpTarget("production"), true),
      AIRLOCK_SECRET: "variants-secret-0123456789abcdef",
    };
  }, 120_000);

  afterAll(async () => {
    for (const dir of dirs) {
      airlock(dir, "down", "variant");
      airlock(dir, "cluster", "destroy", "--erase");
      rmSync(dir, { recursive: true, force: true });
    }
    await prodCluster?.close();
  });

  for (const v of variants) {
    it.skipIf(v.why !== null)(
      `${v.name}: up, the agent reaches work and only work, down leaves nothing`,
      async () => {
        const { dir } = await createTestProject(`variant-${dirs.length}`, `export default { staging: { docker: ${JSON.stringify(v.docker)} } };\n`);
        dirs.push(dir);
        expect(airlock(dir, "snapshot").code).toBe(0);
        const up = airlock(dir, "up", "--backend", "docker", "--name", "variant");
        expect(up.code, up.stderr).toBe(0);
        const agent = parseTarget(airlock(dir, "url", "variant").stdout.trim());
        expect(agent.host).toBe("127.0.0.1");
        const n = await withClient(
          agent,
          { step: "test", searchPath: "public" },
          async (c) => (await c.query("SELECT count(*)::int AS n FROM notes")).rows[0].n,
        );
        expect(n).toBe(20);
        await expect(withClient(makeTarget({ ...agent, database: "base" }), { step: "test" }, async () => undefined)).rejects.toBeDefined();
        expect(airlock(dir, "down", "variant").code).toBe(0);
        if (engine.ok) expect(await labelled(engine.docker, "airlock.session=variant")).toEqual({ containers: [], networks: [], volumes: [] });
      },
      300_000,
    );
  }
});
