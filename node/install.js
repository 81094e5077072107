'use strict'
// The package's install step: nothing to do when a prebuilt addon is
// there (the platform package npm installed as an optional dependency, or
// a local build); otherwise build it from source, which needs Rust.

const { spawnSync } = require('node:child_process')
const path = require('node:path')

function prebuilt() {
  try {
    require('./binding.js')
    return null
  } catch (e) {
    return e
  }
}

const why = prebuilt()
if (why === null) process.exit(0)
// Say why (no package for this platform, or one that does not load here,
// such as an older glibc), then build.
console.error(`stratacache: no prebuilt addon loads here (${String((why && why.message) || why).split('\n')[0]}); building from source (needs Rust: https://rustup.rs)`)
const napi = path.join(path.dirname(require.resolve('@napi-rs/cli/package.json')), 'dist', 'cli.js')
const args = [napi, 'build', '--platform', '--release', '--manifest-path', 'crates/node/Cargo.toml', '--output-dir', 'node', '--js', 'binding.js', '--dts', 'binding.d.ts']
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: path.join(__dirname, '..') })
process.exit(r.status === null ? 1 : r.status)
