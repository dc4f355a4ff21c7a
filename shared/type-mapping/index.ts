/**
 * PostgreSQL text <-> Avro: the source's `codecFor` (text -> Avro value, Avro type JSON)
 * and the sink's `textEncoderFor` (Avro value -> PostgreSQL input text, from the schema
 * alone). Every avsc type in the project comes from `createAvroType` so `long` is BigInt.
 */
export { avroRegistryOptions, createAvroType, writeCached, BIGINT_LONG_TYPE, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN } from './avro.ts';
export { shapeKey, sharedAvroType } from './shared-types.ts';
export { codecFor, codecForType, nullableAvroType, BITS_NAME, IDENTITY_FROM_TEXT, INT_FROM_TEXT, BIGINT_FROM_TEXT } from './codecs.ts';
export type { ColumnCodec } from './codecs.ts';
export { byteaFromText as BYTEA_FROM_TEXT } from './scalars.ts';
export { textEncoderFor, IDENTITY_TEXT, DECIMAL_TEXT, BYTEA_TEXT } from './encoders.ts';
export type { TextEncoder } from './encoders.ts';
export { formatTypeName, pgTypeName, qualifiedName, resolveDomain } from './type-names.ts';
export { parseArray1D, quoteArrayElement } from './arrays.ts';
