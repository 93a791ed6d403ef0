// Keeps #13 item 6 true: no function, method or arrow in src/ has a body longer than MAX_LINES
// (from its opening to its closing brace, or its expression for an arrow), so long functions get
// split along gather → decide → act as they grow. A few are allowed by name below, each with its reason.
//
// The parser is @swc/core (a devDependency already, for dependency-cruiser): TypeScript 7's npm
// package is the native compiler and no longer ships a JavaScript parser API (only an IPC "unstable"
// one that starts the whole compiler).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseSync } from '@swc/core';

const MAX_LINES = 80;
const SRC = join(import.meta.dirname, '..', 'src');

/** `path:name` → why it may be longer. Keep this short: a pure table or template, not a busy function. */
const ALLOWED: Record<string, string> = {
  // Dovecot's whole configuration file as one template per series (pure: model in, text out); splitting
  // the text into pieces would make it harder to compare with Dovecot's documentation.
  'src/dovecot/config.ts:render23': 'the Dovecot 2.3 configuration template',
  'src/dovecot/config.ts:render24': 'the Dovecot 2.4 configuration template',
};

export interface LongFunction {
  where: string; // path:line
  name: string;
  lines: number;
}

/** Every function-like node's body length in one file's text. Pure (the parser aside). */
export function functionLengths(path: string, text: string): LongFunction[] {
  // swc's spans are byte positions, and the module's span starts at its first token (after any
  // comments), in a numbering that may not start at 1: a leading ';' (and a shebang turned into a
  // comment of the same length) pins the file's first byte to the module's start.
  const mod = parseSync(';' + text.replace(/^#!/, '//'), { syntax: 'typescript', target: 'es2022', comments: false });
  const bytes = Buffer.from(text, 'utf8');
  const lineStarts: number[] = [0];
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x0a) lineStarts.push(i + 1);
  const lineOf = (pos: number): number => {
    const off = pos - mod.span.start - 1;
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid] <= off) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const out: LongFunction[] = [];
  const visit = (node: any, name: string): void => {
    if (!node || typeof node !== 'object') return;
    if (Array.isArray(node)) {
      for (const n of node) visit(n, name);
      return;
    }
    let own = name;
    if (node.type === 'VariableDeclarator' && node.id?.type === 'Identifier') own = node.id.value;
    else if ((node.type === 'FunctionDeclaration' || node.type === 'FunctionExpression') && node.identifier) own = node.identifier.value;
    else if ((node.type === 'ClassMethod' || node.type === 'MethodProperty' || node.type === 'KeyValueProperty' || node.type === 'GetterProperty' || node.type === 'SetterProperty') && node.key) {
      own = node.key.value ?? name;
    } else if (node.type === 'Constructor') own = 'constructor';
    const body = node.body ?? node.function?.body; // methods, getters and setters keep theirs in .function
    const isFunction = ['FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression', 'ClassMethod', 'PrivateMethod', 'MethodProperty', 'Constructor', 'GetterProperty', 'SetterProperty'].includes(node.type);
    if (isFunction && body?.span) {
      out.push({ where: `${path}:${lineOf(body.span.start)}`, name: own, lines: lineOf(body.span.end) - lineOf(body.span.start) + 1 });
    }
    for (const key of Object.keys(node)) if (key !== 'span') visit(node[key], own);
  };
  visit(mod, '(anonymous)');
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

test('the measure: a function body from brace to brace, named after its declaration, method, property or variable', () => {
  const text = [
    'function a() {', // 1
    '  const inner = () => {', // 2
    '    return 1;', // 3
    '  };', // 4
    '}', // 5
    'class K { m() { return 2; } get g() {\n return 5;\n} }', // 6-8
    'const obj = { p: () => 3, q() {\n return 4;\n} };', // 9-11
    'export const e = (x: number): number =>\n  x +\n  1;', // 12-14
  ].join('\n');
  const got = functionLengths('f.ts', text).map((f) => `${f.name}@${f.where}:${f.lines}`);
  assert.deepEqual(got.sort(), ['a@f.ts:1:5', 'e@f.ts:13:2', 'g@f.ts:6:3', 'inner@f.ts:2:3', 'm@f.ts:6:1', 'p@f.ts:9:1', 'q@f.ts:9:3'].sort());
  // Byte offsets, not characters: text with multi-byte characters before a function still counts right.
  const after = functionLengths('g.ts', '// “quoted” – é\nfunction b() {\n}\n');
  assert.deepEqual(after.map((f) => [f.where, f.lines]), [['g.ts:2', 2]]);
  assert.deepEqual(functionLengths('h.ts', '#!/usr/bin/env node\nfunction c() {\n\n}\n').map((f) => [f.where, f.lines]), [['h.ts:2', 3]]);
});

test(`no function in src/ is longer than ${MAX_LINES} lines (#13: split along gather → decide → act)`, () => {
  const root = join(SRC, '..');
  const all = sourceFiles(SRC).flatMap((file) => functionLengths(relative(root, file), readFileSync(file, 'utf8')));
  assert.ok(all.length > 500, `measured only ${all.length} functions: the walk or the parser is broken`);
  const long = all.filter((f) => f.lines > MAX_LINES);
  const key = (f: LongFunction) => `${f.where.replace(/:\d+$/, '')}:${f.name}`;
  const unexplained = long.filter((f) => !(key(f) in ALLOWED));
  assert.deepEqual(
    unexplained.map((f) => `${f.where} ${f.name}: ${f.lines} lines`),
    [],
    `split these along gather → decide → act (pure decisions, unit-tested), or allow them by name in ${relative(root, import.meta.filename)} with the reason`,
  );
  // An allowance whose function got short (or was renamed) goes too, so the list stays honest.
  const stale = Object.keys(ALLOWED).filter((k) => !long.some((f) => key(f) === k));
  assert.deepEqual(stale, [], 'allowed by name but no longer long: remove from ALLOWED');
});
