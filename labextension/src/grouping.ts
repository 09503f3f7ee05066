/**
 * Ordering envmgr kernels into group sections.
 *
 * A section lists, family by family, the family's `latest` kernel and its
 * newest stable release; the older stable releases go to the folded part.
 */

import type { ILauncher } from '@jupyterlab/launcher';
import type { IEnvmgrKernel } from './metadata';
import { envmgrKernelOf, kernelNameOf } from './metadata';

/**
 * An envmgr kernelspec: its name and its envmgr metadata.
 */
export interface IEnvmgrEntry {
  name: string;
  kernel: IEnvmgrKernel;
}

/**
 * The kernels of one envmgr group.
 */
export interface IGroupSection<T extends IEnvmgrEntry> {
  group: string;
  /** Family by family: `latest`, then the newest stable release. */
  current: T[];
  /** Family by family: the older stable releases, newest first. */
  folded: T[];
}

/**
 * What a kernel launcher item opens.
 */
export type LaunchKind = 'notebook' | 'console';

/**
 * An envmgr kernel in the launcher with its notebook and console items.
 */
export interface IKernelCard extends IEnvmgrEntry {
  /** Notebook item first, then console item (each only if present). */
  launchers: { kind: LaunchKind; item: ILauncher.IItemOptions }[];
}

/**
 * The launcher items split into envmgr group sections and the rest.
 */
export interface ILauncherLayout {
  groups: IGroupSection<IKernelCard>[];
  /** Every item that is not a notebook or console item of an envmgr kernel. */
  ordinary: ILauncher.IItemOptions[];
}

const LAUNCH_ORDER: readonly LaunchKind[] = ['notebook', 'console'];

/**
 * Compare texts the way people read them: "2025.10" after "2025.9".
 */
export function compareText(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/**
 * Split launcher items into envmgr group sections and ordinary items.
 *
 * @param categories - the (translated) launcher categories of notebook and
 *   console items.
 */
export function layoutItems(
  items: Iterable<ILauncher.IItemOptions>,
  categories: Record<LaunchKind, string>
): ILauncherLayout {
  const cards = new Map<string, IKernelCard>();
  const ordinary: ILauncher.IItemOptions[] = [];
  for (const item of items) {
    if (!addToCard(cards, item, categories)) {
      ordinary.push(item);
    }
  }
  for (const card of cards.values()) {
    card.launchers.sort(
      (a, b) => LAUNCH_ORDER.indexOf(a.kind) - LAUNCH_ORDER.indexOf(b.kind)
    );
  }
  return { groups: groupSections([...cards.values()]), ordinary };
}

/**
 * Add an envmgr kernel's notebook or console item to its card.
 *
 * @returns whether the item was taken.
 */
function addToCard(
  cards: Map<string, IKernelCard>,
  item: ILauncher.IItemOptions,
  categories: Record<LaunchKind, string>
): boolean {
  const kind = LAUNCH_ORDER.find(k => categories[k] === item.category);
  const name = kernelNameOf(item);
  const kernel = envmgrKernelOf(item);
  if (!kind || !name || !kernel) {
    return false;
  }
  const card = cards.get(name) ?? { name, kernel, launchers: [] };
  card.launchers.push({ kind, item });
  cards.set(name, card);
  return true;
}

/**
 * Sections of envmgr kernels, one per group, sorted by group name.
 */
export function groupSections<T extends IEnvmgrEntry>(
  entries: T[]
): IGroupSection<T>[] {
  const groups = groupBy(entries, entry => entry.kernel.group);
  return [...groups.keys()]
    .sort(compareText)
    .map(group => groupSection(group, groups.get(group) ?? []));
}

function groupSection<T extends IEnvmgrEntry>(
  group: string,
  entries: T[]
): IGroupSection<T> {
  const families = [...groupBy(entries, e => e.kernel.family).values()].sort(
    (a, b) => compareFamilies(a[0], b[0])
  );
  const section: IGroupSection<T> = { group, current: [], folded: [] };
  for (const family of families) {
    const latest = family.filter(e => e.kernel.channel === 'latest');
    const stable = family.filter(e => e.kernel.channel === 'stable');
    latest.sort((a, b) => compareText(a.name, b.name));
    stable.sort(newestFirst);
    section.current.push(...latest, ...stable.slice(0, 1));
    section.folded.push(...stable.slice(1));
  }
  return section;
}

function compareFamilies(a: IEnvmgrEntry, b: IEnvmgrEntry): number {
  return (
    compareText(a.kernel.displayName, b.kernel.displayName) ||
    compareText(a.kernel.family, b.kernel.family)
  );
}

function newestFirst(a: IEnvmgrEntry, b: IEnvmgrEntry): number {
  return (
    compareText(b.kernel.release ?? '', a.kernel.release ?? '') ||
    compareText(b.kernel.built, a.kernel.built) ||
    compareText(a.name, b.name)
  );
}

export function groupBy<T>(
  values: T[],
  key: (value: T) => string
): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const value of values) {
    const k = key(value);
    groups.set(k, [...(groups.get(k) ?? []), value]);
  }
  return groups;
}
