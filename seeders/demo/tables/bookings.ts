/**
 * bookings: the core table. Dates, guest, status and amount come from
 * bookingFacts (shared with payments, reviews and events); free-text notes
 * and the jsonb `meta` come from this table's own Prng.
 */
import { bookingFacts, statusChangedAt } from "../booking-facts.ts";
import { copyText, date, money, timestamp } from "../copy-text.ts";
import type { Prng } from "../prng.ts";
import { prngFor, type TableSource } from "./source.ts";

// Notes as staff type them: tabs, line breaks, backslashes, quotes, accents, emoji.
const NOTES = [
  "Late arrival, after 22:00",
  "Guest asked for a quiet room.\nAway from the lift, please.",
  "Allergies: nuts\tgluten",
  "Paid deposit by phone \\ confirm with front desk",
  "Anniversary: champagne on arrival 🍾",
  'Wants the "same room as last year" (204)',
  "Arrivée tardive, clé à la réception",
  "Dog (small) — €25/night pet fee agreed",
  "Invoice to company: ACME GmbH, Straße 5\r\nVAT DE123456789",
  "Needs parking for a van",
  "Early check-in if possible",
  "VIP",
  "",
];
const SOURCES = ['"web"', '"web"', '"web"', '"phone"', '"booking.com"', '"expedia"', '"walk-in"'];
const ROOM_TYPES = ['"single"', '"double"', '"double"', '"twin"', '"suite"', '"family"'];
const REQUESTS = [
  '"late checkout"',
  '"early check-in"',
  '"cot"',
  '"extra pillows"',
  '"sea view"',
  '"ground floor"',
  JSON.stringify('room "away from the lift"'),
  '"vegan breakfast"',
];
const CAMPAIGNS = ['"summer-sale"', '"newsletter"', '"retargeting"', '"brand"'];
const MEDIUMS = ['"cpc"', '"email"', '"social"'];

/** The bookings rows for `rows` bookings of `guests` guests. */
export function bookingsSource(rows: number, guests: number): TableSource {
  const prng = prngFor("bookings");
  return {
    table: "bookings",
    columns: ["id", "guest_id", "check_in", "check_out", "status", "amount", "currency", "notes", "meta", "created_at", "updated_at"],
    rows,
    line(i) {
      const f = bookingFacts(i + 1, rows, guests);
      const notes = prng.chance(0.65) ? null : prng.pick(NOTES);
      return `${f.id}\t${f.guestId}\t${date(f.checkIn)}\t${date(f.checkOut)}\t${f.status}\t${money(f.amountCents)}\t${f.currency}\t${copyText(notes)}\t${copyText(meta(prng))}\t${timestamp(f.createdAt)}\t${timestamp(statusChangedAt(f))}`;
    },
  };
}

/** A nested jsonb document, built as text: JSON.stringify of an object per row is the slowest part otherwise. */
function meta(prng: Prng): string {
  const source = prng.pick(SOURCES);
  const adults = 1 + prng.int(3);
  const children = prng.chance(0.2) ? 1 + prng.int(3) : 0;
  let requests = "";
  const n = prng.chance(0.6) ? 0 : 1 + prng.int(3);
  for (let k = 0; k < n; k++) requests += (k === 0 ? "" : ",") + prng.pick(REQUESTS);
  const utm = source === '"web"' && prng.chance(0.5) ? `,"utm":{"campaign":${prng.pick(CAMPAIGNS)},"medium":${prng.pick(MEDIUMS)}}` : "";
  return `{"source":${source},"party":{"adults":${adults},"children":${children}},"room":{"type":${prng.pick(ROOM_TYPES)},"floor":${prng.int(6)}},"requests":[${requests}]${utm}}`;
}
