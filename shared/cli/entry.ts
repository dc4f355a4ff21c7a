// The CLI's entry: `shardbridge.js` runs it from the TypeScript sources through tsx (no build
// step, for development); the image runs its compiled form, dist/shared/cli/entry.js.
import { main } from './main.ts';

process.exitCode = await main(process.argv);
