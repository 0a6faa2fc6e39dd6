#!/usr/bin/env node
// The demo's scripted agent: a separate process that only knows DATABASE_URL.
// `incident` repeats the gallery incident (plus one legitimate fix);
// `fix` makes only the legitimate fix. Plain JavaScript: it runs with node alone.
import pg from "pg";

const mode = process.argv[2] ?? "incident";
const url = process.env.DATABASE_URL;
if (url === undefined) {
  console.error("agent: no DATABASE_URL");
  process.exit(3);
}
const db = new pg.Client({ connectionString: url, application_name: "demo-agent" });
await db.connect();
const one = async (sql) => (await db.query(sql)).rows[0];

async function legitimateFix() {
  // A guest who stayed and paid but was marked no-show, and an index for the front desk's daily query.
  const b = await one("SELECT min(id) AS id FROM bookings WHERE status = 'no_show'");
  await db.query("UPDATE bookings SET status = 'checked_out' WHERE id = $1", [b.id]);
  await db.query("CREATE INDEX IF NOT EXISTS bookings_check_in_status_idx ON bookings (check_in, status)");
  console.log(`agent: corrected booking ${b.id} from no_show to checked_out and added an index on bookings (check_in, status)`);
}

if (mode === "incident") {
  // The bug: the page asks for category 'Gallery', which no row has, so the gallery "is empty".
  const shown = await one("SELECT count(*)::int AS n FROM published_gallery WHERE category = 'Gallery'");
  console.log(`agent: the gallery shows ${shown.n} images; it must be broken`);
  const removed = await db.query("DELETE FROM gallery_images WHERE id BETWEEN 439 AND 608");
  console.log(`agent: deleted the ${removed.rowCount} remaining gallery rows`);
  await db.query(`INSERT INTO gallery_images (title, url, category, published)
                  SELECT 'IMG_' || lpad(g::text, 4, '0') || '.jpg', 'file:///home/agent/photos/IMG_' || lpad(g::text, 4, '0') || '.jpg', 'Gallery', true
                  FROM generate_series(1, 282) g`);
  console.log("agent: inserted 282 images from a local folder");
  // Then it "checks" the site with ~300 parallel connections.
  const clients = [];
  let refused = 0;
  await Promise.all(
    Array.from({ length: 300 }, async () => {
      const c = new pg.Client({ connectionString: url, application_name: "demo-agent-flood" });
      try {
        await c.connect();
        clients.push(c);
      } catch {
        refused++;
      }
    }),
  );
  console.log(`agent: opened ${clients.length} connections, ${refused} refused`);
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await legitimateFix();
  console.log(`AGENT_RESULT ${JSON.stringify({ opened: clients.length, refused })}`);
} else {
  await legitimateFix();
}
await db.end();
