/**
 * The AirlockError a promise (or function) fails with; the test fails if it
 * succeeds or fails with anything else.
 */
import { expect } from "vitest";
import { AirlockError } from "../../src/errors.ts";

/** Awaits `p` (or calls it) and returns the AirlockError it throws. */
export async function caught(p: Promise<unknown> | (() => unknown)): Promise<AirlockError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(AirlockError);
    return e as AirlockError;
  }
  throw new Error("expected an AirlockError");
}
