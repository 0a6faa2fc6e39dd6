/**
 * The leak scan: after capture, prove that no original value of a masked
 * column appears anywhere in the snapshot, in any column, as a whole field
 * or as an identifier inside free text. Originals are held only as 64-bit
 * fingerprints (never the values), in a compact open-addressing table.
 *
 * Values are compared in normal forms, so a reformatted copy is still a copy:
 * - text (names, cities, emails, any whole value): whitespace collapsed and
 *   trimmed, lower-cased, so "ADA@LOVELACE.ORG" is "ada@lovelace.org";
 * - numbers (phones, cards, account and national ids): digits only, so
 *   "+44 20 7946 0958" is "(+44) 20-7946-0958" is "442079460958", inside free
 *   text too; only from MIN_DIGITS digits on (see there);
 * - IBANs: upper-case letters and digits without separators, so
 *   "DE89 3704 0044 0532 0130 00" is "de89370400440532013000", inside free text too.
 *
 * A match of a whole field that is only words (letters, no digits, no "@")
 * is a "word" match: a region named like a masked city is a coincidence of
 * common words more often than a leak, so such a match (or a whole-field
 * date) may be allowed, value by value and with a reason (masking.allow);
 * every other match cannot.
 */

/** Originals shorter than this cannot be told apart from ordinary words and numbers. */
export const MIN_LEAK_LENGTH = 6;

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
const MAX_DIGITS = 34;

/** Column types whose text cannot spell an original (numbers, dates, booleans): never scanned. */
export const UNSCANNED_TYPES = /^(smallint|integer|bigint|numeric(\(.*\))?|real|double precision|boolean|date|time(stamp)?( ?\(\d\))?( with(out)? time zone)?|interval.*|uuid|money|oid)$/;

/** The text normal form: whitespace runs as one space, trimmed, lower case. */
export function normaliseText(value: string): string {
  return value.trim().replace(/\s+/g, " ").toLowerCase();
}

// ---------------------------------------------------------------------------
// Fingerprints: two independent 32-bit hashes (FNV-1a and a multiplicative
// mix) make a 64-bit fingerprint. Computed as a stream of characters so the
// normal forms never have to be built as strings on the hot path.

let h1 = 0;
let h2 = 0;
let hn = 0;
/** The last finished fingerprint. */
let fpA = 0;
let fpB = 0;

function start(): void {
  h1 = 0x811c9dc5;
  h2 = 0x9747b28c;
  hn = 0;
}

function mix(c: number): void {
  h1 = Math.imul(h1 ^ c, 0x01000193);
  h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  h2 ^= h2 >>> 15;
  hn++;
}

/** Finishes into fpA/fpB without disturbing the running state (a prefix can be finished and extended). */
function finish(): void {
  let b = h2 ^ hn;
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35);
  fpA = h1 >>> 0;
  fpB = ((b ^ (b >>> 16)) | 1) >>> 0;
}

function fingerprintOf(s: string): void {
  start();
  for (let i = 0; i < s.length; i++) mix(s.charCodeAt(i));
  finish();
}

/** What one pass over a value learnt besides its text fingerprint. */
let seenDigits = 0;
let seenAt = false;
/** Only digits and the separators numbers are written with (spaces, ( ) . / + -). */
let seenNumeric = true;
/** The longest stretch of digits, spaces and ( ) . / + -: an identifier inside text needs six. */
let seenNumberRun = 0;

const isNumberSeparator = (c: number) => c === 40 || c === 41 || c === 43 || c === 45 || c === 46 || c === 47;

/**
 * Fingerprints the text normal form of `s` (into fpA/fpB) and counts its
 * digits, in one pass. ASCII is lower-cased inline; anything else goes
 * through normaliseText first, so both paths agree. (The hot loop of the
 * scan: local variables only, the same mixing as mix()/finish().)
 */
