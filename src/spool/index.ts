import { createWriteStream, mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LetterboxError } from '../errors.ts';

export interface SpoolFile {
  id: string;
  path: string;
  size: number;
}

/** data_dir/spool/<2 hex>/<id>.eml, written to a temp name, fsynced, renamed, directory fsynced. */
export class Spool {
  readonly dir: string;
  constructor(dataDir: string) {
    this.dir = join(dataDir, 'spool');
    mkdirSync(join(this.dir, 'tmp'), { recursive: true, mode: 0o750 });
  }

  newId(): string {
    return Date.now().toString(36) + randomBytes(8).toString('hex');
  }

  pathFor(id: string): string {
    return join(this.dir, id.slice(-2), `${id}.eml`);
  }

  /**
   * Streams a message into the spool and makes it durable before resolving. `maxBytes` is enforced
   * while streaming: the stream is drained and a payload_too_large error thrown, nothing kept.
   * `prefix` (e.g. Received / Authentication-Results headers) is written first.
   */
  async write(input: Readable | Buffer, opts: { maxBytes?: number; prefix?: Buffer; id?: string } = {}): Promise<SpoolFile> {
    const id = opts.id ?? this.newId();
    const tmp = join(this.dir, 'tmp', `${id}.tmp`);
    const final = this.pathFor(id);
    let size = 0;
    let tooBig = false;
    const max = opts.maxBytes ?? Infinity;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > max) {
          tooBig = true;
          cb(); // keep draining so the client gets a clean reply, but store nothing more
          return;
        }
        cb(null, chunk);
      },
    });
    const out = createWriteStream(tmp, { mode: 0o640 });
    try {
      if (opts.prefix) out.write(opts.prefix);
      const src = Buffer.isBuffer(input) ? (await import('node:stream')).Readable.from([input]) : input;
      await pipeline(src, counter, out);
      if (tooBig) throw new LetterboxError('payload_too_large', `message exceeds the size limit of ${max} bytes`);
      const fh = await fsp.open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.mkdir(join(this.dir, id.slice(-2)), { recursive: true, mode: 0o750 });
      await fsp.rename(tmp, final);
      const dh = await fsp.open(join(this.dir, id.slice(-2)), 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    return { id, path: final, size: size + (opts.prefix?.length ?? 0) };
  }

  async remove(id: string): Promise<void> {
    await fsp.rm(this.pathFor(id), { force: true });
  }
}
