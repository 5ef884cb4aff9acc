/** JSON text for a column, or null. */
export function toJson(value: unknown): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

/** Parses a JSON column; a malformed value reads as null rather than breaking a listing. */
export function fromJson<T = Record<string, unknown>>(text: string | null | undefined): T | null {
  if (text === null || text === undefined) return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}
