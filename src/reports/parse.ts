// Parses an unpacked report in a worker thread of its own: parsing a document of several megabytes
// takes seconds of CPU, which on the main thread would stall every SMTP session and API request.
// The worker has a heap limit (a hostile document cannot exhaust the process's memory) and a
// deadline; reports are rare (a few per domain and day), so a worker per report is cheap enough.
import { Worker } from 'node:worker_threads';
import { LetterboxError } from '../errors.ts';
import type { DmarcReport } from './dmarc.ts';
import type { TlsReport } from './tlsrpt.ts';

export interface ParseLimits {
  timeoutMs: number;
  heapMb: number;
}

export function parseReport(kind: 'dmarc', data: Buffer, l: ParseLimits): Promise<DmarcReport>;
export function parseReport(kind: 'tlsrpt', data: Buffer, l: ParseLimits): Promise<TlsReport>;
export function parseReport(kind: 'dmarc' | 'tlsrpt', data: Buffer, l: ParseLimits): Promise<DmarcReport | TlsReport> {
  // A copy in an ArrayBuffer of its own, moved (not copied again) to the worker.
  const copy = new Uint8Array(data.length);
  copy.set(data);
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./parse-worker.ts', import.meta.url), {
      workerData: { kind, data: copy },
      transferList: [copy.buffer],
      resourceLimits: { maxOldGenerationSizeMb: l.heapMb, maxYoungGenerationSizeMb: 32 },
    });
    let settled = false;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
      void worker.terminate();
    };
    const timer = setTimeout(() => done(() => reject(new LetterboxError('validation_error', `report took longer than ${l.timeoutMs} ms to parse`))), l.timeoutMs);
    worker.once('message', (m: { ok: true; report: DmarcReport | TlsReport } | { ok: false; message: string }) =>
      done(() => (m.ok ? resolve(m.report) : reject(new LetterboxError('validation_error', m.message)))),
    );
    worker.once('error', (err: any) =>
      done(() => reject(err?.code === 'ERR_WORKER_OUT_OF_MEMORY' ? new LetterboxError('validation_error', `report needs more than ${l.heapMb} MB to parse`) : err)),
    );
    worker.once('exit', (code) => done(() => reject(new Error(`report parser exited (${code})`))));
  });
}
