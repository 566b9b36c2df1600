// Reads a recording of a user type with @mcap/core and decodes its messages with nothing but the
// JSON Schema in the file's Schema record (an implementation independent of ferry's decoder):
//   node check_schema.js FILE TYPE EXPECTED_JSON
// checks that the schema is named TYPE (the registry's type name), encoded "jsonschema", titled
// TYPE, used by every channel of the type, and that every message decodes to EXPECTED_JSON.
"use strict";
const fs = require("fs");
const { McapStreamReader } = require("@mcap/core");
const zstd = require("@foxglove/wasm-zstd");
const lz4 = require("@foxglove/wasm-lz4");

function fail(why) {
  console.error(`schema check: ${process.argv[2]}: ${why}`);
  process.exit(1);
}

// cereal's binary archive as the schema describes it ("ferryWire"): values in order, sizes uint64.
function decode(schema, view, pos) {
  const take = (n) => {
    if (pos.at + n > view.byteLength) fail("message shorter than its schema");
    const at = pos.at;
    pos.at += n;
    return at;
  };
  if (schema.type === "object") {
    const out = {};
    for (const name of schema.required) out[name] = decode(schema.properties[name], view, pos);
    return out;
  }
  if (schema.type === "array") {
    if (schema.ferryWire !== "sequence" || !schema.items) fail("an array the schema cannot decode");
    const n = Number(view.getBigUint64(take(8), true));
    const out = [];
    for (let i = 0; i < n; i++) out.push(decode(schema.items, view, pos));
    return out;
  }
  const readers = {
    bool: () => view.getUint8(take(1)) !== 0,
    int8: () => view.getInt8(take(1)), uint8: () => view.getUint8(take(1)),
    int16: () => view.getInt16(take(2), true), uint16: () => view.getUint16(take(2), true),
    int32: () => view.getInt32(take(4), true), uint32: () => view.getUint32(take(4), true),
    int64: () => Number(view.getBigInt64(take(8), true)), uint64: () => Number(view.getBigUint64(take(8), true)),
    float32: () => view.getFloat32(take(4), true), float64: () => view.getFloat64(take(8), true),
    string: () => {
      const n = Number(view.getBigUint64(take(8), true));
      const at = take(n);
      return new TextDecoder().decode(new Uint8Array(view.buffer, view.byteOffset + at, n));
    },
  };
  const read = readers[schema.ferryWire];
  if (!read) fail(`a field of unknown wire type ${schema.ferryWire}`);
  return read();
}

async function main() {
  const [file, type, expectedText] = process.argv.slice(2);
  const expected = JSON.parse(expectedText);
  await zstd.isLoaded;
  await lz4.isLoaded;
  const stream = new McapStreamReader({
    decompressHandlers: {
      zstd: (buffer, size) => zstd.decompress(buffer, Number(size)),
      lz4: (buffer, size) => lz4(buffer, Number(size)),
    },
    validateCrcs: true,
  });
  stream.append(fs.readFileSync(file));
  const schemas = new Map(), channels = new Map();
  let decoded = 0;
  for (let r; (r = stream.nextRecord()); ) {
    if (r.type === "Schema") schemas.set(r.id, r);
    else if (r.type === "Channel") channels.set(r.id, r);
    else if (r.type === "Message") {
      const ch = channels.get(r.channelId);
      if (ch.metadata.get("ferry.type") !== type) continue;
      const s = schemas.get(ch.schemaId);
      if (!s || s.name !== type || s.encoding !== "jsonschema") fail(`channel ${ch.id}: schema not '${type}' in jsonschema`);
      const schema = JSON.parse(new TextDecoder().decode(s.data));
      if (schema.title !== type) fail(`schema title ${schema.title}`);
      if (schema.ferryEncoding !== "cereal") fail(`schema encoding ${schema.ferryEncoding}`);
      const pos = { at: 0 };
      const view = new DataView(r.data.buffer, r.data.byteOffset, r.data.byteLength);
      const value = decode(schema, view, pos);
      if (pos.at !== r.data.byteLength) fail(`message ${decoded}: ${r.data.byteLength - pos.at} bytes left over`);
      if (JSON.stringify(value) !== JSON.stringify(expected))
        fail(`message ${decoded}: ${JSON.stringify(value)}, expected ${JSON.stringify(expected)}`);
      decoded++;
    }
  }
  if (!stream.done()) fail("the file did not end with a valid footer and magic");
  if (decoded === 0) fail(`no message of type ${type}`);
  console.log(JSON.stringify({ type, decoded }));
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
