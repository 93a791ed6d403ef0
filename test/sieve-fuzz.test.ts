// Fuzzing Sieve script upload (issues #17 and #21), end to end through PUT
// /mailboxes/:id/sieve/scripts/:name and Dovecot's own compiler (doveadm sieve put, real
// Pigeonhole). (1) Scripts from a grammar of valid Sieve with the extensions Letterbox allows
// (fileinto, mailbox, copy, reject, vacation, imap4flags, envelope, body, date, relational,
// variables, comparators) are accepted (200), compiled and stored byte-exact. (2) The same scripts
// mutated (a misspelled command on a known line, bytes cut, inserted or spliced, a line
// duplicated, the require dropped, a NUL) are either accepted and stored exactly, or refused with
// 400 validation_error carrying the compiler's message and line — never a 5xx, and after a
// refusal the stored script is the one before, byte for byte (never half-valid). The misspelled
// command must be reported on exactly the line it was put on, and most mutations must be refused
// (else the mutations would prove nothing). Seed fixed and printed (PROOF_FUZZ_SEED=N or =random;
// PROOF_FUZZ_SCALE=N runs N times as many cases), as in test/dmarc-fuzz.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { freePort, startAppliance, type Appliance } from './helpers/appliance.ts';
import { call, waitFor } from './helpers/mailapi.ts';

const SEED = process.env.PROOF_FUZZ_SEED === 'random' ? (Date.now() ^ (process.pid << 16)) >>> 0 : Number(process.env.PROOF_FUZZ_SEED ?? 20261208);
const SCALE = Math.max(1, Number(process.env.PROOF_FUZZ_SCALE ?? 1));
console.log(`# sieve fuzz seed ${SEED}`);

const MAILBOX = 'fuzz@ours.test';
const PATH = `/mailboxes/${MAILBOX}/sieve/scripts/fuzz`;
let app: Appliance;
let key: string;

// ---- The grammar (RFC 5228 and the extensions' RFCs) -------------------------------------------
const REQUIRE = ['fileinto', 'mailbox', 'copy', 'reject', 'vacation', 'imap4flags', 'envelope', 'body', 'date', 'relational', 'variables', 'comparator-i;ascii-numeric'];
const quote = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
const word = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 .,!?'-]{0,18}$/);
const text = fc.oneof(word, fc.constantFrom('quote " inside', 'back\\slash', 'été über 日本', '${1} and ${name}', '', '*?*'));
const str = text.map(quote);
const strList = fc.array(str, { minLength: 1, maxLength: 3 }).map((l) => (l.length === 1 ? l[0] : `[${l.join(', ')}]`));
const multiline = fc.array(fc.oneof(word, fc.constant('.starts with a dot'), fc.constant('')), { minLength: 1, maxLength: 4 }).map((lines) => `text:\n${lines.map((l) => (l.startsWith('.') ? `.${l}` : l)).join('\n')}\n.\n`);
const label = fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/);
const address = fc.tuple(label, label).map(([l, d]) => `${l}@${d}.test`);
const folder = fc.oneof(fc.stringMatching(/^[A-Z][A-Za-z0-9]{0,10}$/), fc.constantFrom('INBOX', 'Junk', 'Archive'));
const flag = fc.constantFrom('\\\\Seen', '\\\\Flagged', '\\\\Answered', '$label1', 'Work');
const header = fc.constantFrom('subject', 'from', 'to', 'cc', 'list-id', 'x-spam', 'received');
const addrHeader = fc.constantFrom('from', 'to', 'cc', 'sender');
const matchType = fc.constantFrom(':is', ':contains', ':matches');
const addrPart = fc.constantFrom('', ':all ', ':localpart ', ':domain ');
const relOp = fc.constantFrom('"gt"', '"ge"', '"lt"', '"le"', '"eq"', '"ne"');
const varName = fc.stringMatching(/^[a-z_][a-z0-9_]{0,8}$/);
const dateStr = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10));

