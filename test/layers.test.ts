/**
 * The direction imports run in: the CLI (scripts/) calls the pipeline stages
 * (src/snapshot, src/staging, src/diff, src/promote, src/audit), which stand
 * on shared foundations (src/pg, src/os, src/format, src/catalog, src/config,
 * src/apply, src/errors.ts). Nothing in src/ reaches out of src/ (seeders/,
 * infra/, bench/, scripts/ sit on top of it), a stage never imports a later
 * one (diff never imports promote), a foundation never imports a stage, and
 * the Pulumi program in infra/ loads only what a container needs (not the
 * capture, its faker generators or its PII heuristics). Imports are read
 * from the TypeScript syntax tree, so a comment or a string that looks like
 * an import counts for nothing; type-only imports count as dependencies too,
 * except for what infra/ loads at run time.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const REPO = resolve(import.meta.dirname, "..");

/** One import of a file: the module it names, and whether it is erased at run time. */
interface ImportOf {
  readonly specifier: string;
  readonly typeOnly: boolean;
}

/** Every module a file imports or re-exports: static, side-effect and dynamic `import("…")`. */
function importsOf(file: string, text = readFileSync(file, "utf8")): ImportOf[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: ImportOf[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ specifier: node.moduleSpecifier.text, typeOnly: node.importClause?.isTypeOnly === true });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg !== undefined && ts.isStringLiteralLike(arg)) out.push({ specifier: arg.text, typeOnly: false });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push({ specifier: node.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/** A repo-relative path with forward slashes. */
function repoPath(absolute: string): string {
  return relative(REPO, absolute).split(sep).join("/");
}

/** The repo-relative file a relative specifier names (as written, or with .ts or /index.ts added); null for a package. */
function resolveImport(from: string, specifier: string): string | null {
  if (!specifier.startsWith(".")) return null;
  const base = resolve(dirname(join(REPO, from)), specifier);
  for (const candidate of [base, `${base}.ts`, join(base, "index.ts")]) {
    try {
      if (statSync(candidate).isFile()) return repoPath(candidate);
    } catch {
      // not this one
    }
  }
  return repoPath(base);
}

/** The package a bare specifier names ("@faker-js/faker/locale/en" → "@faker-js/faker"). */
function packageOf(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

/** Source files under a repo folder. */
function sourcesUnder(folder: string): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return name === "node_modules" ? [] : walk(path);
      return /\.(ts|mts|mjs|js)$/.test(name) && !name.endsWith(".d.ts") ? [repoPath(path)] : [];
    });
  return walk(join(REPO, folder));
}

/** Every relative import of every file under src/, resolved. */
function srcEdges(): Array<{ from: string; to: string }> {
  return sourcesUnder("src").flatMap((from) =>
    importsOf(join(REPO, from)).flatMap(({ specifier }) => {
      const to = resolveImport(from, specifier);
      return to === null ? [] : [{ from, to }];
    }),
  );
}

/** The pipeline stages in the order data flows through them: a stage may import an earlier one, never a later one. */
const STAGES = ["src/snapshot/", "src/staging/", "src/diff/", "src/promote/", "src/audit/"] as const;
/** What the stages stand on. */
const FOUNDATIONS = ["src/errors.ts", "src/pg/", "src/os/", "src/format/", "src/catalog/", "src/config/", "src/apply/"] as const;
/**
 * Files in a stage's folder that every stage may import: the diff's data model (what the diff stage writes and
 * apply and promotion read, as the snapshot's manifest is for the later stages) and the audit trail every stage
 * appends to. They are foundations that live with their stage, so they obey a foundation's rule themselves.
 */
const SHARED = ["src/diff/types.ts", "src/audit/chain.ts", "src/audit/journal.ts", "src/audit/anchors.ts"] as const;

/** Which rule an import of `to` by `from` breaks, or null. */
function broken(from: string, to: string): string | null {
  if (!to.startsWith("src/")) return "src/ imports only from src/ (seeders/, infra/, bench/ and scripts/ build on it)";
  const shared = (path: string) => (SHARED as readonly string[]).includes(path);
  if (shared(to)) return null;
  const stageOf = (path: string) => STAGES.findIndex((s) => path.startsWith(s));
  const fromStage = stageOf(from);
  const toStage = stageOf(to);
  if ((shared(from) || FOUNDATIONS.some((f) => from.startsWith(f))) && toStage >= 0) return `a foundation imports no pipeline stage (${STAGES[toStage]})`;
  if (fromStage >= 0 && toStage > fromStage) return `${STAGES[fromStage]} runs before ${STAGES[toStage]} and never imports it`;
  return null;
}

