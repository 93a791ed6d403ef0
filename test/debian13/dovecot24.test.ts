// Dovecot 2.4 (Debian 13): every shape of the generated 2.4 config — root master and rootless, one
// or several IMAP listeners (IPv4 and IPv6), 452 or 552 for a full mailbox — is read without a
// warning by the real Dovecot 2.4 `doveconf`, and says what the 2.3 one says. The running appliance
// against 2.4 (login, LMTP with quota, Sieve, master user) is test/dovecot-features.test.ts, which
// .ci/run runs with LETTERBOX_DOVECOT_BINARY set to the wrapper, and rootless24.test.ts (rootless).
// Needs the Debian 13 root: LETTERBOX_DOVECOT_BINARY = the wrapper written by
// `test/debian13/setup.sh --wrappers DIR` (.ci/run builds the root and sets it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, developmentDefaults } from '../../src/config/load.ts';
import { dovecotPaths, renderDovecotConfig, dovecotSeries } from '../../src/dovecot/config.ts';
import { doveadmBinary } from '../../src/services/quota.ts';

const DOVECOT = process.env.LETTERBOX_DOVECOT_BINARY ?? '';
const skip = DOVECOT ? false : 'no Dovecot 2.4 here: run with LETTERBOX_DOVECOT_BINARY=<dir>/dovecot after test/debian13/setup.sh --wrappers <dir> (.ci/run does)';

function sh(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => execFile(cmd, args, { timeout: 30000 }, (err: any, stdout, stderr) => res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) })));
}

test('the 2.4 config in each shape is read by Dovecot 2.4 without warnings and keeps its values', { skip }, async () => {
  const v = await sh(DOVECOT, ['--version']);
  assert.equal(dovecotSeries(v.stdout), '2.4', v.stdout + v.stderr);
  const doveconf = doveadmBinary(DOVECOT).replace(/doveadm$/, 'doveconf');
  const dir = mkdtempSync(join(tmpdir(), 'lb24-'));
  try {
    writeFileSync(join(dir, 'cert.pem'), '');
    const d: any = developmentDefaults(dir);
    const shapes = [
      { mode: 'root' as const, imap: ['127.0.0.1:993'], quota: '452' },
      { mode: 'rootless' as const, imap: ['127.0.0.1:993', '[::1]:993', '127.0.0.2:1993'], quota: '552' },
    ];
    for (const s of shapes) {
      const config = parseConfig({ ...d, data_dir: join(dir, 'data'), listen: { ...d.listen, imap: s.imap }, smtp: { quota_full_reply: s.quota } }, 'test', dir);
      const paths = dovecotPaths(config.data_dir);
      const file = join(dir, `${s.mode}.conf`);
      writeFileSync(file, renderDovecotConfig({ config, paths, mode: s.mode, mailUser: 'nobody', mailUid: 65534, mailGid: 65534, clientUser: 'root', series: '2.4' }));
      const n = await sh(doveconf, ['-n', '-c', file]);
      assert.equal(n.code, 0, `${s.mode}: ${n.stderr}`);
      assert.doesNotMatch(n.stderr, /warning|obsolete|deprecated/i, s.mode);
      const get = async (name: string) => {
        const r = await sh(doveconf, ['-h', '-c', file, name]);
        assert.equal(r.code, 0, `${name}: ${r.stderr}`);
        return r.stdout.trim();
      };
      assert.equal(await get('quota_full_tempfail'), s.quota === '452' ? 'yes' : 'no');
      assert.equal(await get('mail_driver'), 'maildir');
      assert.equal(await get('auth_master_user_separator'), '*');
      assert.equal(await get('recipient_delimiter'), '+');
      assert.equal(await get('ssl'), 'required');
      assert.equal(await get('auth_allow_cleartext'), 'no');
      assert.equal(await get('default_login_user'), s.mode === 'rootless' ? 'nobody' : 'dovenull');
      const all = n.stdout;
      for (const port of new Set(s.imap.map((a) => a.split(':').pop()))) assert.match(all, new RegExp(`port = ${port}`));
      assert.match(all, /passdb master-users \{[^}]*master = yes/s);
      assert.match(all, /sieve_script personal \{[^}]*active_path = ~\/\.dovecot\.sieve/s);
      assert.match(all, /quota "User quota" \{\s*driver = count/s);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
