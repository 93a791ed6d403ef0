// Runs in a worker thread (./parse.ts): parses one unpacked report, so that a large document does
// not hold up the main thread, which serves SMTP and the API meanwhile.
import { parentPort, workerData } from 'node:worker_threads';
import { parseDmarcReport } from './dmarc.ts';
import { parseTlsReport } from './tlsrpt.ts';

const { kind, data } = workerData as { kind: 'dmarc' | 'tlsrpt'; data: Uint8Array };
try {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  parentPort!.postMessage({ ok: true, report: kind === 'dmarc' ? parseDmarcReport(buf) : parseTlsReport(buf) });
} catch (err: any) {
  // Whatever the parser throws is about the document (the reason is stored with the report).
  parentPort!.postMessage({ ok: false, message: err?.code === 'validation_error' ? String(err.message) : `unreadable report (${err?.message ?? err})` });
}