const leafTest: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(matchType, header, str).map(([m, h, s]) => `header ${m} ${quote(h)} ${s}`),
  fc.tuple(matchType, header, strList).map(([m, h, s]) => `header ${m} :comparator "i;ascii-casemap" ${quote(h)} ${s}`),
  fc.tuple(addrPart, matchType, addrHeader, str).map(([p, m, h, s]) => `address ${p}${m} ${quote(h)} ${s}`),
  fc.tuple(addrPart, fc.constantFrom('"from"', '"to"'), address).map(([p, h, a]) => `envelope ${p}:is ${h} ${quote(a)}`),
  fc.array(header, { minLength: 1, maxLength: 3 }).map((hs) => `exists [${hs.map(quote).join(', ')}]`),
  fc.tuple(fc.constantFrom(':over', ':under'), fc.integer({ min: 0, max: 9999 }), fc.constantFrom('', 'K', 'M')).map(([o, n, u]) => `size ${o} ${n}${u}`),
  fc.constantFrom('true', 'false'),
  fc.tuple(fc.constantFrom(':contains', ':is'), str).map(([m, s]) => `body ${m} ${s}`),
  fc.tuple(relOp, dateStr).map(([op, d]) => `currentdate :value ${op} "date" ${quote(d)}`),
  fc.tuple(fc.constantFrom('"date"', '"received"'), fc.constantFrom('year', 'month', 'weekday', 'hour'), word).map(([h, part, v]) => `date :is ${h} ${quote(part)} ${quote(v)}`),
  fc.tuple(relOp, header, fc.integer({ min: 0, max: 20 })).map(([op, h, n]) => `header :count ${op} :comparator "i;ascii-numeric" ${quote(h)} ${quote(String(n))}`),
  fc.tuple(varName, text).map(([v, t]) => `string :is "\${${v}}" ${quote(t)}`),
  flag.map((f) => `hasflag "${f}"`),
  folder.map((f) => `mailboxexists ${quote(f)}`),
);
const testExpr: fc.Arbitrary<string> = fc.letrec<{ t: string }>((tie) => ({
  t: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafTest,
    tie('t').map((t) => `not ${t}`),
    fc.tuple(fc.constantFrom('allof', 'anyof'), fc.array(tie('t'), { minLength: 1, maxLength: 3 })).map(([k, ts]) => `${k}(${ts.join(', ')})`),
  ),
})).t;

const action: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('keep;', 'discard;', 'stop;'),
  fc.tuple(fc.boolean(), fc.boolean(), fc.option(flag, { nil: null }), folder).map(([copy, create, f, name]) => `fileinto ${copy ? ':copy ' : ''}${create ? ':create ' : ''}${f ? `:flags "${f}" ` : ''}${quote(name)};`),
  fc.tuple(fc.boolean(), address).map(([copy, a]) => `redirect ${copy ? ':copy ' : ''}${quote(a)};`),
  fc.oneof(str, multiline).map((t) => `reject ${t};`),
  fc.tuple(fc.integer({ min: 1, max: 30 }), str, fc.oneof(str, multiline)).map(([d, s, t]) => `vacation :days ${d} :subject ${s} ${t};`),
  fc.tuple(fc.constantFrom('addflag', 'setflag', 'removeflag'), fc.array(flag, { minLength: 1, maxLength: 3 })).map(([c, fs]) => `${c} [${fs.map((f) => `"${f}"`).join(', ')}];`),
  fc.tuple(fc.constantFrom('', ':lower ', ':upper ', ':length '), varName, text).map(([m, v, t]) => `set ${m}${quote(v)} ${quote(t)};`),
  flag.map((f) => `keep :flags "${f}";`),
);

const block = (depth: number): fc.Arbitrary<string[]> =>
  fc.array(depth > 0 ? fc.oneof({ weight: 3, arbitrary: action }, { weight: 1, arbitrary: ifStmt(depth - 1) }) : action, { minLength: 0, maxLength: 3 });
// No indentation: a line of a multi-line string (text:) must stay exactly as written.
const indent = (lines: string[]) => lines;
const ifStmt = (depth: number): fc.Arbitrary<string> =>
  fc
    .tuple(testExpr, block(depth), fc.array(fc.tuple(testExpr, block(depth)), { maxLength: 2 }), fc.option(block(depth), { nil: null }))
    .map(([t, body, elsifs, otherwise]) =>
      [
        `if ${t} {`,
        ...indent(body),
        ...elsifs.flatMap(([et, eb]) => [`} elsif ${et} {`, ...indent(eb)]),
        ...(otherwise ? ['} else {', ...indent(otherwise)] : []),
        '}',
      ].join('\n'),
    );

/** A whole valid script: the require, then statements; LF or CRLF line ends, with or without a final one. */
const script = fc
  .tuple(fc.array(fc.oneof(action, ifStmt(2)), { minLength: 1, maxLength: 6 }), fc.boolean(), fc.boolean(), fc.boolean())
  .map(([stmts, crlf, comments, finalNl]) => {
    const body = [`require [${REQUIRE.map(quote).join(', ')}];`, ...(comments ? ['# generated by test/sieve-fuzz.test.ts', '/* a bracketed\n   comment */'] : []), ...stmts].join('\n');
    const s = finalNl ? `${body}\n` : body;
    return crlf ? s.replace(/\n/g, '\r\n') : s;
  });

