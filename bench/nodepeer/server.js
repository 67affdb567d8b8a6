// The Node peer of the poll bench (issue 23, item 1): GET /api/jobs/:id as
// jobsd answers it, written as a Node team would write it: Fastify, a pg
// Pool and jose verifying RS256 bearer tokens against the issuer's JWKS.
// It answers the same statuses and bodies as jobsd for this route:
//   401 {"error":"Missing or invalid Bearer token"} without a valid token
//       (checked first, as jobsd's authenticate middleware runs first);
//   400 {"error":"Invalid UUID format"} for an id not in canonical form;
//   404 {"error":"Job not found or does not belong to the requesting user"}
//       for no job, or another user's;
//   200 the job (jobsd's fields, in its order) with its ETag, or 304 when
//       If-None-Match names that ETag.
//
// Environment (the bench sets it):
//   DATABASE_URL          the jobs database
//   JOBS_AUTH_ISSUER      the token issuer; its JWKS is ISSUER/.well-known/jwks.json
//   JOBS_AUTH_CLIENT_IDS  comma-separated allowed client_id claims
//   NODEPEER_POOL_MAX     PostgreSQL connections in all, split over the processes
//   NODEPEER_PROCESSES    server processes (node:cluster), default 1
//
// It listens on a free loopback port, prints "host:port" on stdout once every
// process listens, and exits when its stdin closes (the bench stops it so, and
// it cannot outlive a bench that dies).
import cluster from 'node:cluster';
import process from 'node:process';

import Fastify from 'fastify';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pg from 'pg';

const msgInvalidUUID = 'Invalid UUID format';
const msgUnauthorized = 'Missing or invalid Bearer token';
const msgNotFound = 'Job not found or does not belong to the requesting user';

// jobsd's own checks of an access token (auth.Verifier): RS256 only, the
// exact issuer, exp required, 30 s of clock skew, token_use "access",
// client_id in the allow-list, a non-empty sub.
const leewaySeconds = 30;

const canonicalUUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

// The API's owner-scoped read, as a named (prepared) statement: another
// user's job is no row, hence the same 404 as no job.
const getJob = {
  name: 'get-job',
  text: `SELECT id, type, status, result, error, attempts, created_at, started_at, completed_at, updated_at, version
    FROM jobs WHERE id = $1 AND user_id = $2`,
};

const processes = Math.max(1, Number.parseInt(process.env.NODEPEER_PROCESSES ?? '1', 10) || 1);

// runPrimary forks the servers, prints the address they share once all
// listen, and stops them when stdin closes.
function runPrimary() {
  let listening = 0;
  for (let i = 0; i < processes; i++) {
    const worker = cluster.fork();
    worker.on('message', (msg) => {
      if (msg?.listening && ++listening === processes) {
        process.stdout.write(`${msg.listening}\n`);
      }
    });
  }
  cluster.on('exit', (worker, code, signal) => {
    process.stderr.write(`nodepeer: process ${worker.process.pid} exited (${signal ?? code})\n`);
    process.exit(1);
  });
  exitWithStdin(() => {
    cluster.removeAllListeners('exit');
    for (const worker of Object.values(cluster.workers)) {
      worker.kill();
    }
  });
}

