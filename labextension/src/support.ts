/**
 * End of support and the build a notebook ran on: the pure logic.
 *
 * Reads the kernelspecs' `metadata.envmgr` (through `envmgrKernel`, the one
 * reader) and the retired releases envmgr publishes with each kernelspec of a
 * family (`envmgr-retired.json`, see envmgr/retired.py). No JupyterLab
 * runtime imports here, so the unit tests run it directly.
 */

import { compareText } from './grouping';
import type { IEnvmgrKernel } from './metadata';
import { envmgrKernel, releaseLabel } from './metadata';

/** The version of the block written into notebooks (`metadata.envmgr.v`). */
export const NOTEBOOK_BLOCK_VERSION = 1;

/** Days before `until` from which a notebook's kernel is announced as ending. */
export const DEFAULT_NOTICE_DAYS = 90;

const DAY_MS = 24 * 60 * 60 * 1000;
const BUILD_ID_RE = /\d{8}T\d{6}Z-[0-9a-f]{6}(?:-\d+)?/;

/** The kernelspecs as `/api/kernelspecs` lists them: name -> metadata. */
export type KernelMetadataByName = Record<string, unknown>;

/** A kernel notebooks can move to. */
export interface IKernelChoice {
  name: string;
  displayName: string;
}

/** One entry of `envmgr-retired.json`. */
export interface IRetired {
  kernel: string;
  family: string;
  release: string;
  until: string | null;
  retired: string;
  reason: string;
  successor: IKernelChoice | null;
}

/** What to tell the user about the kernel of a notebook. */
export interface ISupportNotice {
  kind: 'expiring' | 'expired' | 'retired';
  kernel: string;
  release: string;
  /** Support end (expiring, expired) or retirement date (retired). */
  date: string;
  daysLeft: number | null;
  successor: IKernelChoice | null;
}

interface IKnownKernel {
  name: string;
  kernel: IEnvmgrKernel;
}

function known(specs: KernelMetadataByName): IKnownKernel[] {
  const found: IKnownKernel[] = [];
  for (const [name, metadata] of Object.entries(specs)) {
    const kernel = envmgrKernel(metadata);
    if (kernel) {
      found.push({ name, kernel });
    }
  }
  return found;
}

/** Whole days from `today` to the ISO date `until` (negative once past). */
export function daysLeft(until: string, today: Date): number | null {
  const end = Date.parse(`${until}T00:00:00Z`);
  if (Number.isNaN(end)) {
    return null;
  }
  const start = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
  return Math.round((end - start) / DAY_MS);
}

function ending(kernel: IEnvmgrKernel, today: Date, noticeDays: number): boolean {
  const days = kernel.supportUntil ? daysLeft(kernel.supportUntil, today) : null;
  return days !== null && days <= noticeDays;
}

function displayName(kernel: IEnvmgrKernel): string {
  return `${kernel.displayName} · ${releaseLabel(kernel)}`;
}

/**
 * Where notebooks of `release` should go: the family's next stable release
 * that is not itself ending, else the family's latest kernel.
 */
export function successorOf(
  family: string,
  release: string,
  specs: KernelMetadataByName,
  today: Date,
  noticeDays: number = DEFAULT_NOTICE_DAYS
): IKernelChoice | null {
  const mine = known(specs).filter(k => k.kernel.family === family);
  const newer = mine
    .filter(
      k =>
        k.kernel.channel === 'stable' &&
        compareText(k.kernel.release ?? '', release) > 0 &&
        !ending(k.kernel, today, noticeDays)
    )
    .sort((a, b) => compareText(a.kernel.release ?? '', b.kernel.release ?? ''));
  const chosen = newer[0] ?? mine.find(k => k.kernel.channel === 'latest');
  return chosen ? { name: chosen.name, displayName: displayName(chosen.kernel) } : null;
}

/**
 * The notice for a notebook on kernel `name`, or null when there is nothing
 * to say (latest, supported beyond the notice period, not an envmgr kernel).
 */