// ---- Mutations -------------------------------------------------------------------------------------
type Mutation =
  | { kind: 'unknown-command'; at: number }
  | { kind: 'delete'; at: number; len: number }
  | { kind: 'insert'; at: number; what: string }
  | { kind: 'truncate'; at: number }
  | { kind: 'duplicate-line'; at: number }
  | { kind: 'drop-require' }
  | { kind: 'splice'; at: number; from: number; len: number };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.nat().map((at) => ({ kind: 'unknown-command' as const, at })),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 4 })).map(([at, len]) => ({ kind: 'delete' as const, at, len })),
  fc.tuple(fc.nat(), fc.constantFrom('{', '}', ';', '"', '[', ']', '(', ')', ',', ':', '\\', ':bogus ', 'if ', 'elsif ', '\u0000', 'text:\n', '${', '\u00ff')).map(([at, what]) => ({ kind: 'insert' as const, at, what })),
  fc.nat().map((at) => ({ kind: 'truncate' as const, at })),
  fc.nat().map((at) => ({ kind: 'duplicate-line' as const, at })),
  fc.constant({ kind: 'drop-require' as const }),
  fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 1, max: 30 })).map(([at, from, len]) => ({ kind: 'splice' as const, at, from, len })),
);

/** The mutated script, and for 'unknown-command' the 1-based line the compiler must name. Pure. */
function mutate(s: string, m: Mutation): { script: string; line: number | null } {
  const nl = s.includes('\r\n') ? '\r\n' : '\n';
  const lines = s.split(nl);
  switch (m.kind) {
    case 'unknown-command': {
      // A new line after the require (line 1) or after any complete top-level statement, outside a
      // multi-line string: a command no extension defines. Top level only: Pigeonhole does not
      // validate the block of a literal `if false` (found by this test: `if false { fileintoo; }`
      // compiles), so an unknown command there is not an error.
      const safe: number[] = [];
      let inText = false;
      let depth = 0;
      lines.forEach((l, i) => {
        if (inText) {
          if (l === '.') inText = false;
          return;
        }
        if (l.startsWith('}')) depth--;
        if (/\{\s*$/.test(l)) depth++;
        if (/text:$/.test(l)) inText = true;
        else if (depth === 0 && /[;}]\s*$/.test(l)) safe.push(i + 1);
      });
      const after = safe[m.at % safe.length];
      return { script: [...lines.slice(0, after), 'fileintoo "Nowhere";', ...lines.slice(after)].join(nl), line: after + 1 };
    }
    case 'delete': {
      const at = m.at % s.length;
      return { script: s.slice(0, at) + s.slice(at + m.len), line: null };
    }
    case 'insert': {
      const at = m.at % (s.length + 1);
      return { script: s.slice(0, at) + m.what + s.slice(at), line: null };
    }
    case 'truncate':
      return { script: s.slice(0, m.at % s.length), line: null };
    case 'duplicate-line': {
      const i = m.at % lines.length;
      return { script: [...lines.slice(0, i + 1), lines[i], ...lines.slice(i + 1)].join(nl), line: null };
    }
    case 'drop-require':
      return { script: lines.slice(1).join(nl), line: null };
    case 'splice': {
      const at = m.at % (s.length + 1);
      const from = m.from % s.length;
      return { script: s.slice(0, at) + s.slice(from, from + m.len) + s.slice(at), line: null };
    }
  }
}

before(async () => {
  app = await startAppliance({
    extraToml: `[api]\nrate_burst = 1000000\nrate_per_minute = 1000000\n`,
    env: { LETTERBOX_LISTEN_INJECT: `127.0.0.1:${await freePort()}` },
  });
  await app.cliJson(['domain', 'add', 'ours.test']);
  await app.cliJson(['mailbox', 'add', MAILBOX, '--password', 'sieve fuzz password 1']);
  key = (await app.cliJson(['key', 'create', '--name', 'fuzz', '--scopes', 'mailboxes:*'])).secret;
  await waitFor(async () => (await call(app, key, 'GET', `/mailboxes/${MAILBOX}/sieve/scripts`)).status === 200, 'Dovecot to know the mailbox');
});

after(async () => {
  await app?.stop();
  app?.cleanup();
});

async function stored(): Promise<string | null> {
  const r = await call(app, key, 'GET', PATH);
  if (r.status === 404) return null;
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json.data.script;
}

test('mutate: the misspelled command goes between top-level statements and names its line', () => {
  const s = 'require ["fileinto"];\nreject text:\nx;\n.\n;\nif false {\nkeep;\n} else {\nstop;\n}\nkeep;\n';
  const seen = new Set<number>();
  for (let at = 0; at < 8; at++) {
    const { script: m, line } = mutate(s, { kind: 'unknown-command', at });
    assert.equal(m.split('\n')[line! - 1], 'fileintoo "Nowhere";');
    seen.add(line!);
  }
  assert.deepEqual([...seen].sort((a, b) => a - b), [2, 6, 11, 12], 'after the require, the reject, the if/else and the last keep; never inside a string or a block');
});

