// Builds the dashboard into ../build/web (never committed): one script and one style sheet,
// minified, with content hashes in their names so CloudFront and browsers may keep them for good,
// and index.html (always revalidated) naming them. Fails when the JavaScript and CSS together pass
// the budget of 100 KB gzipped (docs/dashboard.md, Budget).
//
//   node build.mjs [--out DIR]
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const outArg = process.argv.indexOf("--out");
const out = resolve(outArg > 0 ? process.argv[outArg + 1] : join(here, "..", "build", "web"));
const BUDGET_GZIP_BYTES = 100 * 1024;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: { app: join(here, "src", "main.js"), style: join(here, "src", "style.css") },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  platform: "browser",
  // amazon-cognito-identity-js reads `global` in places; in a browser that is globalThis.
  define: { global: "globalThis" },
  legalComments: "none",
  write: false,
  outdir: out,
  logLevel: "warning",
});

const files = {};
for (const f of result.outputFiles) {
  const ext = f.path.endsWith(".css") ? "css" : "js";
  const hash = createHash("sha256").update(f.contents).digest("hex").slice(0, 12);
  const name = `${ext === "css" ? "style" : "app"}-${hash}.${ext}`;
  writeFileSync(join(out, name), f.contents);
  files[ext] = { name, bytes: f.contents.length, gzip: gzipSync(f.contents, { level: 9 }).length };
}

const html = readFileSync(join(here, "src", "index.html"), "utf8")
  .replace("{{style}}", files.css.name)
  .replace("{{script}}", files.js.name);
writeFileSync(join(out, "index.html"), html);
writeFileSync(join(out, "favicon.svg"), readFileSync(join(here, "src", "favicon.svg")));

const gzip = files.js.gzip + files.css.gzip;
const report = { files, gzip_total: gzip, budget: BUDGET_GZIP_BYTES };
writeFileSync(join(out, "..", "web-sizes.json"), JSON.stringify(report, null, 1));
console.log(`web: ${files.js.name} ${files.js.bytes} B (${files.js.gzip} gzipped), ` +
  `${files.css.name} ${files.css.bytes} B (${files.css.gzip} gzipped) -> ${out}`);
if (gzip > BUDGET_GZIP_BYTES) {
  console.error(`web: ${gzip} bytes gzipped, over the budget of ${BUDGET_GZIP_BYTES}: trim a dependency`);
  process.exit(1);
}
