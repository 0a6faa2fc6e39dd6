/**
 * guests: the personal data masking exists for. Names, streets and cities come
 * from pools that faker fills once; rows pick from them with the table's Prng,
 * so 400,000 guests cost 400,000 cheap picks, not millions of faker calls.
 */
import { guestCreatedAt, REFERENCE_NOW } from "../booking-facts.ts";
import { copyText, DAY, timestamp } from "../copy-text.ts";
import type { Prng } from "../prng.ts";
import { asciiSlug, fakerFor, pool, prngFor, type TableSource } from "./source.ts";

// Real guest lists are not all ASCII: apostrophes, accents, other scripts.
const EXTRA_FIRST = ["Zoë", "José", "Siobhán", "Søren", "Łukasz", "Chloé", "Björn", "Renée", "D'Arcy", "Ines", "Yūki", "Mei"];
const EXTRA_LAST = ["O'Brien", "Müller", "García", "Ørsted", "Nguyễn", "Dvořák", "de la Cruz", "Kowalczyk", "van der Berg", "Smith-Jones", "D'Souza", "Öztürk"];
const MAIL_DOMAINS = [
  "gmail.com",
  "gmail.com",
  "gmail.com",
  "yahoo.com",
  "outlook.com",
  "hotmail.co.uk",
  "web.de",
  "gmx.de",
  "orange.fr",
  "icloud.com",
  "proton.me",
];
const COUNTRIES = [
  "United Kingdom",
  "United Kingdom",
  "United Kingdom",
  "Germany",
  "Germany",
  "France",
  "Netherlands",
  "United States",
  "United States",
  "Spain",
  "Italy",
  "Switzerland",
  "Sweden",
  "Denmark",
  "Ireland",
  "Japan",
  "Österreich",
  "Côte d'Ivoire",
];
const PHONE_FORMATS = [
  "+44 7### ######",
  "+44 20 #### ####",
  "+49 15# #######",
  "+33 6 ## ## ## ##",
  "+1 (###) ###-####",
  "+31 6 ########",
  "07### ######",
  "+41 7# ### ## ##",
];

interface Named {
  readonly name: string;
  readonly slug: string;
}

/** The guests rows at a given count. */
export function guestsSource(rows: number): TableSource {
  const faker = fakerFor("guests");
  const prng = prngFor("guests");
  const named = (name: string): Named => ({ name, slug: asciiSlug(name) || "guest" });
  const firstNames = [...pool(600, () => faker.person.firstName()), ...EXTRA_FIRST].map(named);
  const lastNames = [...pool(600, () => faker.person.lastName()), ...EXTRA_LAST].map(named);
  const streets = pool(800, () => faker.location.street());
  const places = pool(400, () => ({ city: faker.location.city(), country: prng.pick(COUNTRIES) }));
  const domains = [...MAIL_DOMAINS, ...pool(40, () => faker.internet.domainName())];

  return {
    table: "guests",
    columns: ["id", "full_name", "email", "phone", "street_address", "city", "country", "created_at", "updated_at"],
    rows,
    line(i) {
      const id = i + 1;
      const first = prng.pick(firstNames);
      const last = prng.pick(lastNames);
      // The id makes every email unique however often a name repeats.
      const email = `${first.slug}.${last.slug}${id}@${prng.pick(domains)}`;
      const phone = prng.chance(0.12) ? null : phoneNumber(prng);
      const hasAddress = !prng.chance(0.04);
      const place = prng.pick(places);
      const createdAt = guestCreatedAt(id, rows) + prng.int(12 * 3_600_000);
      const updatedAt = prng.chance(0.3) ? Math.min(REFERENCE_NOW, createdAt + prng.int(400 * DAY)) : createdAt;
      return `${id}\t${copyText(`${first.name} ${last.name}`)}\t${copyText(email)}\t${copyText(phone)}\t${hasAddress ? copyText(`${1 + prng.int(240)} ${prng.pick(streets)}`) : "\\N"}\t${hasAddress ? copyText(place.city) : "\\N"}\t${hasAddress ? copyText(place.country) : "\\N"}\t${timestamp(createdAt)}\t${timestamp(updatedAt)}`;
    },
  };
}

function phoneNumber(prng: Prng): string {
  const format = prng.pick(PHONE_FORMATS);
  let out = "";
  for (let i = 0; i < format.length; i++) {
    const c = format[i] as string;
    out += c === "#" ? String(prng.int(10)) : c;
  }
  return out;
}
