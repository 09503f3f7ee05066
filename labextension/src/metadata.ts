/**
 * Reading the envmgr kernelspec metadata carried by launcher items.
 *
 * The notebook and console extensions add one launcher item per kernelspec
 * with `metadata: { kernel: <kernelspec metadata> }`; envmgr writes its own
 * block under `metadata.envmgr` of kernel.json.
 */

import type { ILauncher } from '@jupyterlab/launcher';

/**
 * The version of the kernelspec block this extension reads
 * (`metadata.envmgr.v`). Blocks written before versioning have no `v` (read
 * as 0, same keys); newer versions keep the keys read here, so they are read
 * too. Anything else (`v` not a whole number >= 0) is not envmgr's block.
 */
export const METADATA_VERSION = 1;

/**
 * The `metadata.envmgr` block of an envmgr kernelspec.
 */
export interface IEnvmgrKernel {
  /** `metadata.envmgr.v`; 0 for blocks written before it existed. */
  version: number;
  family: string;
  group: string;
  channel: 'latest' | 'stable';
  release: string | null;
  buildId: string;
  built: string;
  supportUntil: string | null;
  displayName: string;
}

type JSONRecord = { readonly [key: string]: unknown };

function asObject(value: unknown): JSONRecord | null {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as JSONRecord)
    : null;
}

function asString(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/**
 * The envmgr block of a kernelspec's metadata, or null for an ordinary kernel
 * (no block, or one without the fields the grouping needs).
 */
export function envmgrKernel(kernelMetadata: unknown): IEnvmgrKernel | null {
  const block = asObject(asObject(kernelMetadata)?.['envmgr']);
  const version = block?.['v'] ?? 0;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 0) {
    return null;
  }
  const family = asString(block?.['family']);
  const group = asString(block?.['group']);
  const channel = block?.['channel'];
  const release = asString(block?.['release']);
  if (!block || !family || !group) {
    return null;
  }
  if (channel !== 'latest' && !(channel === 'stable' && release)) {
    return null;
  }
  return {
    version,
    family,
    group,
    channel,
    release,
    buildId: asString(block['build_id']) ?? '',
    built: asString(block['built']) ?? '',
    supportUntil: asString(block['support_until']),
    displayName: asString(block['display_name']) ?? family
  };
}

/**
 * The label of a kernel's release, the same everywhere (launcher badge,
 * tooltip, notifications): the release name as promoted, which is also what
 * the kernel's display name ends with; `latest` for the latest channel.
 */
export function releaseLabel(kernel: IEnvmgrKernel, latest = 'latest'): string {
  return kernel.release ?? latest;
}

/**
 * The kernelspec name a notebook or console launcher item starts.
 *
 * Notebook items carry `args.kernelName`, console items
 * `args.kernelPreference.name`.
 */
export function kernelNameOf(item: ILauncher.IItemOptions): string | null {
  const args = item.args ?? {};
  return (
    asString(args['kernelName']) ??
    asString(asObject(args['kernelPreference'])?.['name'])
  );
}

/**
 * The envmgr block of a launcher item's kernel, if any.
 */
export function envmgrKernelOf(
  item: ILauncher.IItemOptions
): IEnvmgrKernel | null {
  return envmgrKernel(item.metadata?.['kernel']);
}
