/**
 * A copied data directory gets a system identifier of its own (pg-template.ts copies one
 * initdb's result into every cluster): as after its own initdb, two clusters of the dev stack
 * then never look like the same cluster to what compares them (a standby source's `primary`
 * check, pg_control_system()). The identifier lives in global/pg_control, under the file's
 * CRC-32C, and in each WAL segment's first page header, which the server compares with it.
 */
import fs from 'node:fs';
import path from 'node:path';

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as PostgreSQL's pg_crc32c. Pure. */
export function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC32C_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Where ControlFileData's crc sits: its last field, after a layout that differs between
 * majors, so found as the first offset whose CRC of the bytes before it is stored there.
 */
function crcOffset(control: Buffer): number {
  for (let at = 8; at + 4 <= Math.min(control.length, 1024); at += 4) {
    if (control.readUInt32LE(at) === crc32c(control.subarray(0, at))) return at;
  }
  throw new Error('pg_control: no CRC-32C found over its first 1024 bytes (not a PostgreSQL control file of this byte order?)');
}

/** `control` (global/pg_control) with system identifier `id` and its CRC made again; the old identifier beside it. Pure. */
export function withSystemIdentifier(control: Buffer, id: bigint): { control: Buffer; previous: bigint } {
  const at = crcOffset(control);
  const out = Buffer.from(control);
  const previous = out.readBigUInt64LE(0);
  out.writeBigUInt64LE(id, 0);
  out.writeUInt32LE(crc32c(out.subarray(0, at)), at);
  return { control: out, previous };
}

/** Offset of xlp_sysid in a WAL segment's long page header (XLogLongPageHeaderData). */
const WAL_SYSID_AT = 24;

/** As initdb makes one: the time in the high half, random low bits (initdb: microseconds and pid). */
export function newSystemIdentifier(now = Date.now()): bigint {
  return (BigInt(Math.floor(now / 1000)) << 32n) | BigInt(Math.floor(Math.random() * 0x100000000));
}

/** Gives the stopped cluster in `dataDir` a new system identifier; returns it. */
export function giveNewSystemIdentifier(dataDir: string, id = newSystemIdentifier()): bigint {
  const file = path.join(dataDir, 'global', 'pg_control');
  const { control, previous } = withSystemIdentifier(fs.readFileSync(file), id);
  const wal = path.join(dataDir, 'pg_wal');
  for (const name of fs.readdirSync(wal).filter((n) => /^[0-9A-F]{24}$/.test(n))) {
    const fd = fs.openSync(path.join(wal, name), 'r+');
    try {
      const head = Buffer.alloc(8);
      fs.readSync(fd, head, 0, 8, WAL_SYSID_AT);
      if (head.readBigUInt64LE(0) !== previous) throw new Error(`${name}: its page header's system identifier is not pg_control's`);
      head.writeBigUInt64LE(id, 0);
      fs.writeSync(fd, head, 0, 8, WAL_SYSID_AT);
    } finally {
      fs.closeSync(fd);
    }
  }
  fs.writeFileSync(file, control);
  return id;
}
