// Baseline for the ingest benchmark: a bare Fastify route with the same body schema as
// POST /api/jobs and no I/O (no auth, no SQLite, no Redis). Prints its port when listening.
import Fastify from 'fastify';
import { CreateJobBodySchema } from '@dubgate/contracts/jobs';

const app = Fastify({ logger: false, ajv: { customOptions: { removeAdditional: false, coerceTypes: false } } });
let n = 0;
app.post('/api/jobs', { schema: { body: CreateJobBodySchema } }, async (request, reply) => {
  n += 1;
  return reply.status(201).send({ job: { id: String(n), url: request.body.url, status: 'QUEUED' } });
});
await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`${app.server.address().port}\n`);
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
