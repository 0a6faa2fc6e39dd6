/**
 * The leak scan: after capture, prove that no original value of a masked
 * column appears anywhere in the snapshot, in any column, as a whole field
 * or as a word inside free text. Originals are held only as 64-bit
 * fingerprints (never the values), in a compact open-addressing table.
 */

/** Originals shorter than this cannot be told apart from ordinary words and numbers. */
export const MIN_LEAK_LENGTH = 6;

function fingerprint(s: string): [number, number] {
  // Two independent 32-bit hashes (FNV-1a and a multiplicative mix) make a 64-bit fingerprint.
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  h2 = Math.imul(h2 ^ (h2 >>> 13), 0xc2b2ae35);
  return [h1 >>> 0, ((h2 ^ (h2 >>> 16)) | 1) >>> 0];
}

/** A set of string fingerprints with a 2^-64-ish false-positive rate and 8 bytes per slot. */
export class FingerprintSet {
  private slots = new Uint32Array(2 * 1024);
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds a string's fingerprint. */
  add(s: string): void {
    if ((this.count + 1) * 2 > this.slots.length / 2) this.grow();
    const [a, b] = fingerprint(s);
    if (this.insert(a, b)) this.count++;
  }

  /** True when the string's fingerprint is in the set. */
  has(s: string): boolean {
    const [a, b] = fingerprint(s);
    const mask = this.slots.length / 2 - 1;
    for (let i = a & mask; ; i = (i + 1) & mask) {
      const sb = this.slots[2 * i + 1]!;
      if (sb === 0) return false;
      if (sb === b && this.slots[2 * i] === a) return true;
    }
  }

  private insert(a: number, b: number): boolean {
    const mask = this.slots.length / 2 - 1;
    for (let i = a & mask; ; i = (i + 1) & mask) {
      const sb = this.slots[2 * i + 1]!;
      if (sb === 0) {
        this.slots[2 * i] = a;
        this.slots[2 * i + 1] = b;
        return true;
      }
      if (sb === b && this.slots[2 * i] === a) return false;
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Uint32Array(old.length * 2);
    for (let i = 0; i < old.length; i += 2) if (old[i + 1] !== 0) this.insert(old[i]!, old[i + 1]!);
  }
}

const WORD_SPLIT = /[\s,;()<>"'[\]{}|]+/;
// Words inside free text are checked only against originals that identify on
// their own (emails, phone, card and account numbers): names and cities are
// ordinary words that free text shares by chance.
const IDENTIFIER_LIKE = /@|\d[\d\s().+-]{4,}\d/;

/** Collects originals during capture and scans the written snapshot for them. */
export class LeakScanner {
  /** Fingerprints of original values of masked columns. */
  readonly originals = new FingerprintSet();
  /** The subset of originals that are single identifying words. */
  private readonly identifiers = new FingerprintSet();
  /** Fingerprints of values the masker produced: a fake that happens to equal some original is not a leak. */
  private readonly produced = new FingerprintSet();
  fieldsScanned = 0;

  /** Records an original value of a masked column (its fingerprint). */
  addOriginal(value: string | null): void {
    if (value === null || value.length < MIN_LEAK_LENGTH) return;
    this.originals.add(value);
    if (IDENTIFIER_LIKE.test(value) && !WORD_SPLIT.test(value)) this.identifiers.add(value);
  }

  /** Records a value the masker produced. */
  addProduced(value: string | null): void {
    if (value !== null && value.length >= MIN_LEAK_LENGTH) this.produced.add(value);
  }

  /** True when a field (or a word in it) is an original value of a masked column. */
  leaks(value: string | null): boolean {
    if (value === null || value.length < MIN_LEAK_LENGTH || this.originals.size === 0) return false;
    this.fieldsScanned++;
    if (this.originals.has(value) && !this.produced.has(value)) return true;
    if (this.identifiers.size === 0 || !WORD_SPLIT.test(value)) return false;
    for (const word of value.split(WORD_SPLIT)) {
      if (word.length >= MIN_LEAK_LENGTH && this.identifiers.has(word) && !this.produced.has(word)) return true;
    }
    return false;
  }
}
