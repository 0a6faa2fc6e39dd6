/**
 * booking_events: the append-only history with no primary key. Each booking
 * has two rows, "created" and the event that gave it its current status, at
 * the same times its bookings row and payment say.
 */
import { type BookingFacts, bookingFacts, type BookingStatus, statusChangedAt } from "../booking-facts.ts";
import { timestamp } from "../copy-text.ts";
import type { TableSource } from "./source.ts";

const STATUS_EVENTS: Readonly<Record<BookingStatus, string>> = {
  pending: "reminder_sent",
  confirmed: "payment_received",
  checked_in: "checked_in",
  checked_out: "checked_out",
  cancelled: "cancelled",
  no_show: "marked_no_show",
};

/** The booking_events rows for `bookings` bookings of `guests` guests (two per booking). */
export function bookingEventsSource(bookings: number, guests: number): TableSource {
  // Both events of a booking come one after the other: compute its facts once.
  let facts: BookingFacts | undefined;
  return {
    table: "booking_events",
    columns: ["booking_id", "event", "at"],
    rows: 2 * bookings,
    line(i) {
      const id = (i >> 1) + 1;
      if (facts?.id !== id) facts = bookingFacts(id, bookings, guests);
      if ((i & 1) === 0) return `${id}\tcreated\t${timestamp(facts.createdAt)}`;
      return `${id}\t${STATUS_EVENTS[facts.status]}\t${timestamp(statusChangedAt(facts))}`;
    },
  };
}
