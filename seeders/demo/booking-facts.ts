/**
 * What is true of booking number `id`, as a pure function of the id. Bookings,
 * payments, reviews and booking events are generated on different connections
 * at the same time, and must still agree (a payment has its booking's amount, a
 * review belongs to a stay that ended), so none of them may depend on another
 * generator's state: each one recomputes the facts it needs from the id.
 *
 * Which bookings have a payment or a review depends only on `id % 10`, which
 * keeps the row counts exact and computable without generating anything.
 */
import { DAY } from "./copy-text.ts";
import { DEMO_SEED, hash32, seedFor } from "./prng.ts";

/** The dataset's "today": every generated timestamp is on or before it. */
export const REFERENCE_NOW = Date.UTC(2024, 5, 30, 12, 0, 0);
/** When the business started taking bookings. */
export const BOOKINGS_START = Date.UTC(2021, 0, 4, 8, 0, 0);
/** Bookings are made up to this long before REFERENCE_NOW, so stays with reviews have ended. */
const LAST_BOOKING = REFERENCE_NOW - 30 * DAY;

/** The values of the `booking_status` enum. */
export const BOOKING_STATUSES = ["pending", "confirmed", "checked_in", "checked_out", "cancelled", "no_show"] as const;
export type BookingStatus = (typeof BOOKING_STATUSES)[number];

const CURRENCIES = [
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "EUR",
  "GBP",
  "GBP",
  "GBP",
  "USD",
  "USD",
  "CHF",
  "SEK",
  "DKK",
] as const;

const SALT = {
  guest: seedFor(`${DEMO_SEED}:booking:guest`),
  jitter: seedFor(`${DEMO_SEED}:booking:jitter`),
  lead: seedFor(`${DEMO_SEED}:booking:lead`),
  nights: seedFor(`${DEMO_SEED}:booking:nights`),
  rate: seedFor(`${DEMO_SEED}:booking:rate`),
  currency: seedFor(`${DEMO_SEED}:booking:currency`),
  outcome: seedFor(`${DEMO_SEED}:booking:outcome`),
  changed: seedFor(`${DEMO_SEED}:booking:changed`),
  method: seedFor(`${DEMO_SEED}:payment:method`),
  paid: seedFor(`${DEMO_SEED}:payment:paid`),
};

const HOUR = DAY / 24;

/** The facts about one booking that other tables depend on. */
export interface BookingFacts {
  readonly id: number;
  readonly guestId: number;
  readonly createdAt: number;
  readonly checkIn: number;
  readonly checkOut: number;
  readonly status: BookingStatus;
  readonly amountCents: number;
  readonly currency: string;
}

/** True when booking `id` has a payment (every booking except one in ten). */
export function hasPayment(id: number): boolean {
  return id % 10 !== 0;
}

/** True when booking `id` has a review (three in ten, all of them finished stays). */
export function hasReview(id: number): boolean {
  const r = id % 10;
  return r === 1 || r === 4 || r === 7;
}

/** The booking id of the `i`-th payment (0-based): the i-th id for which hasPayment holds. */
export function paymentBookingId(i: number): number {
  return Math.floor(i / 9) * 10 + (i % 9) + 1;
}

const REVIEW_RESIDUES = [1, 4, 7] as const;

/** The booking id of the `i`-th review (0-based): the i-th id for which hasReview holds. */
export function reviewBookingId(i: number): number {
  return Math.floor(i / 3) * 10 + (REVIEW_RESIDUES[i % 3] as number);
}

/** How many of the bookings 1..bookings have a payment. */
export function countPayments(bookings: number): number {
  return bookings - Math.floor(bookings / 10);
}

/** How many of the bookings 1..bookings have a review. */
export function countReviews(bookings: number): number {
  let n = 0;
  for (const r of REVIEW_RESIDUES) if (bookings >= r) n += Math.floor((bookings - r) / 10) + 1;
  return n;
}

/** When guest `id` (1-based) signed up: spread like bookings, a little earlier, so a guest exists before their first booking. */
export function guestCreatedAt(id: number, guests: number): number {
  const slot = (LAST_BOOKING - BOOKINGS_START) / guests;
  return Math.floor(BOOKINGS_START - 2 * DAY + (id - 1) * slot);
}