function scanText(s: string, normalised = false): void {
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

  /** Adds a fingerprint computed elsewhere in this module. */
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

// ---------------------------------------------------------------------------
// Shapes.

const WORD_SPLIT = /[\s,;()<>"'[\]{}|]+/;
const WORD_EDGES = /^[.:!?=]+|[.:!?=]+$/g;
const EMAIL_IN_WORD = /[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/;
// Words inside free text are checked only against originals that identify on
// their own (emails, account and other ids with digits): names and cities are
// ordinary words that free text shares by chance.
const IDENTIFIER_LIKE = /@|\d[\d\s().+-]{4,}\d/;
/** Digit groups joined by at most three separators: "+44 (0) 20-7946 0958". */
const DIGIT_RUN = /\d+(?:[ \t().\/+-]{1,3}\d+)*/g;
/** Where an IBAN may start inside text, written compact or in groups; prefixes of the compact form are checked. */
const IBAN_INSIDE = /(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){11,32}/g;
/** Dates are numbers everybody shares (a birth date in a masked text column is one of a few thousand days). */
const DATE_LIKE = /^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$/;
const PHONE_EXTENSION = /^(.*?\d)\s*(?:x|ext\.?|extension)\s*\d{1,6}$/i;
const NUMERIC_SHAPE = /^[\d\s().\/+-]+$/;

/** A phone with an extension ("555-0123 ext. 12") is also its main number: fingerprints that number's digits. */
function extensionFingerprint(value: string): boolean {
  if (!value.includes("x") && !value.includes("X")) return false;
  const main = PHONE_EXTENSION.exec(value.trim())?.[1];
  return main !== undefined && NUMERIC_SHAPE.test(main) && digitFingerprint(main);
}

/**
 * Fingerprints (into fpA/fpB) the digits of a number written with any
 * separators; false when it has too few or too many digits to count.
 */
function digitFingerprint(value: string): boolean {
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
function ibanFingerprint(value: string): boolean {
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

/** What kind of equality a match is; only "word" and "date" can be allowed. */
export type LeakKind = "word" | "date" | "email" | "number" | "iban" | "value";

/**
 * Whether an equality of this kind may be allowed as a coincidence: a whole
 * field of common words, or a date. Emails, numbers, IBANs and other values
 * with digits identify someone on their own and are always leaks.
 */
export function allowableKind(kind: LeakKind): boolean {
  return kind === "word" || kind === "date";
}

/** A match: its kind and, for whole-field matches, nothing more (never the value). */
export interface LeakMatch {
  readonly kind: LeakKind;
}

const WORD: LeakMatch = { kind: "word" };
const DATE: LeakMatch = { kind: "date" };
const EMAIL: LeakMatch = { kind: "email" };
const NUMBER: LeakMatch = { kind: "number" };
const IBAN: LeakMatch = { kind: "iban" };
const VALUE: LeakMatch = { kind: "value" };

/** Collects originals during capture and scans the written snapshot for them. */
export class LeakScanner {
  /** Text normal forms of originals (numbers that are only digits live in `numbers` instead). */
  private readonly texts = new FingerprintSet();
  /** Digits-only forms of numeric originals and compact forms of IBAN-shaped ones. */
  private readonly compacts = new FingerprintSet();
  /** The originals that are single identifying words, lower-cased. */
  private readonly identifiers = new FingerprintSet();
  /** Normal forms of values the masker produced: a fake that happens to equal some original is not a leak. */
  private readonly producedTexts = new FingerprintSet();
  private readonly producedCompacts = new FingerprintSet();
  private ibans = 0;
  private numbers = 0;
  fieldsScanned = 0;

  /** How many distinct originals (in their normal forms) the scan looks for. */
  get originalsCount(): number {
    return this.texts.size + this.compacts.size;
  }

  /** Records an original value of a masked column (fingerprints of its normal forms). */
  addOriginal(value: string | null): void {
    if (value === null || value.length < MIN_LEAK_LENGTH) return;
    scanText(value);
    const textA = fpA;
    const textB = fpB;
    const numeric = seenNumeric;
    const digitCount = seenDigits;
    const at = seenAt;
    const numberRun = seenNumberRun;
    const date = numeric && DATE_LIKE.test(value.trim());
    // A number is the same number however it is written: only its digits count, and only from MIN_DIGITS on.
    // A phone with an extension ("555-0123 ext. 12") is also its main number.
    if (numeric ? !date && digitFingerprint(value) : digitCount >= MIN_DIGITS && !at && extensionFingerprint(value)) {
      this.compacts.addFingerprint(fpA, fpB);
      this.numbers++;
    }
    if (!numeric || date) this.texts.addFingerprint(textA, textB);
    if (digitCount >= 2 && !numeric && !at && ibanFingerprint(value)) {
      this.compacts.addFingerprint(fpA, fpB);
      this.ibans++;
    }
    // Numbers alone are compared by their digits (above), so that short ones never match as words.
    if ((at || numberRun >= 6) && !numeric && IDENTIFIER_LIKE.test(value) && !WORD_SPLIT.test(value.trim())) this.identifiers.addFingerprint(textA, textB);
  }

  /** Records a value the masker produced. */
  addProduced(value: string | null): void {
    if (value === null || value.length < MIN_LEAK_LENGTH) return;
    scanText(value);
    this.producedTexts.addFingerprint(fpA, fpB);
    const numeric = seenNumeric;
    if (numeric && digitFingerprint(value)) this.producedCompacts.addFingerprint(fpA, fpB);
    if (!numeric && ibanFingerprint(value)) this.producedCompacts.addFingerprint(fpA, fpB);
  }

  /** True when a field (or an identifier in it) is an original value of a masked column. */
  leaks(value: string | null): boolean {
    return this.find(value) !== undefined;
  }

  /**
   * The first original of a masked column found in a field: the whole field
   * in its text normal form, or inside it an email or other identifying word,
   * a number (digits only) or an IBAN (compact). Undefined when clean.
   */
  find(value: string | null): LeakMatch | undefined {
    if (value === null || value.length < MIN_LEAK_LENGTH || this.originalsCount === 0) return undefined;
    this.fieldsScanned++;
    scanText(value);
    const digits = seenDigits;
    const at = seenAt;
    const numberRun = seenNumberRun;
    // A field that is only a number is compared by its digits alone (so short ids never match as text); a date as text.
    const date = seenNumeric && DATE_LIKE.test(value.trim());
    if ((!seenNumeric || date) && this.texts.hasFingerprint(fpA, fpB) && !this.producedTexts.hasFingerprint(fpA, fpB)) {
      return at ? EMAIL : date ? DATE : digits > 0 ? VALUE : WORD;
    }
    if (digits >= MIN_DIGITS && this.numbers > 0 && this.findNumber(value)) return NUMBER;
    if (digits >= 2 && this.ibans > 0 && value.length >= 15 && this.findIban(value)) return IBAN;
    if ((at || numberRun >= 6) && this.identifiers.size > 0) return this.findIdentifier(value);
    return undefined;
  }

  /** Any run of digit groups whose digits (some consecutive groups of it) are a numeric original. */
  private findNumber(value: string): boolean {
    for (const m of value.matchAll(DIGIT_RUN)) {
      const run = m[0];
      if (run.length < MIN_DIGITS) continue;
      // Group boundaries: where each group of digits starts.
      for (let from = 0; from < run.length; from++) {
        if (!isDigit(run.charCodeAt(from)) || (from > 0 && isDigit(run.charCodeAt(from - 1)))) continue;
        start();
        for (let i = from; i < run.length && hn <= MAX_DIGITS; i++) {
          const c = run.charCodeAt(i);
          if (!isDigit(c)) continue;
          mix(c);
          const groupEnds = i + 1 === run.length || !isDigit(run.charCodeAt(i + 1));
          if (!groupEnds || hn < MIN_DIGITS) continue;
          finish();
          if (this.compacts.hasFingerprint(fpA, fpB) && !this.producedCompacts.hasFingerprint(fpA, fpB)) return true;
        }
      }
    }
    return false;
  }

  /** Any IBAN-shaped stretch whose compact form (or a prefix of 15–34 characters of it) is an original IBAN. */
  private findIban(value: string): boolean {
    for (const m of value.matchAll(IBAN_INSIDE)) {
      start();
      const text = m[0];
      for (let i = 0; i < text.length && hn < 34; i++) {
        let c = text.charCodeAt(i);
        if (c === 32 || c === 45) continue;
        if (c >= 97 && c <= 122) c -= 32;
        mix(c);
        if (hn < 15) continue;
        finish();
        if (this.compacts.hasFingerprint(fpA, fpB) && !this.producedCompacts.hasFingerprint(fpA, fpB)) return true;
      }
    }
    return false;
  }

  /** Words of free text that are identifying originals (an email in a sentence). */
  private findIdentifier(value: string): LeakMatch | undefined {
    for (const raw of value.split(WORD_SPLIT)) {
      if (raw.length < MIN_LEAK_LENGTH) continue;
      const word = raw.replace(WORD_EDGES, "");
      const email = word.includes("@") ? EMAIL_IN_WORD.exec(word)?.[0] : undefined;
      for (const candidate of email === undefined || email === word ? [word] : [word, email]) {
        if (candidate.length < MIN_LEAK_LENGTH) continue;
        scanText(candidate);
        if (this.identifiers.hasFingerprint(fpA, fpB) && !this.producedTexts.hasFingerprint(fpA, fpB)) return seenAt ? EMAIL : VALUE;
      }
    }
    return undefined;
  }
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
