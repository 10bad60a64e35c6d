/**
 * The log window's memory: a bounded list of lines (oldest dropped first), and the merge of
 * the initial tail with lines that arrived while it was being read. Pure, unit-tested.
 */

export interface LogLine<T> {
  /** Monotonic id, so the view can tell which lines it already has. */
  id: number;
  text: string;
  data: T;
}

export class LineBuffer<T> {
  private lines: LogLine<T>[] = [];
  private nextId = 0;
  private readonly max: number;
  constructor(max: number) {
    this.max = max;
  }

  /** Appends; returns how many old lines were dropped to stay within the cap. */
  push(items: { text: string; data: T }[]): { added: LogLine<T>[]; dropped: number } {
    const added = items.map((x) => ({ id: this.nextId++, text: x.text, data: x.data }));
    this.lines.push(...added);
    const over = this.lines.length - this.max;
    if (over > 0) this.lines.splice(0, over);
    // When one push exceeds the cap, only its tail survives.
    return { added: over > 0 ? added.slice(Math.max(0, added.length - this.max)) : added, dropped: Math.max(0, over) };
  }

  get all(): readonly LogLine<T>[] {
    return this.lines;
  }

  get size(): number {
    return this.lines.length;
  }

  /** Total lines ever pushed (those dropped included). */
  get total(): number {
    return this.nextId;
  }

  clear(): void {
    this.lines = [];
  }
}

/**
 * Lines received live while the initial tail was read may repeat its last lines. Returns the
 * live lines that are new: the longest suffix of `tail` that is a prefix of `live` is skipped.
 */
export function newAfterTail(tail: readonly string[], live: readonly string[]): string[] {
  const maxK = Math.min(tail.length, live.length);
  for (let k = maxK; k > 0; k--) {
    let match = true;
    for (let i = 0; i < k; i++) {
      if (tail[tail.length - k + i] !== live[i]) {
        match = false;
        break;
      }
    }
    if (match) return live.slice(k);
  }
  return [...live];
}

/** Case-insensitive plain-text filter; an empty query matches everything. */
export function matches(text: string, query: string): boolean {
  return query === '' || text.toLowerCase().includes(query.toLowerCase());
}
