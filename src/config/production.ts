/**
 * Which production database a step reaches: the one the caller names (a URL
 * or a parsed target; the CLI's `--from`/`--to`), else PROD_DATABASE_URL. A
 * variable already set in the environment wins over `.env`, which
 * `loadProject` reads without overriding. One place, so the CLI's commands
 * and a program calling the library pick production the same way.
 */
import { AirlockError } from "../errors.ts";
import { type PgTarget, parseTarget } from "../pg/connect.ts";

/** How a caller names production: a URL, a parsed target, or nothing (PROD_DATABASE_URL). */
export type ProductionInput = PgTarget | string | undefined;

/** PROD_DATABASE_URL, or undefined when it is unset or empty. */
export function productionUrlFromEnv(): string | undefined {
  const url = process.env.PROD_DATABASE_URL;
  return url === undefined || url === "" ? undefined : url;
}

/** The production database given, else PROD_DATABASE_URL, or undefined when there is neither. */
export function optionalProductionTarget(given: ProductionInput): PgTarget | undefined {
  const url = given ?? productionUrlFromEnv();
  if (url === undefined || url === "") return undefined;
  return typeof url === "string" ? parseTarget(url) : url;
}

/**
 * The production database given, else PROD_DATABASE_URL; without either, AIRLOCK_NO_PRODUCTION_URL naming the
 * flag that gives it (`from` for capture, `to` for promote, rollback and audit).
 */
export function productionTarget(given: ProductionInput, flag: "from" | "to"): PgTarget {
  const target = optionalProductionTarget(given);
  if (target === undefined) {
    throw new AirlockError("AIRLOCK_NO_PRODUCTION_URL", "no production database given", {
      hint: `pass --${flag} postgres://… or set PROD_DATABASE_URL in .env`,
    });
  }
  return target;
}
