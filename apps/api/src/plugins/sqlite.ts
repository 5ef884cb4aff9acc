import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { openDatabase, closeDatabase, type Database } from '@dubgate/db/open';
import { createJobsRepository, type JobsRepository } from '@dubgate/db/jobs';
import { createEventsRepository, type EventsRepository } from '@dubgate/db/events';
import { createOutboxRepository, type OutboxRepository } from '@dubgate/db/outbox';
import { createAuthRepository, type AuthRepository } from '@dubgate/db/auth';
import { createGroupCommit, type GroupCommit } from '@dubgate/db/group-commit';
import { groupCommitMetrics, type Metrics } from '@dubgate/runtime/metrics';

export interface Repositories {
  jobs: JobsRepository;
  events: EventsRepository;
  outbox: OutboxRepository;
  auth: AuthRepository;
}

declare module 'fastify' {
  interface FastifyInstance {
    db: Database;
    repos: Repositories;
    groupCommit: GroupCommit;
  }
}

export interface SqliteOptions {
  dbPath: string;
  metrics: Metrics;
}

/** Opens (and migrates) the SQLite file, with its repositories and group commit. */
async function sqlite(app: FastifyInstance, opts: SqliteOptions): Promise<void> {
  const db = openDatabase(opts.dbPath);
  // Registered before anything else can fail, so the file is closed on every path.
  let groupCommit: GroupCommit | null = null;
  app.addHook('onClose', async () => {
    try {
      // Commit what is queued before the connection goes; a throwing flush must not keep it open.
      groupCommit?.flush();
    } finally {
      closeDatabase(db);
    }
  });
  groupCommit = createGroupCommit(db, { onCommit: groupCommitMetrics(opts.metrics) });
  app.decorate('db', db);
  app.decorate('groupCommit', groupCommit);
  app.decorate('repos', {
    jobs: createJobsRepository(db),
    events: createEventsRepository(db),
    outbox: createOutboxRepository(db),
    auth: createAuthRepository(db),
  });
}

export default fp(sqlite, { name: 'sqlite' });