export function supportNotice(
  name: string | null | undefined,
  specs: KernelMetadataByName,
  retired: ReadonlyMap<string, IRetired>,
  today: Date,
  noticeDays: number = DEFAULT_NOTICE_DAYS
): ISupportNotice | null {
  if (!name) {
    return null;
  }
  const kernel = envmgrKernel(specs[name]);
  if (!kernel) {
    const gone = specs[name] === undefined ? retired.get(name) : undefined;
    if (!gone) {
      return null;
    }
    const successor =
      successorOf(gone.family, gone.release, specs, today, noticeDays) ?? gone.successor;
    return {
      kind: 'retired',
      kernel: name,
      release: gone.release,
      date: gone.retired,
      daysLeft: null,
      successor
    };
  }
  if (kernel.channel !== 'stable' || !kernel.release || !kernel.supportUntil) {
    return null;
  }
  const days = daysLeft(kernel.supportUntil, today);
  if (days === null || days > noticeDays) {
    return null;
  }
  return {
    kind: days < 0 ? 'expired' : 'expiring',
    kernel: name,
    release: kernel.release,
    date: kernel.supportUntil,
    daysLeft: days,
    successor: successorOf(kernel.family, kernel.release, specs, today, noticeDays)
  };
}

/** Parse one `envmgr-retired.json` document (unknown shapes give nothing). */
export function parseRetired(doc: unknown): IRetired[] {
  const entries = (doc as { retired?: unknown } | null)?.retired;
  if (!Array.isArray(entries)) {
    return [];
  }
  const str = (v: unknown): string | null => (typeof v === 'string' && v ? v : null);
  const out: IRetired[] = [];
  for (const raw of entries) {
    const e = raw as Record<string, unknown>;
    const kernel = str(e?.['kernel']);
    const family = str(e?.['family']);
    const release = str(e?.['release']);
    if (!kernel || !family || !release) {
      continue;
    }
    const successor = str(e['successor']);
    out.push({
      kernel,
      family,
      release,
      until: str(e['until']),
      retired: str(e['retired']) ?? '',
      reason: str(e['reason']) ?? 'retired',
      successor: successor
        ? { name: successor, displayName: str(e['successor_display_name']) ?? successor }
        : null
    });
  }
  return out;
}

/** One kernelspec name per envmgr family: where that family's retired list is served. */
export function retiredSources(specs: KernelMetadataByName): string[] {
  const byFamily = new Map<string, string>();
  for (const { name, kernel } of known(specs)) {
    if (!byFamily.has(kernel.family)) {
      byFamily.set(kernel.family, name);
    }
  }
  return [...byFamily.values()].sort();
}

/** The build id in a kernel's answer (`'2026…-ab12cd'`, `[1] "…"`), or null. */
export function parseBuildId(text: unknown): string | null {
  const match = typeof text === 'string' ? BUILD_ID_RE.exec(text) : null;
  return match ? match[0] : null;
}

/** The expression that makes a kernel of `language` answer with its build id. */
export function buildIdExpression(language: string | undefined): string {
  return (language ?? '').toLowerCase() === 'r'
    ? "Sys.getenv('ENVMGR_BUILD_ID')"
    : "__import__('os').environ.get('ENVMGR_BUILD_ID', '')";
}

/**
 * The notebook's `metadata.envmgr` after a save on `kernel` running `build`:
 * `{family, build, release?, v}`, keeping `migrated_from` (set by
 * `envmgr notebooks migrate`).
 */
export function notebookBlock(
  kernel: IEnvmgrKernel,
  build: string,
  previous: unknown
): Record<string, string | number> {
  const block: Record<string, string | number> = {
    family: kernel.family,
    build,
    v: NOTEBOOK_BLOCK_VERSION
  };
  if (kernel.release) {
    block.release = kernel.release;
  }
  const migrated = (previous as Record<string, unknown> | null)?.['migrated_from'];
  if (typeof migrated === 'string' && migrated) {
    block.migrated_from = migrated;
  }
  return block;
}
