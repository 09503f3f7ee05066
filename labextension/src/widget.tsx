/**
 * The launcher widget: envmgr group sections, then the stock sections.
 */

import type { ILauncher } from '@jupyterlab/launcher';
import { Launcher } from '@jupyterlab/launcher';
import { nullTranslator } from '@jupyterlab/translation';
import * as React from 'react';
import type { ILaunchContext } from './cards';
import { CommandIcon, ItemCard, KernelCard } from './cards';
import type { IGroupSection, IKernelCard } from './grouping';
import { compareText, groupBy, layoutItems } from './grouping';

/**
 * The rank of envmgr group sections: before the stock Notebook section (0).
 */
const GROUP_RANK = -1;

/**
 * A launcher section with what orders it.
 */
interface ISection {
  rank: number;
  title: string;
  element: React.ReactElement;
}

/**
 * A launcher that shows envmgr kernels grouped by envmgr group.
 */
export class EnvmgrLauncher extends Launcher {
  constructor(options: ILauncher.IOptions) {
    super(options);
    const translator = options.translator ?? nullTranslator;
    this._ctx = {
      commands: options.commands,
      launcher: this,
      callback: options.callback,
      labTrans: translator.load('jupyterlab'),
      trans: translator.load('envmgr')
    };
    this.addClass('envmgr-Launcher');
  }

  protected render(): React.ReactElement | null {
    if (!this.model) {
      return null;
    }
    const { labTrans } = this._ctx;
    const kernelCategories = {
      notebook: labTrans.__('Notebook'),
      console: labTrans.__('Console')
    };
    const layout = layoutItems(this.model.items(), kernelCategories);
    const sections = [
      ...layout.groups.map(group => groupSection(this._ctx, group)),
      ...stockSections(this._ctx, layout.ordinary, kernelCategories)
    ].sort((a, b) => a.rank - b.rank || compareText(a.title, b.title));
    return (
      <div className="jp-Launcher-body jp-zoom-target">
        <div className="jp-Launcher-content">
          <div className="jp-Launcher-cwd">
            <h3>{this.cwd}</h3>
          </div>
          {sections.map(section => section.element)}
        </div>
      </div>
    );
  }

  private _ctx: ILaunchContext;
}

/**
 * The section of one envmgr group, its older releases folded.
 */
function groupSection(
  ctx: ILaunchContext,
  section: IGroupSection<IKernelCard>
): ISection {
  const { group, current, folded } = section;
  const first = current[0]?.launchers[0]?.item;
  const cards = (list: IKernelCard[]) =>
    list.map(card => <KernelCard key={card.name} ctx={ctx} card={card} />);
  const element = (
    <div
      className="jp-Launcher-section envmgr-Group"
      key={`envmgr-group:${group}`}
      data-envmgr-group={group}
    >
      <div className="jp-Launcher-sectionHeader">
        {first && (
          <CommandIcon ctx={ctx} item={first} stylesheet="launcherSection" />
        )}
        <h2 className="jp-Launcher-sectionTitle">{group}</h2>
      </div>
      <div className="jp-Launcher-cardContainer">{cards(current)}</div>
      {folded.length > 0 && (
        <details className="envmgr-Folded" data-envmgr-folded="">
          <summary>
            {ctx.trans._n(
              '%1 older release',
              '%1 older releases',
              folded.length
            )}
          </summary>
          <div className="jp-Launcher-cardContainer">{cards(folded)}</div>
        </details>
      )}
    </div>
  );
  return { rank: GROUP_RANK, title: group, element };
}

/**
 * The stock sections: one per category, ordered and filled as stock does.
 */
function stockSections(
  ctx: ILaunchContext,
  items: ILauncher.IItemOptions[],
  kernelCategories: { notebook: string; console: string }
): ISection[] {
  const other = ctx.labTrans.__('Other');
  const defaultRanks: Record<string, number> = {
    [kernelCategories.notebook]: 0,
    [kernelCategories.console]: 20,
    [other]: 100
  };
  const categories = groupBy(items, item => item.category || other);
  return [...categories].map(([category, members]) => {
    const kernel = Object.values(kernelCategories).includes(category);
    const defaultRank = defaultRanks[category] ?? Infinity;
    return {
      rank: Math.min(...members.map(m => m.categoryRank ?? defaultRank)),
      title: category,
      element: categorySection(ctx, category, members, kernel)
    };
  });
}

function categorySection(
  ctx: ILaunchContext,
  category: string,
  items: ILauncher.IItemOptions[],
  kernel: boolean
): React.ReactElement {
  const sorted = [...items].sort((a, b) => compareItems(ctx, a, b));
  return (
    <div className="jp-Launcher-section" key={`category:${category}`}>
      <div className="jp-Launcher-sectionHeader">
        <CommandIcon ctx={ctx} item={sorted[0]} stylesheet="launcherSection" />
        <h2 className="jp-Launcher-sectionTitle">{category}</h2>
      </div>
      <div className="jp-Launcher-cardContainer">
        {sorted.map((item, index) => (
          <ItemCard key={index} ctx={ctx} item={item} kernel={kernel} />
        ))}
      </div>
    </div>
  );
}

/**
 * The stock order of cards within a section: rank, then label.
 */
function compareItems(
  ctx: ILaunchContext,
  a: ILauncher.IItemOptions,
  b: ILauncher.IItemOptions
): number {
  const rankA = a.rank ?? Infinity;
  const rankB = b.rank ?? Infinity;
  if (rankA !== rankB) {
    return rankA < rankB ? -1 : 1;
  }
  const cwd = ctx.launcher.cwd;
  const labelA = ctx.commands.label(a.command, { ...a.args, cwd });
  const labelB = ctx.commands.label(b.command, { ...b.args, cwd });
  return labelA.localeCompare(labelB);
}
