// Tests run TypeScript through ts-node. Type errors are caught by `npm run typecheck`, so
// transpile-only keeps the suite's start-up fast.
require('ts-node').register({
  project: require('node:path').join(__dirname, '..', 'tsconfig.json'),
  transpileOnly: true,
});
