/**
 * Launcher cards: the stock look for ordinary items, and envmgr kernel cards
 * with a badge, a tooltip and a console link.
 */

import { showErrorMessage } from '@jupyterlab/apputils';
import type { ILauncher } from '@jupyterlab/launcher';
import type { TranslationBundle } from '@jupyterlab/translation';
import { classes, LabIcon } from '@jupyterlab/ui-components';
import type { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';
import * as React from 'react';
import { badgeText, kernelTooltip } from './describe';
import type { IKernelCard } from './grouping';

/**
 * What a card needs to start its item.
 */
export interface ILaunchContext {
  commands: CommandRegistry;
  /** The launcher's working directory and its one-launch-at-a-time flag. */
  launcher: { readonly cwd: string; pending: boolean };
  /** Called with the widget an item's command returned. */
  callback: (widget: Widget) => void;
  /** The `jupyterlab` bundle, for the stock texts. */
  labTrans: TranslationBundle;
  /** The envmgr bundle, for this extension's texts. */
  trans: TranslationBundle;
}

/**
 * Run an item's command in the launcher's directory, as the stock card does.
 */
function launch(ctx: ILaunchContext, item: ILauncher.IItemOptions): void {
  const { launcher } = ctx;
  if (launcher.pending) {
    return;
  }
  launcher.pending = true;
  ctx.commands
    .execute(item.command, { ...item.args, cwd: launcher.cwd })
    .then(value => {
      launcher.pending = false;
      if (value instanceof Widget) {
        ctx.callback(value);
      }
    })
    .catch(err => {
      console.error(err);
      launcher.pending = false;
      void showErrorMessage(ctx.labTrans._p('Error', 'Launcher Error'), err);
    });
}

/**
 * Props that make a div a keyboard-usable button starting `item`.
 */
function buttonProps(ctx: ILaunchContext, item: ILauncher.IItemOptions) {
  return {
    role: 'button',
    tabIndex: 0,
    onClick: () => launch(ctx, item),
    onKeyDown: (event: React.KeyboardEvent) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        launch(ctx, item);
      }
    }
  };
}

/**
 * The icon of a kernel card: the kernel logo, else its first letter.
 */
function KernelIcon(props: {
  item: ILauncher.IItemOptions;
  label: string;
}): React.ReactElement {
  const { item, label } = props;
  return item.kernelIconUrl ? (
    <img
      src={item.kernelIconUrl}
      className="jp-Launcher-kernelIcon"
      alt={label}
    />
  ) : (
    <div className="jp-LauncherCard-noKernelIcon">
      {label.charAt(0).toUpperCase()}
    </div>
  );
}

/**
 * The icon of an item's command, as drawn in cards and section headers.
 */
export function CommandIcon(props: {
  ctx: ILaunchContext;
  item: ILauncher.IItemOptions;
  stylesheet: 'launcherCard' | 'launcherSection' | 'menuItem';
}): React.ReactElement {
  const { ctx, item } = props;
  const args = { ...item.args, cwd: ctx.launcher.cwd };
  return (
    <LabIcon.resolveReact
      icon={ctx.commands.icon(item.command, args)}
      iconClass={classes(
        ctx.commands.iconClass(item.command, args),
        'jp-Icon-cover'
      )}
      stylesheet={props.stylesheet}
      aria-hidden="true"
    />
  );
}

/**
 * A card with the stock look and behaviour.
 *
 * @param kernel - whether the item starts a kernel (Notebook, Console).
 */
export function ItemCard(props: {
  ctx: ILaunchContext;
  item: ILauncher.IItemOptions;
  kernel: boolean;
}): React.ReactElement {
  const { ctx, item, kernel } = props;
  const args = { ...item.args, cwd: ctx.launcher.cwd };
  const label = ctx.commands.label(item.command, args);
  const title = kernel
    ? label
    : ctx.commands.caption(item.command, args) || label;
  return (
    <div
      className="jp-LauncherCard"
      title={title}
      data-category={item.category || ctx.labTrans.__('Other')}
      {...buttonProps(ctx, item)}
    >
      <div className="jp-LauncherCard-icon">
        {kernel ? (
          <KernelIcon item={item} label={label} />
        ) : (
          <CommandIcon ctx={ctx} item={item} stylesheet="launcherCard" />
        )}
      </div>
      <div className="jp-LauncherCard-label" title={title}>
        <p>{label}</p>
      </div>
    </div>
  );
}

/**
 * An envmgr kernel: a card opening its first item (the notebook if there is
 * one) and a compact link for each further item (the console).
 */
export function KernelCard(props: {
  ctx: ILaunchContext;
  card: IKernelCard;
}): React.ReactElement | null {
  const { ctx, card } = props;
  const [main, ...links] = card.launchers;
  if (!main) {
    return null;
  }
  const { kernel } = card;
  return (
    <div
      className="envmgr-Kernel"
      title={kernelTooltip(card, ctx.trans)}
      data-envmgr-kernel={card.name}
      data-envmgr-family={kernel.family}
      data-envmgr-channel={kernel.channel}
      data-envmgr-release={kernel.release ?? undefined}
    >
      <div
        className="jp-LauncherCard envmgr-KernelCard"
        data-category={main.item.category}
        data-envmgr-launch={main.kind}
        {...buttonProps(ctx, main.item)}
      >
        <div className="jp-LauncherCard-icon">
          <KernelIcon item={main.item} label={kernel.displayName} />
        </div>
        <div className="jp-LauncherCard-label">
          <p>{kernel.displayName}</p>
          <span
            className={`envmgr-Badge envmgr-Badge-${kernel.channel}`}
            data-envmgr-badge={kernel.channel}
          >
            {badgeText(kernel, ctx.trans)}
          </span>
        </div>
      </div>
      {links.map(({ kind, item }) => (
        <button
          key={kind}
          className="envmgr-KernelLink"
          data-envmgr-launch={kind}
          onClick={() => launch(ctx, item)}
        >
          <CommandIcon ctx={ctx} item={item} stylesheet="menuItem" />
          <span>{item.category}</span>
        </button>
      ))}
    </div>
  );
}
