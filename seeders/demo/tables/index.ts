/** The generators of all demo tables at one scale. */
import { type DemoRowCounts } from "../counts.ts";
import { bookingEventsSource } from "./booking-events.ts";
import { bookingsSource } from "./bookings.ts";
import { galleryImagesSource } from "./gallery-images.ts";
import { guestsSource } from "./guests.ts";
import { paymentsSource } from "./payments.ts";
import { reviewsSource } from "./reviews.ts";
import type { TableSource } from "./source.ts";

export type { TableSource } from "./source.ts";

/** One generator per demo table for the given row counts (from demoRowCounts). */
export function demoSources(counts: DemoRowCounts): TableSource[] {
  const { guests, bookings } = counts;
  return [
    galleryImagesSource(),
    guestsSource(guests),
    bookingsSource(bookings, guests),
    paymentsSource(counts.payments, bookings, guests),
    reviewsSource(counts.reviews, bookings, guests),
    bookingEventsSource(bookings, guests),
  ];
}
