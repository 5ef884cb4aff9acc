// A stage worker in its own process, for the "SIGKILL a worker mid-stage" fault: it takes jobs
// of one queue and holds them (never finishes), reporting each taken job on stdout, so the test
// can kill it while it owns a lock. argv: redisUrl stage lockDurationMs
import { Worker } from 'bullmq';

const [redisUrl, stage, lockDuration] = process.argv.slice(2);
const url = new URL(redisUrl);
const worker = new Worker(
  stage,
  async (job) => {
    process.stdout.write(`taken ${job.data.jobId}\n`);
    await new Promise((r) => setTimeout(r, 600_000));
  },
  {
    prefix: 'q',
    connection: { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null },
    concurrency: 4,
    lockDuration: Number(lockDuration),
    stalledInterval: 1000,
  },
);
worker.on('error', () => {});