test('scripts from the grammar of valid Sieve are accepted, compiled and stored byte-exact', { timeout: 900000 }, async () => {
  const runs = 40 * SCALE;
  const started = Date.now();
  let n = 0;
  await fc.assert(
    fc.asyncProperty(script, async (s) => {
      n++;
      const r = await call(app, key, 'PUT', PATH, { script: s });
      assert.equal(r.status, 200, `refused a valid script:\n${s}\n${JSON.stringify(r.json)}`);
      assert.equal(await stored(), s, 'stored byte-exact');
    }),
    { seed: SEED, numRuns: runs, endOnFailure: false },
  );
  const secs = (Date.now() - started) / 1000;
  console.log(`# sieve fuzz: ${n} valid scripts in ${secs.toFixed(1)} s (${(n / secs).toFixed(1)} cases/s, each a compile and a read back), seed ${SEED}`);
});

test('mutated scripts: accepted and stored exactly, or 400 with the compiler message and line and the old script kept; never a 5xx', { timeout: 900000 }, async () => {
  const runs = 80 * SCALE;
  const started = Date.now();
  const tally = { accepted: 0, refused: 0, refusedWithLine: 0, unknownCommand: 0 };
  // A known script is stored first: every refusal must leave exactly it (or the last accepted one).
  await fc.assert(
    fc.asyncProperty(script, mutation, async (s, m) => {
      const { script: bad, line } = mutate(s, m);
      const before = await stored();
      const r = await call(app, key, 'PUT', PATH, { script: bad });
      assert.ok(r.status === 200 || r.status === 400, `status ${r.status} for ${m.kind}:\n${JSON.stringify(bad)}\n${JSON.stringify(r.json)}`);
      if (r.status === 200) {
        tally.accepted++;
        assert.equal(line, null, `the misspelled command on line ${line} was accepted:\n${bad}`);
        assert.equal(await stored(), bad, 'an accepted script is stored byte-exact');
        return;
      }
      tally.refused++;
      const e = r.json?.error;
      assert.equal(e?.code, 'validation_error', JSON.stringify(r.json));
      assert.match(e.message, /^the Sieve script does not compile: ./);
      const issues: { path: string; message: string }[] = e.details?.issues ?? [];
      assert.ok(issues.length > 0 && issues.every((i) => /^script(:\d+)?$/.test(i.path) && i.message.length > 0), JSON.stringify(issues));
      const lines = issues.filter((i) => i.path !== 'script').map((i) => Number(i.path.slice(7)));
      if (lines.length) tally.refusedWithLine++;
      const count = bad.split(/\r?\n/).length;
      assert.ok(lines.every((l) => l >= 1 && l <= count + 1), `a line beyond the script (${count} lines): ${JSON.stringify(issues)}`);
      if (line !== null) {
        tally.unknownCommand++;
        assert.ok(lines.includes(line), `the misspelled command is on line ${line}; the compiler said ${JSON.stringify(issues)}`);
        assert.ok(issues.some((i) => /fileintoo/.test(i.message)), JSON.stringify(issues));
      }
      assert.equal(await stored(), before, 'a refused script changes nothing');
    }),
    { seed: SEED, numRuns: runs, endOnFailure: false },
  );
  const secs = (Date.now() - started) / 1000;
  const n = tally.accepted + tally.refused;
  console.log(`# sieve fuzz: ${n} mutated scripts in ${secs.toFixed(1)} s (${(n / secs).toFixed(1)} cases/s): ${tally.refused} refused (${tally.refusedWithLine} with a line; ${tally.unknownCommand} misspelled commands, each on its line), ${tally.accepted} still valid and stored; seed ${SEED}`);
  // Mutations that are almost never refused would prove nothing.
  assert.ok(tally.refused >= n * 0.5, JSON.stringify(tally));
  assert.ok(tally.refusedWithLine >= tally.refused * 0.8, JSON.stringify(tally));
  assert.ok(tally.unknownCommand >= 1, JSON.stringify(tally));
});

test('programs stay off: the extprograms extensions are refused like any unknown extension', async () => {
  for (const ext of ['vnd.dovecot.pipe', 'vnd.dovecot.filter', 'vnd.dovecot.execute']) {
    const r = await call(app, key, 'PUT', PATH, { script: `require "${ext}";\nkeep;\n` });
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.ok(r.json.error.details.issues.some((i: any) => i.path === 'script:1'), JSON.stringify(r.json.error));
  }
});
