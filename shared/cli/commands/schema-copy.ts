/**
 * `shardbridge schema copy`: create the selected source tables on the destination (types,
 * owned sequences, constraints and indexes; foreign keys kept aside for cut-over), then
 * distribute them with Citus before any data arrives. Reads the source catalog rather than
 * pg_dump output: every object is checked against the destination one by one (idempotence),
 * foreign keys must be split off, and keys may need extending — all easier on catalog rows
 * than on dump text. The definitions still come from PostgreSQL's own deparsers.
 */
import pg from 'pg';
import type { CommandContext } from '../main.ts';
import { connectSide } from '../connect.ts';
import { isReadOnlyRefusal, readOnlyExplained, readOnlyOrigin } from '../../../source-connector/read-only-default.ts';
import { SchemaError } from '../../errors.ts';
import { commandDestinationOptions, commandSourceOptions } from '../../pg-types.ts';
import { resolveTables } from '../../../source-connector/catalog.ts';
import { mapTable } from '../../schema/mapping.ts';
import { planSchemaCopy, resolveDistribution, type CopyPlan, type Step } from '../../schema/plan.ts';
import { readDestinationState, readSchemaModel } from '../../schema/read.ts';

export async function run(opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const sourceConfig = ctx.sourceConfig();
  const sink = ctx.sinkConfig();
  const dryRun = Boolean(opts.dryRun);
  // A bounded connect (connectSide): a server that accepts TCP and never answers hung the command for good.
  // Not cut by an application's timeouts on the roles (pg-types.ts): the catalog of thousands of tables takes a while to read.
  const src = await connectSide(sourceConfig.source, 'source', 'shardbridge-schema-copy', commandSourceOptions);
  let dst: pg.Client | undefined;
  try {
    const resolved = await resolveTables(src, sourceConfig.tables);
    if (resolved.missing.length) {
      ctx.err(`shardbridge schema copy: tables.include lists tables that do not exist on the source: ${resolved.missing.join(', ')}\n`);
      return 1;
    }
    if (resolved.tables.length === 0) {
      ctx.err('shardbridge schema copy: no source table matches tables.schemas / tables.include\n');
      return 1;
    }
    const model = await readSchemaModel(src, resolved.tables.map((t) => t.relid));
    const dist = resolveDistribution(strings(opts.distribute), strings(opts.reference), model.tables);
    if (dist.errors.length) {
      ctx.err(dist.errors.map((e) => `shardbridge schema copy: ${e}\n`).join(''));
      return 2;
    }
    dst = await connectSide(sink.destination, 'destination', 'shardbridge-schema-copy', commandDestinationOptions);
    const destination = dst;
    const state = await readDestinationState(dst, model, model.tables.map((t) => mapTable(t, sink.tables).destination));
    const plan = planSchemaCopy(model, state, {
      mapping: sink.tables,
      distribute: dist.distribute,
      reference: dist.reference,
      colocate: Boolean(opts.colocate),
      extendKeys: Boolean(opts.extendKeys),
    });
    if (plan.problems.length === 0 && !dryRun) {
      await execute(dst, plan.steps).catch(async (err: unknown) => {
        if (!isReadOnlyRefusal(err)) throw err;
        const explained = readOnlyExplained(await readOnlyOrigin(destination), 'destination', 'creating the tables');
        if (!explained) throw err;
        const { message, remedy } = explained;
        throw new SchemaError(message, { cause: err, context: { setting: 'default_transaction_read_only' }, remedy });
      });
    }
    report(plan, dryRun, Boolean(opts.json), ctx);
    return plan.problems.length ? 1 : 0;
  } finally {
    await Promise.all([src.end().catch(() => {}), dst?.end().catch(() => {})]);
  }
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);

/** DDL in one transaction (a failure leaves nothing half-made); distribution calls after it, one by one; then the views. */
async function execute(client: pg.Client, steps: Step[]): Promise<void> {
  const ddl = steps.filter((s) => s.phase === 'ddl');
  if (ddl.length) {
    await client.query('BEGIN');
    try {
      for (const s of ddl) await runStep(client, s);
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    }
  }
  for (const s of steps.filter((x) => x.phase === 'distribute')) await runStep(client, s);
  for (const s of steps.filter((x) => x.phase === 'views')) await runStep(client, s);
}

/** One step's statements; a refusal names the step and says what stands (the server's bare text named neither). */
async function runStep(client: pg.Client, s: Step): Promise<void> {
  for (const sql of s.sql) {
    try {
      await client.query(sql);
    } catch (e) {
      if (isReadOnlyRefusal(e)) throw e;
      // Citus gives its reason in the DETAIL ("cannot distribute relation: t", then why).
      const detail = (e as { detail?: unknown }).detail;
      throw new SchemaError(`${s.action} ${s.object}: the destination refused it: ${(e as Error).message}${typeof detail === 'string' && detail ? `: ${detail}` : ''}`, {
        cause: e,
        context: { object: s.object, code: (e as { code?: string }).code },
        remedy: s.phase === 'ddl'
          ? 'nothing was created (the tables, types and sequences are created in one transaction): fix the cause on the destination, then run schema copy again'
          : 'the tables, types and sequences stand, and the steps before this one; fix the cause, then run schema copy again: it plans only what is missing',
      });
    }
  }
}

function report(plan: CopyPlan, dryRun: boolean, json: boolean, ctx: CommandContext): void {
  const nothingToDo = plan.steps.length === 0 && plan.problems.length === 0;
  if (json) {
    const done = plan.problems.length === 0 && !dryRun;
    ctx.out(JSON.stringify({ dryRun, done, nothingToDo, steps: plan.steps, notes: plan.notes, problems: plan.problems }, null, 2) + '\n');
    return;
  }
  const lines: string[] = [];
  if (plan.problems.length) {
    lines.push('nothing changed: schema copy cannot create these faithfully', ...plan.problems.map((p) => `  FAIL  ${p}`));
  } else if (dryRun) {
    for (const s of plan.steps) lines.push(`-- ${s.action}: ${s.object}`, ...s.sql.map((x) => `${x};`), '');
    if (nothingToDo) lines.push('-- nothing to do: the destination already has every selected object');
  } else if (nothingToDo) {
    lines.push('nothing to do: the destination already has every selected table, type and sequence');
  } else {
    const width = Math.max(...plan.steps.map((s) => s.action.length));
    lines.push(...plan.steps.map((s) => `${s.action.padEnd(width)}  ${s.object}`));
  }
  lines.push(...plan.notes.map((n) => `${dryRun ? '-- ' : ''}note: ${n}`));
  ctx.out(lines.join('\n') + '\n');
}
