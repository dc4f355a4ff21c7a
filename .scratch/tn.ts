import { createAvroType } from '../shared/type-mapping/index.ts';
const t = createAvroType({ type: 'record', name: 'E', namespace: 'x', fields: [
  { name: 'a', type: ['null', 'long'] }, { name: 'b', type: 'long' }, { name: 'c', type: 'string' }, { name: 'd', type: ['null', { type: 'array', items: ['null', 'int'] }, 'string'] },
  { name: 'e', type: { type: 'string', 'connect.name': 'io.debezium.time.ZonedTimestamp' } }, { name: 'f', type: { type: 'enum', name: 'En', symbols: ['A'] } }, { name: 'g', type: { type: 'fixed', name: 'F', size: 3 } },
  { name: 'h', type: { type: 'map', values: 'int' } }, { name: 'i', type: ['null', 'x.En'] }, { name: 'j', type: {type:'long', 'connect.name': 'io.debezium.time.MicroTimestamp'} },
]}) as any;
for (const f of t.fields) console.log(f.name, f.type.typeName, f.type.constructor.name, f.type.types?.map((x: any) => x.typeName));
