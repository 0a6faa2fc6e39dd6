/**
 * The demo "production" dataset: deterministic to the byte, the schema
 * features the rest of Airlock must cope with, exact row counts per scale,
 * and the errors seed-demo gives for a bad scale or a database already seeded.
 */
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AirlockError } from "../src/errors.ts";
import { openClient, type PgTarget } from "../src/pg/connect.ts";
import { copyText, timestamp } from "../seeders/demo/copy-text.ts";
import { DEMO_TABLES, demoRowCounts, seedDemo } from "../seeders/demo/index.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { caught } from "./helpers/errors.ts";

let tc: TestCluster;
let first: PgTarget;
let second: PgTarget;
/** A seeded database the tests that write (inserts, updates) may change. */
let scratch: PgTarget;
let firstLoad: Awaited<ReturnType<typeof seedDemo>>;
const clients = new Map<string, pg.Client>();

beforeAll(async () => {
  tc = await startTestCluster("demo-dataset");
  [first, second, scratch] = (await Promise.all(["demo_first", "demo_second", "demo_scratch"].map((db) => tc.createDatabase(db)))) as [
    PgTarget,
    PgTarget,
    PgTarget,
  ];
  // One after the other: the point is two independent loads, not a race between them.
  firstLoad = await seedDemo({ target: first });
  await seedDemo({ target: second, scale: 1 });
  await seedDemo({ target: scratch });
});
afterAll(async () => {
  await Promise.all([...clients.values()].map((c) => c.end()));
  await tc?.close();
});

/** Runs a query on one long-lived connection per database (connecting per query would dominate the test's time). */
async function sql<R extends pg.QueryResultRow>(target: PgTarget, text: string, values?: unknown[]): Promise<R[]> {
  let client = clients.get(target.database);
  if (client === undefined) {
    client = await openClient(target, { step: "test", searchPath: "public" });
    clients.set(target.database, client);
  }
  return (await client.query<R>(text, values)).rows;
}

async function one<T>(target: PgTarget, text: string): Promise<T> {
  const rows = await sql<{ v: T }>(target, text);
  return rows[0]?.v as T;
}

/** md5 of every table's rows in a fixed order: by key, or by all columns for the table without one. */
async function tableChecksums(target: PgTarget): Promise<Record<string, string>> {
  const order: Record<string, string> = { booking_events: "booking_id, event, at" };
  const sums: Record<string, string> = {};
  for (const table of DEMO_TABLES) {
    sums[table] = await one<string>(target, `SELECT md5(string_agg(t::text, E'\\n' ORDER BY ${order[table] ?? "id"})) AS v FROM ${table} t`);
  }
  return sums;
}

async function rowCounts(target: PgTarget): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of DEMO_TABLES) counts[table] = Number(await one<string>(target, `SELECT count(*) AS v FROM ${table}`));
  return counts;
}

describe("determinism", () => {
  it("two loads of the same scale give identical md5s of every table's ordered rows", async () => {
    const a = await tableChecksums(first);
    const b = await tableChecksums(second);
    for (const table of DEMO_TABLES) expect(a[table], table).toMatch(/^[0-9a-f]{32}$/);
    expect(b).toEqual(a);
    // Distinct tables have distinct contents: the checksums are of real rows.
    expect(new Set(Object.values(a)).size).toBe(DEMO_TABLES.length);
  });

  it("loads exactly demoRowCounts(1) rows, hundreds per table", async () => {
    const expected = demoRowCounts(1);
    expect(expected).toEqual({ gallery_images: 200, guests: 400, bookings: 1000, payments: 900, reviews: 300, booking_events: 2000 });
    expect(firstLoad.scale).toBe(1);
    expect(firstLoad.tables).toEqual(expected);
    expect(await rowCounts(first)).toEqual(expected);
  });
});

