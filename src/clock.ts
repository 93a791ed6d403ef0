/** Time source, passed in so tests can move time. */
export interface Clock {
  now(): number; // milliseconds since the epoch
}
export const systemClock: Clock = { now: () => Date.now() };
export function isoNow(clock: Clock): string {
  return new Date(clock.now()).toISOString();
}
