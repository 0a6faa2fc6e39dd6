/**
 * The schema a catalog model read back from disk (a snapshot's catalog.json)
 * is checked against. Its bytes are checked against the manifest's sha256
 * first, so a file that gets here is as a capture wrote it: the schema is
 * there to name the field of a model this version does not read (one
 * written by another version), not to re-check every definition. It checks
 * the model's frame and what every object has (kind, id, owner, privileges,
 * comment); the rest of each object is taken as its kind's type.
 */
import { z } from "zod";
import type { CatalogModel, CatalogObject, ObjectKind } from "./model.ts";

/** Every kind of object, as data (the type ObjectKind is checked to hold exactly these). */
export const OBJECT_KINDS = [
  "database",
  "schema",
  "extension",
  "type",
  "sequence",
  "function",
  "table",
  "column",
  "constraint",
  "index",
  "view",
  "matview",
  "trigger",
  "rule",
  "policy",
  "cast",
  "operator",
  "event_trigger",
  "default_acl",
  "setting",
] as const satisfies readonly ObjectKind[];
// A kind added to ObjectKind but not here fails to compile.
const everyKind: ObjectKind extends (typeof OBJECT_KINDS)[number] ? true : never = true;
void everyKind;

const catalogObjectSchema = z
  .looseObject({
    kind: z.enum(OBJECT_KINDS),
    id: z.string(),
    owner: z.string().optional(),
    acl: z.array(z.string()).optional(),
    aclDefault: z.array(z.string()).optional(),
    comment: z.string().nullable().optional(),
  })
  // The rest of the object is its kind's (checked by the sha256, see above): the same value, typed as such.
  .transform((o) => o as unknown as CatalogObject);

/** A whole model: objects by id, and what each depends on. */
export const catalogModelSchema: z.ZodType<CatalogModel> = z.object({
  objects: z.record(z.string(), catalogObjectSchema),
  dependsOn: z.record(z.string(), z.array(z.string())),
});
