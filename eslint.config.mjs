// ESLint for the JavaScript package, its tests, examples and benchmarks:
// ESLint's recommended rules plus the typescript-eslint rules that apply to
// plain JavaScript (the package is CommonJS with .mjs wrappers; its types
// are the hand-written .d.ts files, checked by `tsc --checkJs` and the
// types test).
import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['node/binding.js', 'node/binding.d.ts', 'target/**', 'node_modules/**', 'tests/node/keyv-suite/**', '**/*.d.ts', '**/*.d.mts', 'tests/node/types.check.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } },
    rules: {
      // CommonJS is this package's module system.
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: { ...globals.node } },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }],
      // `const crypto = require('node:crypto')` is the explicit import of
      // what Node also offers as a global.
      'no-redeclare': ['error', { builtinGlobals: false }],
      // The internal API object's methods close over the cache they serve.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['cache'] }],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
)
