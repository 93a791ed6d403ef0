// The layering rule of Letterbox (README "Architecture"), checked by src/bin/run-tests before the
// tests (so `npm test` and CI run it): `npx depcruise src` runs it by hand.
//
//   composition     src/main.ts, src/server.ts, src/context.ts, src/components.ts, src/cli.ts
//   protocol        src/smtp/, src/api/, src/imap/ (the API's IMAP reader), the CLI commands
//   mail core       src/submit/, src/queue/, src/routing/, src/delivery/, src/webhooks/, ...
//   vocabulary      src/mail/
//   stores          src/services/, */store.ts
//   foundation      src/db/, src/config/, src/util/, src/errors.ts, src/log.ts
//
// Type-only imports are not dependencies here (erased before Node runs the code).
const ADAPTERS = '^src/(smtp|api|imap)/';
const CLI = '^src/(cli[.]ts|cli-extra[.]ts|cli/|[^/]+/cli[.]ts)';
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycles (type-only imports excepted).',
      from: {},
      to: { circular: true, dependencyTypesNot: ['type-only'], viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'adapters-apart',
      severity: 'error',
      comment: 'A protocol adapter (SMTP, API, IMAP reader) never imports another one: what they share lives below them.',
      from: { path: ADAPTERS, pathNot: CLI },
      to: { path: ADAPTERS, pathNot: ['^src/$1/', CLI], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'adapters-not-cli',
      severity: 'error',
      comment: 'No protocol adapter imports a CLI command (the CLI composes; it is not a library).',
      from: { path: ADAPTERS, pathNot: CLI },
      to: { path: CLI, dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'cli-not-adapters',
      severity: 'error',
      comment: 'A CLI command uses the services and stores, never the SMTP, API or IMAP adapters.',
      from: { path: CLI },
      to: { path: ADAPTERS, pathNot: CLI, dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'queue-not-smtp',
      severity: 'error',
      comment: 'The queue is mail core: it never imports the SMTP listeners (their shared words live in src/mail/).',
      from: { path: '^src/queue/' },
      to: { path: '^src/smtp/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'core-not-adapters',
      severity: 'error',
      comment: 'Routing (who a recipient is), submission (accept an outbound message), local delivery and webhooks are mail core: they never import a protocol adapter; the SMTP listeners and the API import them.',
      from: { path: '^src/(routing|submit|delivery|webhooks)/' },
      to: { path: ADAPTERS, dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'foundation-below',
      severity: 'error',
      comment: 'src/mail/, src/db/ and src/config/ import only each other, src/util/, src/errors.ts, src/log.ts and src/clock.ts.',
      from: { path: '^src/(mail|db|config)/' },
      to: { path: '^src/', pathNot: ['^src/(mail|db|config|util)/', '^src/(errors|log|clock)[.]ts$'], dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    parser: 'swc',
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(node_modules|test|bench)/' },
  },
};
