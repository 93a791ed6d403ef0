#!/usr/bin/python3
"""A FUSE file system that loses what was never fsync'ed: the power-loss model of test/power-loss.test.ts.

    lazyfs.py BACKING MOUNTPOINT

It passes every operation through to BACKING, except file contents: writes (and truncations) are
kept in memory per file and reach BACKING only when the file is fsync'ed (fsync or fdatasync), as
data in a page cache reaches the disk. Closing a file does not make it durable. When a line 'cut'
arrives on standard input the power goes: everything not fsync'ed is dropped, every later operation fails with EIO (the dying
processes cannot write anything more); the caller then unmounts it (fusermount3 -u -z). BACKING then holds exactly what
a disk would hold after a power cut at that moment.

Why our own: device-mapper (dm-log-writes, dm-flakey) is not available in this kernel's container
(/dev/mapper/control: no such device), and LazyFS (the research tool doing the same) is not
packaged in Debian. This is the same idea in ~200 lines over Debian's python3-fusepy.

What it does not model, and so does not test: directory entries (create, rename, unlink, mkdir) are
applied to BACKING at once, as if every directory were fsync'ed immediately (an optimistic model:
a power cut cannot undo a rename here), and writes are not torn inside one fsync.
"""
import errno
import os
import sys
import threading

from fusepy import FUSE, FuseOSError, Operations, fuse_get_context


