import { existsSync, readFileSync, rmSync } from 'node:fs';
import type { Logger } from '../log.ts';

/**
 * Named crash points for the zero-loss tests (test/crash-points.test.ts): at every step where
 * durability changes hands (spooled, handed to Dovecot, queued, sent, answered) the code calls
 * `app.crash('mx.after-lmtp')`. Unarmed — always, unless the test-only environment variable
 * LB_TEST_CRASH_FILE names a file — it is a function that does nothing. Armed, each call checks
 * whether that file names this point; if so it removes the file (so the restarted process does not
 * crash again) and kills its own process with SIGKILL on the spot: no cleanup, no reply, no flush,
 * exactly as if the machine's kernel had killed it there.
 */
export type CrashPoint = (name: string) => void;

export const noCrashPoints: CrashPoint = () => {};

export function crashPointsFrom(env: NodeJS.ProcessEnv, log: Logger): CrashPoint {
  const file = env.LB_TEST_CRASH_FILE;
  if (!file) return noCrashPoints;
  log.warn({ file }, 'TEST ONLY: crash points armed (LB_TEST_CRASH_FILE); never set this outside the test suite');
  return (name) => {
    if (!existsSync(file)) return;
    let wanted = '';
    try {
      wanted = readFileSync(file, 'utf8').trim();
    } catch {
      return;
    }
    if (wanted !== name) return;
    rmSync(file, { force: true });
    process.kill(process.pid, 'SIGKILL');
  };
}
