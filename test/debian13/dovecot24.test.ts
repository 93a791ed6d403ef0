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
import { renderImapSieveBlock24 } from '../../src/spam/dovecot.ts';
import { spamPaths } from '../../src/spam/config.ts';

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
    // Root: the login guard's auth policy, spam learning (IMAPSieve), ManageSieve and vacation through
    // the injection listener. Rootless: none of them (no ManageSieve, no injection listener).
    const shapes = [
      { mode: 'root' as const, imap: ['127.0.0.1:993'], quota: '452', features: true },
      { mode: 'rootless' as const, imap: ['127.0.0.1:993', '[::1]:993', '127.0.0.2:1993'], quota: '552', features: false },
    ];
    for (const s of shapes) {
      const listen = { ...d.listen, imap: s.imap, managesieve: s.features ? ['127.0.0.1:4190', '[::1]:4190'] : [], inject: s.features ? '127.0.0.1:10026' : '' };
      const config = parseConfig({ ...d, data_dir: join(dir, 'data'), listen, smtp: { quota_full_reply: s.quota } }, 'test', dir);
      const paths = dovecotPaths(config.data_dir);
      const file = join(dir, `${s.mode}.conf`);
      const authPolicy = s.features ? { url: 'http://127.0.0.1:8999/', apiHeader: 'X-Letterbox-Policy: 0123abcd', nonce: 'feedface' } : undefined;
      const extraBlocks = s.features ? [{ name: 'spam learning', v23: '', v24: renderImapSieveBlock24(spamPaths(config.data_dir)) }] : [];
      writeFileSync(file, renderDovecotConfig({ config, paths, mode: s.mode, mailUser: 'nobody', mailUid: 65534, mailGid: 65534, clientUser: 'root', series: '2.4', authPolicy, extraBlocks }));
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
      // Self-service: vacation before the user's script, the Sieve limits; vacation off without a way out.
      assert.match(all, /sieve_script vacation \{[^}]*path = ~\/letterbox\/vacation\.sieve[^}]*type = before/s);
      assert.equal(await get('sieve_max_script_size'), '65536');
      assert.equal(await get('sieve_quota_script_count'), '20');
      assert.equal(await get('sieve_vacation_min_period'), '1d');
      assert.equal(await get('sieve_vacation_check_recipient'), 'yes');
      if (s.features) {
        assert.equal(await get('protocols'), 'imap lmtp sieve');
        assert.match(all, /service managesieve-login \{[^}]*inet_listener sieve \{\s*port = 4190\s*listen = 127\.0\.0\.1 ::1/s);
        assert.equal(await get('submission_host'), '127.0.0.1:10026');
        assert.equal(await get('sieve_max_redirects'), '4');
        // Redirects keep the original envelope sender for the injection listener to rewrite with SRS.
        assert.equal(await get('sieve_redirect_envelope_from'), 'sender');
        assert.doesNotMatch(all, /vacation = no/);
        // Login guard: only the four attributes the endpoint reads (no password hash), rejecting on failure.
        const policy = /auth_policy \{\n([\s\S]*?)\n\}/.exec(all)?.[1] ?? '';
        assert.match(policy, /reject_on_fail = yes/);
        assert.match(policy, /server_url = http:\/\/127\.0\.0\.1:8999\//);
        assert.match(policy, /request_attributes \{\s*app = %\{passdb:lb_app\}\s*login = %\{requested_username\}\s*protocol = %\{protocol\}\s*remote = %\{remote_ip\}\s*session_id = %\{session\}\s*\}/);
        assert.match(policy, /http_client_request_absolute_timeout = 5s/);
        // Spam learning: imap_sieve added to the IMAP plugins (quota kept), the two admin scripts.
        assert.match(all, /protocol imap \{[^}]*mail_plugins \{\s*imap_quota = yes\s*imap_sieve = yes/s);
        assert.match(all, /mailbox Junk \{\s*sieve_script learn-spam \{\s*cause = copy[^}]*learn-spam\.sieve\s*type = before/s);
        assert.match(all, /imapsieve_from Junk \{\s*sieve_script learn-ham \{\s*cause = copy[^}]*learn-ham\.sieve\s*type = before/s);
      } else {
        assert.equal(await get('protocols'), 'imap lmtp');
        assert.doesNotMatch(all, /managesieve-login|auth_policy|imapsieve/);
        assert.equal(await get('sieve_max_redirects'), '0');
        assert.match(all, /sieve_extensions \{[^}]*vacation = no[^}]*vacation-seconds = no/s);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
