import { Counter, Histogram, type Registry } from 'prom-client';
import type { DB } from '../db/index.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import type { Clock } from '../clock.ts';
import { RspamdClient, type RspamdResult } from './client.ts';
import { assess, authSymbols, effectiveSettings, greylistScanSettings, headerText, type EffectiveSpamSettings, type ScanOutcome, type SpamAssessment } from './policy.ts';
import { overridesFor, seenDomainBefore } from './store.ts';
import { BAYES_USER_SYMBOLS, GREYLIST_EXEMPT_SYMBOL, type SpamPaths } from './config.ts';

/** What the MX knows about a message when it asks for a spam verdict. */
export interface InboundScanInput {
  message: Buffer | (() => Promise<Buffer>);
  size: number;
  queueId: string;
  ip: string;
  helo: string;
  clientHostname: string | null;
  tls: { protocol: string; cipher: string } | null;
  mailFrom: string;
  rcpts: string[];
  /** Local recipient mailboxes, in delivery order. */
  mailboxes: { id: string; address: string }[];
  auth: { spf: string; dkim: string; dmarc: { result: string; policy: string | null; domain: string } | null; arc?: string };
}

export interface SpamStatus {
  enabled: boolean;
  rspamd: { running: boolean; restarts: number };
  redis: { running: boolean; restarts: number };
}

/**
 * The spam service the MX, submission and API use (app.spam.service): scans over rspamd's normal
 * worker, learns over its controller, counts verdicts and scan latency for /metrics.
 */
export class SpamService {
  readonly client: RspamdClient;
  private readonly o: { db: DB; config: Config; log: Logger; clock: Clock; paths: SpamPaths; status: () => SpamStatus };
  private readonly verdicts: Counter<'direction' | 'verdict'>;
  private readonly latency: Histogram<'direction'>;

  constructor(o: { db: DB; config: Config; log: Logger; clock: Clock; paths: SpamPaths; registry: Registry; status: () => SpamStatus }) {
    this.o = o;
    this.client = new RspamdClient({ normalSocket: o.paths.normalSocket, controllerSocket: o.paths.controllerSocket });
    this.verdicts = new Counter({ name: 'letterbox_spam_verdicts_total', help: 'Spam verdicts by direction (inbound, outbound) and verdict (reject, greylist, junk, ham, off, unscanned, failed, blocked, passed).', labelNames: ['direction', 'verdict'] as const, registers: [o.registry] });
    this.latency = new Histogram({ name: 'letterbox_spam_scan_duration_seconds', help: 'rspamd scan duration (HTTP round trip).', labelNames: ['direction'] as const, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [o.registry] });
  }

  status(): SpamStatus {
    return this.o.status();
  }

  /** Per-recipient settings (mailbox → domain → config). */
  settingsFor(mailboxId: string): EffectiveSpamSettings {
    const { domain, mailbox } = overridesFor(this.o.db, mailboxId);
    const c = this.o.config.spam;
    return effectiveSettings({ reject: c.reject, junk: c.junk, greylist: c.greylist, greylisting: c.greylisting }, domain, mailbox);
  }

  /**
   * Scans one inbound message after our authentication checks. Our SPF/DKIM/DMARC/ARC verdicts go to
   * rspamd as its stock symbols in the Settings header (its own spf/dkim/dmarc/arc modules are off in
   * the generated config), so it scores them without repeating the DNS lookups. Chosen over passing
   * our Authentication-Results header: rspamd 3.4 does not trust or parse that for scoring.
   */
  async scanInbound(input: InboundScanInput): Promise<SpamAssessment & { headerText: string }> {
    const cfg = this.o.config.spam;
    const settings = input.mailboxes.map((m) => this.settingsFor(m.id));
    let outcome: ScanOutcome;
    if (settings.length > 0 && settings.every((s) => s.mode === 'off')) outcome = { kind: 'off' };
    else if (input.size > cfg.max_scan_size) outcome = { kind: 'too_big', size: input.size, max: cfg.max_scan_size };
    else {
      const symbols: Record<string, number> = authSymbols(input.auth);
      const d = input.auth.dmarc;
      if (d && d.result === 'pass' && d.domain && seenDomainBefore(this.o.db, d.domain.toLowerCase(), new Date(this.o.clock.now()).toISOString())) {
        symbols[GREYLIST_EXEMPT_SYMBOL] = 1;
      }
      const started = performance.now();
      try {
        const message = typeof input.message === 'function' ? await input.message() : input.message;
        const result = await this.client.check(
          message,
          {
            ip: input.ip,
            helo: input.helo,
            hostname: input.clientHostname ?? undefined,
            from: input.mailFrom,
            rcpt: input.rcpts,
            // Per-user Bayes: the first local mailbox's statistics (one scan per message).
            deliverTo: input.mailboxes[0]?.address,
            queueId: input.queueId,
            tls: input.tls,
            mta: this.o.config.hostname,
            // The recipients' greylisting (off, or their threshold) for this scan; the generated
            // greylist.conf lets the action threshold alone decide (greylist_min_score).
            settings: { symbols, ...greylistScanSettings(settings, cfg.junk) },
          },
          cfg.timeout_ms,
        );
        const ms = performance.now() - started;
        this.latency.observe({ direction: 'inbound' }, ms / 1000);
        outcome = { kind: 'scanned', result, ms };
      } catch (err: any) {
        this.o.log.warn({ component: 'spam', err: err.message, queueId: input.queueId }, 'spam scan failed');
        outcome = { kind: 'failed', error: err.message };
      }
    }
    const a = assess(outcome, settings, cfg.on_failure);
    this.verdicts.inc({ direction: 'inbound', verdict: a.evidence.verdict });
    return { ...a, headerText: headerText(a.headers) };
  }

  /**
   * Outbound abuse check for authenticated submission and API sends: score only (no greylisting,
   * no per-user Bayes). Returns blocked when the score reaches [spam] outbound_threshold. A scanner
   * failure never blocks a send (the user is authenticated; the queue still rate-limits).
   */
  async scanOutbound(message: Buffer, o: { user: string; from: string; rcpts: string[]; ip?: string }): Promise<{ blocked: boolean; score: number | null; result: RspamdResult | null }> {
    const cfg = this.o.config.spam;
    if (message.length > cfg.max_scan_size) return { blocked: false, score: null, result: null };
    const started = performance.now();
    try {
      const result = await this.client.check(
        message,
        { ip: o.ip ?? '127.0.0.1', user: o.user, from: o.from, rcpt: o.rcpts, mta: this.o.config.hostname, settings: { symbols: {}, symbols_disabled: ['GREYLIST', 'BAYES_SPAM', 'BAYES_HAM', BAYES_USER_SYMBOLS.spam, BAYES_USER_SYMBOLS.ham] } },
        cfg.timeout_ms,
      );
      this.latency.observe({ direction: 'outbound' }, (performance.now() - started) / 1000);
      const blocked = result.score >= cfg.outbound_threshold;
      this.verdicts.inc({ direction: 'outbound', verdict: blocked ? 'blocked' : 'passed' });
      return { blocked, score: Math.round(result.score * 100) / 100, result };
    } catch (err: any) {
      this.o.log.warn({ component: 'spam', err: err.message }, 'outbound spam scan failed; sending unscanned');
      this.verdicts.inc({ direction: 'outbound', verdict: 'failed' });
      return { blocked: false, score: null, result: null };
    }
  }

  learn(kind: 'spam' | 'ham', message: Buffer, user: string) {
    return this.client.learn(kind, message, user);
  }

  close(): void {
    this.client.close();
  }
}
