/**
 * Records keyed by VM name (the settings' autostart and ssh users). A VM may be called
 * `constructor`, `__proto__`, `toString` or `hasOwnProperty`: `rec[name]` would then read
 * Object.prototype's member, and `rec[name] = v` on `__proto__` would replace the prototype
 * instead of storing anything. So every read asks for the record's own key, and every write makes
 * a prototype-free copy, where `__proto__` is a key like any other. Plain code (the renderer uses it).
 */

/** The value `rec` itself holds under `key` (never an inherited one). */
export function ownValue<T>(rec: Readonly<Record<string, T>> | null | undefined, key: string): T | undefined {
  return rec !== null && rec !== undefined && Object.hasOwn(rec, key) ? rec[key] : undefined;
}

/** A prototype-free copy of `rec`'s own entries. */
export function plainRecord<T>(rec: Readonly<Record<string, T>> | null | undefined): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  if (rec) for (const [k, v] of Object.entries(rec)) out[k] = v;
  return out;
}

/** A prototype-free copy of `rec` with `key` set to `value`. */
export function withEntry<T>(
  rec: Readonly<Record<string, T>> | null | undefined,
  key: string,
  value: T,
): Record<string, T> {
  const out = plainRecord(rec);
  out[key] = value;
  return out;
}

/** A prototype-free copy of `rec` without `key`. */
export function withoutEntry<T>(rec: Readonly<Record<string, T>> | null | undefined, key: string): Record<string, T> {
  const out = plainRecord(rec);
  delete out[key];
  return out;
}
