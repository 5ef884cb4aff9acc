/** Clock used by repositories; tests pass their own. */
export type Clock = () => Date;

export const systemClock: Clock = () => new Date();

/** ISO 8601 UTC with milliseconds (`2025-01-02T03:04:05.678Z`): sorts as text. */
export function toIso(value: Date | string | number): string {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) throw new RangeError(`not a valid timestamp: ${String(value)}`);
  return d.toISOString();
}
