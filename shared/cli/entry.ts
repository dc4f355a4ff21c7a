// The CLI's entry: `shardbridge.js` runs it from the TypeScript sources through tsx (no build
// step, for development); the image runs its compiled form, dist/shared/cli/entry.js.
import { main } from './main.ts';

const code = await main(process.argv);
process.exitCode = code;
// The command is over: what is left on the event loop are attempts it gave up on (kafkajs
// reconnecting to a broker that accepted TCP but never answered kept `check` alive for minutes
// after its verdict). Give buffered output a moment, then end; unref'd, so a clean exit is not delayed.
setTimeout(() => process.exit(code), 1_000).unref();