describe("scale", () => {
  it("scale 2 doubles the bookings and everything hanging off them, not the gallery", async () => {
    const target = await tc.createDatabase("demo_scale2");
    const events: { table: string; rows: number; done: boolean }[] = [];
    const result = await seedDemo({ target, scale: 2, onProgress: (e) => events.push(e) });
    const counts = await rowCounts(target);
    const base = await rowCounts(first);
    expect(counts.bookings).toBe(2 * (base.bookings ?? 0));
    expect(counts.guests).toBe(2 * (base.guests ?? 0));
    expect(counts.booking_events).toBe(2 * (base.booking_events ?? 0));
    expect(counts.gallery_images).toBe(base.gallery_images);
    expect(counts).toEqual(demoRowCounts(2));
    expect(result.tables).toEqual(demoRowCounts(2));
    // Every table reports once that it is done, with its final row count.
    const done = events.filter((e) => e.done);
    expect(Object.fromEntries(done.map((e) => [e.table, e.rows]))).toEqual(demoRowCounts(2));
    expect(done).toHaveLength(DEMO_TABLES.length);
    // The gallery does not depend on the scale; the bookings do.
    const [one_, two] = [await tableChecksums(first), await tableChecksums(target)];
    expect(two.gallery_images).toBe(one_.gallery_images);
    expect(two.bookings).not.toBe(one_.bookings);
  });

  it("1,000 × scale bookings, up to a million at scale 1000", () => {
    expect(demoRowCounts(1000).bookings).toBe(1_000_000);
    expect(demoRowCounts(0.5).bookings).toBe(500);
    expect(demoRowCounts(1000).payments).toBe(900_000);
  });
});

