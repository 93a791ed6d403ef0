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
  origin: 'submission' | 'api' | 'forward' | 'dsn' | 'sieve' | 'report';
  /**
   * Recipients (entries of `recipients`) the caller is delivering itself right now (local mailboxes
   * over LMTP): their entries start in flight and the caller reports the outcome with settle(). Until
   * then they are durable like the others; after a crash they are delivered by the queue.
   */
  held?: string[];
  /**
   * Synchronous writes of the caller's own (e.g. the sender's cap accounting) made inside the
   * transaction that commits the queue rows: committed with them, or not at all.
   */
  inTransaction?: () => void;
}

export interface EnqueueResult {
  /** One queue id per recipient, in order. */
  queueIds: string[];
  /** The queued message (for settle()); null when there were no recipients. */
  id: string | null;
}

export interface OutboundQueue {
  /** Durable before it resolves: spool file fsynced and rows committed. */
  enqueue(req: EnqueueRequest): Promise<EnqueueResult>;
  /**
   * The outcome of the caller's own attempt for held recipients: delivered → done, 4xx → retried by
   * the queue, 5xx → bounced with a DSN, or cancelled with `cancelPermanent` (the client is told).
   */
  settle(id: string, results: { queueId: string; code: number; reply: string }[], opts: { mx: string; cancelPermanent?: boolean }): Promise<void>;
}

/** The queue as the context holds it (AppContext.queue): built with the context, started and stopped by its component. */
export interface QueueService extends OutboundQueue {
  /** True between the queue component's start and stop. */
  readonly running: boolean;
}

/** The queue when it is running, else null (the callers then answer 4xx: nothing is accepted that cannot be queued). */
export function runningQueue(app: { queue: QueueService }): OutboundQueue | null {
  return app.queue.running ? app.queue : null;
}
