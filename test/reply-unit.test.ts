// The one SMTP reply shape (src/mail/reply.ts): built by every listener and the queue, read back
// from Dovecot's or a remote server's text, and chosen for the accept path's errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpReply, parseReply, reply, replyForError, replyOf } from '../src/mail/reply.ts';
import { refusalText } from '../src/delivery/local.ts';
import { LetterboxError } from '../src/errors.ts';

test('a reply: smtp-server answers responseCode and message ("<enhanced> <text>"); line is the whole reply', () => {
  const r = reply(550, '5.7.1', 'local connections only');
  assert.equal(r.responseCode, 550);
  assert.equal(r.message, '5.7.1 local connections only');
  assert.equal(r.line, '550 5.7.1 local connections only');
  assert.equal(r.temporary, false);
  assert.equal(reply(451, '4.3.0', 'later').temporary, true);
});

test('parseReply reads Dovecot and remote answers; no enhanced code → ""; not a reply → null', () => {
  const p = parseReply('552 5.2.2 <bob@example.test> Quota exceeded (mailbox for user is full)')!;
  assert.deepEqual([p.responseCode, p.enhanced, p.text], [552, '5.2.2', '<bob@example.test> Quota exceeded (mailbox for user is full)']);
  const bare = parseReply('451 Try again')!;
  assert.deepEqual([bare.responseCode, bare.enhanced, bare.message, bare.line], [451, '', 'Try again', '451 Try again']);
  assert.equal(parseReply('550-5.1.1 first\r\n550 5.1.1 second')!.text, 'first\r\n550 5.1.1 second');
  assert.equal(parseReply('rejected'), null);
  assert.equal(refusalText({ recipient: 'a@b', status: 'permfail', code: 552, response: '552 5.2.2 Quota exceeded' }), '5.2.2 Quota exceeded');
  assert.equal(refusalText({ recipient: 'a@b', status: 'tempfail', code: 450, response: 'rejected' }), 'rejected');
});

test('replyOf turns a rejected recipient (code + "<enhanced> <text>") back into the same reply', () => {
  const r = replyOf(550, '5.7.1 <x@example.com> is on the suppression list');
  assert.ok(r instanceof SmtpReply);
  assert.deepEqual([r.responseCode, r.enhanced, r.message], [550, '5.7.1', '5.7.1 <x@example.com> is on the suppression list']);
  assert.equal(replyOf(554, 'no enhanced code').message, 'no enhanced code');
});

test('replyForError: details.smtp names the answer, payload_too_large is 552 5.3.4, anything else null', () => {
  const r = replyForError(new LetterboxError('forbidden', 'may not send as <x@y>', { smtp: '553 5.7.1' }))!;
  assert.equal(r.line, '553 5.7.1 may not send as <x@y>');
  assert.equal(replyForError(new LetterboxError('payload_too_large', 'too big'))!.line, '552 5.3.4 too big');
  const own = reply(421, '4.7.0', 'busy');
  assert.equal(replyForError(own), own);
  assert.equal(replyForError(new LetterboxError('conflict', 'boom')), null);
  assert.equal(replyForError(new Error('boom')), null);
});
