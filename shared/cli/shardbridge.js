#!/usr/bin/env node
// The `shardbridge` executable from a checkout: the TypeScript runs through tsx, no build step.
// `npm run build` compiles the same code to dist/ (dist/shared/cli/entry.js), which the image
// and the benchmark's connector processes run.
import { register } from 'tsx/esm/api';

register();
await import('./entry.ts');
