// Builds dist/sdk.js (one minified IIFE) from src/affinity.js and checks the
// size budgets: sdk.js ≤ 2560 bytes min+gzip (zlib level 9), the loader stub
// < 400 bytes. Exits 1 when either budget is exceeded.
import { build } from 'esbuild'
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { gzipSync } from 'node:zlib'

const SDK_MAX_GZIP = 2560
const LOADER_MAX = 400

mkdirSync('dist', { recursive: true })
const res = await build({
  entryPoints: ['src/affinity.js'],
  bundle: true,
  format: 'iife',
  target: 'es2017',
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
  write: false,
})
const code = res.outputFiles[0].contents
writeFileSync('dist/sdk.js', code)
const gz = gzipSync(code, { level: 9 }).length

// The loader stub a shop pastes, measured as the whole file.
const stubBytes = readFileSync('src/loader.html').length

console.log(`dist/sdk.js: ${code.length} bytes minified, ${gz} bytes min+gzip (budget ${SDK_MAX_GZIP})`)
console.log(`loader stub: ${stubBytes} bytes (budget < ${LOADER_MAX})`)
let fail = false
if (gz > SDK_MAX_GZIP) {
  console.error(`FAIL: dist/sdk.js is ${gz} bytes min+gzip, above ${SDK_MAX_GZIP}`)
  fail = true
}
if (stubBytes >= LOADER_MAX) {
  console.error(`FAIL: loader stub is ${stubBytes} bytes, not below ${LOADER_MAX}`)
  fail = true
}
process.exit(fail ? 1 : 0)
