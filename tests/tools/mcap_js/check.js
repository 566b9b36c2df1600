// Reads a ferry recording with the official TypeScript MCAP implementation (@mcap/core) and
// checks it against what the talker published: message i has sequence i+1 and the talker's
// checksummed payload for index i (bytes 0..7 the index, 8..11 FNV-1a of the rest).
//   node check.js FILE finished|cut EXPECTED_COUNT TOPIC
// Prints one JSON line {"messages":N,"chunks":C,...}; exit 1 with a reason on any problem.
"use strict";
const fs = require("fs");
const { McapIndexedReader, McapStreamReader } = require("@mcap/core");
const zstd = require("@foxglove/wasm-zstd");
const lz4 = require("@foxglove/wasm-lz4");

function fail(why) {
  console.error(`mcap check: ${process.argv[2]}: ${why}`);
  process.exit(1);
}

function fnv1a(bytes) {
  let h = 2166136261;
  for (const b of bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h >>> 0;
}

function checkPayload(data, index) {
  if (data.length < 12) fail(`message ${index}: ${data.length} bytes, shorter than the talker's payload`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const got = view.getBigUint64(0, true);
  if (got !== BigInt(index)) fail(`message ${index}: payload index ${got}: out of order or missing`);
  if (view.getUint32(8, true) !== fnv1a(data.subarray(12))) fail(`message ${index}: payload checksum wrong`);
}

async function main() {
  const [file, mode, countText, topic] = process.argv.slice(2);
  const expected = Number(countText);
  await zstd.isLoaded;
  await lz4.isLoaded;
  const decompressHandlers = {
    zstd: (buffer, size) => zstd.decompress(buffer, Number(size)),
    lz4: (buffer, size) => lz4(buffer, Number(size)),
  };
  const bytes = fs.readFileSync(file);

  // 1. Every record, in order, with chunk CRCs validated.
  const stream = new McapStreamReader({ decompressHandlers, validateCrcs: true, includeChunks: true });
  stream.append(bytes);
  const schemas = new Map(), channels = new Map(), counts = {};
  const messages = [];
  let chunks = 0;
  for (let r; (r = stream.nextRecord()); ) {
    counts[r.type] = (counts[r.type] || 0) + 1;
    if (r.type === "Schema") schemas.set(r.id, r);
    else if (r.type === "Channel") {
      if (r.schemaId !== 0 && !schemas.has(r.schemaId)) fail(`channel ${r.id} before its schema`);
      channels.set(r.id, r);
    } else if (r.type === "Message") {
      if (!channels.has(r.channelId)) fail(`message on unknown channel ${r.channelId}`);
      messages.push(r);
    } else if (r.type === "Chunk") chunks++;
  }
  const finished = stream.done();
  if (mode === "finished" && !finished) fail("the file did not end with a valid footer and magic");
  if (mode === "cut" && finished) fail("a file cut by SIGKILL claims to be complete");

  const mine = messages.filter((m) => channels.get(m.channelId).topic === topic);
  if (mode === "finished" && mine.length !== expected) fail(`${mine.length} messages on ${topic}, expected ${expected}`);
  // A cut file: ferry's own reader reported `expected` messages in complete chunks; this reader must agree.
  if (mode === "cut" && mine.length !== expected) fail(`${mine.length} messages recovered, ferry bag info says ${expected}`);
  mine.forEach((m, i) => {
    const ch = channels.get(m.channelId);
    const schema = schemas.get(ch.schemaId);
    if (!schema || schema.name !== "bytes" || schema.encoding !== "jsonschema") fail(`message ${i}: schema wrong`);
    if (ch.messageEncoding !== "ferry" || ch.metadata.get("ferry.type") !== "bytes") fail(`message ${i}: channel wrong`);
    if (m.sequence !== i + 1) fail(`message ${i}: sequence ${m.sequence}`);
    if (m.publishTime > m.logTime || m.publishTime === 0n) fail(`message ${i}: publish_time/log_time wrong`);
    checkPayload(m.data, i);
  });

  // 2. Finished files: the summary (indexes, statistics, summary CRC) agrees with the data.
  if (mode === "finished") {
    const readable = {
      size: async () => BigInt(bytes.length),
      read: async (offset, length) => bytes.subarray(Number(offset), Number(offset + length)),
    };
    const indexed = await McapIndexedReader.Initialize({ readable, decompressHandlers });
    if (indexed.chunkIndexes.length !== chunks) fail(`${indexed.chunkIndexes.length} chunk indexes for ${chunks} chunks`);
    const stats = indexed.statistics;
    if (!stats) fail("no Statistics record");
    if (stats.messageCount !== BigInt(messages.length)) fail(`statistics say ${stats.messageCount} messages`);
    if (stats.chunkCount !== chunks) fail(`statistics say ${stats.chunkCount} chunks`);
    let i = 0;
    for await (const m of indexed.readMessages({ topics: [topic], validateCrcs: true })) {
      if (m.sequence !== i + 1) fail(`indexed read: message ${i} has sequence ${m.sequence}`);
      checkPayload(m.data, i);
      i++;
    }
    if (i !== expected) fail(`indexed read: ${i} messages, expected ${expected}`);
    let metadata = 0;
    for await (const md of indexed.readMetadata({ name: "ferry.recording" })) {
      if (md.metadata.get(`lost.${topic}`) === undefined) fail("metadata without the lost count");
      metadata++;
    }
    if (metadata !== 1) fail(`${metadata} ferry.recording metadata records`);
  }
  console.log(JSON.stringify({ messages: mine.length, chunks, finished, records: counts }));
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
