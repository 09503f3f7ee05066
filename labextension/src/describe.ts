/**
 * Texts shown for envmgr kernels: badge and tooltip.
 */

import type { TranslationBundle } from '@jupyterlab/translation';
import type { IEnvmgrEntry } from './grouping';
import type { IEnvmgrKernel } from './metadata';
import { releaseLabel } from './metadata';

/**
 * The badge of a kernel: `latest` or its release name.
 */
export function badgeText(
  kernel: IEnvmgrKernel,
  trans: TranslationBundle
): string {
  return releaseLabel(kernel, trans.__('latest'));
}

/**
 * The tooltip of a kernel: name, build date and support end.
 */
export function kernelTooltip(
  entry: IEnvmgrEntry,
  trans: TranslationBundle
): string {
  const { kernel } = entry;
  return [
    `${kernel.displayName} · ${badgeText(kernel, trans)}`,
    trans.__('Kernel: %1', entry.name),
    trans.__('Built: %1 (build %2)', formatBuilt(kernel.built), kernel.buildId),
    supportText(kernel, trans)
  ].join('\n');
}

function supportText(kernel: IEnvmgrKernel, trans: TranslationBundle): string {
  if (kernel.supportUntil) {
    return trans.__('Supported until: %1', kernel.supportUntil);
  }
  return kernel.channel === 'latest'
    ? trans.__('Supported until: rolling, rebuilt in place')
    : trans.__('Supported until: not set');
}

function formatBuilt(built: string): string {
  const date = new Date(built);
  if (!built || Number.isNaN(date.getTime())) {
    return built || '?';
  }
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
