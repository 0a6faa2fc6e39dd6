/**
 * reviews: three in ten bookings, all finished stays (see hasReview), written
 * a few days after check-out. Ratings lean positive, as real ones do; bodies
 * are free text stitched from sentences that match the rating.
 */
import { bookingFacts, REFERENCE_NOW, reviewBookingId } from "../booking-facts.ts";
import { copyText, DAY, timestamp } from "../copy-text.ts";
import { prngFor, type TableSource } from "./source.ts";

const PRAISE = [
  "Lovely stay, the staff couldn't have been kinder.",
  "Breakfast was excellent: fresh bread and proper coffee.",
  "Room was spotless and the bed very comfortable.",
  "Great location, five minutes from the harbour.",
  "We'll be back next summer!",
  "Très bien, personnel adorable 👍",
  'The "sea view" really is a sea view.',
];
const MIXED = [
  "Nice room but the Wi-Fi kept dropping.",
  "Good value, a bit noisy on a Friday night.",
  "Check-in took a while; otherwise fine.",
  "Breakfast OK, nothing special.",
  "Parking is tight\tbook ahead.",
];
const COMPLAINTS = [
  "The room smelled of smoke.",
  "Shower was cold two mornings in a row.",
  "Charged twice for the minibar \\ still waiting for the refund.",
  'The "sea view" was a wall.',
  "Nobody at reception after 23:00.\nWe waited outside for half an hour.",
];
// Weights for ratings 1..5.
const RATINGS = [
  1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
] as const;

/** The reviews rows for `rows` reviews over `bookings` bookings of `guests` guests. */
export function reviewsSource(rows: number, bookings: number, guests: number): TableSource {
  const prng = prngFor("reviews");
  return {
    table: "reviews",
    columns: ["id", "booking_id", "rating", "body", "created_at"],
    rows,
    line(i) {
      const f = bookingFacts(reviewBookingId(i), bookings, guests);
      const rating = prng.pick(RATINGS);
      const sentences = rating >= 4 ? PRAISE : rating === 3 ? MIXED : COMPLAINTS;
      let body: string | null = null;
      if (!prng.chance(0.06)) {
        body = prng.pick(sentences);
        const more = prng.int(3);
        for (let k = 0; k < more; k++) body += ` ${prng.pick(sentences)}`;
      }
      const createdAt = Math.min(REFERENCE_NOW, f.checkOut + DAY + prng.int(9 * DAY));
      return `${i + 1}\t${f.id}\t${rating}\t${copyText(body)}\t${timestamp(createdAt)}`;
    },
  };
}
