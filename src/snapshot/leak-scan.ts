/**
 * The leak scan: after capture, prove that no original value of a masked
 * column appears anywhere in the snapshot, in any column, as a whole field
 * or as an identifier inside free text. Originals are held only as 64-bit
 * fingerprints of their normal forms (never the values; `fingerprint.ts`).
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
import {
  FingerprintSet,
  MAX_DIGITS,
  MIN_DIGITS,
  digitFingerprint,
  extensionFingerprint,
  finish,
  fpA,
  fpB,
  hn,
  ibanFingerprint,
  mix,
  scanText,
  seenAt,
  seenDigits,
  seenNumberRun,
  seenNumeric,
  start,
} from "./fingerprint.ts";

/** Originals shorter than this cannot be told apart from ordinary words and numbers. */
export const MIN_LEAK_LENGTH = 6;

/** Column types whose text cannot spell an original (numbers, dates, booleans): never scanned. */
export const UNSCANNED_TYPES =
  /^(smallint|integer|bigint|numeric(\(.*\))?|real|double precision|boolean|date|time(stamp)?( ?\(\d\))?( with(out)? time zone)?|interval.*|uuid|money|oid)$/;

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
