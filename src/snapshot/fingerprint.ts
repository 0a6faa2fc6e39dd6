/**
 * Fingerprints of values in their normal forms, for the leak scan (and the
 * masked-value hazard): two independent 32-bit hashes (FNV-1a and a
 * multiplicative mix) make a 64-bit fingerprint, computed as a stream of
 * characters so the normal forms never have to be built as strings on the
 * hot path. The normal forms:
 * - text: whitespace collapsed and trimmed, lower-cased (`normaliseText`);
 * - numbers: digits only, from MIN_DIGITS to MAX_DIGITS of them;
 * - IBANs: upper-case letters and digits without separators.
 *
 * The running hash and the last finished fingerprint are module state, read
 * right after the call that set them (`fpA`/`fpB`, `seen*`): no allocation
 * per value on the scan's hot path.
 */

/**
 * Fewest digits a number needs before its digits alone identify it. Seven is
 * the shortest phone number that reaches a person (a local subscriber number,
 * "555-0123"); payment cards have 13–19 digits, IBANs 15–34 characters.
 * Shorter digit runs are what kept columns are full of — ids, years,
 * postcodes, house numbers, PINs, a card's last four — and a masked value of
 * that size equal to one of them says nothing.
 */
export const MIN_DIGITS = 7;
/** Longer digit strings are not numbers people are identified by (IBANs are the longest, 34). */
export const MAX_DIGITS = 34;

/** The text normal form: whitespace runs as one space, trimmed, lower case. */
export function normaliseText(value: string): string {
  return value.trim().replace(/\s+/g, " ").toLowerCase();
}

// ---------------------------------------------------------------------------
// The streaming hash.

let h1 = 0;
let h2 = 0;
/** How many characters the running hash has taken. */
export let hn = 0;
/** The last finished fingerprint. */
export let fpA = 0;
export let fpB = 0;

/** Starts a new running hash. */
export function start(): void {
  h1 = 0x811c9dc5;
  h2 = 0x9747b28c;
  hn = 0;
}

/** Adds one character code to the running hash. */
export function mix(c: number): void {
  h1 = Math.imul(h1 ^ c, 0x01000193);
  h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  h2 ^= h2 >>> 15;
  hn++;
}

/** Finishes into fpA/fpB without disturbing the running state (a prefix can be finished and extended). */
export function finish(): void {
  let b = h2 ^ hn;
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35);
  fpA = h1 >>> 0;
  fpB = ((b ^ (b >>> 16)) | 1) >>> 0;
}

/** Fingerprints a string as it is (into fpA/fpB). */
function fingerprintOf(s: string): void {
  start();
  for (let i = 0; i < s.length; i++) mix(s.charCodeAt(i));
  finish();
}

// ---------------------------------------------------------------------------
// Normal forms.

/** What scanText learnt about a value besides its text fingerprint: how many digits. */
export let seenDigits = 0;
/** Whether it holds an "@". */
export let seenAt = false;
/** Only digits and the separators numbers are written with (spaces, ( ) . / + -). */
export let seenNumeric = true;
/** The longest stretch of digits, spaces and ( ) . / + -: an identifier inside text needs six. */
export let seenNumberRun = 0;

const isNumberSeparator = (c: number) => c === 40 || c === 41 || c === 43 || c === 45 || c === 46 || c === 47;

/**
 * Fingerprints the text normal form of `s` (into fpA/fpB) and counts its
 * digits, in one pass. ASCII is lower-cased inline; anything else goes
 * through normaliseText first, so both paths agree. (The hot loop of the
 * scan: local variables only, the same mixing as mix()/finish().)
 */
export function scanText(s: string, normalised = false): void {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  let n = 0;
  let digits = 0;
  let at = false;
  let numeric = true;
  let run = 0;
  let longest = 0;
  let pendingSpace = false;
  let started = false;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c === 32 || (c >= 9 && c <= 13)) {
      if (started) pendingSpace = true;
      if (run > 0) run++;
      continue;
    }
    if (c >= 128 && !normalised) return scanText(normaliseText(s), true);
    if (pendingSpace) {
      a = Math.imul(a ^ 32, 0x01000193);
      b = Math.imul(b ^ 32, 0x5bd1e995);
      b ^= b >>> 15;
      n++;
      pendingSpace = false;
    }
    started = true;
    if (c >= 48 && c <= 57) {
      digits++;
      run++;
      if (run > longest) longest = run;
    } else {
      if (c >= 65 && c <= 90) c += 32;
      else if (c === 64) at = true;
      if (isNumberSeparator(c)) {
        if (run > 0) run++;
      } else {
        numeric = false;
        run = 0;
      }
    }
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
    n++;
  }
  h1 = a;
  h2 = b;
  hn = n;
  finish();
  seenDigits = digits;
  seenAt = at;
  seenNumeric = numeric && digits > 0;
  seenNumberRun = longest;
}

const PHONE_EXTENSION = /^(.*?\d)\s*(?:x|ext\.?|extension)\s*\d{1,6}$/i;
const NUMERIC_SHAPE = /^[\d\s().\/+-]+$/;

/** A phone with an extension ("555-0123 ext. 12") is also its main number: fingerprints that number's digits. */
export function extensionFingerprint(value: string): boolean {
  if (!value.includes("x") && !value.includes("X")) return false;
  const main = PHONE_EXTENSION.exec(value.trim())?.[1];
  return main !== undefined && NUMERIC_SHAPE.test(main) && digitFingerprint(main);
}

/**
 * Fingerprints (into fpA/fpB) the digits of a number written with any
 * separators; false when it has too few or too many digits to count.
 */
export function digitFingerprint(value: string): boolean {
  start();
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 48 && c <= 57) mix(c);
  }
  if (hn < MIN_DIGITS || hn > MAX_DIGITS) return false;
  finish();
  return true;
}

/**
 * Fingerprints (into fpA/fpB) the compact upper-case form of a value shaped
 * like an IBAN — two letters, two digits, 11 to 30 letters or digits, with
 * any spaces or hyphens between — and says whether it was one.
 */
export function ibanFingerprint(value: string): boolean {
  if (value.length < 15) return false;
  start();
  for (let i = 0; i < value.length; i++) {
    let c = value.charCodeAt(i);
    if (c === 32 || c === 45 || (c >= 9 && c <= 13)) continue;
    if (c >= 97 && c <= 122) c -= 32;
    const digit = c >= 48 && c <= 57;
    const letter = c >= 65 && c <= 90;
    if (hn < 2 ? !letter : hn < 4 ? !digit : !(digit || letter)) return false;
    mix(c);
    if (hn > 34) return false;
  }
  if (hn < 15) return false;
  finish();
  return true;
}

// ---------------------------------------------------------------------------
// Sets of fingerprints.

/** A set of string fingerprints with a 2^-64-ish false-positive rate and 8 bytes per slot. */
export class FingerprintSet {
  private slots = new Uint32Array(2 * 1024);
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds a string's fingerprint. */
  add(s: string): void {
    fingerprintOf(s);
    this.addFingerprint(fpA, fpB);
  }

  /** True when the string's fingerprint is in the set. */
  has(s: string): boolean {
    fingerprintOf(s);
    return this.hasFingerprint(fpA, fpB);
  }

  /** Adds a fingerprint computed by this module's functions (fpA, fpB). */
  addFingerprint(a: number, b: number): void {
    if ((this.count + 1) * 2 > this.slots.length / 2) this.grow();
    if (this.insert(a, b)) this.count++;
  }

  /** True when the fingerprint is in the set. */
  hasFingerprint(a: number, b: number): boolean {
    if (this.count === 0) return false;
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
