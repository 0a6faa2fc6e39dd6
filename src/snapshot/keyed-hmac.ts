/**
 * HMAC-SHA256 keyed by the operator's AIRLOCK_SECRET: the seed of every
 * masked value and the fingerprint of every production row.
 */
import { createHash, createHmac, type Hash } from "node:crypto";

/** HMAC-SHA256 with the keyed state computed once (a fresh createHmac per value costs ~5 µs). */
export class KeyedHmac {
  private readonly inner: Hash;
  private readonly outer: Hash;
  constructor(key: string) {
    let k = Buffer.from(key, "utf8");
    if (k.length > 64) k = createHash("sha256").update(k).digest();
    const block = Buffer.alloc(64);
    k.copy(block);
    this.inner = createHash("sha256").update(block.map((x) => x ^ 0x36));
    this.outer = createHash("sha256").update(block.map((x) => x ^ 0x5c));
  }
  /** HMAC of a message. */
  digest(message: string): Buffer {
    const inner = this.inner.copy().update(message, "utf8").digest();
    return this.outer.copy().update(inner).digest();
  }
}

/** HMAC-SHA256(secret, message): exported for row fingerprints and tests. */
export function hmac(secret: string, message: string): Buffer {
  return createHmac("sha256", secret).update(message, "utf8").digest();
}