/** Files and packages infra/'s program loads at run time, from Pulumi's entry, each with the chain that reached it. */
function runtimeGraph(entry: string): Map<string, string[]> {
  const reached = new Map<string, string[]>([[entry, [entry]]]);
  const queue = [entry];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    const chain = reached.get(file)!;
    if (!/\.(ts|mts|mjs|js)$/.test(file)) continue;
    for (const { specifier, typeOnly } of importsOf(join(REPO, file))) {
      if (typeOnly || specifier.startsWith("node:")) continue;
      const to = resolveImport(file, specifier) ?? packageOf(specifier);
      if (reached.has(to)) continue;
      reached.set(to, [...chain, to]);
      if (to.includes("/") && !to.startsWith("@")) queue.push(to);
    }
  }
  return reached;
}

describe("imports run one way", () => {
  it("the import reader sees static, re-exported, dynamic and type-only imports, and nothing in comments", () => {
    const sample = [
      'import { a } from "./a.ts";',
      'import type { B } from "./b.ts";',
      'import "./c.ts";',
      'export type { D } from "./d.ts";',
      'export * from "./e.ts";',
      'let f: import("./f.ts").F;',
      '// import { x } from "../seeders/restore.ts";',
      "const s = 'from \"../infra/index.ts\"';",
      'const g = await import("./g.ts");',
    ].join("\n");
    const specifiers = importsOf("sample.ts", sample);
    expect(specifiers).toEqual([
      { specifier: "./a.ts", typeOnly: false },
      { specifier: "./b.ts", typeOnly: true },
      { specifier: "./c.ts", typeOnly: false },
      { specifier: "./d.ts", typeOnly: true },
      { specifier: "./e.ts", typeOnly: false },
      { specifier: "./f.ts", typeOnly: true },
      { specifier: "./g.ts", typeOnly: false },
    ]);
  });

  it("the rules catch the imports they forbid", () => {
    expect(broken("src/staging/local-backend.ts", "seeders/restore.ts")).not.toBeNull();
    expect(broken("src/staging/pulumi-backend.ts", "infra/settings.ts")).not.toBeNull();
    expect(broken("src/diff/diff.ts", "src/promote/apply.ts")).not.toBeNull();
    expect(broken("src/snapshot/capture.ts", "src/promote/rows.ts")).not.toBeNull();
    expect(broken("src/config/config.ts", "src/snapshot/rules.ts")).not.toBeNull();
    expect(broken("src/audit/chain.ts", "src/diff/canonical.ts")).not.toBeNull();
    expect(broken("src/format/canonical.ts", "src/audit/verify.ts")).not.toBeNull();
    expect(broken("src/apply/apply.ts", "src/diff/diff.ts")).not.toBeNull();
    // Allowed: an earlier stage, a foundation, a shared file.
    expect(broken("src/promote/promote.ts", "src/diff/store.ts")).toBeNull();
    expect(broken("src/diff/diff.ts", "src/apply/apply.ts")).toBeNull();
    expect(broken("src/apply/apply.ts", "src/diff/types.ts")).toBeNull();
    expect(broken("src/staging/run.ts", "src/audit/journal.ts")).toBeNull();
  });

  it("no file under src/ imports from seeders/, infra/, bench/ or scripts/, a later stage, or (as a foundation) any stage", () => {
    const edges = srcEdges();
    expect(edges.length).toBeGreaterThan(100);
    const violations = edges.flatMap(({ from, to }) => {
      const why = broken(from, to);
      return why === null ? [] : [`${from} → ${to}: ${why}`];
    });
    expect(violations).toEqual([]);
  });

  it("the Pulumi program loads neither faker nor the capture's PII code", () => {
    const graph = runtimeGraph("infra/index.mjs");
    expect(graph.has("infra/index.ts")).toBe(true);
    expect(graph.has("@pulumi/pulumi")).toBe(true);
    const forbidden = [...graph.entries()].filter(([to]) => to === "@faker-js/faker" || /^src\/snapshot\/(capture|mask|pii[^/]*)\.ts$/.test(to));
    expect(forbidden.map(([, chain]) => chain.join(" → "))).toEqual([]);
  });
});
