/**
 * Rendering PII suggestions as the TypeScript users write in
 * airlock.config.ts: one rule (`ruleSource`) or a whole `masking.rules` block
 * (`rulesBlock`, what `airlock snapshot --init-rules` prints).
 */
import type { PiiSuspicion } from "./pii.ts";
import type { MaskRule } from "../config/masking-rules.ts";

/** A rule in the form users write it (MaskRuleInput), as TypeScript source. */
export function ruleSource(rule: MaskRule): string {
  const domain = "domain" in rule && rule.domain !== undefined ? `, domain: ${JSON.stringify(rule.domain)}` : "";
  switch (rule.kind) {
    case "keep":
    case "null":
      return JSON.stringify(rule.kind);
    case "constant":
      return `{ constant: ${JSON.stringify(rule.value)} }`;
    case "hash":
      return domain === "" ? '"hash"' : `{ hash: true${domain} }`;
    case "faker":
      return domain === "" ? JSON.stringify(rule.generator) : `{ faker: ${JSON.stringify(rule.generator)}${domain} }`;
    case "dateShift":
      return `{ dateShift: { maxDays: ${rule.maxDays} }${domain} }`;
    case "custom":
      return `{ custom: ${rule.fn.toString()}${domain} }`;
  }
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/** Renders suggestions as a TypeScript `masking.rules` block for airlock.config.ts (used by `airlock snapshot --init-rules`), one line per column with the reason as a comment. */
export function rulesBlock(suspicions: readonly PiiSuspicion[]): string {
  const lines = ["// Suggested by `airlock snapshot --init-rules`: review each line, then put this block inside `masking` in airlock.config.ts.", "rules: {"];
  for (const s of suspicions) {
    const { schema, table, column } = s.column;
    const key = `${schema}.${table}.${column}`;
    const comment = s.reasons.join("; ").replace(/[\r\n]+/g, " ");
    const line = `${JSON.stringify(key)}: ${ruleSource(s.suggested)}, // ${comment}`;
    // Rule keys are plain identifiers; a name that needs quoting cannot be written as one yet, so it stays visible but inert.
    const expressible = [schema, table, column].every((p) => IDENT.test(p));
    lines.push(expressible ? `  ${line}` : `  // ${line} (cannot be a rule key: the name needs quoting)`);
  }
  lines.push("},");
  return `${lines.join("\n")}\n`;
}
