// Unpacks a report attachment as receivers send them: a zip archive holding one file (DMARC, RFC
// 7489 §7.2.1.1), gzip (DMARC and TLS-RPT, RFC 8460 §5.3) or the plain document. Every path is
// bounded: the output may not exceed `maxBytes`, nor `maxRatio` times the packed size, and
// decompression stops as soon as it would (a zip or gzip bomb costs at most the limit). A refused
// input throws LetterboxError('validation_error') with the reason, which is stored with the report.
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import yauzl from 'yauzl';
import { LetterboxError } from '../errors.ts';

const gunzipAsync = promisify(gunzip);

export interface UnpackLimits {
  /** The most bytes a report may have once unpacked. */
  maxBytes: number;
  /** The largest unpacked/packed size ratio accepted (real reports compress 5–40×). */
  maxRatio: number;
}

export type PackKind = 'zip' | 'gzip' | 'plain';

export interface Unpacked {
  kind: PackKind;
  /** The file name inside a zip archive, else null. */
  name: string | null;
  data: Buffer;
}

const rejected = (reason: string) => new LetterboxError('validation_error', reason);

/** What the bytes are, by their magic numbers (the attachment's name and type are often wrong). */
export function packKind(data: Buffer): PackKind {
  if (data.length >= 4 && data.readUInt32LE(0) === 0x04034b50) return 'zip';
  if (data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b) return 'gzip';
  return 'plain';
}

/** The byte limit for unpacking `packed` bytes: the smaller of maxBytes and maxRatio × packed. */
export function outputLimit(packed: number, l: UnpackLimits): number {
  return Math.max(1, Math.min(l.maxBytes, Math.floor(Math.max(packed, 1) * l.maxRatio)));
}

export async function unpack(data: Buffer, limits: UnpackLimits): Promise<Unpacked> {
  const kind = packKind(data);
  if (kind === 'plain') {
    if (data.length > limits.maxBytes) throw rejected(`report too large: ${data.length} bytes (limit ${limits.maxBytes})`);
    return { kind, name: null, data };
  }
  const max = outputLimit(data.length, limits);
  if (kind === 'gzip') return { kind, name: null, data: await inflateBounded(() => gunzipAsync(data, { maxOutputLength: max }), max, 'gzip') };
  return unzipOne(data, max);
}

async function inflateBounded(run: () => Promise<Buffer>, max: number, what: string): Promise<Buffer> {
  try {
    return await run();
  } catch (err: any) {
    if (err?.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) throw rejected(`${what} expands beyond ${max} bytes (size or compression-ratio limit): refused as a decompression bomb`);
    throw rejected(`${what} data is corrupt (${err?.code ?? err?.message ?? err})`);
  }
}

/**
 * The one file of a zip archive (yauzl reads the central directory and checks each entry's sizes).
 * An archive with several files, a directory, encryption or a method other than stored/deflate is
 * refused. The entry is read as a stream and counted, so a size in the archive's headers that lies
 * cannot make it inflate more than the limit.
 */
async function unzipOne(data: Buffer, max: number): Promise<Unpacked> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.fromBuffer(data, { lazyEntries: true, validateEntrySizes: true, decodeStrings: true, strictFileNames: false }, (err, z) => (err ? reject(rejected(`not a valid zip archive (${err.message})`)) : resolve(z!))),
  );
  try {
    const files = zip.entryCount;
    if (files !== 1) throw rejected(`zip archive holds ${files} entries; a report archive holds exactly one file`);
    const entry = await new Promise<yauzl.Entry>((resolve, reject) => {
      zip.once('entry', resolve);
      zip.once('error', (err) => reject(rejected(`not a valid zip archive (${err.message})`)));
      zip.readEntry();
    });
    if (entry.fileName.endsWith('/')) throw rejected('zip archive holds a directory, not a report');
    if (entry.isEncrypted()) throw rejected('zip entry is encrypted');
    if (entry.uncompressedSize > max) throw rejected(`zip entry declares ${entry.uncompressedSize} bytes (limit ${max}: size or compression-ratio limit): refused as a decompression bomb`);
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) throw rejected(`zip entry uses compression method ${entry.compressionMethod} (only stored and deflate are read)`);
    const stream = await new Promise<NodeJS.ReadableStream & { destroy(): void }>((resolve, reject) =>
      zip.openReadStream(entry, (err, s) => (err ? reject(rejected(`zip entry unreadable (${err.message})`)) : resolve(s as any))),
    );
    // Read with a running count: inflating stops at the limit whatever the headers said.
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const c of stream as AsyncIterable<Buffer>) {
        total += c.length;
        if (total > max) {
          stream.destroy();
          throw rejected(`zip entry expands beyond ${max} bytes (size or compression-ratio limit): refused as a decompression bomb`);
        }
        chunks.push(c);
      }
    } catch (err) {
      if (err instanceof LetterboxError) throw err;
      throw rejected(`zip entry is corrupt (${(err as Error)?.message ?? err})`);
    }
    const out = Buffer.concat(chunks);
    return { kind: 'zip', name: entry.fileName, data: out };
  } finally {
    zip.close();
  }
}
