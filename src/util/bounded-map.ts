/**
 * A Map that holds at most `max` entries: adding a new key to a full one first drops the oldest
 * quarter (first in, first out: a Map iterates in insertion order). Dropping a quarter rather than
 * everything keeps a working set about the size of the map from missing again and again. For the
 * in-memory caches (read caches, DNS answers, MTA-STS policies, API key use), whose dropped entries
 * are simply read again.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  readonly max: number;

  constructor(max: number) {
    super();
    this.max = max;
  }

  override set(key: K, value: V): this {
    if (this.size >= this.max && !this.has(key)) {
      let n = Math.max(1, this.max >> 2);
      for (const k of this.keys()) {
        this.delete(k);
        if (--n === 0) break;
      }
    }
    return super.set(key, value);
  }
}
