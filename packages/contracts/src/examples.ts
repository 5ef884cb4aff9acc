/**
 * Documented examples of every exported schema, keyed by JSON Schema file name.
 * The docs quote these and the tests check them against the files, so they cannot drift.
 */
const jobId = '01936f7e-8b1c-7d2e-9f3a-4b5c6d7e8f90';
const ts = '2026-11-25T10:00:00.000Z';

const job = {
  id: jobId,
  ownerId: 'u_01936f7e8b1c',
  url: 'https://videos.example.com/watch?v=abc123',
  requestedDubbing: true,
  targetLang: 'es',
  formatPreset: 'best',
  outputContainer: 'mp4',
  status: 'DOWNLOADING',
  generation: 0,
  attempt: 1,
  failedStage: null,
  error: null,
  holdReason: null,
  progress: { stage: 'download', percent: 42.5, speed: 1048576, eta: 12, step: 'transfer', updatedAt: ts },
  outputPath: null,
  createdAt: ts,
  updatedAt: ts,
};
const event = {
  id: 17,
  jobId,
  type: 'state_change',
  level: 'info',
  message: 'QUEUED → DOWNLOADING',
  payload: { from: 'QUEUED', to: 'DOWNLOADING' },
  createdAt: ts,
};
const media = {
  id: 3,
  jobId,
  kind: 'source',
  path: `${jobId}/source.mp4`,
  sizeBytes: 1234567,
  durationSec: 12.5,
  width: 1280,
  height: 720,
  videoCodec: 'h264',
  audioCodec: 'aac',
  language: null,
  title: 'Test pattern',
  sourceUrl: 'https://videos.example.com/watch?v=abc123',
  createdAt: ts,
};

export interface SchemaExamples {
  valid: unknown[];
  invalid?: unknown[];
}

