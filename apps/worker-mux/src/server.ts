/**
 * The mux worker process: takes jobs from the `mux` queue (prefix `q`) and writes
 * `<jobId>/output.<container>` with ffmpeg (see mux.ts). Health and metrics on WORKER_PORT
 * (default 9113). Needs ffmpeg and ffprobe.
 */
import { runStageWorkerProcess } from '@dubgate/worker-sdk/process';
import { createMuxProcessor } from './mux.js';
import { TOOL_FIELDS, defaultTools, toolHealthCheck, toolsFromConfig } from './tools.js';

let tools = defaultTools();

await runStageWorkerProcess({
  stage: 'mux',
  defaultPort: 9113,
  extraFields: TOOL_FIELDS,
  init: ({ config }) => {
    tools = toolsFromConfig(config);
    return createMuxProcessor({ tools });
  },
  healthChecks: {
    ffmpeg: toolHealthCheck(() => tools.ffmpeg, '-version'),
    ffprobe: toolHealthCheck(() => tools.ffprobe, '-version'),
  },
});
