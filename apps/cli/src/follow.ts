import type { Socket } from 'socket.io-client';
import type { Job, JobDetail } from '@dubgate/contracts/jobs';
import type { JobState } from '@dubgate/contracts/states';
import type { ClientToServerEvents, ServerToClientEvents, SubscriptionAck, WsError, WsLog, WsProgress, WsStateChange } from '@dubgate/contracts/ws';
import type { ApiClient } from './client.js';
import { CliError, EXIT } from './errors.js';
import { formatEta, formatSpeed } from './format.js';

const TERMINAL: ReadonlySet<string> = new Set(['COMPLETE', 'FAILED', 'CANCELED']);
const API_TOKEN_PREFIX = 'dgt_';

export function exitCodeForFinalState(status: JobState): number {
  if (status === 'COMPLETE') return EXIT.OK;
  if (status === 'CANCELED') return EXIT.CANCELED;
  return EXIT.FAILURE;
}

export interface FollowOptions {
  api: ApiClient;
  realtimeUrl: string;
  jobId: string;
  json: boolean;
  /** Draw a progress bar (stdout is a terminal and not --json). */
  tty: boolean;
  /** How often to poll the job over REST while the socket is up (ms). */
  pollMs: number;
  out: NodeJS.WritableStream & { columns?: number };
  err: NodeJS.WritableStream;
}

interface ProgressView {
  stage: string;
  percent: number;
  speed: number | null;
  eta: number | null;
  step: string | null;
}

