/**
 * payments: one per booking that has one (see hasPayment), for the booking's
 * full amount. Card payments keep the last four digits, transfers the payer's
 * IBAN (with valid check digits, so IBAN detectors recognise them), cash neither.
 */
import { bookingFacts, paymentBookingId, paymentFacts } from "../booking-facts.ts";
import { money, timestamp } from "../copy-text.ts";
import type { Prng } from "../prng.ts";
import { prngFor, type TableSource } from "./source.ts";

// Country, bank codes (empty: digits only) and the number of digits after the bank code.
const IBAN_SHAPES = [
  { country: "DE", banks: [""], digits: 18 },
  { country: "GB", banks: ["NWBK", "BARC", "LOYD", "HBUK", "MIDL"], digits: 14 },
  { country: "NL", banks: ["ABNA", "INGB", "RABO", "TRIO"], digits: 10 },
  { country: "FR", banks: [""], digits: 23 },
  { country: "ES", banks: [""], digits: 20 },
  { country: "CH", banks: [""], digits: 17 },
] as const;

/** The payments rows for `rows` payments over `bookings` bookings of `guests` guests. */
export function paymentsSource(rows: number, bookings: number, guests: number): TableSource {
  const prng = prngFor("payments");
  return {
    table: "payments",
    columns: ["id", "booking_id", "amount", "method", "card_last4", "iban", "paid_at"],
    rows,
    line(i) {
      const f = bookingFacts(paymentBookingId(i), bookings, guests);
      const p = paymentFacts(f);
      const last4 = p.method === "card" ? digits(prng, 4) : "\\N";
      const iban = p.method === "bank_transfer" ? ibanLike(prng) : "\\N";
      return `${i + 1}\t${f.id}\t${money(f.amountCents)}\t${p.method}\t${last4}\t${iban}\t${timestamp(p.paidAt)}`;
    },
  };
}

function digits(prng: Prng, n: number): string {
  let out = "";
  for (let k = 0; k < n; k++) out += String(prng.int(10));
  return out;
}

/** An IBAN-shaped account number whose ISO 13616 mod-97 check digits are right. */
export function ibanLike(prng: Prng): string {
  const shape = prng.pick(IBAN_SHAPES);
  const bban = prng.pick(shape.banks) + digits(prng, shape.digits);
  const check = 98 - mod97(`${bban}${shape.country}00`);
  return `${shape.country}${check < 10 ? "0" : ""}${check}${bban}`;
}

// Letters count as two digits (A = 10 … Z = 35), folded in one character at a time.
function mod97(text: string): number {
  let r = 0;
  for (let k = 0; k < text.length; k++) {
    const c = text.charCodeAt(k);
    r = c >= 65 ? (r * 100 + (c - 55)) % 97 : (r * 10 + (c - 48)) % 97;
  }
  return r;
}