export const EXAMPLES: Record<string, SchemaExamples> = {
  'download-payload.schema.json': {
    valid: [{ jobId, generation: 0, workDir: jobId, url: 'https://videos.example.com/v.mp4', formatPreset: 'best', wantSubtitles: true }],
    invalid: [
      { jobId, generation: 0, workDir: '../etc', url: 'https://x.test/v.mp4', formatPreset: 'best', wantSubtitles: false },
      { jobId, generation: 0, workDir: jobId, url: 'https://x.test/v.mp4', formatPreset: '4k', wantSubtitles: false },
    ],
  },
  'download-result.schema.json': {
    valid: [
      {
        mediaPath: `${jobId}/source.mp4`,
        sizeBytes: 1234567,
        title: 'Test pattern',
        durationSec: 12.5,
        width: 1280,
        height: 720,
        videoCodec: 'h264',
        audioCodec: 'aac',
        subtitlePath: `${jobId}/source.srt`,
      },
      { mediaPath: `${jobId}/source.webm`, sizeBytes: 10 },
    ],
    invalid: [{ mediaPath: '/etc/passwd', sizeBytes: 1 }, { mediaPath: `${jobId}/../../x`, sizeBytes: 1 }],
  },
  'dub-payload.schema.json': {
    valid: [
      { jobId, generation: 0, workDir: jobId, mediaPath: `${jobId}/source.mp4`, subtitlePath: `${jobId}/source.srt`, targetLang: 'es' },
      {
        jobId,
        generation: 1,
        workDir: jobId,
        mediaPath: `${jobId}/source.mp4`,
        targetLang: 'pt-BR',
        checkpoint: { cuesDone: 12, cuesTotal: 40 },
      },
    ],
    invalid: [{ jobId, generation: 0, workDir: jobId, mediaPath: `${jobId}/source.mp4`, targetLang: 'not a language' }],
  },
  'dub-result.schema.json': {
    valid: [{ audioPath: `${jobId}/dub.es.wav`, language: 'es', cues: 40, durationSec: 12.5 }],
  },
  'dub-checkpoint.schema.json': {
    valid: [{ cuesDone: 12, cuesTotal: 40, state: { trackPath: `${jobId}/dub.es.partial.wav` } }],
    invalid: [{ cuesDone: -1, cuesTotal: 40 }],
  },
  'mux-payload.schema.json': {
    valid: [
      {
        jobId,
        generation: 0,
        workDir: jobId,
        mediaPath: `${jobId}/source.mp4`,
        dubbedAudioPath: `${jobId}/dub.es.wav`,
        dubbedLanguage: 'es',
        outputContainer: 'mkv',
      },
    ],
    invalid: [{ jobId, generation: 0, workDir: jobId, mediaPath: `${jobId}/source.mp4`, outputContainer: 'avi' }],
  },
  'mux-result.schema.json': {
    valid: [{ outputPath: `${jobId}/output.mkv`, container: 'mkv', sizeBytes: 2345678, durationSec: 12.5 }],
  },
  'cancel-signal.schema.json': {
    valid: [{ jobId, stageJobId: `${jobId}_download_g0`, reason: 'canceled by user', timestamp: ts }],
    invalid: [{ jobId, reason: 'x' }],
  },
  'events-progress.schema.json': {
    valid: [
      {
        jobId,
        type: 'progress',
        timestamp: ts,
        payload: { stage: 'download', percent: 42.5, speed: 1048576, eta: 12, step: 'transfer', seq: 7 },
      },
      { jobId, type: 'progress', timestamp: ts, payload: { stage: 'mux', percent: 100, final: true } },
    ],
    invalid: [
      { jobId, type: 'progress', timestamp: ts, payload: { stage: 'download', percent: 140 } },
      { jobId, type: 'progress', timestamp: ts, payload: { stage: 'download', percent: 1 }, __proto__x: 1 },
    ],
  },
  'events-state-change.schema.json': {
    valid: [{ jobId, type: 'state_change', timestamp: ts, payload: { from: 'QUEUED', to: 'DOWNLOADING', ownerId: 'u_1', eventId: 17 } }],
    invalid: [{ jobId, type: 'state_change', timestamp: ts, payload: { from: 'QUEUED', to: 'DONE', ownerId: 'u_1', eventId: 17 } }],
  },
  'events-job-added.schema.json': {
    valid: [{ jobId, type: 'job_added', timestamp: ts, payload: { url: job.url, status: 'QUEUED', ownerId: 'u_1', eventId: 16 } }],
  },
  'events-job-removed.schema.json': {
    valid: [{ jobId, type: 'job_removed', timestamp: ts, payload: { ownerId: 'u_1' } }],
  },
  'events-log.schema.json': {
    valid: [{ jobId, type: 'log', timestamp: ts, payload: { level: 'info', message: 'fetched 12 MB', stage: 'download' } }],
    invalid: [{ jobId, type: 'log', timestamp: ts, payload: { level: 'loud', message: 'x' } }],
  },
  'events-error.schema.json': {
    valid: [
      {
        jobId,
        type: 'error',
        timestamp: ts,
        payload: { code: 'NO_SUBTITLES', message: 'the media has no subtitles to dub', stage: 'dub', permanent: true },
      },
    ],
  },
  'events-notification.schema.json': {
    valid: [
      {
        jobId: 'system',
        type: 'notification',
        timestamp: ts,
        payload: {
          type: 'disk_space_low',
          title: 'Downloads on hold',
          message: '512 MB free under MEDIA_ROOT; 1 GB needed',
          severity: 'warning',
          userIds: ['u_1'],
        },
      },
    ],
  },
  'ws-progress.schema.json': {
    valid: [{ jobId, type: 'download', percent: 42.5, speed: 1048576, eta: 12, stage: 'transfer', seq: 7, timestamp: ts }],
  },
  'ws-state-change.schema.json': {
    valid: [{ jobId, from: 'QUEUED', to: 'DOWNLOADING', timestamp: ts, eventId: 17 }],
  },
  'ws-log.schema.json': { valid: [{ jobId, level: 'warn', message: 'slow server', timestamp: ts, eventId: 18 }] },
  'ws-notification.schema.json': {
    valid: [{ type: 'disk_space_low', title: 'Downloads on hold', message: '512 MB free', severity: 'warning' }],
  },
  'ws-job-added.schema.json': { valid: [{ jobId, url: job.url, status: 'QUEUED', eventId: 16 }] },
  'ws-job-removed.schema.json': { valid: [{ jobId }] },
  'ws-error.schema.json': {
    valid: [{ jobId, code: 'STAGE_FAILED', message: 'download failed: HTTP 404' }, { code: 'RATE_LIMITED', message: 'slow down' }],
  },
  'ws-subscribe-args.schema.json': { valid: [[jobId]], invalid: [[], 'not-an-array'] },
  'ws-subscription-ack.schema.json': {
    valid: [{ ok: true, results: [{ jobId, accepted: true }, { jobId: 'someone-elses', accepted: false, code: 'JOB_NOT_FOUND' }] }],
  },
  'ws-authenticate-ack.schema.json': {
    valid: [{ ok: true, userId: 'u_1' }, { ok: false, error: { code: 'TOKEN_INVALID', message: 'The token is not valid' } }],
  },
  'create-job-body.schema.json': {
    valid: [
      { url: 'https://videos.example.com/watch?v=abc123' },
      { url: 'https://videos.example.com/v.mp4', requestedDubbing: true, targetLang: 'es', formatPreset: '720p', outputContainer: 'mkv' },
    ],
    invalid: [{ url: 'https://x.test/v', status: 'COMPLETE' }, { url: 'https://x.test/v', ownerId: 'u_2' }, {}],
  },
  'job.schema.json': { valid: [job] },
  'media.schema.json': { valid: [media] },
  'job-event.schema.json': { valid: [event] },
  'job-detail.schema.json': { valid: [{ job, media: [media], events: [event], eventsTruncated: false }] },
  'list-jobs-query.schema.json': {
    valid: [{ status: 'QUEUED,FAILED', search: 'youtube', limit: 20 }, { cursor: 'AZNvfosc', limit: 50 }],
    invalid: [{ status: 'queued' }, { limit: 0 }],
  },
  'job-list-response.schema.json': { valid: [{ items: [job], total: 1, totalExact: true, nextCursor: null }] },
  'logs-query.schema.json': { valid: [{ after: 17, limit: 100, level: 'error' }] },
  'logs-response.schema.json': { valid: [{ items: [event], nextAfter: 17 }] },
  'login-body.schema.json': { valid: [{ username: 'admin', password: 'correct horse battery staple' }], invalid: [{ username: 'admin' }] },
  'login-response.schema.json': {
    valid: [
      {
        token: 'eyJhbGciOiJIUzI1NiJ9.e30.sig',
        expiresAt: ts,
        csrfToken: 'b3JhbmdlLWNzcmY',
        user: { id: 'u_1', username: 'admin', role: 'admin' },
      },
    ],
  },
  'error-response.schema.json': {
    valid: [{ error: { code: 'JOB_NOT_CANCELABLE', message: 'The job cannot be canceled in its current state', requestId: 'req-1' } }],
  },
  'job-state.schema.json': { valid: ['QUEUED', 'COMPLETE'], invalid: ['DONE'] },
  'stage.schema.json': { valid: ['download', 'dub', 'mux'], invalid: ['upload'] },
  'error-code.schema.json': { valid: ['VALIDATION_FAILED', 'JOB_NOT_FOUND'], invalid: ['NOPE'] },
  'transitions.schema.json': {
    valid: [
      {
        QUEUED: ['DOWNLOADING', 'FAILED', 'CANCELED'],
        DOWNLOADING: ['DOWNLOADED', 'FAILED', 'CANCELED'],
        DOWNLOADED: ['DUBBING', 'MUXING', 'FAILED', 'CANCELED'],
        DUBBING: ['DUBBED', 'FAILED', 'CANCELED'],
        DUBBED: ['MUXING', 'FAILED', 'CANCELED'],
        MUXING: ['COMPLETE', 'FAILED', 'CANCELED'],
        COMPLETE: [],
        FAILED: ['QUEUED', 'DUBBING'],
        CANCELED: ['QUEUED'],
      },
    ],
  },
};
