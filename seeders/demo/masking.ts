/**
 * The masking rules for the demo production dataset: what a team would
 * write in airlock.config.ts for this schema. Emails share the "email"
 * domain, so the same address masks alike wherever it appears.
 */
import type { MaskRuleInput } from "../../src/config/masking-rules.ts";

/** Rules for every column of the demo dataset that holds personal or financial data. */
export const DEMO_MASKING_RULES: Readonly<Record<string, MaskRuleInput>> = {
  "public.guests.full_name": "fullName",
  "public.guests.email": { faker: "email", domain: "email" },
  "public.guests.phone": "phone",
  "public.guests.street_address": "streetAddress",
  "public.guests.city": "city",
  // Reviewed: a country says little about a person on its own.
  "public.guests.country": "keep",
  "public.payments.iban": "iban",
  // Reviewed: the last four digits are printed on every receipt.
  "public.payments.card_last4": "keep",
  "public.bookings.notes": "text",
  "public.reviews.body": "text",
};
