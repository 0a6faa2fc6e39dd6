/**
 * gallery_images: the table of the incident. Ids 439..608 are the current
 * gallery, all present; 30 sparse ids below 439 are older uploads that
 * survived clean-ups, so the id range has holes, as real data does.
 */
import { REFERENCE_NOW } from "../booking-facts.ts";
import { copyText, DAY, timestamp } from "../copy-text.ts";
import { GALLERY_FIRST_CURRENT_ID, GALLERY_LAST_ID, GALLERY_LEGACY_ROWS } from "../counts.ts";
import { asciiSlug, fakerFor, prngFor, type TableSource } from "./source.ts";

const CATEGORIES = ["rooms", "suites", "restaurant", "bar", "spa", "pool", "garden", "exterior", "events", "breakfast"] as const;
const SIZES = [
  [1920, 1080],
  [1080, 1350],
  [2048, 1365],
  [1600, 1067],
  [1200, 1200],
] as const;
// Titles someone typed by hand: quotes, dashes, accents and emoji must survive COPY.
const HAND_TITLES = [
  'Chef\'s "tasting" table',
  "Café terrace at dusk",
  "Sauna — Finnish style",
  "Rooftop bar 🍸",
  "Suite 12 \\ sea view",
  "Crème brûlée, house recipe",
];
const LEGACY_START = Date.UTC(2018, 2, 1);
const CURRENT_START = Date.UTC(2023, 0, 9);

/** The gallery_images rows (the same ~200 at every scale). */
export function galleryImagesSource(): TableSource {
  const faker = fakerFor("gallery_images");
  const prng = prngFor("gallery_images");
  const legacy = new Set<number>();
  while (legacy.size < GALLERY_LEGACY_ROWS) legacy.add(1 + prng.int(GALLERY_FIRST_CURRENT_ID - 1));
  const ids = [...legacy].sort((a, b) => a - b);
  for (let id = GALLERY_FIRST_CURRENT_ID; id <= GALLERY_LAST_ID; id++) ids.push(id);

  const lines = ids.map((id, i) => {
    const isLegacy = id < GALLERY_FIRST_CURRENT_ID;
    const category = prng.pick(CATEGORIES);
    const title = i % 29 === 7 ? prng.pick(HAND_TITLES) : `${capitalize(faker.word.adjective())} ${faker.word.noun()} (${category})`;
    const url = isLegacy
      ? `https://harbourhouse.example/uploads/IMG_${String(1000 + prng.int(9000))}.JPG`
      : `https://cdn.harbourhouse.example/gallery/${category}/${id}-${asciiSlug(title)}.webp`;
    const published = isLegacy ? prng.chance(0.4) : prng.chance(0.85);
    const size = isLegacy && prng.chance(0.5) ? null : prng.pick(SIZES);
    // Created in id order: legacy uploads over five years, the current gallery over eighteen months.
    const createdAt = isLegacy ? LEGACY_START + i * 55 * DAY + prng.int(DAY) : CURRENT_START + (id - GALLERY_FIRST_CURRENT_ID) * 3 * DAY + prng.int(DAY);
    const updatedAt = prng.chance(0.3) ? Math.min(REFERENCE_NOW, createdAt + prng.int(200 * DAY)) : createdAt;
    return [
      String(id),
      copyText(title),
      copyText(url),
      category,
      published ? "t" : "f",
      size === null ? "\\N" : String(size[0]),
      size === null ? "\\N" : String(size[1]),
      timestamp(createdAt),
      timestamp(updatedAt),
    ].join("\t");
  });

  return {
    table: "gallery_images",
    columns: ["id", "title", "url", "category", "published", "width", "height", "created_at", "updated_at"],
    rows: lines.length,
    line: (i) => lines[i] as string,
  };
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
