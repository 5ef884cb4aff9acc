import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { FORMAT_PRESETS, OUTPUT_CONTAINERS } from '../src/jobs.js';
import { ACTIVE_STATES, STAGES, STAGE_STATES, isTransitionAllowed, nextStage, transitionFor, type JobShape, type JobState, type Stage } from '../src/states.js';
import {
  STAGE_PAYLOAD_SCHEMAS,
  STAGE_RESULT_SCHEMAS,
  parseStageJobId,
  type DownloadResult,
  type DubCheckpoint,
  type DubResult,
  type MuxResult,
  type StageResults,
} from '../src/stages.js';
import {
  FIRST_STAGE,
  STAGE_REGISTRY,
  asStageMedia,
  completeStage,
  firstStageEnqueue,
  stageAfter,
  stageEnqueue,
  type StageEnqueue,
  type StageJob,
  type StageMedia,
} from '../src/stage-registry.js';

/** Every option a job can be created with, plus what a run may find recorded. */
interface Case {
  job: StageJob;
  withSubtitles: boolean;
  checkpoint: DubCheckpoint | null;
}

const caseArb: fc.Arbitrary<Case> = fc.record({
  job: fc.record({
    id: fc.uuid(),
    url: fc.webUrl().filter((u) => u.length <= 2048),
    requestedDubbing: fc.boolean(),
    targetLang: fc.option(fc.constantFrom('en', 'es', 'de', 'pt-BR', 'zh-Hans'), { nil: null }),
    formatPreset: fc.constantFrom(...FORMAT_PRESETS),
    outputContainer: fc.constantFrom(...OUTPUT_CONTAINERS),
    generation: fc.nat({ max: 1000 }),
  }),
  withSubtitles: fc.boolean(),
  checkpoint: fc.option(
    fc.record({ cuesDone: fc.nat(50), cuesTotal: fc.nat(50), state: fc.constant({ trackPath: 'partial.wav' }) }, { requiredKeys: ['cuesDone', 'cuesTotal'] }),
    { nil: null },
  ),
});

function expectValid(schema: TSchema, value: unknown): void {
  const errors = [...Value.Errors(schema, value)].map((e) => `${e.path} ${e.message}`);
  expect(errors, JSON.stringify(value)).toEqual([]);
}

/** A result each stage's worker could return for this case. */
function resultOf(stage: Stage, c: Case, payload: unknown): StageResults[Stage] {
  const id = c.job.id;
  if (stage === 'download') {
    const r: DownloadResult = { mediaPath: `${id}/source.mp4`, sizeBytes: 1000, durationSec: 12.5, width: 1280, height: 720 };
    return c.withSubtitles ? { ...r, subtitlePath: `${id}/source.srt` } : r;
  }
  if (stage === 'dub') {
    const lang = (payload as { targetLang: string }).targetLang;
    return { audioPath: `${id}/dub-${lang}.wav`, language: lang, cues: 7 } satisfies DubResult;
  }
  return { outputPath: `${id}/output.${c.job.outputContainer}`, container: c.job.outputContainer, sizeBytes: 2000 } satisfies MuxResult;
}

/** Runs the pipeline the way the scheduler does; returns every run it enqueues, in order. */
function runPipeline(c: Case): { runs: StageEnqueue[]; media: StageMedia[] } {
  const runs: StageEnqueue[] = [firstStageEnqueue(c.job)];
  const media: StageMedia[] = [];
  for (;;) {
    const run = runs.at(-1)!;
    const result = resultOf(run.stage, c, run.payload);
    expectValid(STAGE_RESULT_SCHEMAS[run.stage], result);
    const done = completeStage(run.stage, c.job, result, () => media);
    expect(done).not.toBeNull();
    media.push(...asStageMedia(done!.media));
    if (done!.next === null) return { runs, media };
    runs.push(done!.next);
  }
}

