// The last 5xx responses, for the status pages' "recent errors" (an app's 500 is no log line at
// the front: it must show there all the same). Bounded in memory and in work: at most PER_SECOND
// entries a second are kept; the rest are only counted on the second's last entry.

const SIZE = 30;
const PER_SECOND = 10;

export interface RecentResponse {
  time: string;
  status: number;
  method: string;
  /** The request path, its query cut (queries carry tokens). */
  path: string;
  /** The backend (front) or the worker (serve) that answered. */
  by: string;
  ms: number;
  /** Like responses in the same second that were not kept. */
  more: number;
}

export class RecentResponses {
  readonly #items: RecentResponse[] = [];
  #second = 0;
  #inSecond = 0;

  push(status: number, method: string, url: string, by: string, ms: number, nowMs: number): void {
    const sec = Math.floor(nowMs / 1000);
    if (sec !== this.#second) {
      this.#second = sec;
      this.#inSecond = 0;
    }
    if (++this.#inSecond > PER_SECOND) {
      this.#items[this.#items.length - 1]!.more++;
      return;
    }
    const q = url.indexOf('?');
    if (this.#items.length >= SIZE) this.#items.shift();
    this.#items.push({ time: new Date(nowMs).toISOString(), status, method, path: q === -1 ? url : `${url.slice(0, q)}?…`,
      by, ms: Math.round(ms), more: 0 });
  }

  /** Newest first. */
  list(): RecentResponse[] {
    return this.#items.slice().reverse();
  }
}

/** Several processes' lists as one, newest first. */
export function mergeResponses(lists: readonly (readonly RecentResponse[])[]): RecentResponse[] {
  return lists.flat().sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0)).slice(0, SIZE);
}
