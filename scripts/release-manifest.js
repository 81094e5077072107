#!/usr/bin/env node
'use strict'
// Release step (and the install test's): write the main package's
// optionalDependencies, one per platform package under npm/, at the main
// package's version, so npm installs the one matching the machine.
//   node scripts/release-manifest.js [--manifest PATH] [TARGET ...]
// --manifest: the package.json to write (default: this repository's);
// TARGETs: only these platform directories (default: every one).

const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const argv = process.argv.slice(2)
let manifestPath = path.join(root, 'package.json')
const at = argv.indexOf('--manifest')
if (at >= 0) manifestPath = path.resolve(argv.splice(at, 2)[1])
const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'))
const optional = {}
const dirs = argv.length > 0 ? argv : fs.readdirSync(path.join(root, 'npm')).sort()
for (const dir of dirs) {
  const file = path.join(root, 'npm', dir, 'package.json')
  if (!fs.existsSync(file)) continue
  const p = JSON.parse(fs.readFileSync(file, 'utf8'))
  if (p.version !== manifest.version) throw new Error(`${p.name} is at ${p.version}, the main package at ${manifest.version}`)
  optional[p.name] = p.version
}
manifest.optionalDependencies = optional
fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + '\n')
console.log(`optionalDependencies: ${Object.keys(optional).join(', ')}`)
