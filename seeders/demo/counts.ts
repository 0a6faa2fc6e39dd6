/**
 * The demo tables and how many rows each gets at a given scale. Counts are
 * exact and known before loading, so tests and progress bars can rely on them.
 */
import { AirlockError } from "../../src/errors.ts";
import { countPayments, countReviews } from "./booking-facts.ts";

/** The demo tables, parents before children (the order foreign keys need). */
export const DEMO_TABLES = ["gallery_images", "guests", "bookings", "payments", "reviews", "booking_events"] as const;
export type DemoTable = (typeof DEMO_TABLES)[number];

/** Rows per table. */
export type DemoRowCounts = Readonly<Record<DemoTable, number>>;

/** The gallery is the same ~200 rows at every scale: ids 439..608 plus 30 older ones below 439. */
export const GALLERY_FIRST_CURRENT_ID = 439;
export const GALLERY_LAST_ID = 608;
export const GALLERY_LEGACY_ROWS = 30;

/** A ceiling far above any useful demo: keeps guest ids inside `serial` (int4) and booking ids inside 32-bit hashing. */
export const MAX_SCALE = 100_000;

/** Checks a scale and returns it; throws AIRLOCK_BAD_SCALE for anything but a positive finite number up to MAX_SCALE. */
export function validateScale(scale: unknown): number {
  if (typeof scale !== "number" || !Number.isFinite(scale) || scale <= 0 || scale > MAX_SCALE) {
    throw new AirlockError("AIRLOCK_BAD_SCALE", `bad demo scale: ${String(scale)}`, {
      hint: `use a positive number up to ${MAX_SCALE}: 1 gives about 1,000 bookings, 1000 gives 1,000,000`,
    });
  }
  return scale;
}

/** The exact row count of every demo table at `scale` (validated). */
export function demoRowCounts(scale: number): DemoRowCounts {
  validateScale(scale);
  const bookings = Math.max(1, Math.round(1_000 * scale));
  return {
    gallery_images: GALLERY_LAST_ID - GALLERY_FIRST_CURRENT_ID + 1 + GALLERY_LEGACY_ROWS,
    guests: Math.max(1, Math.round(400 * scale)),
    bookings,
    payments: countPayments(bookings),
    reviews: countReviews(bookings),
    // Every booking has a "created" event and one for its latest status.
    booking_events: 2 * bookings,
  };
}