describe("schema features", () => {
  it("has the booking_status enum, used by bookings.status", async () => {
    expect(await one(first, "SELECT enum_range(NULL::booking_status)::text AS v")).toBe("{pending,confirmed,checked_in,checked_out,cancelled,no_show}");
    expect(await one(first, "SELECT udt_name AS v FROM information_schema.columns WHERE table_name = 'bookings' AND column_name = 'status'")).toBe(
      "booking_status",
    );
    const statuses = await sql<{ status: string }>(first, "SELECT DISTINCT status::text FROM bookings ORDER BY 1");
    expect(statuses.length).toBeGreaterThanOrEqual(4);
  });

  it("has bookings.id as a bigint identity column, the other ids as serials, all sequences past the data", async () => {
    const identity = await sql<{ data_type: string; is_identity: string; identity_generation: string }>(
      first,
      "SELECT data_type, is_identity, identity_generation FROM information_schema.columns WHERE table_name = 'bookings' AND column_name = 'id'",
    );
    expect(identity).toEqual([{ data_type: "bigint", is_identity: "YES", identity_generation: "BY DEFAULT" }]);
    for (const table of ["gallery_images", "guests", "payments", "reviews"]) {
      expect(await one<string>(first, `SELECT column_default AS v FROM information_schema.columns WHERE table_name = '${table}' AND column_name = 'id'`)).toBe(
        `nextval('${table}_id_seq'::regclass)`,
      );
    }
    // The next default id follows the largest id (608 for the gallery), instead of colliding with id 1.
    const inserts: Record<string, string> = {
      guests: "INSERT INTO guests (full_name, email) VALUES ('New Guest', 'new@example.com')",
      bookings: "INSERT INTO bookings (guest_id, check_in, check_out, amount) VALUES (1, '2024-07-01', '2024-07-02', 90)",
      gallery_images: "INSERT INTO gallery_images (title, url, category) VALUES ('x', 'https://example.com/x.jpg', 'rooms')",
      payments: "INSERT INTO payments (booking_id, amount, method, paid_at) VALUES (1, 1, 'cash', now())",
      reviews: "INSERT INTO reviews (booking_id, rating) VALUES (1, 5)",
    };
    for (const [table, insert] of Object.entries(inserts)) {
      const max = Number(await one(scratch, `SELECT max(id) AS v FROM ${table}`));
      expect(max, table).toBeGreaterThanOrEqual(300);
      expect(Number(await one(scratch, `${insert} RETURNING id AS v`)), table).toBe(max + 1);
    }
  });

  it("has gallery ids 439..608 all present, and 30 sparse ids below 439", async () => {
    expect(Number(await one(first, "SELECT count(*) AS v FROM generate_series(439, 608) AS id WHERE id NOT IN (SELECT id FROM gallery_images)"))).toBe(0);
    expect(Number(await one(first, "SELECT count(*) AS v FROM gallery_images WHERE id < 439"))).toBe(30);
    expect(Number(await one(first, "SELECT count(*) AS v FROM gallery_images WHERE id > 608"))).toBe(0);
    // Holes: the old ids are scattered, not a contiguous block.
    expect(Number(await one(first, "SELECT max(id) - min(id) + 1 AS v FROM gallery_images WHERE id < 439"))).toBeGreaterThan(60);
  });

  it("has the published_gallery view showing exactly the published images", async () => {
    expect(await one(first, "SELECT count(*)::int AS v FROM information_schema.views WHERE table_name = 'published_gallery'")).toBe(1);
    const shown = Number(await one(first, "SELECT count(*) AS v FROM published_gallery"));
    expect(shown).toBe(Number(await one(first, "SELECT count(*) AS v FROM gallery_images WHERE published")));
    expect(shown).toBeGreaterThan(0);
    expect(shown).toBeLessThan(200);
  });

  it("has a table without a primary key and keys on all the others", async () => {
    const keyed = await sql<{ table: string }>(
      first,
      "SELECT conrelid::regclass::text AS table FROM pg_constraint WHERE contype = 'p' AND connamespace = 'public'::regnamespace ORDER BY 1",
    );
    expect(keyed.map((r) => r.table)).toEqual(["bookings", "gallery_images", "guests", "payments", "reviews"]);
    expect(Number(await one(first, "SELECT count(*) AS v FROM booking_events"))).toBe(2000);
  });

  it("has valid foreign keys, a unique email, checks and a secondary index on check_in", async () => {
    const constraints = await sql<{ name: string; type: string; valid: boolean }>(
      first,
      "SELECT conname AS name, contype::text AS type, convalidated AS valid FROM pg_constraint WHERE contype IN ('f', 'u', 'c') AND connamespace = 'public'::regnamespace ORDER BY 1",
    );
    expect(constraints).toEqual([
      { name: "booking_events_booking_id_fkey", type: "f", valid: true },
      { name: "bookings_dates_check", type: "c", valid: true },
      { name: "bookings_guest_id_fkey", type: "f", valid: true },
      { name: "guests_email_key", type: "u", valid: true },
      { name: "payments_booking_id_fkey", type: "f", valid: true },
      { name: "payments_method_check", type: "c", valid: true },
      { name: "reviews_booking_id_fkey", type: "f", valid: true },
      { name: "reviews_rating_check", type: "c", valid: true },
    ]);
    expect(await one(first, "SELECT indexdef AS v FROM pg_indexes WHERE indexname = 'bookings_check_in_idx'")).toMatch(
      /ON public\.bookings USING btree \(check_in\)/,
    );
    const sqlstate = async (text: string) =>
      sql(scratch, text).then(
        () => "ok",
        (e: { code?: string }) => e.code,
      );
    expect(await sqlstate("INSERT INTO guests (full_name, email) SELECT 'Twin', email FROM guests WHERE id = 7")).toBe("23505");
    expect(await sqlstate("INSERT INTO bookings (guest_id, check_in, check_out, amount) VALUES (999999, '2024-07-01', '2024-07-02', 1)")).toBe("23503");
    expect(await sqlstate("INSERT INTO reviews (booking_id, rating) VALUES (1, 6)")).toBe("23514");
    expect(await sqlstate("INSERT INTO reviews (booking_id, rating) VALUES (1, 5)")).toBe("ok");
  });

  it("bumps updated_at on UPDATE of guests, bookings and gallery_images, unless the UPDATE sets it", async () => {
    for (const table of ["guests", "bookings", "gallery_images"]) {
      const id = table === "gallery_images" ? 500 : 10;
      const before = await one<string>(scratch, `SELECT updated_at AS v FROM ${table} WHERE id = ${id}`);
      const after = await one<string>(scratch, `UPDATE ${table} SET created_at = created_at WHERE id = ${id} RETURNING updated_at AS v`);
      expect(after, table).not.toBe(before);
      expect(Date.parse(after.replace(" ", "T").replace(/\+00$/, "Z"))).toBeGreaterThan(Date.parse("2024-07-01T00:00:00Z"));
      const explicit = await one<string>(scratch, `UPDATE ${table} SET updated_at = '2024-01-02 03:04:05+00' WHERE id = ${id} RETURNING updated_at AS v`);
      expect(explicit, table).toBe("2024-01-02 03:04:05+00");
    }
  });

  it("stores nested jsonb, NULLs, empty strings and text that needs COPY escaping", async () => {
    expect(await one(first, "SELECT data_type AS v FROM information_schema.columns WHERE table_name = 'bookings' AND column_name = 'meta'")).toBe("jsonb");
    const facts = (
      await sql<Record<string, string>>(
        first,
        `SELECT
           count(*) FILTER (WHERE jsonb_typeof(meta->'party') = 'object' AND (meta #>> '{party,adults}')::int >= 1) AS party,
           count(*) FILTER (WHERE meta #>> '{utm,campaign}' IS NOT NULL) AS utm,
           count(*) FILTER (WHERE meta->'requests' @> '["room \\"away from the lift\\""]') AS quoted,
           count(*) FILTER (WHERE notes IS NULL) AS null_notes,
           count(*) FILTER (WHERE notes = '') AS empty_notes,
           count(*) FILTER (WHERE strpos(notes, chr(9)) > 0) AS tabs,
           count(*) FILTER (WHERE strpos(notes, chr(10)) > 0) AS newlines,
           count(*) FILTER (WHERE strpos(notes, chr(13)) > 0) AS returns,
           count(*) FILTER (WHERE strpos(notes, chr(92)) > 0) AS backslashes,
           count(*) FILTER (WHERE strpos(notes, '🍾') > 0) AS emoji
         FROM bookings`,
      )
    )[0];
    expect(facts?.party).toBe("1000");
    for (const key of ["utm", "quoted", "null_notes", "empty_notes", "tabs", "newlines", "returns", "backslashes", "emoji"])
      expect(Number(facts?.[key]), key).toBeGreaterThan(0);
    expect(await one(first, "SELECT notes AS v FROM bookings WHERE strpos(notes, chr(92)) > 0 LIMIT 1")).toBe(
      "Paid deposit by phone \\ confirm with front desk",
    );
    expect(Number(await one(first, "SELECT count(*) AS v FROM guests WHERE phone IS NULL"))).toBeGreaterThan(0);
    expect(Number(await one(first, "SELECT count(*) AS v FROM guests WHERE full_name ~ '[^ -~]'"))).toBeGreaterThan(0);
    expect(Number(await one(first, "SELECT count(*) AS v FROM guests WHERE full_name LIKE '%''%'"))).toBeGreaterThan(0);
  });

  it("keeps the tables consistent with each other and with the fixed reference date", async () => {
    const checks = (
      await sql<Record<string, string>>(
        first,
        `SELECT
           (SELECT count(*) FROM payments p JOIN bookings b ON b.id = p.booking_id WHERE p.amount <> b.amount) AS amount_mismatch,
           (SELECT count(*) FROM reviews r JOIN bookings b ON b.id = r.booking_id WHERE b.status <> 'checked_out' OR r.created_at < b.check_out) AS bad_reviews,
           (SELECT count(*) FROM payments WHERE (method = 'card') <> (card_last4 IS NOT NULL) OR (method = 'bank_transfer') <> (iban IS NOT NULL)) AS bad_methods,
           (SELECT count(*) FROM bookings b JOIN booking_events e ON e.booking_id = b.id AND e.event <> 'created' WHERE e.at <> b.updated_at) AS event_mismatch,
           greatest((SELECT max(updated_at) FROM bookings), (SELECT max(paid_at) FROM payments), (SELECT max(created_at) FROM reviews), (SELECT max(updated_at) FROM guests), (SELECT max(at) FROM booking_events)) AS latest,
           (SELECT count(*) FROM guests WHERE email !~ '^[a-z0-9]+\\.[a-z0-9]+[0-9]+@') AS odd_emails`,
      )
    )[0];
    expect(checks).toEqual({
      amount_mismatch: "0",
      bad_reviews: "0",
      bad_methods: "0",
      event_mismatch: "0",
      latest: "2024-06-30 12:00:00+00",
      odd_emails: "0",
    });
  });
});

