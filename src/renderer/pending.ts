/**
 * Edits a window sent to the agent that the agent has not answered yet. They overlay every
 * snapshot the window renders, so a control keeps the user's value until the agent acknowledges
 * the edit (its answer becomes the base) or refuses it (the edit is dropped, and the control shows
 * the agent's value again). Without the overlay, snapshots pushed while the edit was in flight
 * (ten a second during a build) put the old value back: a clicked checkbox flipped back.
 *
 * Snapshots are computed when they are sent and arrive in order with the answers, so once the
 * answer is in, every later snapshot already has the edit (or the agent's newer value).
 */
export class PendingEdits<T extends object> {
  #next = 0;
  readonly #edits = new Map<number, Partial<T>>();

  /** Records an edit in flight; settle(id) when the agent has answered it. */
  add(patch: Partial<T>): number {
    const id = ++this.#next;
    this.#edits.set(id, patch);
    return id;
  }

  settle(id: number): void {
    this.#edits.delete(id);
  }

  get size(): number {
    return this.#edits.size;
  }

  /** `base` with the edits in flight applied, the latest last. */
  overlay(base: T): T {
    let out = base;
    for (const patch of this.#edits.values()) out = { ...out, ...patch };
    return out;
  }
}
