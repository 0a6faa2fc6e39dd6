/**
 * Counts in messages: "1 row", "2 rows", "1 entry", "3 entries".
 */

/** `n noun`, with the plural form when n ≠ 1: `many`, or the noun with an s. */
export function plural(n: number, noun: string, many = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : many}`;
}

/** The same with n grouped in thousands ("1,000,000 rows"). */
export function pluralGrouped(n: number, noun: string, many = `${noun}s`): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? noun : many}`;
}
