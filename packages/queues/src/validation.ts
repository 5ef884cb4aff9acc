import { FormatRegistry, type TSchema, type Static } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { STAGE_PAYLOAD_SCHEMAS, type StagePayloads } from '@dubgate/contracts/stages';
import {
  CHANNEL_SCHEMAS,
  CancelSignalSchema,
  MAX_EVENT_MESSAGE_BYTES,
  type CancelSignal,
  type ChannelMessages,
  type EventChannel,
} from '@dubgate/contracts/events';
import type { Stage } from '@dubgate/contracts/states';

/** Thrown when a queue payload or a Pub/Sub message does not match its contract. Codes come from contracts' ERROR_CODES. */
export class ContractValidationError extends Error {
  override readonly name = 'ContractValidationError';
  constructor(
    readonly code: 'PAYLOAD_INVALID' | 'PAYLOAD_TOO_LARGE',
    /** What was being validated, e.g. "download payload" or "events:progress". */
    readonly subject: string,
    /** Human-readable problems, at most a handful. */
    readonly errors: readonly string[],
  ) {
    super(`${subject}: ${code === 'PAYLOAD_TOO_LARGE' ? 'message too large' : 'does not match its schema'}${errors.length ? ` (${errors.join('; ')})` : ''}`);
  }
}

// RFC 3339 date-time, as ajv-formats checks it. TypeBox rejects every value of an unregistered
// format, and the contracts' timestamps use `format: 'date-time'`.
const DATE_TIME =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):?[0-5]\d)$/;

/** Registers the string formats the contracts use, once per process (TypeBox's registry is global). */
export function registerContractFormats(): void {
  if (!FormatRegistry.Has('date-time')) {
    FormatRegistry.Set('date-time', (v) => DATE_TIME.test(v) && !Number.isNaN(Date.parse(v)));
  }
}
registerContractFormats();

export interface Validator<T> {
  check(value: unknown): value is T;
  /** Up to `max` readable problems; empty when the value is valid. */
  errors(value: unknown, max?: number): string[];
}

function compile<S extends TSchema>(schema: S): Validator<Static<S>> {
  // Compiled lazily: a process that never publishes does not pay for the code generation.
  let compiled: TypeCheck<S> | undefined;
  const get = () => (compiled ??= TypeCompiler.Compile(schema));
  return {
    check: (value: unknown): value is Static<S> => get().Check(value),
    errors(value, max = 5) {
      const out: string[] = [];
      for (const e of get().Errors(value)) {
        out.push(`${e.path || '/'}: ${e.message}`);
        if (out.length >= max) break;
      }
      return out;
    },
  };
}

function mapValues<K extends string, S extends TSchema>(record: Record<K, S>): Record<K, Validator<Static<S>>> {
  return Object.fromEntries(Object.entries<S>(record).map(([k, s]) => [k, compile(s)])) as Record<K, Validator<Static<S>>>;
}

export const stagePayloadValidators = mapValues(STAGE_PAYLOAD_SCHEMAS) as {
  [S in Stage]: Validator<StagePayloads[S]>;
};
export const channelValidators = mapValues(CHANNEL_SCHEMAS) as {
  [C in EventChannel]: Validator<ChannelMessages[C]>;
};
export const cancelSignalValidator: Validator<CancelSignal> = compile(CancelSignalSchema);

/** Throws ContractValidationError unless `payload` is a valid payload for `stage`. */
export function assertStagePayload<S extends Stage>(stage: S, payload: unknown): asserts payload is StagePayloads[S] {
  const v = stagePayloadValidators[stage] as Validator<StagePayloads[S]> | undefined;
  if (!v) throw new ContractValidationError('PAYLOAD_INVALID', `stage "${String(stage)}"`, ['unknown stage']);
  if (!v.check(payload)) throw new ContractValidationError('PAYLOAD_INVALID', `${stage} payload`, v.errors(payload));
}

/** Serializes a message and checks the size limit every consumer applies. */
export function encodeMessage(subject: string, message: unknown, maxBytes = MAX_EVENT_MESSAGE_BYTES): string {
  const text = JSON.stringify(message);
  if (typeof text !== 'string') throw new ContractValidationError('PAYLOAD_INVALID', subject, ['not JSON-serializable']);
  if (Buffer.byteLength(text, 'utf8') > maxBytes) {
    throw new ContractValidationError('PAYLOAD_TOO_LARGE', subject, [`larger than ${maxBytes} bytes`]);
  }
  return text;
}
