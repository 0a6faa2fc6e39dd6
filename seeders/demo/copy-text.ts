/**
 * Building rows in COPY text format for the demo: escaping comes from
 * src/pg/copy-text.ts; dates, times and money are formatted here.
 */

export { copyText } from "../../src/pg/copy-text.ts";

const DAY_MS = 86_400_000;

/** Milliseconds in a day, for date arithmetic on epoch milliseconds. */
export const DAY = DAY_MS;

// Date.prototype.toISOString was the single slowest call when generating a
// million bookings; dates come from a per-day cache and times from tables.
const PAD2 = Array.from({ length: 60 }, (_, n) => String(n).padStart(2, "0"));
const PAD3 = Array.from({ length: 1000 }, (_, n) => String(n).padStart(3, "0"));
const dayCache = new Map<number, string>();

function dayString(day: number): string {
  let text = dayCache.get(day);
  if (text === undefined) {
    text = new Date(day * DAY_MS).toISOString().slice(0, 10);
    dayCache.set(day, text);
  }
  return text;
}

/** A timestamptz literal in UTC for epoch milliseconds (integer), e.g. `2024-06-30 12:00:00.000+00`. */
export function timestamp(epochMs: number): string {
  const ms = Math.floor(epochMs);
  const day = Math.floor(ms / DAY_MS);
  let rest = ms - day * DAY_MS;
  const millis = rest % 1000;
  rest = (rest - millis) / 1000;
  const seconds = rest % 60;
  rest = (rest - seconds) / 60;
  const minutes = rest % 60;
  const hours = (rest - minutes) / 60;
  return `${dayString(day)} ${PAD2[hours]}:${PAD2[minutes]}:${PAD2[seconds]}.${PAD3[millis]}+00`;
}

/** A date literal (YYYY-MM-DD, UTC) for epoch milliseconds. */
export function date(ms: number): string {
  return dayString(Math.floor(ms / DAY_MS));
}

/** A numeric literal with two decimals for an amount in cents. */
export function money(cents: number): string {
  const rest = cents % 100;
  return `${(cents - rest) / 100}.${rest < 10 ? "0" : ""}${rest}`;
}
