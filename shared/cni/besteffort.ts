/**
 * DEL and GC are best effort (spec section 2): every step runs even when an earlier one
 * failed, and the first failure is reported once all have run.
 */
export interface BestEffort {
  step(fn: () => Promise<unknown>): Promise<void>;
  /** Throw the first failure, if any. */
  done(): void;
}

export function bestEffort(): BestEffort {
  const errors: unknown[] = [];
  return {
    async step(fn) {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    },
    done() {
      if (errors.length) throw errors[0];
    },
  };
}