describe("errors", () => {
  it("refuses a bad scale with AIRLOCK_BAD_SCALE before connecting", async () => {
    // A database that does not exist: a scale check after connecting would fail differently.
    const nowhere = { ...first, database: "no_such_database" } as PgTarget;
    for (const scale of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 1e9, "2" as unknown as number]) {
      const e = await caught(() => seedDemo({ target: nowhere, scale }));
      expect(e.code, String(scale)).toBe("AIRLOCK_BAD_SCALE");
      expect(e.hint).toMatch(/positive number/);
    }
    expect(() => demoRowCounts(0)).toThrow(AirlockError);
  });

  it("refuses to load twice into the same database with AIRLOCK_DEMO_EXISTS, changing nothing", async () => {
    const before = await tableChecksums(first);
    const e = await caught(() => seedDemo({ target: first }));
    expect(e.code).toBe("AIRLOCK_DEMO_EXISTS");
    expect(e.message).toMatch(/guests/);
    expect(e.hint).toMatch(/empty database/);
    expect(await tableChecksums(first)).toEqual(before);
  });

  it("refuses a database that has its own guests table, and leaves that table alone", async () => {
    const target = await tc.createDatabase("demo_foreign_guests");
    await sql(target, "CREATE TABLE guests (id int); INSERT INTO guests VALUES (42)");
    const e = await caught(() => seedDemo({ target }));
    expect(e.code).toBe("AIRLOCK_DEMO_EXISTS");
    expect(await one(target, "SELECT id AS v FROM guests")).toBe(42);
    expect(await one(target, "SELECT to_regclass('bookings')::text AS v")).toBeNull();
  });

  it("after a failed load removes what it created, so the same command can run again", async () => {
    const target = await tc.createDatabase("demo_retry");
    await expect(
      seedDemo({
        target,
        onProgress: (e) => {
          if (e.done) throw new Error("interrupted by the test");
        },
      }),
    ).rejects.toThrow("interrupted by the test");
    expect(await one(target, "SELECT count(*)::int AS v FROM pg_class WHERE relnamespace = 'public'::regnamespace")).toBe(0);
    expect(await one(target, "SELECT to_regtype('booking_status')::text AS v")).toBeNull();
    await seedDemo({ target });
    expect(await tableChecksums(target)).toEqual(await tableChecksums(first));
  });
});

describe("COPY text", () => {
  it("escapes backslash, tab, newline and carriage return, and writes NULL as \\N", () => {
    expect(copyText("a\\b\tc\nd\re")).toBe("a\\\\b\\tc\\nd\\re");
    expect(copyText(null)).toBe("\\N");
    expect(copyText("\\N")).toBe("\\\\N");
    expect(copyText('Zoë "O\'Brien" 🍾')).toBe('Zoë "O\'Brien" 🍾');
  });

  it("formats timestamps in UTC to the millisecond", () => {
    expect(timestamp(Date.UTC(2024, 5, 30, 12, 0, 0))).toBe("2024-06-30 12:00:00.000+00");
    expect(timestamp(Date.UTC(2021, 0, 4, 8, 5, 9, 7))).toBe("2021-01-04 08:05:09.007+00");
    expect(timestamp(Date.UTC(2024, 1, 29, 23, 59, 59, 999))).toBe("2024-02-29 23:59:59.999+00");
  });
});
