/**
 * A small tmpfs, for the only honest disk-full tests: a real file system that runs out of space.
 *
 * Mounting needs root (CI runs as root). Where `mount` fails, a test that needs the disk is
 * skipped, but never silently: it prints why with console.warn, and under `CI=true` it fails
 * instead, so a CI machine that lost the ability to mount cannot turn these tests into no-ops.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class SmallDisk {
  private mounted = false;
  private failure = '';
  private fillers: string[] = [];

  /** `dir` is created if missing; `size` is tmpfs's `size=` option, e.g. '2m'. */
  constructor(
    readonly dir: string,
    private readonly size: string,
  ) {}

  mount(): this {
    mkdirSync(this.dir, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${this.size}`, 'tmpfs', this.dir], { stdio: 'pipe' });
      this.mounted = true;
    } catch (e) {
      // mount's own words (e.g. "permission denied") are on its stderr, not in the message.
      const stderr = String((e as { stderr?: unknown }).stderr ?? '').trim();
      this.failure = stderr || (e instanceof Error ? e.message : String(e)).trim().split('\n')[0]!;
    }
    return this;
  }

  /**
   * Call at the start of a test that needs the disk. Returns true when it is there; otherwise
   * warns (or throws under CI=true) and skips the test through `skip`.
   */
  require(skip: (note: string) => void, test: string): boolean {
    if (this.mounted) return true;
    const why = `cannot mount a ${this.size} tmpfs at ${this.dir}: ${this.failure}`;
    if (process.env.CI === 'true') throw new Error(`${test}: ${why} (CI=true: disk-full tests must run, not skip)`);
    console.warn(`SKIPPED ${test}: ${why}`);
    skip(why);
    return false;
  }

  /** Fills the disk with a file until `leaveBytes` remain free; `release()` removes it. */
  fill(leaveBytes: number, name = `filler-${this.fillers.length}`): void {
    const s = statfsSync(this.dir);
    const path = join(this.dir, name);
    writeFileSync(path, Buffer.alloc(Math.max(0, s.bavail * s.bsize - leaveBytes)));
    this.fillers.push(path);
  }

  /** Frees what `fill` took. */
  release(): void {
    for (const f of this.fillers.splice(0)) unlinkSync(f);
  }

  /** Unmounts (lazily if something still holds it open). Safe to call when never mounted. */
  unmount(): void {
    if (!this.mounted) return;
    this.mounted = false;
    try {
      execFileSync('umount', [this.dir], { stdio: 'pipe' });
    } catch {
      // Still busy (an environment a failed test left open): detach now, freed when released.
      execFileSync('umount', ['-l', this.dir], { stdio: 'pipe' });
    }
  }
}
