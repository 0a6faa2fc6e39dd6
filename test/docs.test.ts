/**
 * The docs live in the repository and say what is there: every relative link
 * in a Markdown file (the README, docs/, bench/README.md) resolves to a file
 * or folder inside the repository, so a clone has no broken links and none
 * that point at something outside it; and every test that
 * docs/ARCHITECTURE.md names as guarding an invariant exists under that name.
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";

const REPO = resolve(import.meta.dirname, "..");

/** Markdown files of the repository: hidden folders (.git, .airlock, .ci), node_modules and dist/ left out. */
function markdownFiles(dir = REPO): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (name.startsWith(".") || name === "node_modules" || name === "dist") return [];
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return markdownFiles(path);
    return name.endsWith(".md") ? [path] : [];
  });
}

/** Link targets of a Markdown text: inline links and images, reference definitions, HTML href/src; code is not prose. */
function linkTargets(markdown: string): string[] {
  const prose = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "").replace(/(`+)[\s\S]*?\1/g, "");
  const out: string[] = [];
  for (const m of prose.matchAll(/!?\[(?:[^\]\\]|\\.)*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g))
    out.push(m[1]!.replace(/^<|>$/g, ""));
  for (const m of prose.matchAll(/^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/gm)) out.push(m[1]!.replace(/^<|>$/g, ""));
  for (const m of prose.matchAll(/\b(?:href|src)\s*=\s*["']([^"']+)["']/gi)) out.push(m[1]!);
  return out;
}

/** What is wrong with a link from `file` (absolute path), or null: leaving the repository, or naming nothing. */
function brokenLink(file: string, target: string): string | null {
  // Another scheme (https:, mailto:) is not a file of the repository; an anchor stays on the page.
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#")) return null;
  const path = decodeURIComponent(target.replace(/[?#].*$/, ""));
  if (path === "") return null;
  if (path.startsWith("/")) return "an absolute path: it names this machine's files, not the repository's";
  const resolved = resolve(dirname(file), path);
  const inRepo = relative(REPO, resolved);
  if (inRepo.startsWith("..") || inRepo.split(sep)[0] === "..") return "leaves the repository";
  if (!existsSync(resolved)) return "names a file that does not exist";
  return null;
}

/** Every broken relative link of the repository's Markdown, as "file: target (why)". */
function brokenLinks(files: readonly string[]): string[] {
  return files.flatMap((file) =>
    linkTargets(readFileSync(file, "utf8")).flatMap((target) => {
      const why = brokenLink(file, target);
      return why === null ? [] : [`${relative(REPO, file)}: ${target} (${why})`];
    }),
  );
}

/** Whitespace runs as one space, so a title wrapped in the source still matches. */
const squash = (s: string) => s.replace(/\s+/g, " ");

/** The tests a Markdown text names, as `test/<file>` › *title*, *title*…: file and titles (a trailing "…" dropped). */
function namedTests(markdown: string): Array<{ file: string; title: string }> {
  const out: Array<{ file: string; title: string }> = [];
  for (const m of markdown.matchAll(/`(test\/[^`]+\.test\.ts)` › ((?:\*[^*]+\*(?:, )?)+)/g)) {
    for (const t of m[2]!.matchAll(/\*([^*]+)\*/g)) out.push({ file: m[1]!, title: t[1]!.replace(/…$/, "").trim() });
  }
  return out;
}

describe("docs in the repository", () => {
  it("the link checker finds what it must and nothing else", () => {
    const file = join(REPO, "docs", "sample.md");
    const sample = [
      "[up](../README.md) [arch](ARCHITECTURE.md#layers) [web](https://example.com) [self](#top) ![img](../bench/run.ts)",
      "[gone](missing.md) [outside](../../shared/DESIGN.md) [abs](/etc/passwd)",
      "[ref]: ../package.json",
      "[badref]: ./nowhere.md",
      '<a href="../nowhere-either.md">x</a>',
      "`[code](../../in-code.md)` and",
      "```",
      "[fenced](../../in-fence.md)",
      "```",
    ].join("\n");
    const targets = linkTargets(sample);
    expect(targets).not.toContain("../../in-code.md");
    expect(targets).not.toContain("../../in-fence.md");
    const broken = targets.flatMap((t) => {
      const why = brokenLink(file, t);
      return why === null ? [] : [`${t}: ${why}`];
    });
    expect(broken).toEqual([
      "missing.md: names a file that does not exist",
      "../../shared/DESIGN.md: leaves the repository",
      "/etc/passwd: an absolute path: it names this machine's files, not the repository's",
      "./nowhere.md: names a file that does not exist",
      "../nowhere-either.md: names a file that does not exist",
    ]);
  });

  it("no relative link in the README, docs/ or any other Markdown file leaves the repository or names a missing file", () => {
    const files = markdownFiles();
    expect(files.map((f) => relative(REPO, f))).toEqual(expect.arrayContaining(["README.md", join("docs", "ARCHITECTURE.md"), join("bench", "README.md")]));
    expect(brokenLinks(files)).toEqual([]);
  });

  it("the README links to docs/ARCHITECTURE.md for the architecture and its invariants", () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    expect(linkTargets(readme)).toContain("docs/ARCHITECTURE.md");
  });

  it("every test docs/ARCHITECTURE.md names as guarding an invariant exists under that name", () => {
    const architecture = readFileSync(join(REPO, "docs", "ARCHITECTURE.md"), "utf8");
    const named = namedTests(architecture);
    // One or more for each of the 14 invariants.
    expect(named.length).toBeGreaterThanOrEqual(14);
    const missing = named.filter(({ file, title }) => {
      const path = join(REPO, file);
      return !existsSync(path) || !squash(readFileSync(path, "utf8")).includes(squash(title));
    });
    expect(missing).toEqual([]);
  });
});
