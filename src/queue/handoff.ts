/**
 * The hand-off from any path that accepts mail (inbound forwards, submission, API send) to the
 * outbound queue. The Sending issue implements it; others depend only on this interface.
 */
export interface EnqueueRequest {
  /** The complete message as it must leave (already signed/sealed where that applies). */
  message: Buffer;
  /** Envelope sender ('' = null sender, e.g. for DSNs). */
  from: string;
  /** Remote recipients (one queue entry each). */
  recipients: string[];
  /** The mailbox on whose behalf it is sent, for caps, events and bounces; null for forwards/DSNs. */
  mailboxId: string | null;
  /** The sending domain (A-label) choosing source IP and EHLO name; null = main IP and hostname. */
  sendingDomain: string | null;
  /** Sandbox (test API keys): recorded as delivered, never connects anywhere. */
  sandbox?: boolean;
  /** Message-ID header value, for events and lookups. */
  messageId?: string | null;
  origin: 'submission' | 'api' | 'forward' | 'dsn';
}

export interface EnqueueResult {
  /** One queue id per recipient, in order. */
  queueIds: string[];
}

export interface OutboundQueue {
  /** Durable before it resolves: spool file fsynced and rows committed. */
  enqueue(req: EnqueueRequest): Promise<EnqueueResult>;
}

/** Filled in by the queue component when it is created; read at use time by the others. */
export interface Handoff {
  queue: OutboundQueue | null;
}