describe('stage registry', () => {
  it('is built from the schemas and states of stages.ts and states.ts', () => {
    expect(Object.keys(STAGE_REGISTRY)).toEqual([...STAGES]);
    for (const stage of STAGES) {
      const def = STAGE_REGISTRY[stage];
      expect(def.stage).toBe(stage);
      expect(def.states).toBe(STAGE_STATES[stage]);
      expect(def.payloadSchema).toBe(STAGE_PAYLOAD_SCHEMAS[stage]);
      expect(def.resultSchema).toBe(STAGE_RESULT_SCHEMAS[stage]);
    }
    expect(FIRST_STAGE).toBe(nextStage({ state: 'QUEUED', requestedDubbing: false }));
  });

  it('builds payloads that validate against the stage schemas, for every option combination', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { runs } = runPipeline(c);
        for (const run of runs) {
          expectValid(STAGE_PAYLOAD_SCHEMAS[run.stage], run.payload);
          expect(parseStageJobId(run.queueJobId)).toEqual({ jobId: c.job.id, stage: run.stage, generation: c.job.generation });
          expect(run.payload.generation).toBe(c.job.generation);
          expect(run.payload.workDir).toBe(c.job.id);
        }
        const [download, ...rest] = runs;
        expect(download!.payload).toMatchObject({ url: c.job.url, formatPreset: c.job.formatPreset, wantSubtitles: c.job.requestedDubbing });
        const dub = rest.find((r) => r.stage === 'dub');
        if (dub?.stage === 'dub') {
          expect(dub.payload.targetLang).toBe(c.job.targetLang ?? 'en');
          expect(dub.payload.subtitlePath !== undefined).toBe(c.withSubtitles);
        }
        const mux = runs.at(-1)!;
        expect(mux.stage).toBe('mux');
        if (mux.stage === 'mux') {
          expect(mux.payload.outputContainer).toBe(c.job.outputContainer);
          expect(mux.payload.dubbedAudioPath !== undefined).toBe(c.job.requestedDubbing);
          if (dub?.stage === 'dub') expect(mux.payload.dubbedLanguage).toBe(dub.payload.targetLang);
        }
      }),
    );
  });

  it('chains stages as the transition table moves the job: QUEUED to COMPLETE', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { runs } = runPipeline(c);
        expect(runs.map((r) => r.stage)).toEqual(c.job.requestedDubbing ? ['download', 'dub', 'mux'] : ['download', 'mux']);
        let job: JobShape = { state: 'QUEUED', requestedDubbing: c.job.requestedDubbing };
        for (const { stage } of runs) {
          expect(nextStage(job)).toBe(stage);
          for (const kind of ['stage_started', 'stage_completed'] as const) {
            const to = transitionFor(job, { kind, stage });
            expect(to).not.toBeNull();
            job = { ...job, state: to! };
          }
          const after = stageAfter(stage, c.job);
          if (after === null) expect(job.state).toBe('COMPLETE');
          else expect(isTransitionAllowed(job.state, STAGE_STATES[after].running)).toBe(true);
        }
        expect(job.state).toBe('COMPLETE');
      }),
    );
  });

  it('names as next stage only one the transition table lets start', () => {
    for (const stage of STAGES) {
      for (const requestedDubbing of [false, true]) {
        const done = STAGE_STATES[stage].done;
        const after = stageAfter(stage, { requestedDubbing });
        expect(after).toBe(nextStage({ state: done, requestedDubbing }));
        if (after === null) {
          expect(done).toBe('COMPLETE');
          continue;
        }
        const job: JobShape = { state: done, requestedDubbing };
        expect(transitionFor(job, { kind: 'stage_started', stage: after })).toBe(STAGE_STATES[after].running);
      }
    }
  });

  it('rebuilds from SQLite the payload each stage was queued with (reconciler = scheduler)', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const { runs, media } = runPipeline(c);
        // Every active state whose stage is the one due: the run rebuilt from the rows recorded so far.
        const states: JobState[] = ACTIVE_STATES.filter((s) => nextStage({ state: s, requestedDubbing: c.job.requestedDubbing }) !== null);
        for (const state of states) {
          const stage = nextStage({ state, requestedDubbing: c.job.requestedDubbing })!;
          const queued = runs.find((r) => r.stage === stage);
          if (!queued) continue; // a stage this job skips (dub without dubbing) is never due in a real job
          const before = STAGES.indexOf(stage);
          const recorded = media.filter((m) => kindStage(m.kind) < before);
          expect(stageEnqueue(stage, c.job, { media: recorded })).toEqual(queued);
        }
      }),
    );
  });

  it('hands a resumed dub its checkpoint and subtitles, and needs the source row', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const job = { ...c.job, targetLang: c.job.targetLang ?? 'es' };
        const media: StageMedia[] = [{ kind: 'source', path: `${job.id}/source.mp4` }];
        if (c.withSubtitles) media.push({ kind: 'subtitles', path: `${job.id}/source.srt` });
        const run = stageEnqueue('dub', job, { media, checkpoint: c.checkpoint });
        expect(run).not.toBeNull();
        expectValid(STAGE_PAYLOAD_SCHEMAS.dub, run!.payload);
        expect(run!.payload.checkpoint).toEqual(c.checkpoint ?? undefined);
        expect(run!.payload.subtitlePath).toBe(c.withSubtitles ? `${job.id}/source.srt` : undefined);
        expect(stageEnqueue('dub', job, { media: media.slice(1), checkpoint: c.checkpoint })).toBeNull();
        expect(stageEnqueue('mux', job, { media: [] })).toBeNull();
      }),
    );
  });

  it('records the media rows of each result', () => {
    const job: StageJob = { id: 'j1', url: 'https://x.test/v', requestedDubbing: true, targetLang: 'es', formatPreset: 'best', outputContainer: 'mkv', generation: 2 };
    const download = completeStage('download', job, { mediaPath: 'j1/source.mp4', sizeBytes: 5, title: 'T', subtitlePath: 'j1/source.srt' }, () => {
      throw new Error('the first stage reads nothing recorded');
    });
    expect(download?.media).toEqual([
      { kind: 'source', fields: { path: 'j1/source.mp4', sizeBytes: 5, durationSec: null, width: null, height: null, videoCodec: null, audioCodec: null, title: 'T', sourceUrl: 'https://x.test/v' } },
      { kind: 'subtitles', fields: { path: 'j1/source.srt' } },
    ]);
    expect(download?.outputPath).toBeNull();
    const dub = completeStage('dub', job, { audioPath: 'j1/dub-es.wav', language: 'es', cues: 3 }, () => [{ kind: 'source', path: 'j1/source.mp4' }]);
    expect(dub?.media).toEqual([{ kind: 'dubbed_audio', fields: { path: 'j1/dub-es.wav', language: 'es', durationSec: null } }]);
    expect(dub?.summary).toBe('dubbed 3 cues into es');
    expect(completeStage('dub', job, { audioPath: 'j1/dub-es.wav', language: 'es', cues: 3 }, () => [])).toBeNull();
    const mux = completeStage('mux', job, { outputPath: 'j1/output.mkv', container: 'mkv', sizeBytes: 9 }, () => []);
    expect(mux).toEqual({
      media: [{ kind: 'output', fields: { path: 'j1/output.mkv', sizeBytes: 9, durationSec: null } }],
      next: null,
      summary: 'muxed into mkv',
      outputPath: 'j1/output.mkv',
    });
  });
});

/** Index of the stage that records a media kind. */
function kindStage(kind: StageMedia['kind']): number {
  return kind === 'source' || kind === 'subtitles' ? 0 : kind === 'dubbed_audio' ? 1 : 2;
}