/** The facts of booking `id` (1-based) in a dataset of `bookings` bookings and `guests` guests. */
export function bookingFacts(id: number, bookings: number, guests: number): BookingFacts {
  // Ids follow creation time, as an identity column does in production.
  const slot = (LAST_BOOKING - BOOKINGS_START) / bookings;
  const createdAt = Math.floor(BOOKINGS_START + (id - 1) * slot + ((hash32(id, SALT.jitter) % 1000) / 1000) * slot);
  const nightsHash = hash32(id, SALT.nights);
  // Mostly short stays, sometimes two weeks.
  const nights = 1 + (nightsHash % 4) + ((nightsHash >>> 8) % 8 === 0 ? (nightsHash >>> 12) % 11 : 0);
  const midnight = createdAt - (createdAt % DAY);
  let leadDays = 1 + (hash32(id, SALT.lead) % 120);
  if (hasReview(id)) {
    // A reviewed stay must have ended before today.
    const maxLead = Math.floor((REFERENCE_NOW - midnight) / DAY) - nights - 1;
    leadDays = 1 + (hash32(id, SALT.lead) % Math.max(1, Math.min(120, maxLead)));
  }
  const checkIn = midnight + leadDays * DAY;
  const checkOut = checkIn + nights * DAY;
  const rateCents = 8_000 + (hash32(id, SALT.rate) % 440) * 50;
  const outcome = hash32(id, SALT.outcome);
  let status: BookingStatus;
  if (!hasPayment(id)) status = checkIn > REFERENCE_NOW && outcome % 3 !== 0 ? "pending" : "cancelled";
  else if (hasReview(id)) status = "checked_out";
  else if (checkOut <= REFERENCE_NOW) status = outcome % 40 === 0 ? "no_show" : "checked_out";
  else if (checkIn <= REFERENCE_NOW) status = "checked_in";
  else status = "confirmed";
  return {
    id,
    // Only guests who had signed up by then can book: see guestCreatedAt.
    guestId: 1 + (hash32(id, SALT.guest) % Math.max(1, Math.ceil((guests * id) / bookings))),
    createdAt,
    checkIn,
    checkOut,
    status,
    amountCents: rateCents * nights,
    currency: CURRENCIES[hash32(id, SALT.currency) % CURRENCIES.length] as string,
  };
}

/** When a booking reached its current status (its last event, and its updated_at). */
export function statusChangedAt(f: BookingFacts): number {
  const h = hash32(f.id, SALT.changed);
  switch (f.status) {
    case "pending":
      return Math.min(REFERENCE_NOW, f.createdAt + 3 * DAY + (h % 3600) * 1000);
    case "confirmed":
      return paymentFacts(f).paidAt;
    case "checked_in":
      return Math.min(REFERENCE_NOW, f.checkIn + 14 * HOUR + (h % 21_600) * 1000);
    case "checked_out":
      return f.checkOut + 7 * HOUR + (h % 14_400) * 1000;
    case "cancelled":
      return Math.min(REFERENCE_NOW, f.checkIn - HOUR, f.createdAt + (h % Math.max(1, Math.floor((f.checkIn - f.createdAt) / 1000))) * 1000);
    case "no_show":
      return f.checkIn + DAY + 9 * HOUR;
  }
}

/** How a booking was paid, and when (only meaningful when hasPayment holds). */
export interface PaymentFacts {
  readonly method: "card" | "bank_transfer" | "cash";
  readonly paidAt: number;
}

/** The method and time of a booking's payment: card at booking time, transfer days later, cash on arrival. */
export function paymentFacts(f: BookingFacts): PaymentFacts {
  const h = hash32(f.id, SALT.method);
  const p = hash32(f.id, SALT.paid);
  const arrival = f.checkIn + 16 * HOUR + (p % 7200) * 1000;
  if (h % 100 < 8 && arrival <= REFERENCE_NOW) return { method: "cash", paidAt: arrival };
  if (h % 100 < 28) return { method: "bank_transfer", paidAt: f.createdAt + DAY + (p % (2 * 86_400)) * 1000 };
  return { method: "card", paidAt: f.createdAt + 30_000 + (p % 900) * 1000 };
}
