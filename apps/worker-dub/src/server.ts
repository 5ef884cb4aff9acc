/**
 * The dub worker process: takes jobs from the `dub` queue (prefix `q`), speaks each subtitle cue
 * with espeak-ng and writes the dubbed track (see dub.ts). Health and metrics on WORKER_PORT
 * (default 9112). Needs ffmpeg, ffprobe and espeak-ng.
 */
import { runStageWorkerProcess } from '@dubgate/worker-sdk/process';
import { createDubProcessor } from './dub.js';
import { identityTranslate } from './translate.js';
import { TOOL_FIELDS, defaultTools, toolHealthCheck, toolsFromConfig } from './tools.js';

let tools = defaultTools();

await runStageWorkerProcess({
  stage: 'dub',
  defaultPort: 9112,
  extraFields: TOOL_FIELDS,
  init: ({ config }) => {
    tools = toolsFromConfig(config);
    // The translation hook: put a real translator here instead of the identity (see translate.ts).
    return createDubProcessor({ tools, translate: identityTranslate });
  },
  healthChecks: {
    ffmpeg: toolHealthCheck(() => tools.ffmpeg, '-version'),
    ffprobe: toolHealthCheck(() => tools.ffprobe, '-version'),
    'espeak-ng': toolHealthCheck(() => tools.espeak, '--version'),
  },
});
