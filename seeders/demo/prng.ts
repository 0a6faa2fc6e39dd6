/**
 * Seeded randomness for the demo dataset. Faker is too slow to call millions of
 * times, so hot loops draw from these instead: a stream generator (sfc32) for
 * values read in row order, and a stateless hash for facts that several tables
 * must agree on without sharing state (so tables can load in parallel).
 */

/** The fixed seed every demo table derives its own seed from. */
export const DEMO_SEED = 20240630;

/** A 32-bit FNV-1a hash of a string: turns "seed:table" into a table's seed. */
export function seedFor(label: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A stateless 32-bit hash of a non-negative integer below 2^32 and a salt (lowbias32 mixer). */
export function hash32(n: number, salt: number): number {
  let x = (n ^ Math.imul(salt, 0x9e3779b9)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x21f0aaad);
  x ^= x >>> 15;
  x = Math.imul(x, 0x735a2d97);
  x ^= x >>> 15;
  return x >>> 0;
}

/** A seeded stream of random numbers; the same seed always gives the same sequence. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    // sfc32 needs a few rounds before its output stops echoing the seed.
    for (let i = 0; i < 16; i++) this.next();
  }

  /** The next unsigned 32-bit value (sfc32). */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return this.next() % n;
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p * 4294967296;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.next() % items.length] as T;
  }
}