class Lazy(Operations):
    def __init__(self, root, mountpoint):
        self.root = root
        self.mountpoint = mountpoint
        # Not yet durable contents, per backing inode: the whole file as the processes see it.
        self.shadow = {}
        self.down = False
        self.mu = threading.RLock()  # not 'lock': that is a FUSE operation's name
        self.stats = {'fsyncs': 0, 'writes': 0}

    # -- helpers -------------------------------------------------------------------------------
    def _p(self, path):
        return os.path.join(self.root, path.lstrip('/'))

    def _alive(self):
        if self.down:
            raise FuseOSError(errno.EIO)

    def _ino(self, path=None, fh=None):
        return os.fstat(fh).st_ino if fh is not None else os.lstat(self._p(path)).st_ino

    def _load(self, ino, fh):
        """The shadow of a file, read from BACKING the first time it is changed."""
        s = self.shadow.get(ino)
        if s is None:
            size = os.fstat(fh).st_size
            s = bytearray(os.pread(fh, size, 0)) if size else bytearray()
            self.shadow[ino] = s
        return s

    def _own(self, path):
        uid, gid, _ = fuse_get_context()
        os.lchown(self._p(path), uid, gid)

    def power_cut(self):
        with self.mu:
            self.down = True
            lost = len(self.shadow)
            self.shadow.clear()
        sys.stderr.write(f'lazyfs: power cut: {lost} files lost their unsynced changes ({self.stats})\n')
        sys.stderr.flush()

    # -- metadata: passed through at once --------------------------------------------------------
    def access(self, path, amode):
        self._alive()
        if not os.access(self._p(path), amode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        self._alive()
        with self.mu:
            st = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
            d = {k: getattr(st, k) for k in ('st_atime', 'st_ctime', 'st_gid', 'st_mode', 'st_mtime', 'st_nlink', 'st_size', 'st_uid', 'st_ino', 'st_blocks')}
            s = self.shadow.get(st.st_ino)
            if s is not None:
                d['st_size'] = len(s)
            return d

    def readdir(self, path, fh):
        self._alive()
        return ['.', '..'] + os.listdir(self._p(path))

    def readlink(self, path):
        self._alive()
        return os.readlink(self._p(path))

    def mknod(self, path, mode, dev):
        self._alive()
        os.mknod(self._p(path), mode, dev)
        self._own(path)

    def mkdir(self, path, mode):
        self._alive()
        os.mkdir(self._p(path), mode)
        self._own(path)

    def rmdir(self, path):
        self._alive()
        os.rmdir(self._p(path))

    def symlink(self, target, source):
        self._alive()
        os.symlink(source, self._p(target))
        self._own(target)

    def link(self, target, source):
        self._alive()
        os.link(self._p(source), self._p(target))

    def unlink(self, path):
        self._alive()
        with self.mu:
            st = os.lstat(self._p(path))
            os.unlink(self._p(path))
            if st.st_nlink <= 1:
                self.shadow.pop(st.st_ino, None)

    def rename(self, old, new):
        self._alive()
        with self.mu:
            try:
                replaced = os.lstat(self._p(new))
            except FileNotFoundError:
                replaced = None
            os.rename(self._p(old), self._p(new))
            if replaced is not None and replaced.st_nlink <= 1:
                self.shadow.pop(replaced.st_ino, None)

    def chmod(self, path, mode):
        self._alive()
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        self._alive()
        os.lchown(self._p(path), uid, gid)

    def utimens(self, path, times=None):
        self._alive()
        os.utime(self._p(path), times)

    def statfs(self, path):
        self._alive()
        st = os.statvfs(self._p(path))
        return {k: getattr(st, k) for k in ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail', 'f_ffree', 'f_files', 'f_flag', 'f_frsize', 'f_namemax')}

    # -- contents: in memory until fsync -------------------------------------------------------------
    def open(self, path, flags):
        self._alive()
        with self.mu:
            fh = os.open(self._p(path), flags & ~os.O_TRUNC & ~os.O_APPEND)
            if flags & os.O_TRUNC:
                self._load(self._ino(fh=fh), fh)[:] = b''
            return fh

    def create(self, path, mode, fi=None):
        self._alive()
        with self.mu:
            fh = os.open(self._p(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
            self._own(path)
            return fh

    def read(self, path, size, offset, fh):
        self._alive()
        with self.mu:
            s = self.shadow.get(self._ino(fh=fh))
            if s is not None:
                return bytes(s[offset:offset + size])
            return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._alive()
        with self.mu:
            s = self._load(self._ino(fh=fh), fh)
            if offset > len(s):
                s.extend(b'\0' * (offset - len(s)))
            s[offset:offset + len(data)] = data
            self.stats['writes'] += 1
            return len(data)

    def truncate(self, path, length, fh=None):
        self._alive()
        with self.mu:
            own = fh is None
            if own:
                fh = os.open(self._p(path), os.O_RDONLY)
            try:
                s = self._load(self._ino(fh=fh), fh)
                if length < len(s):
                    del s[length:]
                else:
                    s.extend(b'\0' * (length - len(s)))
            finally:
                if own:
                    os.close(fh)

    def fsync(self, path, datasync, fh):
        self._alive()
        with self.mu:
            ino = self._ino(fh=fh)
            s = self.shadow.pop(ino, None)
            if s is not None:
                # The open fd may be read-only: write through a fresh one.
                wfd = os.open(f'/proc/self/fd/{fh}', os.O_WRONLY)
                try:
                    os.ftruncate(wfd, len(s))
                    os.pwrite(wfd, bytes(s), 0)
                    os.fsync(wfd)
                finally:
                    os.close(wfd)
            else:
                os.fsync(fh)
            self.stats['fsyncs'] += 1

    def flush(self, path, fh):
        self._alive()  # close() is not a sync

    def release(self, path, fh):
        os.close(fh)


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: lazyfs.py BACKING MOUNTPOINT')
    root, mnt = os.path.realpath(sys.argv[1]), os.path.realpath(sys.argv[2])
    os.umask(0)  # the kernel already applied the caller's umask to the modes FUSE passes us
    fs = Lazy(root, mnt)
    # The power switch is a line 'cut' on standard input (a signal handler would never run: Python
    # runs them on the main thread, which stays inside fuse_main).
    def switch():
        for line in sys.stdin:
            if line.strip() == 'cut':
                fs.power_cut()
    threading.Thread(target=switch, daemon=True).start()
    # allow_other: Dovecot's users read and write the mail; default_permissions: the kernel checks
    # the modes and owners passed through. No kernel writeback cache: every write reaches us.
    FUSE(fs, mnt, foreground=True, nothreads=False, allow_other=True, default_permissions=True, use_ino=True, fsname='lazyfs')


if __name__ == '__main__':
    main()
