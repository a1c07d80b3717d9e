// Whether a process lives: asked of the notes a server leaves (lib/discovery.ts) and of the snapshot folders a
// dead server left behind (lib/snapshot.ts).

/** Signal 0 tests a pid without touching it; EPERM means it lives, under another user. */
export function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    }
    catch (err) {
        return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
}
