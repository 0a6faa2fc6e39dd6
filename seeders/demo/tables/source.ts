/**
 * What every demo table generator provides: its columns, its exact row count
 * and a function giving row i as a COPY text line. Each table has its own
 * Faker and Prng, both seeded from DEMO_SEED and the table name, so a table's
 * rows never depend on which other tables were generated or in what order.
 */
import { base, en, Faker } from "@faker-js/faker";
import type { DemoTable } from "../counts.ts";
import { DEMO_SEED, Prng, seedFor } from "../prng.ts";

/** A table's rows as COPY text lines. */
export interface TableSource {
  readonly table: DemoTable;
  readonly columns: readonly string[];
  readonly rows: number;
  /** Row `i` (0-based) as a COPY text line without its newline; must be called with i = 0, 1, 2, … in order. */
  line(i: number): string;
}

/** A table's own Faker, seeded from the fixed demo seed and the table name. */
export function fakerFor(table: DemoTable): Faker {
  // `base` holds the locale-independent data (country codes, …) that `en` leaves out.
  const faker = new Faker({ locale: [en, base] });
  faker.seed(seedFor(`${DEMO_SEED}:faker:${table}`));
  return faker;
}

/** A table's own Prng, seeded from the fixed demo seed and the table name. */
export function prngFor(table: DemoTable): Prng {
  return new Prng(seedFor(`${DEMO_SEED}:prng:${table}`));
}

/** Calls `make` n times: builds a pool of faker values once, for cheap picking in hot loops. */
export function pool<T>(n: number, make: (i: number) => T): T[] {
  return Array.from({ length: n }, (_, i) => make(i));
}

/** Lower-case ASCII letters and digits only (for emails and URL slugs): "Zoë O'Brien" → "zoeobrien". */
export function asciiSlug(text: string): string {
  return text
    .normalize("NFD")
    .replace(/[^A-Za-z0-9]/g, "")
    .toLowerCase();
}
