import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePgoutput, formatLsn, parseLsn, pgTimeToUnixMs, updateLeavesToastOut } from '../../source-connector/pgoutput-decoder.ts';
import { DecodeError } from '../../shared/errors.ts';

/** Builds pgoutput messages byte by byte, the way walsender writes them (big-endian). */
class Bytes {
  private parts: Buffer[] = [];
  ch(c: string): this {
    this.parts.push(Buffer.from(c, 'latin1'));
    return this;
  }
  u8(v: number): this {
    this.parts.push(Buffer.from([v]));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.parts.push(b);
    return this;
  }
  i32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }
  i64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    this.parts.push(b);
    return this;
  }
  str(s: string): this {
    this.parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  /** TupleData: strings as 't', null as 'n', undefined as 'u'. */
  tuple(values: (string | null | undefined)[]): this {
    this.u16(values.length);
    for (const v of values) {
      if (v === null) this.ch('n');
      else if (v === undefined) this.ch('u');
      else {
        const b = Buffer.from(v, 'utf8');
        this.ch('t').u32(b.length).raw(b);
      }
    }
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const HIGH_LSN = 0x16_b374_d848n; // high word set: '16/B374D848'
const BIG_LSN = 0xffff_fffe_0000_0010n;

test('Begin: final LSN with the high word set, commit time as µs since 2000, xid', () => {
  const buf = new Bytes().ch('B').u64(HIGH_LSN).i64(789_000_000_123_456n).u32(0xfffffff0).build();
  assert.deepEqual(decodePgoutput(buf), {
    tag: 'begin',
    finalLsn: HIGH_LSN,
    commitTime: 789_000_000_123_456n,
    xid: 0xfffffff0,
  });
});

test('Commit: flags, commit LSN, end LSN, commit time', () => {
  const buf = new Bytes().ch('C').u8(0).u64(HIGH_LSN).u64(BIG_LSN).i64(-5n).build();
  assert.deepEqual(decodePgoutput(buf), {
    tag: 'commit',
    flags: 0,
    commitLsn: HIGH_LSN,
    endLsn: BIG_LSN,
    commitTime: -5n,
  });
});

test('Origin', () => {
  const buf = new Bytes().ch('O').u64(0x1_0000_0000n).str('node_a').build();
  assert.deepEqual(decodePgoutput(buf), { tag: 'origin', originLsn: 0x1_0000_0000n, name: 'node_a' });
});

test('Relation: identity chars, key flags, typmods, multi-byte names', () => {
  for (const [ch, ident] of [
    ['d', 'default'],
    ['n', 'nothing'],
    ['f', 'full'],
    ['i', 'index'],
  ] as const) {
    const buf = new Bytes()
      .ch('R')
      .u32(16385)
      .str('shop')
      .str('bestellungen_ü')
      .ch(ch)
      .u16(3)
      .u8(1).str('id').u32(20).i32(-1)
      .u8(0).str('amount').u32(1700).i32(((12 << 16) | 2) + 4)
      .u8(0).str('größe').u32(25).i32(-1)
      .build();
    assert.deepEqual(decodePgoutput(buf), {
      tag: 'relation',
      relid: 16385,
      namespace: 'shop',
      name: 'bestellungen_ü',
      replicaIdentity: ident,
      columns: [
        { isKey: true, name: 'id', typeOid: 20, typmod: -1 },
        { isKey: false, name: 'amount', typeOid: 1700, typmod: 786438 },
        { isKey: false, name: 'größe', typeOid: 25, typmod: -1 },
      ],
    });
  }
});

test('Relation: empty namespace means pg_catalog; unknown identity is a DecodeError', () => {
  const ok = new Bytes().ch('R').u32(1).str('').str('t').ch('d').u16(0).build();
  const msg = decodePgoutput(ok);
  assert.equal(msg.tag === 'relation' && msg.namespace, 'pg_catalog');
  const bad = new Bytes().ch('R').u32(1).str('public').str('t').ch('x').u16(0).build();
  assert.throws(() => decodePgoutput(bad), (e) => e instanceof DecodeError && /replica identity 'x'/.test(e.message));
});

test('Type', () => {
  const buf = new Bytes().ch('Y').u32(3_000_000_000).str('public').str('mood').build();
  assert.deepEqual(decodePgoutput(buf), { tag: 'type', oid: 3_000_000_000, namespace: 'public', name: 'mood' });
});

test('Insert: text, null, unchanged TOAST, empty string and multi-byte UTF-8 values', () => {
  const values = ['42', null, undefined, '', 'Grüße 東京 🚀', '\t\n\\'];
  const buf = new Bytes().ch('I').u32(16385).ch('N').tuple(values).build();
  const msg = decodePgoutput(buf);
  assert.deepEqual(msg, { tag: 'insert', relid: 16385, new: values });
  assert.ok(msg.tag === 'insert');
  // undefined must be a present slot (unchanged TOAST), not a hole
  assert.equal(msg.new.length, 6);
  assert.ok(2 in msg.new);
  assert.equal(msg.new[2], undefined);
  assert.equal(msg.new[1], null);
});

test('Insert: a large value is decoded whole', () => {
  const big = 'ä'.repeat(70_000);
  const msg = decodePgoutput(new Bytes().ch('I').u32(7).ch('N').tuple(['1', big]).build());
  assert.ok(msg.tag === 'insert');
  assert.equal(msg.new[1], big);
});

test('Update: new only, with K (key changed), with O (replica identity full)', () => {
  const plain = new Bytes().ch('U').u32(9).ch('N').tuple(['1', undefined, 'x']).build();
  assert.deepEqual(decodePgoutput(plain), {
    tag: 'update',
    relid: 9,
    key: undefined,
    old: undefined,
    new: ['1', undefined, 'x'],
  });

  const keyed = new Bytes().ch('U').u32(9).ch('K').tuple(['1', null, null]).ch('N').tuple(['2', 'a', 'b']).build();
  assert.deepEqual(decodePgoutput(keyed), {
    tag: 'update',
    relid: 9,
    key: ['1', null, null],
    old: undefined,
    new: ['2', 'a', 'b'],
  });

  const full = new Bytes().ch('U').u32(9).ch('O').tuple(['1', 'a', null]).ch('N').tuple(['1', 'b', null]).build();
  assert.deepEqual(decodePgoutput(full), {
    tag: 'update',
    relid: 9,
    key: undefined,
    old: ['1', 'a', null],
    new: ['1', 'b', null],
  });

  const bad = new Bytes().ch('U').u32(9).ch('K').tuple(['1']).ch('X').tuple(['1']).build();
  assert.throws(() => decodePgoutput(bad), DecodeError);
});

test('updateLeavesToastOut: an unchanged-TOAST column in the new tuple only, after any old tuple; what it cannot read says true', () => {
  const u = (...parts: ((b: Bytes) => Bytes)[]) => parts.reduce((b, f) => f(b), new Bytes().ch('U').u32(9)).build();
  assert.equal(updateLeavesToastOut(u((b) => b.ch('N').tuple(['1', 'a', null]))), false);
  assert.equal(updateLeavesToastOut(u((b) => b.ch('N').tuple(['1', undefined, 'x']))), true);
  // The old tuple's own 'u' (REPLICA IDENTITY FULL keeps none, K has nulls) says nothing of the new row.
  assert.equal(updateLeavesToastOut(u((b) => b.ch('O').tuple(['1', undefined, 'x']).ch('N').tuple(['1', 'b', 'x']))), false);
  assert.equal(updateLeavesToastOut(u((b) => b.ch('K').tuple(['1', null, null]).ch('N').tuple(['2', 'a', undefined]))), true);
  assert.equal(updateLeavesToastOut(u((b) => b.ch('N').tuple(['1', 'a'.repeat(70_000)]))), false);
  const whole = u((b) => b.ch('O').tuple(['1', 'a']).ch('N').tuple(['1', 'b']));
  for (let cut = 6; cut < whole.length; cut++) assert.equal(updateLeavesToastOut(whole.subarray(0, cut)), true, `cut at ${cut}`);
  assert.equal(updateLeavesToastOut(u((b) => b.ch('X').tuple(['1']))), true);
});

test('Delete: K and O variants', () => {
  assert.deepEqual(decodePgoutput(new Bytes().ch('D').u32(5).ch('K').tuple(['7', null]).build()), {
    tag: 'delete',
    relid: 5,
    key: ['7', null],
    old: undefined,
  });
  assert.deepEqual(decodePgoutput(new Bytes().ch('D').u32(5).ch('O').tuple(['7', 'é']).build()), {
    tag: 'delete',
    relid: 5,
    key: undefined,
    old: ['7', 'é'],
  });
  assert.throws(() => decodePgoutput(new Bytes().ch('D').u32(5).ch('N').tuple(['7']).build()), DecodeError);
});

test('Truncate: relids and option flags', () => {
  const buf = new Bytes().ch('T').u32(3).u8(3).u32(100).u32(200).u32(4_000_000_000).build();
  assert.deepEqual(decodePgoutput(buf), {
    tag: 'truncate',
    relids: [100, 200, 4_000_000_000],
    cascade: true,
    restartIdentity: true,
  });
  const none = decodePgoutput(new Bytes().ch('T').u32(1).u8(0).u32(100).build());
  assert.deepEqual(none, { tag: 'truncate', relids: [100], cascade: false, restartIdentity: false });
  const restartOnly = decodePgoutput(new Bytes().ch('T').u32(1).u8(2).u32(100).build());
  assert.ok(restartOnly.tag === 'truncate' && !restartOnly.cascade && restartOnly.restartIdentity);
});

test('Message: transactional flag, LSN, prefix, content copied out of the input', () => {
  const content = Buffer.from([0, 1, 2, 0xff, 0x78]);
  const buf = new Bytes().ch('M').u8(1).u64(HIGH_LSN).str('shardbridge').u32(content.length).raw(content).build();
  const msg = decodePgoutput(buf);
  assert.deepEqual(msg, { tag: 'message', transactional: true, lsn: HIGH_LSN, prefix: 'shardbridge', content });
  buf.fill(0); // the decoded content must not change when the input buffer is reused
  assert.ok(msg.tag === 'message');
  assert.deepEqual([...msg.content], [0, 1, 2, 0xff, 0x78]);

  const nonTx = decodePgoutput(new Bytes().ch('M').u8(0).u64(1n).str('p').u32(0).build());
  assert.ok(nonTx.tag === 'message' && !nonTx.transactional && nonTx.content.length === 0);
});

test('protocol v2+ streaming and two-phase messages come back as unsupported values', () => {
  for (const c of 'SEcAbPKrp') {
    const buf = new Bytes().ch(c).u32(1234).u8(0).build();
    assert.deepEqual(decodePgoutput(buf), { tag: 'unsupported', byte: c.charCodeAt(0) });
  }
});

test('binary column values are refused with a clear error', () => {
  const buf = new Bytes().ch('I').u32(1).ch('N').u16(1).ch('b').u32(4).u32(42).build();
  assert.throws(
    () => decodePgoutput(buf),
    (e) => e instanceof DecodeError && /binary-format/.test(e.message) && e.retriable === false,
  );
});

test('truncated messages of every kind are DecodeErrors, never RangeErrors or garbage', () => {
  const full = [
    new Bytes().ch('B').u64(1n).i64(2n).u32(3).build(),
    new Bytes().ch('C').u8(0).u64(1n).u64(2n).i64(3n).build(),
    new Bytes().ch('O').u64(1n).str('o').build(),
    new Bytes().ch('R').u32(1).str('s').str('t').ch('d').u16(1).u8(1).str('id').u32(23).i32(-1).build(),
    new Bytes().ch('Y').u32(1).str('s').str('t').build(),
    new Bytes().ch('I').u32(1).ch('N').tuple(['abc', null, undefined]).build(),
    new Bytes().ch('U').u32(1).ch('K').tuple(['1']).ch('N').tuple(['2']).build(),
    new Bytes().ch('D').u32(1).ch('O').tuple(['1']).build(),
    new Bytes().ch('T').u32(2).u8(0).u32(1).u32(2).build(),
    new Bytes().ch('M').u8(1).u64(1n).str('p').u32(3).raw(Buffer.from('abc')).build(),
  ];
  for (const msg of full) {
    decodePgoutput(msg); // the whole message decodes
    for (let cut = 0; cut < msg.length; cut++) {
      assert.throws(
        () => decodePgoutput(msg.subarray(0, cut)),
        DecodeError,
        `'${String.fromCharCode(msg[0])}' cut at ${cut}`,
      );
    }
  }
});

test('unknown tuple column kind is a DecodeError', () => {
  const buf = new Bytes().ch('I').u32(1).ch('N').u16(1).ch('z').build();
  assert.throws(() => decodePgoutput(buf), /unknown tuple column kind 'z'/);
});

test('formatLsn / parseLsn: PostgreSQL spelling, high word, round trip', () => {
  assert.equal(formatLsn(HIGH_LSN), '16/B374D848');
  assert.equal(formatLsn(0n), '0/0');
  assert.equal(formatLsn(0xa0b8n), '0/A0B8');
  assert.equal(formatLsn(BIG_LSN), 'FFFFFFFE/10');
  assert.equal(parseLsn('16/B374D848'), HIGH_LSN);
  assert.equal(parseLsn('16/b374d848'), HIGH_LSN);
  assert.equal(parseLsn('0/0000A0B8'), 0xa0b8n);
  assert.equal(parseLsn('FFFFFFFF/FFFFFFFF'), 0xffff_ffff_ffff_ffffn);
  for (const lsn of [1n, 0xffff_ffffn, 0x1_0000_0000n, HIGH_LSN, BIG_LSN]) assert.equal(parseLsn(formatLsn(lsn)), lsn);
  for (const bad of ['', '16', '16/', '/1', '1/2/3', 'G/1', '123456789/1', ' 1/2']) {
    assert.throws(() => parseLsn(bad), DecodeError, bad);
  }
  assert.throws(() => formatLsn(-1n), DecodeError);
  assert.throws(() => formatLsn(1n << 64n), DecodeError);
});

test('pgTimeToUnixMs: PostgreSQL epoch to Unix milliseconds', () => {
  assert.equal(pgTimeToUnixMs(0n), Date.UTC(2000, 0, 1));
  assert.equal(pgTimeToUnixMs(1_999n), Date.UTC(2000, 0, 1) + 1);
  assert.equal(pgTimeToUnixMs(-946_684_800_000_001n), -1); // floors before 1970
});
