// A mailbox's Sieve scripts, managed through Dovecot's own tool (`doveadm sieve …`) so the API, the
// CLI and ManageSieve clients see one storage (Pigeonhole's, under the mailbox's home) and one
// compiler: a script Dovecot cannot compile is refused with its message and line, never stored.
import { execFile } from 'node:child_process';
import { LetterboxError } from '../errors.ts';

export interface SieveTarget {
  /** doveadm's path. */
  doveadm: string;
  /** The generated dovecot.conf. */
  config: string;
  /** The mailbox address (Dovecot's user name). */
  user: string;
}

export interface SieveScriptInfo {
  name: string;
  active: boolean;
}

export interface SieveCompileError {
  line: number | null;
  message: string;
}

/** ManageSieve-safe names (RFC 5804 allows more; these survive every client and file system). */
export const SCRIPT_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}$/;

export function checkScriptName(name: string): string {
  if (!SCRIPT_NAME.test(name) || name.endsWith('.sieve')) {
    throw new LetterboxError('validation_error', `invalid script name "${name}": 1-64 letters, digits, space . _ + - (starting with a letter or digit, without ".sieve")`);
  }
  return name;
}

/**
 * Compiler messages from doveadm's stderr: "doveadm(u): Error: sieve: NAME: line 3: unknown command
 * 'x'". The summary line ("validation failed") is dropped when there are real ones. Pure.
 */
export function parseCompileErrors(stderr: string): SieveCompileError[] {
  const out: SieveCompileError[] = [];
  for (const raw of stderr.split('\n')) {
    const m = /Error: sieve: [^:]*: (.*)$/.exec(raw);
    if (!m) continue;
    const msg = m[1].trim();
    const l = /^line (\d+): (.*)$/.exec(msg);
    if (l) out.push({ line: Number(l[1]), message: l[2].replace(/ \(only reported once at first occurrence\)$/, '') });
    else if (!/^(validation|parse|code generation) failed$/.test(msg)) out.push({ line: null, message: msg });
  }
  if (out.length === 0) {
    const last = stderr.split('\n').map((l) => l.replace(/^.*?Error:\s*/, '').trim()).filter(Boolean).pop();
    if (last) out.push({ line: null, message: last });
  }
  return out;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(t: SieveTarget, args: string[], input?: string): Promise<Run> {
  return new Promise((res) => {
    const child = execFile(t.doveadm, ['-c', t.config, ...args], { timeout: 20000, maxBuffer: 8 * 1024 * 1024 }, (err: any, stdout, stderr) =>
      res({ code: err ? (typeof err.code === 'number' ? err.code : 75) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? '');
  });
}

// sysexits.h, as doveadm uses them.
const EX_DATAERR = 65;
const EX_NOUSER = 67;
const EX_NOTFOUND = 68;

function fail(t: SieveTarget, r: Run, what: string, name?: string): never {
  const msg = r.stderr.split('\n').map((l) => l.replace(/^.*?Error:\s*/, '').trim()).filter(Boolean).pop() ?? `doveadm exited ${r.code}`;
  if (r.code === EX_NOTFOUND) throw new LetterboxError('not_found', `no Sieve script "${name}" for ${t.user}`);
  if (r.code === EX_NOUSER) throw new LetterboxError('unavailable', `Dovecot does not know ${t.user} yet (a new mailbox takes about a second); try again`);
  if (/quota|too many|too large/i.test(msg)) throw new LetterboxError('conflict', `${what}: ${msg}`);
  throw new LetterboxError('unavailable', `${what} failed in Dovecot: ${msg}`);
}

export async function listScripts(t: SieveTarget): Promise<SieveScriptInfo[]> {
  const r = await run(t, ['-f', 'json', 'sieve', 'list', '-u', t.user]);
  if (r.code !== 0) fail(t, r, 'listing Sieve scripts');
  const rows = r.stdout.trim() ? (JSON.parse(r.stdout) as { script: string; active: string }[]) : [];
  return rows.map((x) => ({ name: x.script, active: x.active === 'ACTIVE' })).sort((a, b) => a.name.localeCompare(b.name));
}

export async function getScript(t: SieveTarget, name: string): Promise<string> {
  checkScriptName(name);
  const r = await run(t, ['-f', 'json', 'sieve', 'get', '-u', t.user, name]);
  if (r.code !== 0) fail(t, r, `reading Sieve script "${name}"`, name);
  const rows = JSON.parse(r.stdout || '[]') as Record<string, string>[];
  return rows[0] ? Object.values(rows[0])[0] ?? '' : '';
}

/**
 * Compiles and stores a script (replacing one of the same name); a script that does not compile is
 * refused (validation_error with the compiler's messages and lines in details.errors) and the
 * stored one, if any, is left as it was.
 */
export async function putScript(t: SieveTarget, name: string, script: string, opts: { activate?: boolean } = {}): Promise<void> {
  checkScriptName(name);
  const r = await run(t, ['sieve', 'put', '-u', t.user, ...(opts.activate ? ['-a'] : []), name], script);
  if (r.code === EX_DATAERR) {
    const errors = parseCompileErrors(r.stderr);
    throw new LetterboxError(
      'validation_error',
      `the Sieve script does not compile: ${errors.map((e) => (e.line !== null ? `line ${e.line}: ${e.message}` : e.message)).join('; ')}`,
      { issues: errors.map((e) => ({ path: e.line !== null ? `script:${e.line}` : 'script', message: e.message })) },
    );
  }
  if (r.code !== 0) fail(t, r, `storing Sieve script "${name}"`, name);
}

export async function deleteScript(t: SieveTarget, name: string): Promise<void> {
  checkScriptName(name);
  const r = await run(t, ['sieve', 'delete', '-u', t.user, name]);
  if (r.code !== 0) fail(t, r, `deleting Sieve script "${name}"`, name);
}

export async function activateScript(t: SieveTarget, name: string): Promise<void> {
  checkScriptName(name);
  const r = await run(t, ['sieve', 'activate', '-u', t.user, name]);
  if (r.code !== 0) fail(t, r, `activating Sieve script "${name}"`, name);
}

/** No script active: mail is kept in INBOX (the vacation reply, if set, still runs). */
export async function deactivateScripts(t: SieveTarget): Promise<void> {
  const r = await run(t, ['sieve', 'deactivate', '-u', t.user]);
  if (r.code !== 0) fail(t, r, 'deactivating Sieve scripts');
}

/**
 * Checks a new or replaced script against the configured limits before Dovecot sees it (Dovecot
 * enforces the same limits for ManageSieve clients).
 */
export async function checkLimits(t: SieveTarget, name: string, script: string, limits: { maxSize: number; maxScripts: number }): Promise<void> {
  const size = Buffer.byteLength(script);
  if (size > limits.maxSize) throw new LetterboxError('payload_too_large', `the script is ${size} bytes; the limit is ${limits.maxSize} (sieve.max_script_size)`);
  const existing = await listScripts(t);
  if (!existing.some((s) => s.name === name) && existing.length >= limits.maxScripts) {
    throw new LetterboxError('conflict', `${t.user} already has ${existing.length} Sieve scripts, the most allowed (sieve.max_scripts); delete one first`);
  }
}