async function runServer() {
  const issuer = required('JOBS_AUTH_ISSUER');
  const clientIds = new Set(required('JOBS_AUTH_CLIENT_IDS').split(',').map((s) => s.trim()).filter(Boolean));
  const poolMax = Math.max(1, Math.ceil(Number.parseInt(process.env.NODEPEER_POOL_MAX ?? '20', 10) / processes));
  const jwks = createRemoteJWKSet(new URL(issuer.replace(/\/$/, '') + '/.well-known/jwks.json'));
  const pool = new pg.Pool({ connectionString: required('DATABASE_URL'), max: poolMax });
  pool.on('error', (err) => process.stderr.write(`nodepeer: idle client: ${err.message}\n`));

  // maxParamLength: a long id is a 400 as in jobsd, not the router's 404.
  const app = Fastify({ logger: false, routerOptions: { maxParamLength: 8192 } });
  app.get('/api/jobs/:id', {
    schema: { response: { 200: jobSchema, '4xx': errorSchema } },
  }, async (request, reply) => {
    const user = await authenticate(request.headers.authorization, jwks, issuer, clientIds);
    if (user === null) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: msgUnauthorized });
    }
    const id = request.params.id;
    if (!canonicalUUID.test(id)) {
      return reply.code(400).send({ error: msgInvalidUUID });
    }
    const { rows } = await pool.query({ ...getJob, values: [id, user] });
    if (rows.length === 0) {
      return reply.code(404).send({ error: msgNotFound });
    }
    const row = rows[0];
    const etag = `"v${row.version}"`;
    reply.header('etag', etag).header('cache-control', 'private, no-cache');
    if (etagMatches(request.headers['if-none-match'], etag)) {
      return reply.code(304).send();
    }
    return toJob(row);
  });

  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const hostPort = new URL(address).host;
  if (cluster.isWorker) {
    process.send({ listening: hostPort });
    // The primary's exit closes the channel: go with it.
    process.on('disconnect', () => process.exit(0));
  } else {
    process.stdout.write(`${hostPort}\n`);
    exitWithStdin(() => {});
  }
}

// authenticate returns the token's sub, or null when the request has no
// valid access token.
async function authenticate(header, jwks, issuer, clientIds) {
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) {
    return null;
  }
  try {
    const { payload } = await jwtVerify(header.slice(7), jwks, {
      algorithms: ['RS256'],
      issuer,
      requiredClaims: ['exp'],
      clockTolerance: leewaySeconds,
    });
    const nowSeconds = Date.now() / 1000;
    if (payload.token_use !== 'access' || !clientIds.has(payload.client_id) || !payload.sub ||
      (typeof payload.iat === 'number' && payload.iat > nowSeconds + leewaySeconds)) {
      return null;
    }
    return payload.sub;
  } catch {
    return null;
  }
}

function etagMatches(ifNoneMatch, etag) {
  if (typeof ifNoneMatch !== 'string') {
    return false;
  }
  return ifNoneMatch.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

// toJob is the row as jobsd's GET /api/jobs/{id} writes it: timestamps in
// UTC with milliseconds (pg's Date keeps milliseconds, truncated, as jobsd
// does).
function toJob(row) {
  return {
    id: row.id,
    type: row.type,
    status: row.status,
    result: row.result,
    error: row.error,
    attempts: row.attempts,
    createdAt: iso(row.created_at),
    startedAt: iso(row.started_at),
    completedAt: iso(row.completed_at),
    updatedAt: iso(row.updated_at),
  };
}

function iso(date) {
  return date === null ? null : date.toISOString();
}

// The response schemas let Fastify serialize with fast-json-stringify, as a
// Fastify service would.
const nullableString = { type: ['string', 'null'] };
const jobSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    type: { type: 'string' },
    status: { type: 'string' },
    result: {},
    error: nullableString,
    attempts: { type: 'integer' },
    createdAt: { type: 'string' },
    startedAt: nullableString,
    completedAt: nullableString,
    updatedAt: { type: 'string' },
  },
  required: ['id', 'type', 'status', 'result', 'error', 'attempts', 'createdAt', 'startedAt', 'completedAt', 'updatedAt'],
};
const errorSchema = { type: 'object', properties: { error: { type: 'string' } }, required: ['error'] };

function required(name) {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`nodepeer: ${name} is not set\n`);
    process.exit(2);
  }
  return v;
}

// exitWithStdin runs stop and exits when stdin reaches its end.
function exitWithStdin(stop) {
  process.stdin.resume();
  process.stdin.on('end', () => {
    stop();
    process.exit(0);
  });
}

// Last, so that every constant above is initialised before a server runs.
if (cluster.isPrimary && processes > 1) {
  runPrimary();
} else {
  await runServer();
}
