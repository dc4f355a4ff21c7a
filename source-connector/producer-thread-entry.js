// Worker entry of the threaded producer: module loader hooks are per thread, so the
// TypeScript loader is registered here before the worker body is imported.
import { register } from 'tsx/esm/api';

register();
await import('./producer-thread.ts');
