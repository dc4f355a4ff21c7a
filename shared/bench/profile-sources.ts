/**
 * Line numbers for profiles: of the compiled build (dist/*.js, through the source map tsc
 * writes beside each file), and of code run through tsx. tsx compiles each TypeScript module with
 * esbuild into ONE minified line (plus a source map), so V8 reports every function of it at
 * line 1. Compiling the file again with tsx's own esbuild options gives the same code and
 * the same map (checked against tsx's cache); the map turns (line, column) back into the
 * TypeScript line. esbuild comes with tsx; without it, lines stay as V8 reported them.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodeMappings, originalLine, type PositionMapper } from './profile.ts';

interface Esbuild {
  transformSync(code: string, opts: Record<string, unknown>): { code: string; map: string };
}

export async function sourcePositionMapper(): Promise<PositionMapper | undefined> {
  const compiled = compiledPositionMapper();
  let esbuild: Esbuild;
  try {
    esbuild = (await import('esbuild' as string)) as Esbuild;
  } catch {
    return compiled;
  }
  const cache = new Map<string, [number, number][][] | null>();
  return (url, line0, column0) => {
    if (/\/dist\/.*\.js$/.test(url)) return compiled(url, line0, column0);
    if (!url.startsWith('file://') || !/\.(ts|mts|cts)$/.test(url)) return null;
    let decoded = cache.get(url);
    if (decoded === undefined) {
      decoded = null;
      try {
        const file = fileURLToPath(url);
        // tsx's options for ES modules (tsx/dist: target, sourcemap, minifyWhitespace, keepNames).
        const r = esbuild.transformSync(readFileSync(file, 'utf8'), {
          loader: 'ts',
          format: 'esm',
          target: `node${process.versions.node}`,
          sourcemap: true,
          sourcesContent: false,
          minifyWhitespace: true,
          keepNames: true,
          sourcefile: file,
        });
        decoded = decodeMappings((JSON.parse(r.map) as { mappings: string }).mappings);
      } catch {
        decoded = null;
      }
      cache.set(url, decoded);
    }
    return decoded ? originalLine(decoded, line0, column0) : null;
  };
}

/** Positions in dist/*.js through the `.js.map` tsc wrote beside it (tsconfig.build.json: sourceMap). */
export function compiledPositionMapper(): PositionMapper {
  const cache = new Map<string, [number, number][][] | null>();
  return (url, line0, column0) => {
    if (!url.startsWith('file://')) return null;
    let decoded = cache.get(url);
    if (decoded === undefined) {
      try {
        decoded = decodeMappings((JSON.parse(readFileSync(fileURLToPath(url) + '.map', 'utf8')) as { mappings: string }).mappings);
      } catch {
        decoded = null;
      }
      cache.set(url, decoded);
    }
    return decoded ? originalLine(decoded, line0, column0) : null;
  };
}
