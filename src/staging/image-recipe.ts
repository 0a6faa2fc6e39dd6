/**
 * The recipe of Airlock's own PostgreSQL 15 image, and the tag derived from
 * it: where no registry can be reached, the docker backend's containers run an
 * image built locally from Debian's packages (image.ts builds it). The tag is
 * the recipe's content hash, so a changed recipe names a new image and the same
 * recipe finds the one already built.
 */
import { canonicalJson, sha256Hex } from "../format/canonical.ts";

/** How an image is made: everything here decides its content, so all of it goes into the hash. */
export interface ImageRecipe {
  /** Bumped when the builder changes what it does with the same fields. */
  readonly format: number;
  /** The Debian release debootstrap installs. */
  readonly suite: string;
  /** debootstrap's variant: minbase is the essential packages plus apt. */
  readonly variant: "minbase";
  /** Installed on top of the variant. */
  readonly packages: readonly string[];
  /** The PostgreSQL major version the packages hold: the tag starts with it. */
  readonly postgresMajor: number;
  /** Environment of every container of the image (`ENV`). */
  readonly env: Readonly<Record<string, string>>;
  /** The default command (`CMD`): a shell, as Debian's own images have. */
  readonly cmd: readonly string[];
  /** Paths (relative to the root; `*` matches within one name) removed before import. */
  readonly remove: readonly string[];
  /** Kept although a pattern in `remove` matches them (licences, glibc's locale aliases). */
  readonly keep: readonly string[];
  /** Commands the container's entrypoint runs: the build fails when the image lacks one. */
  readonly requiredCommands: readonly string[];
}

/** The label every Airlock image carries (value: what it holds). */
export const IMAGE_LABEL = "airlock.image";
/** The label holding the full sha256 of the recipe the image was built from. */
export const RECIPE_LABEL = "airlock.image.recipe";
/** The label holding the exact PostgreSQL server version in the image (not part of the recipe: measured after install). */
export const POSTGRES_VERSION_LABEL = "airlock.image.postgres";
/** The repository part of every tag. */
export const IMAGE_REPOSITORY = "airlock-postgres";
/** Where debootstrap downloads from unless told otherwise. */
export const DEFAULT_MIRROR = "http://deb.debian.org/debian";

const PG_BIN = "/usr/lib/postgresql/15/bin";

/** The recipe `airlock image build` uses. */
export const IMAGE_RECIPE: ImageRecipe = {
  format: 1,
  suite: "bookworm",
  variant: "minbase",
  // minbase already has bash, coreutils (sha256sum, cp), findutils, gzip and util-linux (setpriv);
  // postgresql-15 brings the server, initdb, pg_ctl, psql and pg_isready.
  packages: ["postgresql-15"],
  postgresMajor: 15,
  env: {
    PATH: `${PG_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    LANG: "C.UTF-8",
  },
  cmd: ["bash"],
  remove: [
    // apt's package lists and downloaded packages: nothing in a session container runs apt.
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/debconf/*-old",
    "var/log/*.log",
    "var/log/apt/*",
    "var/log/postgresql/*",
    // Documentation, manual pages and message translations (containers run with LANG=C.UTF-8).
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/postgresql/15/man",
    // The cluster Debian's postinst created: the container initialises its own.
    "var/lib/postgresql/15/main",
    "etc/postgresql/15/main",
    // A key made at install time would be the same in every container of the image; nothing uses it.
    "etc/ssl/private/ssl-cert-snakeoil.key",
    "etc/ssl/certs/ssl-cert-snakeoil.pem",
    // The build machine's own names and resolver: the engine gives each container its own.
    "etc/hostname",
    "etc/resolv.conf",
  ],
  keep: ["usr/share/doc/*/copyright", "usr/share/locale/locale.alias"],
  requiredCommands: ["bash", "setpriv", "sha256sum", "gzip", "cp", "find", "pg_isready", "psql", "initdb", "pg_ctl", "postgres"],
};

/** The sha256 (hex) of a recipe's canonical JSON: equal content, equal hash, whatever the key order. */
export function recipeHash(recipe: ImageRecipe = IMAGE_RECIPE): string {
  return sha256Hex(canonicalJson(recipe));
}

/** The tag of the image a recipe makes: `airlock-postgres:15-<first 12 hex of its hash>`. */
export function imageTag(recipe: ImageRecipe = IMAGE_RECIPE): string {
  return `${IMAGE_REPOSITORY}:${recipe.postgresMajor}-${recipeHash(recipe).slice(0, 12)}`;
}

/** The tag of the image the current recipe makes: the docker backend's default image. */
export function defaultImageTag(): string {
  return imageTag(IMAGE_RECIPE);
}

/** The Dockerfile instructions `docker import` applies (ENV, CMD, LABEL); the recipe's hash and the measured version go in labels. */
export function importChanges(recipe: ImageRecipe, postgresVersion: string | undefined): string[] {
  const labels: Record<string, string> = { [IMAGE_LABEL]: "postgres", [RECIPE_LABEL]: recipeHash(recipe) };
  if (postgresVersion !== undefined) labels[POSTGRES_VERSION_LABEL] = postgresVersion;
  return [
    ...Object.entries(recipe.env).map(([name, value]) => `ENV ${name}=${value}`),
    `CMD ${JSON.stringify(recipe.cmd)}`,
    ...Object.entries(labels).map(([name, value]) => `LABEL ${name}=${JSON.stringify(value)}`),
  ];
}
