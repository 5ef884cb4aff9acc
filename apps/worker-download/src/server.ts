import { runStageWorkerProcess } from '@dubgate/worker-sdk/process';
import { DOWNLOAD_FIELDS } from './config.js';
import { createDownloadProcessor } from './download.js';
import { findExecutable } from './tools.js';

/** The download worker process: queue `download` (prefix `q`), health and metrics on WORKER_PORT (9111). */
await runStageWorkerProcess({
  stage: 'download',
  defaultPort: 9111,
  extraFields: DOWNLOAD_FIELDS,
  healthChecks: { ffprobe: () => findExecutable('ffprobe') !== null },
  init: ({ config, logger }) => {
    logger.info({ ytDlp: findExecutable('yt-dlp') ?? 'not installed: web page URLs fail with EXTRACTOR_MISSING' }, 'extractor');
    return createDownloadProcessor({
      maxBytes: config.DOWNLOAD_MAX_BYTES,
      allowPrivate: config.ALLOW_PRIVATE_URLS,
      idleTimeoutMs: config.DOWNLOAD_IDLE_TIMEOUT_MS,
    });
  },
});
