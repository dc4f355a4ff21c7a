#!/usr/bin/env node
// The `shardbridge` executable: TypeScript runs through tsx, no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv);