/** Follows a job until it ends; resolves with the exit code (0 COMPLETE, 1 FAILED, 2 CANCELED). */
export async function followJob(opts: FollowOptions): Promise<number> {
  const { api, jobId, json } = opts;
  const path = `/api/jobs/${jobId}`;
  const first = await api.get<JobDetail>(path);
  let status: JobState = first.job.status;
  let progress: ProgressView | null = first.job.progress
    ? { stage: first.job.progress.stage, percent: first.job.progress.percent, speed: first.job.progress.speed, eta: first.job.progress.eta, step: first.job.progress.step }
    : null;
  let barShown = false;
  let lastPlain = '';

  const time = () => new Date().toISOString().slice(11, 23);
  const jsonLine = (doc: Record<string, unknown>) => opts.out.write(`${JSON.stringify({ ...doc, at: new Date().toISOString() })}\n`);

  function bar(): string {
    const cols = Math.max(60, Math.min(opts.out.columns || Number(process.env.COLUMNS) || 80, 120));
    const p = progress;
    const pct = p ? p.percent : 0;
    const tail = p
      ? ` ${pct.toFixed(1).padStart(5)}%  ${formatSpeed(p.speed)}  eta ${formatEta(p.eta)}  ${status} ${p.stage}${p.step ? ` ${p.step}` : ''}`
      : `   0.0%  ${status}`;
    const width = Math.max(10, Math.min(40, cols - tail.length - 3));
    const filled = Math.round((pct / 100) * width);
    return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]${tail}`.slice(0, cols - 1);
  }
  function drawBar() {
    if (!opts.tty) return;
    opts.out.write(`\r\x1b[2K${bar()}`);
    barShown = true;
  }
  /** A line above the bar (TTY) or a plain line. */
  function line(text: string) {
    if (opts.tty) {
      opts.out.write(`\r\x1b[2K${text}\n`);
      drawBar();
    } else {
      opts.out.write(`${time()}  ${text}\n`);
    }
  }

  function onProgress(p: ProgressView, source: 'live' | 'poll') {
    const prev = progress;
    progress = p;
    if (json) {
      if (prev && prev.stage === p.stage && prev.percent === p.percent && source === 'poll') return;
      jsonLine({ event: 'progress', jobId, type: p.stage, percent: p.percent, speed: p.speed, eta: p.eta, stage: p.step, source });
      return;
    }
    if (opts.tty) {
      drawBar();
      return;
    }
    const text = `progress  ${p.stage} ${Math.floor(p.percent)}%  speed ${formatSpeed(p.speed)}  eta ${formatEta(p.eta)}`;
    const key = `${p.stage}:${Math.floor(p.percent)}`;
    if (key !== lastPlain) {
      lastPlain = key;
      line(text);
    }
  }

  function onState(from: JobState | null, to: JobState, reason?: string) {
    if (to === status && from !== null) return;
    const old = status;
    status = to;
    if (json) jsonLine({ event: 'state_change', jobId, from: from ?? old, to, ...(reason ? { reason } : {}) });
    else line(`state     ${from ?? old} -> ${to}${reason ? `  (${reason})` : ''}`);
  }

  if (json) {
    jsonLine({ event: 'status', jobId, status, job: first.job });
    if (progress && !TERMINAL.has(status)) jsonLine({ event: 'progress', jobId, type: progress.stage, percent: progress.percent, speed: progress.speed, eta: progress.eta, stage: progress.step, source: 'poll' });
  }
  else if (opts.tty) {
    opts.out.write(`following job ${jobId} (${first.job.url})\n`);
    drawBar();
  } else line(`status    ${status}  ${first.job.url}`);

  if (TERMINAL.has(status)) return finish(first.job);

  let socket: Socket<ServerToClientEvents, ClientToServerEvents> | null = null;
  let pollTimer: NodeJS.Timeout | null = null;
  let pollMs = opts.pollMs;
  let done = false;
  let noticeShown = false;

  function notice(text: string) {
    if (noticeShown || done) return;
    noticeShown = true;
    if (json) jsonLine({ event: 'notice', jobId, message: text });
    else if (opts.tty) line(`note: ${text}`);
    else opts.err.write(`note: ${text}\n`);
  }

  function finish(job: Job): number {
    // An ended job has no snapshot of its own: the bar shows the last update seen, completed.
    if (progress && job.status === 'COMPLETE') progress = { ...progress, percent: 100, eta: 0 };
    const code = exitCodeForFinalState(job.status);
    if (json) {
      jsonLine({ event: 'end', jobId, status: job.status, exitCode: code, outputPath: job.outputPath, error: job.error, job });
    } else {
      if (opts.tty) {
        if (job.status === 'COMPLETE') drawBar();
        if (barShown) opts.out.write('\n');
      }
      const tail =
        job.status === 'COMPLETE'
          ? job.outputPath
            ? `  output: ${job.outputPath}`
            : ''
          : job.error
            ? `  ${job.error.code}: ${job.error.message}`
            : '';
      const text = `job ${jobId} ${job.status}${tail}`;
      opts.out.write(opts.tty ? `${text}\n` : `${time()}  ${text}\n`);
    }
    return code;
  }

  const token = api.token ?? '';
  const useSocket = !token.startsWith(API_TOKEN_PREFIX);
  // Loaded only here: every other command starts faster without it.
  const io = useSocket ? (await import('socket.io-client')).io : null;

  return await new Promise<number>((resolve, reject) => {
    let consecutiveFailures = 0;

    const stop = () => {
      done = true;
      if (pollTimer) clearTimeout(pollTimer);
      if (socket) {
        socket.removeAllListeners();
        socket.io.removeAllListeners();
        socket.close();
      }
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
    };
    const end = (job: Job) => {
      if (done) return;
      stop();
      resolve(finish(job));
    };
    const fail = (err: unknown) => {
      if (done) return;
      stop();
      if (opts.tty && barShown) opts.out.write('\n');
      reject(err);
    };
    const onSigint = () => {
      if (done) return;
      stop();
      if (opts.tty && barShown) opts.out.write('\n');
      reject(new CliError('INTERRUPTED', 'interrupted; the job goes on (follow it again with `dubgate follow`)', 130));
    };
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);

    async function poll() {
      pollTimer = null;
      if (done) return;
      try {
        const detail = await api.get<JobDetail>(path);
        consecutiveFailures = 0;
        if (done) return;
        const job = detail.job;
        if (job.status !== status) onState(status, job.status);
        if (job.progress && !TERMINAL.has(job.status)) {
          const p = job.progress;
          if (!progress || p.stage !== progress.stage || p.percent > progress.percent) {
            onProgress({ stage: p.stage, percent: p.percent, speed: p.speed, eta: p.eta, step: p.step }, 'poll');
          }
        }
        if (TERMINAL.has(job.status)) {
          end(job);
          return;
        }
      } catch (err) {
        if (err instanceof CliError && err.exitCode === EXIT.CONNECTION && ++consecutiveFailures < 5) {
          // A blip: try again on the next tick.
        } else {
          fail(err);
          return;
        }
      }
      if (!done) pollTimer = setTimeout(() => void poll(), pollMs);
    }
    const pollSoon = () => {
      if (done) return;
      if (pollTimer) clearTimeout(pollTimer);
      pollTimer = setTimeout(() => void poll(), 0);
    };

    if (!io) {
      // Realtime nodes take session tokens only: follow by polling.
      pollMs = Math.min(pollMs, 1000);
      notice('API tokens are not accepted on the WebSocket; following by polling the REST API (log in for live updates)');
    } else {
      socket = io(opts.realtimeUrl, {
        auth: { token },
        transports: ['websocket'],
        reconnectionDelayMax: 5000,
        timeout: 5000,
        forceNew: true,
      });
      socket.on('connect', () => {
        socket!
          .timeout(5000)
          .emitWithAck('subscribe', [jobId])
          .then((ack: SubscriptionAck) => {
            const r = ack.results.find((x) => x.jobId === jobId);
            if (!ack.ok || !r?.accepted) notice(`live updates refused (${r?.code ?? ack.error?.code ?? 'UNKNOWN'}); polling the REST API`);
          })
          .catch(() => notice('no answer to subscribe; polling the REST API'));
        // Catch up on whatever happened while we were not subscribed.
        pollSoon();
      });
      socket.on('connect_error', (err: Error & { data?: { code?: string; message?: string } }) => {
        if (err.data?.code) {
          // The server refused us (token): no point retrying the socket.
          pollMs = Math.min(pollMs, 1000);
          socket?.close();
          notice(`live updates unavailable (${err.data.code}: ${err.data.message ?? err.message}); polling the REST API`);
        } else {
          notice(`cannot reach ${opts.realtimeUrl} (${err.message}); polling the REST API meanwhile`);
        }
      });
      socket.on('progress', (e: WsProgress) => {
        if (e.jobId !== jobId || done) return;
        onProgress({ stage: e.type, percent: e.percent, speed: e.speed, eta: e.eta, step: e.stage }, 'live');
      });
      socket.on('state_change', (e: WsStateChange) => {
        if (e.jobId !== jobId || done) return;
        onState(e.from, e.to, e.reason);
        // Pub/Sub is at most once and not the source of truth: confirm the end over REST.
        if (TERMINAL.has(e.to)) pollSoon();
      });
      socket.on('log', (e: WsLog) => {
        if (e.jobId !== jobId || done) return;
        if (json) jsonLine({ event: 'log', ...e });
        else line(`log       ${e.level.padEnd(5)} ${e.message}`);
      });
      socket.on('error', (e: WsError) => {
        if (e.jobId !== jobId || done) return;
        if (json) jsonLine({ event: 'error', ...e });
        else line(`error     ${e.code}: ${e.message}`);
      });
    }
    pollTimer = setTimeout(() => void poll(), pollMs);
  });
}
