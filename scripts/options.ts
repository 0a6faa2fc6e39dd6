/**
 * Parsers for flag values, so that bad input fails at parse time with
 * commander's usage message.
 */
import { InvalidArgumentError } from "commander";

/** A positive number (e.g. --scale 0.5 or 1000). */
export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("expected a positive number");
  return n;
}
