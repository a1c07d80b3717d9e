// File digests by identity: a file's SHA-256 is streamed through the hash with asynchronous reads, so that hashing a
// 200 MB model never holds the event loop, and a file is read again only when its identity (device, inode, size,
// mtime, ctime) has changed since. The content decides; the identity only says when the content needs no re-reading.
import crypto from 'node:crypto';
import fs from 'node:fs';

/**
 * How long after its last change a file's identity is trusted to tell its content. A write in the same tick of the
 * file system's clock as the read before it leaves the identity as it was (size, mtime and ctime alike), so a file
 * changed this recently is read again at the next look (as git does with its "racily clean" files).
 */
const settleMs = 2000;

/** The most read through the hash at a time: one read's hashing holds the event loop for about a millisecond. */
const chunkBytes = 1 << 20;

interface Entry {
    identity: string;
    digest: string;
    /** its last change was long enough before the read (see settleMs) */
    trusted: boolean;
    /** the look it was last read or used in */
    look: number;
}

const identity = (s: fs.BigIntStats): string => `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;

export class DigestCache {
    private readonly entries = new Map<string, Entry>();
    private look = 0;
    /** how many times a file was read through the hash: what the cache saves is what this does not count */
    reads = 0;

    /** `now` is the clock that the files' ctimes are compared with (a test may move it). */
    constructor(private readonly now: () => number = Date.now) {}

    /**
     * The SHA-256 (hex) of a file's content, link followed. A file whose identity is unchanged since its last read is
     * not read again: within one look, whenever that read was; across looks, if it was trusted. Rejects when the file
     * cannot be read.
     */
    async digest(file: string): Promise<string> {
        const known = this.entries.get(file);
        const stat = await fs.promises.stat(file, { bigint: true });
        if (known && known.identity === identity(stat) && (known.trusted || known.look === this.look)) {
            known.look = this.look;
            return known.digest;
        }
        const entry = await this.read(file);
        this.entries.set(file, entry);
        return entry.digest;
    }

    /** Ends a look: a file it did not use is forgotten, and one read too soon after its last change is read again. */
    sweep(): void {
        for (const [file, entry] of this.entries) {
            if (entry.look !== this.look) {
                this.entries.delete(file);
            }
        }
        this.look++;
    }

    private async read(file: string): Promise<Entry> {
        const started = this.now();
        const handle = await fs.promises.open(file, 'r');
        try {
            const before = await handle.stat({ bigint: true });
            const hash = crypto.createHash('sha256');
            const buffer = Buffer.allocUnsafe(Math.max(1, Math.min(chunkBytes, Number(before.size))));
            for (let n = 1; n;) {
                ({ bytesRead: n } = await handle.read(buffer, 0, buffer.length, null));
                hash.update(buffer.subarray(0, n));
            }
            const after = await handle.stat({ bigint: true });
            this.reads++;
            // Changed while it was read: what was hashed may be half of each version, and the next look reads it again.
            const steady = identity(after) === identity(before);
            return { identity: identity(before), digest: hash.digest('hex'), trusted: steady && Number(after.ctimeNs / 1000000n) < started - settleMs, look: this.look };
        }
        finally {
            await handle.close();
        }
    }
}
