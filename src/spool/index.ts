import { createWriteStream, mkdirSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Transform, Writable, type Readable } from 'node:stream';
import type { WriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { LetterboxError } from '../errors.ts';

export interface SpoolFile {
  id: string;
  path: string;
  size: number;
  /** The content (without `prefix`) when it was at most `keep` bytes: read it from here, not the file. */
  data?: Buffer;
}

export interface SpoolWriteOptions {
  maxBytes?: number;
  prefix?: Buffer;
  id?: string;
  /**
   * false: no fsync of the file nor its folder. For a file that is only a working copy, removed
   * before the reply and never relied on after a crash (the MX's: 250 comes only once Dovecot or the
   * outbound queue, which keeps its own fsynced copy, has the message). Default true.
   */
  durable?: boolean;
  /** Also keep the content in memory (SpoolFile.data) when it is at most this many bytes. */
  keep?: number;
  /**
   * With `keep` and `durable: false`: a message of at most `keep` bytes is not written to disk at all
   * (SpoolFile.path is '' and `data` holds it); a larger one goes to a file as usual.
   */
  memoryOnly?: boolean;
}

/**
 * Buffers up to `threshold` bytes in memory and opens the file only when the content grows past it,
 * so a small working copy never touches the disk. Written here because no stream library does
 * "file only above a size" with back-pressure.
 */
class LazyFileSink extends Writable {
  private held: Buffer[] = [];
  private size = 0;
  private file: WriteStream | null = null;
  private readonly threshold: number;
  private readonly open: () => WriteStream;
  constructor(threshold: number, open: () => WriteStream) {
    super();
    this.threshold = threshold;
    this.open = open;
  }
  get wroteFile(): boolean {
    return this.file !== null;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.file) {
      this.size += chunk.length;
      this.held.push(chunk);
      if (this.size <= this.threshold) return cb();
      this.file = this.open();
      this.file.on('error', (err) => this.destroy(err));
      chunk = Buffer.concat(this.held);
      this.held = [];
    }
    if (this.file.write(chunk)) cb();
    else this.file.once('drain', () => cb());
  }
  override _final(cb: (err?: Error | null) => void): void {
    if (!this.file) return cb();
    this.file.end(() => cb());
  }
}

/** data_dir/spool/<2 hex>/<id>.eml, written to a temp name, fsynced, renamed, directory fsynced (unless `durable: false`). */
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
  async write(input: Readable | Buffer, opts: SpoolWriteOptions = {}): Promise<SpoolFile> {
    if (Buffer.isBuffer(input)) return this.writeBuffer(input, opts);
    const id = opts.id ?? this.newId();
    const tmp = join(this.dir, 'tmp', `${id}.tmp`);
    const final = this.pathFor(id);
    let size = 0;
    let tooBig = false;
    const max = opts.maxBytes ?? Infinity;
    const keep = opts.keep ?? 0;
    let kept: Buffer[] | null = keep > 0 ? [] : null;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (kept) {
          if (size <= keep) kept.push(chunk);
          else kept = null;
        }
        if (size > max) {
          tooBig = true;
          cb(); // keep draining so the client gets a clean reply, but store nothing more
          return;
        }
        cb(null, chunk);
      },
    });
    const lazy = opts.memoryOnly && keep > 0 && opts.durable === false;
    const openFile = () => {
      const f = createWriteStream(tmp, { mode: 0o640 });
      if (opts.prefix) f.write(opts.prefix);
      return f;
    };
    const out = lazy ? new LazyFileSink(keep, openFile) : openFile();
    try {
      await pipeline(input, counter, out);
      if (tooBig) throw new LetterboxError('payload_too_large', `message exceeds the size limit of ${max} bytes`);
      if (out instanceof LazyFileSink && !out.wroteFile) {
        return { id, path: '', size: size + (opts.prefix?.length ?? 0), data: Buffer.concat(kept ?? []) };
      }
      if (opts.durable !== false) {
        const fh = await fsp.open(tmp, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      await this.commit(id, tmp, final, opts.durable !== false);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    return { id, path: final, size: size + (opts.prefix?.length ?? 0), ...(kept ? { data: Buffer.concat(kept) } : {}) };
  }

  /** A message already in memory: written with one file handle (no stream pipeline), same guarantees. */
  private async writeBuffer(input: Buffer, opts: SpoolWriteOptions): Promise<SpoolFile> {
    const size = input.length + (opts.prefix?.length ?? 0);
    if (size - (opts.prefix?.length ?? 0) > (opts.maxBytes ?? Infinity)) throw new LetterboxError('payload_too_large', `message exceeds the size limit of ${opts.maxBytes} bytes`);
    const id = opts.id ?? this.newId();
    const tmp = join(this.dir, 'tmp', `${id}.tmp`);
    const final = this.pathFor(id);
    try {
      const fh = await fsp.open(tmp, 'w', 0o640);
      try {
        await fh.writeFile(opts.prefix ? Buffer.concat([opts.prefix, input]) : input);
        if (opts.durable !== false) await fh.sync();
      } finally {
        await fh.close();
      }
      await this.commit(id, tmp, final, opts.durable !== false);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    return { id, path: final, size, ...(opts.keep && input.length <= opts.keep ? { data: input } : {}) };
  }

  private made = new Set<string>();
  /** Renames the fsynced temp file into place and fsyncs the directory (the rename is then durable). */
  private async commit(id: string, tmp: string, final: string, durable: boolean): Promise<void> {
    const sub = join(this.dir, id.slice(-2));
    if (!this.made.has(sub)) {
      await fsp.mkdir(sub, { recursive: true, mode: 0o750 });
      this.made.add(sub);
    }
    try {
      await fsp.rename(tmp, final);
    } catch (err: any) {
      // The folder was removed under us (e.g. by an operator): make it again, once.
      if (err?.code !== 'ENOENT') throw err;
      this.made.delete(sub);
      await fsp.mkdir(sub, { recursive: true, mode: 0o750 });
      this.made.add(sub);
      await fsp.rename(tmp, final);
    }
    if (!durable) return;
    const dh = await fsp.open(sub, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  async remove(id: string): Promise<void> {
    try {
      await fsp.unlink(this.pathFor(id));
    } catch (err: any) {
      if (err?.code !== 'ENOENT') throw err;
    }
  }
}
