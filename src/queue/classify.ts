// Classifying SMTP replies (pure).

export type Outcome = 'delivered' | 'deferred' | 'bounced';

export function outcomeOf(code: number): Outcome {
  if (code >= 200 && code < 300) return 'delivered';
  if (code >= 500 && code < 600) return 'bounced';
  return 'deferred';
}

/** The enhanced status code (RFC 3463) in a reply, e.g. "5.1.1"; null when absent. */
export function enhancedCode(reply: string): string | null {
  const m = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply.trim()) ?? /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply);
  return m ? m[1] : null;
}

/**
 * A hard bounce worth suppressing: the address itself is bad (5.1.x: unknown user, bad domain,
 * no such mailbox), or a 550 without an enhanced code whose text says so. Policy/content rejections
 * (5.7.x, 5.6.x, 5.3.4...) are not about the address and are not suppressed.
 */
export function isHardBounce(code: number, reply: string): boolean {
  if (code < 500) return false;
  const e = enhancedCode(reply);
  if (e) return e.startsWith('5.1.') || e === '5.2.1';
  return code === 550 && /(unknown|no such|does not exist|invalid) (user|recipient|mailbox|address)|user unknown|mailbox unavailable/i.test(reply);
}
